"""Self-supervised change pretraining (``data.synthetic_change``): pasted rectangles checked pixel by pixel, the
training target replaced by them, every OSCD city (labelled or not) training, and the exported encoder reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_oscd

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.change.run import FinetuneTask, build_model, synthetic_change
from ssl_siam.change.synthetic import SyntheticChange, one_date_twice, paste_changes
from ssl_siam.change.tasks import change_task
from ssl_siam.cli import main
from ssl_siam.core.config import load_config
from ssl_siam.core.errors import ConfigError
from ssl_siam.data.stats import BandStats
from ssl_siam.encoders import EncoderMeta, load_encoder
from ssl_siam.train.checkpoint import load_checkpoint

TINY = ["model.backbone=resnet18", "data.crop_size=32", "train.batch_size=2", "train.max_steps=2",
        "train.device=cpu", "data.num_workers=0", "train.progress=false", "data.stats_samples=4",
        "model.decoder_channels=[16,16,8,8,8]", "optim.warmup_steps=0", "data.samples_per_epoch=4"]


def _pairs(b: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two bands; every pixel of every image holds a distinct value (pair i, date, row, column), so a pasted pixel
    tells where it came from."""
    rows = torch.arange(size, dtype=torch.float32)[:, None] * size + torch.arange(size)[None]  # 0 .. size² − 1
    base = 10_000 * torch.arange(b, dtype=torch.float32)[:, None, None, None] + rows[None, None]
    band = torch.tensor([0.0, 0.5])[None, :, None, None]
    return (base + band).clone(), (base + 5_000 + band).clone()


