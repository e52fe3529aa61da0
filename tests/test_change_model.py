"""SiameseChangeNet: fusions, attention gate, decoder, the three Siamese variants and encoder loading."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ssl_siam.change.models.attention import AttentionGate
from ssl_siam.change.models.decoder import UNetDecoder
from ssl_siam.change.models.fusion import FUSIONS
from ssl_siam.change.models.siamese import SiameseChangeNet, build_change_net
from ssl_siam.core.errors import ConfigError
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder

FUSION_NAMES = ["absdiff", "concat", "concat_diff", "learned"]
VARIANTS = {
    "classic": {},
    "pseudo": {"siamese": "pseudo"},
    "asymmetric": {"siamese": "asymmetric", "post_backbone": "efficientnet_b0", "post_in_chans": 2},
}
SMALL = {"decoder_channels": (32, 16, 16, 8, 8), "num_classes": 5}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny convs gain nothing from threads; on the shared CPUs two OpenMP threads are ~50× slower here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pair(bands_post: int = 3, size: tuple[int, int] = (64, 64)) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 3, *size), torch.randn(2, bands_post, *size)


def count(params: list[torch.nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def test_fusion_registry_and_outputs() -> None:
    assert FUSIONS.names() == FUSION_NAMES
    f_pre, f_post = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    widths = {"absdiff": 8, "concat": 16, "concat_diff": 24, "learned": 8}
    for name, width in widths.items():
        fusion = FUSIONS.get(name)(8)
        out = fusion(f_pre, f_post)
        assert fusion.out_channels == width and out.shape == (2, width, 4, 4)
    torch.testing.assert_close(FUSIONS.get("absdiff")(8)(f_pre, f_post), (f_pre - f_post).abs())
    torch.testing.assert_close(FUSIONS.get("concat_diff")(8)(f_pre, f_post)[:, 16:], (f_pre - f_post).abs())
    with pytest.raises(ConfigError, match="absdiff, concat, concat_diff, learned"):
        FUSIONS.get("sum")
    with pytest.raises(ConfigError, match="unknown fusion 'sum'"):
        build_change_net("resnet18", 3, fusion="sum")


def test_attention_gate_scales_skip_by_alpha() -> None:
    torch.manual_seed(0)
    gate = AttentionGate(x_channels=8, g_channels=16, inter_channels=4)
    x, g = torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)  # g is resized to x's 8×8
    gated, alpha = gate(x, g)
    assert alpha.shape == (2, 1, 8, 8) and gated.shape == x.shape
    assert alpha.min() >= 0 and alpha.max() <= 1 and alpha.std() > 0
    torch.testing.assert_close(gated, alpha * x)


def test_decoder_stages_coarse_to_fine() -> None:
    features = [torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([4, 8, 16])]
    decoder = UNetDecoder([4, 8, 16], decoder_channels=(12, 10, 6, 99), attention=True)
    outs = decoder(features)
    assert [tuple(o.shape[1:]) for o in outs] == [(12, 16, 16), (10, 32, 32), (6, 64, 64)]
    with pytest.raises(ConfigError, match="model.decoder_channels"):
        UNetDecoder([4, 8, 16], decoder_channels=(8, 8))


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_shapes(variant: str, fusion: str) -> None:
    model = build_change_net("resnet18", 3, fusion=fusion, **VARIANTS[variant], **SMALL).train()
    with torch.no_grad():
        out = model(*pair(bands_post=2 if variant == "asymmetric" else 3))
    assert out["logits"].shape == (2, 5, 64, 64)
    assert [tuple(a.shape) for a in out["aux"]] == [(2, 5, s, s) for s in (4, 8, 16, 32)]


def test_asymmetric_projects_post_features() -> None:
    model = build_change_net("resnet18", 3, siamese="asymmetric", post_backbone="resnet10t", post_in_chans=2, **SMALL)
    assert model.post_encoder is not None and len(model.post_projections) == 5  # equal widths, still projected
    f_pre, f_post = model.encode(*pair(bands_post=2))
    assert [f.shape for f in f_pre] == [f.shape for f in f_post]
    with pytest.raises(ConfigError, match="model.post_backbone"):
        SiameseChangeNet(
            create_encoder("resnet18", 3, features_only=True),
            post_encoder=create_encoder("convnext_atto", 3, features_only=True),
        )


def test_non_resnet_backbone_and_odd_sizes() -> None:
    model = build_change_net("convnext_atto", 3, **SMALL).train()  # 4 scales, first at stride 4
    out = model(*pair())
    assert out["logits"].shape == (2, 5, 64, 64)
    assert model.decoder.out_channels == [32, 16, 16, 8]
    assert [a.shape[-1] for a in out["aux"]] == [4, 8, 16]
    resnet = build_change_net("resnet18", 3, **SMALL).eval()
    with torch.no_grad():
        assert resnet(*pair(size=(40, 56)))["logits"].shape == (2, 5, 40, 56)


def test_deep_supervision_only_in_training() -> None:
    model = build_change_net("resnet18", 3, **SMALL)
    with torch.no_grad():
        assert len(model.train()(*pair())["aux"]) == 4
        assert model.eval()(*pair())["aux"] == []
        plain = build_change_net("resnet18", 3, deep_supervision=False, **SMALL).train()
        assert plain(*pair())["aux"] == [] and len(plain.aux_heads) == 0


def test_classic_shares_and_pseudo_copies_encoder() -> None:
    classic = build_change_net("resnet18", 3, **SMALL)
    pseudo = build_change_net("resnet18", 3, siamese="pseudo", **SMALL)
    assert classic.post_encoder is None
    one_encoder = count(list(pseudo.encoder.parameters()))
    assert count(list(classic.parameters())) == count(list(pseudo.parameters())) - one_encoder
    assert count(classic.encoder_parameters()) == one_encoder
    for (name, a), b in zip(pseudo.encoder.state_dict().items(), pseudo.post_encoder.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name
    for model in (classic, pseudo):  # encoder/decoder split is a partition of the parameters
        enc, dec = model.encoder_parameters(), model.decoder_parameters()
        assert not {id(p) for p in enc} & {id(p) for p in dec}
        assert count(enc) + count(dec) == count(list(model.parameters()))


def test_gradients_reach_both_encoders_and_decoder() -> None:
    model = build_change_net(
        "resnet18", 3, siamese="asymmetric", post_backbone="resnet10t", post_in_chans=2, fusion="learned", **SMALL
    ).train()
    out = model(*pair(bands_post=2))
    loss = out["logits"].square().mean() + sum(a.square().mean() for a in out["aux"])
    loss.backward()
    for params in (model.encoder.parameters(), model.post_encoder.parameters(), model.decoder_parameters()):
        grads = [p.grad for p in params]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_encoder_weights_loading(tmp_path: Path) -> None:
    torch.manual_seed(0)
    exported = create_encoder("resnet18", 3)
    export_encoder(exported, tmp_path, EncoderMeta("resnet18", 3))
    reference = exported.state_dict()
    pseudo = build_change_net("resnet18", 3, siamese="pseudo", encoder=EncoderMeta.read(tmp_path), **SMALL)
    for encoder in (pseudo.encoder, pseudo.post_encoder):
        state = encoder.state_dict()
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in reference)
    asym = build_change_net(
        "resnet18", 3, siamese="asymmetric", post_in_chans=2, encoder=EncoderMeta.read(tmp_path), **SMALL
    )
    assert torch.equal(asym.encoder.layer1[0].conv1.weight, exported.layer1[0].conv1.weight)
    assert not torch.equal(asym.post_encoder.layer1[0].conv1.weight, exported.layer1[0].conv1.weight)
    with pytest.raises(ConfigError, match="model.encoder_weights"):
        build_change_net("resnet18", 4, encoder=EncoderMeta.read(tmp_path))
    with pytest.raises(ConfigError, match="model.encoder_weights"):
        build_change_net("resnet34", 3, encoder=EncoderMeta.read(tmp_path))


def test_bad_siamese_options() -> None:
    with pytest.raises(ConfigError, match="classic, pseudo, asymmetric"):
        build_change_net("resnet18", 3, siamese="triplet")
    with pytest.raises(ConfigError, match="asymmetric"):
        build_change_net("resnet18", 3, post_in_chans=2)


@pytest.mark.parametrize("encoder_bn", ["train", "frozen"])
def test_frozen_encoder_batchnorm_keeps_its_statistics(encoder_bn: str) -> None:
    from torch import nn

    from ssl_siam.change.losses import DeepSupervisionLoss, FocalDiceLoss
    from ssl_siam.change.training import FinetuneTask
    from ssl_siam.data.stats import BandStats

    torch.manual_seed(0)
    model = build_change_net("resnet18", 3, decoder_channels=(16, 16, 8, 8, 8))
    stats = BandStats(low=[0.0] * 3, high=[255.0] * 3, mean=[0.5] * 3, std=[0.25] * 3)
    task = FinetuneTask(model, DeepSupervisionLoss(FocalDiceLoss(), [0.5]), stats, stats, encoder_bn=encoder_bn)
    task.train()

    def running(modules: list[nn.Module]) -> list[torch.Tensor]:
        return [m.running_mean.clone() for m in modules if isinstance(m, nn.BatchNorm2d)]

    encoder_before, decoder_before = running(model.encoder_modules()), running(list(model.decoder.modules()))
    batch = {"pre": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8),
             "post": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8),
             "mask": torch.randint(0, 5, (2, 64, 64)), "index": torch.arange(2)}
    task.training_step(batch, 0, 0)["loss"].backward()
    encoder_same = all(torch.equal(a, b) for a, b in zip(encoder_before, running(model.encoder_modules())))
    assert encoder_same == (encoder_bn == "frozen")
    assert not any(torch.equal(a, b) for a, b in zip(decoder_before, running(list(model.decoder.modules()))))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())  # still trains
