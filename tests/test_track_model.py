"""SiamFC: cross-correlation against loops, response geometry, variants, initial weights, the balanced logistic loss
and its label map, the joint dihedral augmentation."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_siam.core.errors import ConfigError
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder
from ssl_siam.track.loss import BalancedLogisticLoss, label_map
from ssl_siam.track.model import SiamFC, build_siamfc, response_offsets, xcorr
from ssl_siam.track.task import _D4, apply_dihedral


def loop_xcorr(z: Tensor, x: Tensor) -> Tensor:
    """The definition, one sample, cell and product at a time."""
    batch, dim, hz, wz = z.shape
    ho, wo = x.shape[-2] - hz + 1, x.shape[-1] - wz + 1
    out = torch.zeros(batch, 1, ho, wo, dtype=torch.float64)
    for b in range(batch):
        for i in range(ho):
            for j in range(wo):
                out[b, 0, i, j] = sum(float(z[b, d, u, v]) * float(x[b, d, i + u, j + v])
                                      for d in range(dim) for u in range(hz) for v in range(wz))
    return out


def test_xcorr_matches_the_definition_per_sample() -> None:
    g = torch.Generator().manual_seed(0)
    z, x = torch.randn(3, 2, 2, 3, generator=g).double(), torch.randn(3, 2, 5, 4, generator=g).double()
    out = xcorr(z, x)
    assert out.shape == (3, 1, 4, 2)
    torch.testing.assert_close(out, loop_xcorr(z, x))
    assert float(xcorr(torch.ones(1, 1, 1, 1), torch.full((1, 1, 2, 2), 3.0)).sum()) == 12.0


def test_one_exemplar_is_correlated_with_every_search_region() -> None:
    g = torch.Generator().manual_seed(1)
    z, x = torch.randn(1, 4, 3, 3, generator=g).double(), torch.randn(5, 4, 7, 7, generator=g).double()  # 5 scales
    out = xcorr(z, x)
    assert out.shape == (5, 1, 5, 5)
    torch.testing.assert_close(out, xcorr(z.expand(5, -1, -1, -1), x))
    torch.testing.assert_close(out, loop_xcorr(z.expand(5, -1, -1, -1), x))
    with pytest.raises(ValueError, match="expected equal"):
        xcorr(torch.randn(2, 4, 3, 3), x)


def test_response_shape_and_stride() -> None:
    for stride, border, cells in ((4, 1, 9), (8, 0, 5)):
        model = build_siamfc("resnet18", 4, out_stride=stride, border=border).eval()
        assert model.stride == stride and model.response_size(32, 64) == cells
        z, x = model.embed(torch.rand(2, 4, 32, 32)), model.embed(torch.rand(2, 4, 64, 64), search=True)
        assert z.shape[-2:] == (32 // stride - 2 * border,) * 2 and x.shape[-2:] == (64 // stride - 2 * border,) * 2
        assert model(torch.rand(2, 4, 32, 32), torch.rand(2, 4, 64, 64)).shape == (2, 1, cells, cells)
    assert not hasattr(model.encoder, "layer3")  # truncated: the later stages are not built
    with pytest.raises(ConfigError, match="multiples of the stride 8"):
        model.response_size(36, 64)
    with pytest.raises(ConfigError, match=r"feature levels of stride 2, 4, 8, 16, 32"):
        build_siamfc("resnet18", 3, out_stride=6)
    with pytest.raises(ConfigError, match="none left"):
        build_siamfc("resnet18", 3, out_stride=8, border=2).response_size(32, 64)


def test_features_move_one_cell_per_stride_away_from_the_padding() -> None:
    """Translation equivariance of the truncated encoder: the input shifted by one stride shifts the features by
    one cell, exactly, wherever the receptive field misses the zero padding."""
    model = build_siamfc("resnet18", 3, out_stride=4, border=0).eval()
    image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(image, shifts=(4, 8), dims=(2, 3))  # 1 cell down, 2 cells right
    with torch.no_grad():
        f, g = model.embed(image), model.embed(shifted)
    torch.testing.assert_close(g[..., 12:20, 12:20], f[..., 11:19, 10:18], atol=1e-4, rtol=1e-4)


class PoolEncoder(nn.Module):
    """A stride-4 average pooling as the encoder: no padding at all, so the geometry can be checked exactly."""

    feature_info = SimpleNamespace(reduction=lambda: [4], channels=lambda: [1])

    def forward(self, x: Tensor) -> list[Tensor]:
        return [F.avg_pool2d(x, 4)]


@pytest.mark.parametrize("dx, dy", [(0, 0), (8, -4), (-12, 16)])
def test_the_response_peak_is_the_target_displacement(dx: int, dy: int) -> None:
    """An exemplar holding a bright block at its centre and a search crop holding it ``(dx, dy)`` px off its centre:
    the peak is the cell whose offset is ``(dx, dy)``."""
    model = SiamFC(PoolEncoder(), border=0).eval()
    exemplar, search = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 64, 64)
    exemplar[..., 12:20, 12:20] = 1
    search[..., 28 + dy:36 + dy, 28 + dx:36 + dx] = 1
    response = model(exemplar, search)
    cells = model.response_size(32, 64)
    assert response.shape == (1, 1, cells, cells)
    row, col = divmod(int(response.flatten().argmax()), cells)
    offsets = response_offsets(cells, model.stride)
    assert (float(offsets[col]), float(offsets[row])) == (dx, dy)


def test_pseudo_siamese_branches_start_equal_and_are_separate() -> None:
    classic = build_siamfc("resnet18", 3, siamese="classic")
    pseudo = build_siamfc("resnet18", 3, siamese="pseudo").eval()
    count = [sum(p.numel() for p in m.parameters()) for m in (classic, pseudo)]
    assert count[1] == 2 * count[0] - 2  # two encoders, one adjustment (BatchNorm2d(1): 2 parameters)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(pseudo.embed(x), pseudo.embed(x, search=True))
    with torch.no_grad():
        next(pseudo.search_encoder.parameters()).mul_(2)
    assert not torch.allclose(pseudo.embed(x), pseudo.embed(x, search=True))
    with pytest.raises(ConfigError, match="valid: classic, pseudo"):
        build_siamfc("resnet18", 3, siamese="asymmetric")


def test_an_ssl_export_or_a_weight_file_initialises_the_encoder(tmp_path: Path) -> None:
    encoder = create_encoder("resnet18", 4)
    export_encoder(encoder, tmp_path / "run", EncoderMeta("resnet18", 4))
    torch.save(encoder.state_dict(), tmp_path / "weights.pt")
    exported = encoder.state_dict()
    for kwargs in ({"encoder": EncoderMeta.read(tmp_path / "run")}, {"pretrained": tmp_path / "weights.pt"}):
        model = build_siamfc("resnet18", 4, out_stride=8, siamese="pseudo", **kwargs)
        for branch in (model.encoder, model.search_encoder):
            state = branch.state_dict()
            assert state and all(torch.equal(v, exported[k]) for k, v in state.items())
    with pytest.raises(ConfigError, match="a resnet18 encoder for 4 bands"):
        build_siamfc("resnet18", 3, encoder=EncoderMeta.read(tmp_path / "run"))


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_balanced_logistic_loss_by_hand() -> None:
    """Sample 0: 1 positive of 9 cells; sample 1: 3 positives. Per sample, log(1 + e^(−v)) on positives and
    log(1 + e^v) on negatives, each class weighing 1/2 in all; then the batch mean."""
    response = torch.tensor([[[[0.5, -1.0, 0.0], [2.0, 3.0, -2.0], [1.0, 0.0, -0.5]]],
                             [[[1.5, 1.0, -1.0], [0.2, 0.0, 0.4], [-3.0, 2.5, 1.0]]]])
    labels = torch.zeros_like(response)
    labels[0, 0, 1, 1] = 1
    labels[1, 0, 0, :] = 1
    first = 0.5 * softplus(-3.0) + 0.5 / 8 * sum(softplus(v) for v in (0.5, -1.0, 0.0, 2.0, -2.0, 1.0, 0.0, -0.5))
    second = (0.5 / 3 * sum(softplus(-v) for v in (1.5, 1.0, -1.0))
              + 0.5 / 6 * sum(softplus(v) for v in (0.2, 0.0, 0.4, -3.0, 2.5, 1.0)))
    loss = BalancedLogisticLoss()(response, labels)
    assert float(loss) == pytest.approx((first + second) / 2, rel=1e-6)


def test_the_label_map_follows_the_target() -> None:
    centred = label_map(torch.zeros(1, 2), 9, 4, 4.0)[0, 0]
    assert centred.shape == (9, 9) and int(centred.sum()) == 5  # the centre and its 4 neighbours
    assert centred[4, 4] == 1 and centred[3, 4] == centred[4, 5] == 1 and centred[3, 3] == 0
    moved = label_map(torch.tensor([[8.0, -4.0], [2.0, 2.0]]), 9, 4, 4.0)
    expected = torch.zeros(9, 9)
    expected[3, 6] = expected[2, 6] = expected[4, 6] = expected[3, 5] = expected[3, 7] = 1  # (x 8, y −4): row 3, col 6
    assert torch.equal(moved[0, 0], expected)
    assert moved[1, 0].nonzero().tolist() == [[4, 4], [4, 5], [5, 4], [5, 5]]  # between four cells: all 2.8 px away
    assert moved[1, 0].sum() > 0 and label_map(torch.tensor([[2.0, 2.0]]), 9, 4, 2.8)[0, 0].sum() == 0


def test_one_dihedral_element_moves_crops_and_labels_together() -> None:
    """Each of the 8 elements maps a pixel at centred position ``c`` to ``Mᵀ c`` in crops of any size, and the
    transformed label map is the label map of the transformed target."""
    offset = torch.tensor([[8.0, -4.0]])
    labels = label_map(offset, 9, 4, 4.0)
    for m in _D4:
        torch.testing.assert_close(apply_dihedral(labels, m[None]), label_map((m.T @ offset[0])[None], 9, 4, 4.0))
        for size in (32, 64):
            centre, pixel = (size - 1) / 2, torch.tensor([8.5, -3.5])  # centred (x, y) of pixel (col, row)
            crop = torch.zeros(1, 2, size, size)
            crop[0, :, int(pixel[1] + centre), int(pixel[0] + centre)] = 1
            row, col = divmod(int(apply_dihedral(crop, m[None])[0, 1].flatten().argmax()), size)
            assert (col - centre, row - centre) == tuple((m.T @ pixel).tolist())
    assert len({tuple(m.flatten().tolist()) for m in _D4}) == 8
