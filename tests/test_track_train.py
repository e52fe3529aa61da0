"""SiamFC training: crops and pairs from sequences, ssl-siam track-train end to end (given or generated sequences),
exact resume, the SSL encoder as a start, one-line refusals, and a short training that learns to localise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, killed_after_first_checkpoint

from ssl_siam.cli import main
from ssl_siam.core.config import load_config
from ssl_siam.core.recipes import resolve_recipe
from ssl_siam.data.stats import BandStats, normalise
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder
from ssl_siam.track.config import TrackConfig
from ssl_siam.track.frames import FrameSource
from ssl_siam.track.pairs import TrackingPairs, crop_windows
from ssl_siam.track.run import load_trained_tracker, run_track_train
from ssl_siam.track.sequences import Sequence, read_sequences
from ssl_siam.track.synthetic import constant_velocity_sequence, generate_sequences
from ssl_siam.train.checkpoint import load_checkpoint
from ssl_siam.train.loop import Trainer

TINY = ["train.device=cpu", "data.num_workers=0", "train.progress=false", "train.log_every=1", "data.stats_frames=4",
        "train.batch_size=4", "data.samples_per_epoch=16", "optim.warmup_steps=0", "train.checkpoint_every=100"]
PAIRS = dict(exemplar_size=32, search_size=64, context=0.5, max_gap=3, max_shift=12.0, stretch=0.0,
             samples_per_epoch=64, seed=0)


@pytest.fixture(scope="module")
def seqs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated 64² sequences of 10 frames."""
    root = tmp_path_factory.mktemp("seqs")
    generate_sequences(root, 3, num_frames=10, size=64, seed=0)
    return root


class CountingFrames(FrameSource):
    """Frames whose value is their index; remembers which were read."""

    def __init__(self, count: int) -> None:
        self.count, self.num_bands, self.size, self.reads = count, 1, (48, 48), set()

    def __len__(self) -> int:
        return self.count

    def read(self, i: int) -> np.ndarray:
        self.reads.add(i)
        return np.full((1, 48, 48), float(i), np.float32)


def sequence(name: str, count: int, absent: list[int]) -> Sequence:
    boxes = np.tile([20.0, 20.0, 8.0, 8.0], (count, 1))
    boxes[absent] = np.nan
    return Sequence(name, CountingFrames(count), boxes)


def test_crops_resample_the_frame_and_fill_outside_it() -> None:
    frame = torch.arange(2 * 8 * 10, dtype=torch.float32).view(2, 8, 10)
    fill = torch.tensor([-1.0, -2.0])
    whole = crop_windows(frame, torch.tensor([[5.0, 4.0]]), torch.tensor([8.0]), 8, fill)
    torch.testing.assert_close(whole[0], frame[:, :, 1:9])  # same scale: the pixels themselves
    corner = crop_windows(frame, torch.tensor([[0.0, 0.0], [8.0, 6.0]]), torch.tensor([4.0, 2.0]), 4, fill)
    assert corner.shape == (2, 2, 4, 4)
    torch.testing.assert_close(corner[0, :, 2:, 2:], frame[:, :2, :2])
    assert (corner[0, :, :2] == fill[:, None, None]).all() and (corner[0, :, :, :2] == fill[:, None, None]).all()
    # a 2-px window enlarged 2x: samples at x = 7.25 ... 8.75, y = 5.25 ... 6.75 of the ramp 10·row + col
    at = torch.tensor([-0.75, -0.25, 0.25, 0.75])
    ramp = 10 * (6 + at[:, None] - 0.5) + (8 + at[None, :] - 0.5)
    torch.testing.assert_close(corner[1], torch.stack([ramp, ramp + 80]))


def test_pairs_use_present_frames_within_max_gap() -> None:
    many, none, single = sequence("a", 20, [3, 4, 5, 6, 15]), sequence("b", 10, list(range(10))), \
        sequence("c", 8, [0, 1, 2, 4, 5, 6, 7])
    pairs = TrackingPairs([many, none, single], **PAIRS)
    rng, drawn = np.random.default_rng(0), []
    for _ in range(2000):
        s, i, j = pairs.draw(rng)
        drawn.append(s)
        present = pairs.sequences[s].present
        assert present[i] and present[j] and abs(i - j) <= PAIRS["max_gap"]
        assert (i == j) == (s == 2)  # the same frame only where no other is near
    assert 1 not in drawn and abs(drawn.count(0) / drawn.count(2) - 15) < 4  # by frames with the target: 15 to 1
    for index in range(16):
        item = pairs[index]
        assert item["exemplar"].shape == (1, 32, 32) and item["search"].shape == (1, 64, 64)
    assert not many.frames.reads & {3, 4, 5, 6, 15} and none.frames.reads == set()
    torch.testing.assert_close(pairs[7], pairs[7])  # a function of the index
    assert not torch.equal(pairs[7]["search"], pairs[8]["search"])


def test_the_exemplar_and_the_search_crop_hold_the_object(tmp_path: Path) -> None:
    """A white 12-px car on a landscape: the exemplar's centre and the search pixel at ``offset`` are the car."""
    seq = read_sequences(constant_velocity_sequence(tmp_path, num_frames=20, box=(20, 30, 12, 12)))[0]
    pairs = TrackingPairs([seq], **{**PAIRS, "stretch": 0.05})
    for index in range(24):
        item = pairs[index]
        assert item["exemplar"][:, 15:17, 15:17].min() > 220, index  # the car body: (235, 235, 230)
        x, y = (item["offset"] + 32).floor().long().tolist()
        assert item["search"][:, y, x].min() > 220, (index, item["offset"])
        assert item["offset"].abs().max() <= 12