def _shift(original: torch.Tensor, pasted: torch.Tensor, inside: torch.Tensor) -> tuple[int, int]:
    """The (dy, dx) displacement the pasted pixels were copied with (from the value at one of them)."""
    y, x = (int(v[0]) for v in torch.nonzero(inside, as_tuple=True))
    index = int(pasted[0, y, x] - original[0, 0, 0])  # row-major position of the source pixel
    return (y - index // original.shape[-1]) % original.shape[-2], (x - index % original.shape[-1]) % original.shape[-1]


def test_pasted_rectangles_are_the_image_displaced_and_are_the_target() -> None:
    pre, post = _pairs()
    g = torch.Generator().manual_seed(3)
    new_pre, new_post, mask = paste_changes(pre, post, g, patches=3, min_size=4, max_size=12)
    assert mask.dtype == torch.int64 and mask.shape == (4, 32, 32)
    shifts, dates = set(), []
    for i in range(4):
        inside = mask[i].bool()
        assert 16 <= int(inside.sum()) <= 3 * 12 * 12  # 1..3 rectangles of 4..12 px sides
        changed_pre, changed_post = not torch.equal(new_pre[i], pre[i]), not torch.equal(new_post[i], post[i])
        assert changed_pre != changed_post  # exactly one date received the rectangles
        dates.append(changed_pre)
        date, original = (new_pre, pre) if changed_pre else (new_post, post)
        shift = _shift(original[i], date[i], inside)
        assert 8 <= shift[0] <= 24 and 8 <= shift[1] <= 24  # in [H/4, 3H/4]
        shifts.add(shift)
        torch.testing.assert_close(date[i][:, inside], original[i].roll(shift, (1, 2))[:, inside], rtol=0, atol=0)
        assert torch.equal(date[i][:, ~inside], original[i][:, ~inside])  # nothing else touched
        assert torch.equal((new_post if changed_pre else new_pre)[i], (post if changed_pre else pre)[i])
    assert len(shifts) == 1 and len(set(dates)) == 2  # one offset per batch; both dates receive, by pair
    again = paste_changes(pre, post, torch.Generator().manual_seed(3), patches=3, min_size=4, max_size=12)
    assert all(torch.equal(a, b) for a, b in zip(again, (new_pre, new_post, mask)))  # a pure function of the seed


def test_one_fixed_rectangle_has_the_drawn_size() -> None:
    pre, post = _pairs(b=8)
    _, _, mask = paste_changes(pre, post, torch.Generator().manual_seed(0), patches=1, min_size=5, max_size=5)
    for m in mask:
        rows, cols = torch.nonzero(m, as_tuple=True)
        assert len(rows) == 25 and int(rows.max() - rows.min()) == 4 and int(cols.max() - cols.min()) == 4
    _, _, one = paste_changes(pre[:1], post[:1], torch.Generator(), patches=1, min_size=5, max_size=5)
    assert int(one.sum()) == 25  # a single pair is enough: the donor is the pair itself


def test_no_change_leaves_that_share_of_pairs_untouched() -> None:
    pre, post = _pairs(b=400, size=16)
    new_pre, new_post, mask = paste_changes(pre, post, torch.Generator().manual_seed(1), 2, 2, 6, no_change=0.25)
    empty = mask.flatten(1).sum(1) == 0
    assert 70 <= int(empty.sum()) <= 130  # Binomial(400, 0.25): mean 100, sd 8.7
    assert torch.equal(new_pre[empty], pre[empty]) and torch.equal(new_post[empty], post[empty])
    assert torch.all(mask[~empty].flatten(1).sum(1) >= 4)  # the others still get 1..2 rectangles of ≥ 2 px sides
    _, _, none = paste_changes(pre[:8], post[:8], torch.Generator(), 2, 2, 6, no_change=1.0)
    assert int(none.sum()) == 0


def test_same_date_pairs_are_one_date_and_its_jittered_copy() -> None:
    g = torch.Generator().manual_seed(0)
    pre = torch.randint(100, 4000, (200, 3, 8, 8), generator=g).float()
    post = pre + 20_000  # tells which date a value came from
    pre[:, :, 0, 0] = post[:, :, 0, 0] = 0  # nodata (0 in every band) stays 0 in the copy
    assert one_date_twice(pre, post, g, 0.0) == (pre, post)  # off: the very same tensors
    new_pre, new_post = one_date_twice(pre, post, torch.Generator().manual_seed(4), 0.5)
    kept = (new_pre == pre).flatten(1).all(1) & (new_post == post).flatten(1).all(1)
    from_pre, from_post = (new_pre == pre).flatten(1).all(1) & ~kept, (new_pre == post).flatten(1).all(1)
    assert torch.all(kept ^ from_pre ^ from_post)  # each pair: untouched, or its pre twice, or its post twice
    assert 70 <= int((~kept).sum()) <= 130 and int(from_pre.sum()) >= 30 and int(from_post.sum()) >= 30
    copy, source = new_post[~kept], new_pre[~kept]
    assert torch.all(copy[:, :, 0, 0] == 0)
    assert not torch.equal(copy, source)  # a jittered copy: radiometry differs ...
    ratio = (copy[:, :, 1:, 1:] / source[:, :, 1:, 1:]).flatten(1)
    assert float((ratio.median(1).values - 1).abs().median()) < 0.25  # ... within the jitter's ranges
    assert float(torch.corrcoef(torch.stack([copy.flatten(), source.flatten()]))[0, 1]) > 0.9  # same content
    with pytest.raises(ValueError, match="same bands"):
        one_date_twice(pre, post[:, :2], g, 0.5)


def test_the_training_step_trains_on_the_pasted_target_not_the_labels() -> None:
    over = ["model.backbone=resnet18", "model.decoder_channels=[16,16,8,8,8]", "data.synthetic_change.enabled=true"]
    cfg = load_config(FinetuneConfig, "oscd_resnet50", over)
    change = change_task(cfg.task)
    seen = []

    def criterion(logits: object, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        seen.append(mask.clone())
        return torch.zeros((), requires_grad=True), {}

    stats = BandStats(low=[0.0] * 2, high=[100.0] * 2, mean=[0.5] * 2, std=[0.25] * 2)
    synthetic = synthetic_change(cfg, change)
    assert synthetic == SyntheticChange(cfg.train.seed, 4, 4, 24, 255)
    both = ["data.synthetic_change.same_date=0.5", "data.synthetic_change.no_change=0.25"]
    assert synthetic_change(load_config(FinetuneConfig, "oscd_resnet50", over + both), change) == SyntheticChange(
        cfg.train.seed, 4, 4, 24, 255, 0.5, 0.25)
    task = FinetuneTask(build_model(cfg, change, 2, 2), criterion, stats, stats, synthetic=synthetic)
    pre, post = _pairs()
    labels = torch.ones(4, 32, 32, dtype=torch.long)  # what a label file would say: not used
    labels[:, 0, :] = 255  # padding stays ignored
    task.training_step({"pre": pre, "post": post, "mask": labels, "index": torch.arange(4)}, 0, 0)
    target = seen[0]
    assert target.shape == (4, 32, 32) and torch.all(target[:, 0, :] == 255)
    assert set(target[:, 1:].unique().tolist()) == {0, 1} and (target[:, 1:] == 0).float().mean() > 0.5


def test_refusals_name_the_key() -> None:
    cases = [("xbd_resnet50", [], "task=damage has other classes"),
             ("oscd_resnet50", ["data.synthetic_change.min_size=30"], "min_size=30 is above max_size=24"),
             ("oscd_resnet50", ["data.synthetic_change.same_date=0.5", "data.post_bands=[1,2]"],
              "same_date=0.5 copies one date into the other; data.post_bands must then be unset")]
    for recipe, extra, message in cases:
        cfg = load_config(FinetuneConfig, recipe, ["data.synthetic_change.enabled=true", *extra])
        with pytest.raises(ConfigError, match=message):
            synthetic_change(cfg, change_task(cfg.task))


def test_pretraining_on_every_oscd_city_exports_a_reusable_encoder(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    root = write_oscd(tmp_path / "oscd", ["paris", "bordeaux"], ["dubai", "lasvegas"], shrink=("dubai",))
    run = tmp_path / "synthetic"
    assert main(["finetune", "--config", "oscd_resnet50", f"data.root={root}", f"run_dir={run}",
                 "data.synthetic_change.enabled=true", *TINY]) == 0
    out = capsys.readouterr().out
    assert "nothing was validated, so no best.pt" in out and f"encoder: {run} " in out
    assert not (run / "checkpoints" / "best.pt").exists()
    split = json.loads((run / "split.json").read_text())
    assert split["train"] == ["paris", "bordeaux", "dubai", "lasvegas"] and split["val"] == []  # unlabelled too
    assert list((run / "targets").rglob("*.vrt")) and not list((run / "targets").rglob("*-cm.tif"))  # labels unread
    meta = EncoderMeta.read(run)
    assert (meta.objective, meta.step, meta.in_chans, meta.backbone) == ("synthetic-change", 2, 13, "resnet18")
    assert meta.normalization == BandStats(**json.loads((run / "stats_pre.json").read_text()))
    state = load_checkpoint(run / "checkpoints" / "last.pt", kind="finetune")["model"]
    encoder = load_encoder(run, features_only=True).state_dict()
    for name, value in encoder.items():
        torch.testing.assert_close(value, state[f"model.encoder.{name}"])
    reuse = tmp_path / "reuse"  # the export is an encoder like an SSL run's: a labelled finetune starts from it
    assert main(["finetune", "--config", "oscd_resnet50", f"data.root={root}", f"run_dir={reuse}",
                 f"model.encoder_weights={run}", "train.encoder_lr_scale=0", "data.val_ids=[bordeaux]",
                 *TINY]) == 0
    reused = load_checkpoint(reuse / "checkpoints" / "last.pt", kind="finetune")["model"]
    conv = next(k for k in encoder if k.endswith("conv1.weight"))
    torch.testing.assert_close(reused[f"model.encoder.{conv}"], encoder[conv])  # frozen: still the export's
    assert np.isfinite(json.loads((reuse / "metrics.json").read_text())["val"]["f1"])


def test_init_weights_starts_the_whole_model_and_study_cells_take_model_specs(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture) -> None:
    root = write_oscd(tmp_path / "oscd", ["paris", "bordeaux"], ["dubai"])
    run = tmp_path / "synthetic"
    assert main(["finetune", "--config", "oscd_resnet50", f"data.root={root}", f"run_dir={run}",
                 "data.synthetic_change.enabled=true", *TINY]) == 0
    start = load_checkpoint(run / "checkpoints" / "last.pt", kind="finetune")["model"]
    reuse = tmp_path / "reuse"  # frozen encoder, a vanishing LR: every weight is still (nearly) the start's
    assert main(["finetune", "--config", "oscd_resnet50", f"data.root={root}", f"run_dir={reuse}",
                 f"model.init_weights={run}", "train.encoder_lr_scale=0", "optim.lr=1e-12", "data.val_ids=[bordeaux]",
                 *TINY]) == 0
    after = load_checkpoint(reuse / "checkpoints" / "last.pt", kind="finetune")["model"]
    assert after.keys() == start.keys()
    for name, value in start.items():
        if value.is_floating_point() and not name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(after[name], value, rtol=0, atol=1e-6)
    saved = json.loads((reuse / "stats_pre.json").read_text())  # the start's band statistics normalise
    assert saved == json.loads((run / "stats_pre.json").read_text())
    moved = tmp_path / "moved"  # resuming needs only the run's own checkpoint, not the start's
    run.rename(moved)
    assert main(["finetune", "--config", "oscd_resnet50", f"data.root={root}", f"run_dir={reuse}", "resume=auto",
                 f"model.init_weights={run}", "train.encoder_lr_scale=0", "optim.lr=1e-12", "data.val_ids=[bordeaux]",
                 *TINY[:3], "train.max_steps=3", *TINY[4:]]) == 0
    assert load_checkpoint(reuse / "checkpoints" / "last.pt", kind="finetune")["step"] == 3
    moved.rename(run)
    code = main(["finetune", "--config", "oscd_resnet50", f"data.root={root}", f"run_dir={tmp_path / 'other'}",
                 f"model.init_weights={run}", "data.val_ids=[bordeaux]", *TINY, "model.decoder_channels=[32,16,8,8,8]"])
    assert code == 2
    assert f"model.init_weights: {run / 'checkpoints' / 'last.pt'} holds another model" in capsys.readouterr().err

    from ssl_siam.study.design import parse_encoder
    from ssl_siam.study.run import cell_config

    choice = parse_encoder(f"model:{run}")
    assert (choice.name, choice.random, choice.backbone) == ("synthetic+model", False, "resnet18")
    assert choice.encoder_weights == str(run) and choice.init_weights == str(run / "checkpoints" / "last.pt")
    assert parse_encoder(str(run)).init_weights is None  # the run dir alone: its encoder only
    with pytest.raises(ConfigError, match="expected a finetune run dir with checkpoints/last.pt"):
        parse_encoder(f"model:{tmp_path / 'nowhere'}")
    from ssl_siam.study.config import StudyConfig
    from ssl_siam.study.design import Cell

    study = load_config(StudyConfig, "oscd_label_efficiency", [f"data.root={root}", f"encoders=[model:{run}]"])
    ft = cell_config(study, Cell(0, choice, 1, 1, 0, ("paris",)), tmp_path / "s" / "cells" / "x" / "n1" / "seed0")
    assert ft.model.init_weights == choice.init_weights and ft.model.encoder_weights == str(run)


def test_unlabeled_pairs_are_read_from_the_decoded_cache(tmp_path: Path) -> None:
    """``data.cache_dir`` applies to synthetic-change runs as to labelled ones: PNG pairs are read from their decoded
    copies, and the unused masks are neither decoded nor kept."""
    from ssl_siam.change.data import unlabeled_records
    from ssl_siam.tools.scenes import make_levir_split

    make_levir_split(tmp_path / "train", 3, size=160, seed=0)  # above the cache's small-image size
    cache = tmp_path / "cache"
    cfg = load_config(FinetuneConfig, "levir_resnet50", [f"data.root={tmp_path / 'train'}", f"data.cache_dir={cache}",
                                                         "data.synthetic_change.enabled=true", "data.num_workers=0"])
    records = unlabeled_records(cfg, "levir", tmp_path / "targets")
    assert len(records) == 3
    for r in records:
        assert r.damage_target is None
        assert r.pre_image.is_relative_to(cache) and r.post_image.is_relative_to(cache)