def test_track_train_end_to_end_from_the_recipe_path(seqs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    recipe = resolve_recipe("siamfc_resnet18").resolve()
    monkeypatch.chdir(tmp_path)  # the repository path resolves to the packaged recipe from anywhere
    assert resolve_recipe("configs/track/siamfc_resnet18.yaml").resolve() == recipe
    assert (ROOT / "configs" / "track" / "siamfc_resnet18.yaml").resolve() == recipe
    code = main(["track-train", "--config", "configs/track/siamfc_resnet18.yaml", f"data.root={seqs}",
                 "train.max_steps=3", f"run_dir={tmp_path / 'run'}", *TINY])
    assert code == 0 and "ssl-siam track --ckpt" in capsys.readouterr().out
    run = tmp_path / "run"
    for name in ("config.yaml", "checkpoints/last.pt", "metrics.json", "stats.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 3 and {"loss", "pos_response", "neg_response", "peak_hit"} <= set(metrics)
    tracker = load_trained_tracker(run / "checkpoints" / "last.pt", torch.device("cpu"))
    assert not tracker.model.training and tracker.model.stride == 4
    assert (tracker.cfg.model.exemplar_size, tracker.cfg.model.search_size, tracker.cfg.model.context) == (32, 64, 0.5)
    assert tracker.stats == BandStats.load(run / "stats.json") and tracker.stats.num_bands == 3
    response = tracker.model(normalise(torch.rand(2, 3, 32, 32) * 255, tracker.stats),
                             normalise(torch.rand(2, 3, 64, 64) * 255, tracker.stats))
    assert response.shape == (2, 1, 9, 9)


def test_without_data_root_it_trains_and_validates_on_generated_sequences(tmp_path: Path) -> None:
    synthetic = ["data.synthetic.sequences=2", "data.synthetic.val_sequences=1", "data.synthetic.num_frames=8",
                 "data.synthetic.size=64", "train.val_every=2"]
    cfg = load_config(TrackConfig, None, [*TINY, *synthetic, "train.max_steps=2", f"run_dir={tmp_path / 'run'}"])
    run = run_track_train(cfg)
    assert sorted(p.name for p in (run / "synthetic" / "train").iterdir()) == ["seq_0000", "seq_0001"]
    assert [p.name for p in (run / "synthetic" / "val").iterdir()] == ["seq_0000"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["val"]["success_auc"] <= 1 and (run / "checkpoints" / "best.pt").is_file()
    stamp = (run / "synthetic" / "train" / "seq_0000" / "groundtruth_rect.txt").stat().st_mtime_ns
    cfg = load_config(TrackConfig, None, [*TINY, *synthetic, "train.max_steps=3", f"run_dir={run}"])
    run_track_train(cfg)  # resumes on the sequences it generated
    assert (run / "synthetic" / "train" / "seq_0000" / "groundtruth_rect.txt").stat().st_mtime_ns == stamp
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3


def test_resume_equals_uninterrupted(seqs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pairs are functions of their index and the device augmentation of the step: 2 + 2 steps equal 4."""
    def train(name: str) -> Path:
        overrides = [*TINY, f"data.root={seqs}", "train.max_steps=4", "train.checkpoint_every=2"]
        return run_track_train(load_config(TrackConfig, None, [*overrides, f"run_dir={tmp_path / name}"]))

    full = train("full")
    killed_after_first_checkpoint(monkeypatch, lambda: train("cut"))
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 2
    resumed = train("cut")
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (full, resumed))
    assert a["step"] == b["step"] == 4 and a["kind"] == "track"
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_an_ssl_export_is_the_start_and_its_normalisation_the_input(seqs: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = create_encoder("resnet18", 3)
    stats = BandStats([0.0] * 3, [255.0] * 3, [0.4, 0.45, 0.5], [0.2, 0.21, 0.22])
    export_encoder(encoder, tmp_path / "ssl", EncoderMeta("resnet18", 3, normalization=stats))
    started = {}

    def capture(self: Trainer) -> dict:
        started.update(self.task.model.encoder.state_dict())
        return {}

    monkeypatch.setattr(Trainer, "fit", capture)
    run = run_track_train(load_config(TrackConfig, None, [*TINY, f"data.root={seqs}", "train.max_steps=1",
                                                          f"model.encoder_weights={tmp_path / 'ssl'}",
                                                          f"run_dir={tmp_path / 'run'}"]))
    exported = encoder.state_dict()
    assert started and all(torch.equal(v, exported[k]) for k, v in started.items())
    assert BandStats.load(run / "stats.json") == stats


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.root=MISSING"], "no sequence found"),
    (["data.max_shift=20"], "data.max_shift=20: the response map reaches ±16 search px"),
    (["model.exemplar_size=30"], "expected multiples of the stride 4"),
    (["model.siamese=asymmetric"], "model.siamese"),
    (["model.out_stride=8"], "loss.radius=4: at model.out_stride=8 some target positions get no positive"),
])
def test_bad_input_is_one_line_and_leaves_no_run(seqs: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 overrides: list[str], message: str) -> None:
    overrides = [o.replace("MISSING", str(tmp_path / "missing")) for o in overrides]
    code = main(["track-train", *TINY, f"data.root={seqs}", "train.max_steps=1", f"run_dir={tmp_path / 'run'}",
                 *overrides])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()

