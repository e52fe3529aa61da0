"""The bad-input contract, command by command: one line on stderr naming the file or key, exit code 2, and
nothing written that should not be (no new run directory, no output folder, an existing run left as it was)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import TEST_DATA, tiny_overrides
from PIL import Image

from ssl_siam.cli import main

# tiny finetune / metric settings (resnet18, 64² crops, one step)
FT = ["model.backbone=resnet18", "data.crop_size=64", "train.batch_size=2", "train.max_steps=1", "train.device=cpu",
      "data.num_workers=0", "train.progress=false", "data.stats_samples=4", "data.val_fraction=0.5",
      "model.decoder_channels=[16,16,8,8,8]"]
ML = ["model.backbone=resnet18", "model.embed_dim=8", "model.head_hidden_dim=16", "train.device=cpu",
      "data.num_workers=0", "train.progress=false", "data.stats_samples=4", "train.batch_size=4", "train.max_steps=1",
      "data.crop_size=32", "data.dataset=xbd-pairs"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tile_dir: Path) -> dict[str, Path]:
    """Data and finished runs the cases start from: a tile folder, an xBD split, pretrain / finetune / metric
    checkpoints, files of every kind for the cases to point at."""
    from ssl_siam.tools.synthetic import make_xbd_split

    root = tmp_path_factory.mktemp("bad")
    split = root / "xbd"
    make_xbd_split(split, 2, size=128, seed=0)
    w = {"root": root, "tiles": tile_dir, "xbd": split}
    assert main(["pretrain", *tiny_overrides("simsiam", tile_dir, root / "pre", steps=1)]) == 0
    assert main(["finetune", f"data.root={split}", f"run_dir={root / 'ft'}", *FT]) == 0
    assert main(["metric-train", f"data.root={split}", f"run_dir={root / 'ml'}", *ML]) == 0
    w.update(pre=root / "pre", ft=root / "ft" / "checkpoints" / "last.pt", ml=root / "ml" / "checkpoints" / "last.pt")
    w["a_file"] = root / "a_file.txt"
    w["a_file"].write_text("not a folder")
    w["bomb"] = root / "bomb.yaml"
    w["bomb"].write_text("a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh")))
    w["bad_stats"] = root / "bad_stats.json"
    w["bad_stats"].write_text("{not json")
    w["rgba_pre"], w["rgba_post"] = (write_tif(root / f"rgba_{p}_disaster.tif", np.full((4, 64, 64), 90, np.uint8))
                                      for p in ("pre", "post"))
    w["one_class"] = root / "one_class"
    for i in range(4):
        (w["one_class"] / "field").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(w["one_class"] / "field" / f"{i}.png")
    w["no_labels"] = root / "no_labels"
    shutil.copytree(split / "images", w["no_labels"] / "images")
    w["empty"] = root / "empty"
    w["empty"].mkdir()
    for name, file, text in (("list_metrics", "metrics.json", "[1, 2]"), ("rowless_study", "study.json", '{"x": 1}'),
                             ("odd_metrics", "metrics.json", '{"history": [{"step": "a"}], "val": 3}')):
        (root / name).mkdir()
        (root / name / file).write_text(text)
    return w


def write_tif(path: Path, data: np.ndarray, **extra: object) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs="EPSG:32636", transform=rasterio.Affine(1, 0, 5e5, 0, -1, 4e6),
                       **extra) as dst:
        dst.write(data)
    return path


def xbd_variant(w: dict[str, Path], name: str, change: Callable[[Path], None]) -> Path:
    """A copy of the xBD split with one thing broken by ``change(copy)``."""
    copy = w["root"] / f"xbd_{name}"
    if not copy.exists():
        shutil.copytree(w["xbd"], copy)
        change(copy)
    return copy


def first_label(split: Path, phase: str = "post") -> Path:
    return sorted((split / "labels").glob(f"*_{phase}_disaster.json"))[0]


def label_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(split: Path) -> None:
        path = first_label(split)
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    return change


def bad_target(split: Path) -> None:
    (split / "targets").mkdir()
    for post in sorted((split / "images").glob("*_post_disaster.png")):
        stem = post.name.removesuffix("_post_disaster.png")
        mask = np.zeros((128, 128), np.uint8)
        mask[20:60, 20:60] = 7  # not a damage class
        Image.fromarray(mask).save(split / "targets" / f"{stem}_damage_target.png")


def escaping_csv(w: dict[str, Path]) -> Path:
    folder = w["root"] / "csv"
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(w["root"] / "outside.png")
    (folder / "pairs.csv").write_text("path_a,path_b,label\n../outside.png,../outside.png,1\n")
    return folder / "pairs.csv"


def pre(w: dict[str, Path], *extra: str, run: str = "new") -> list[str]:
    return ["pretrain", *tiny_overrides("simsiam", w["tiles"], w["root"] / run, steps=1), *extra]


def ft(w: dict[str, Path], *extra: str, data: Path | None = None) -> list[str]:
    return ["finetune", f"data.root={data or w['xbd']}", f"run_dir={w['root'] / 'new'}", *FT, *extra]


def ml(w: dict[str, Path], *extra: str, data: Path | None = None) -> list[str]:
    return ["metric-train", f"data.root={data or w['xbd']}", f"run_dir={w['root'] / 'new'}", *ML, *extra]


def predict(w: dict[str, Path], *extra: str, ckpt: str = "ft") -> list[str]:
    image = sorted((w["xbd"] / "images").glob("*_pre_disaster.png"))[0]
    return ["predict", "--ckpt", str(w[ckpt]), "--pre", str(image), "--post", str(image).replace("_pre_", "_post_"),
            "--out", str(w["root"] / "new"), "--device", "cpu", *extra]


def verify(w: dict[str, Path], *extra: str, ckpt: str = "ml") -> list[str]:
    return ["verify", "--ckpt", str(w[ckpt]), "--data", str(w["xbd"]), "--out", str(w["root"] / "new"),
            "--device", "cpu", *extra]


def probe(w: dict[str, Path], *extra: str) -> list[str]:
    return ["probe", "--encoder", "random:resnet18", "--data", str(TEST_DATA / "xbd"), "--val-data",
            str(TEST_DATA / "xbd"), "--dataset", "xbd-crops", "--out", str(w["root"] / "new"), "--device", "cpu",
            "--crop-size", "32", *extra]


# (id, argv(world), expected text in the one stderr line)
CASES: list[tuple[str, Callable[[dict], list[str]], str]] = [
    # pretrain
    ("pre-missing-root", lambda w: pre(w, f"data.root={w['root'] / 'nowhere'}"), "nowhere: no such file or folder"),
    ("pre-empty-root", lambda w: pre(w, f"data.root={w['empty']}"), "folder contains no raster files"),
    ("pre-typo", lambda w: pre(w, "train.bach_size=8"), "unknown config key 'train.bach_size'"),
    ("pre-batch-0", lambda w: pre(w, "train.batch_size=0"), "train.batch_size: expected int >= 1, got 0"),
    ("pre-max-steps-0", lambda w: pre(w, "train.max_steps=0"), "train.max_steps: expected int >= 1 or null, got 0"),
    ("pre-max-steps-neg", lambda w: pre(w, "train.max_steps=-3"), "train.max_steps: expected int >= 1 or null"),
    ("pre-epochs-0", lambda w: pre(w, "train.max_steps=null", "train.epochs=0"), "train.epochs: expected int >= 1"),
    ("pre-accumulate-0", lambda w: pre(w, "train.accumulate=0"), "train.accumulate: expected int >= 1"),
    ("pre-checkpoint-every-0", lambda w: pre(w, "train.checkpoint_every=0"), "train.checkpoint_every: expected"),
    ("pre-lr-0", lambda w: pre(w, "optim.lr=0"), "optim.lr: expected float > 0, got 0"),
    ("pre-fraction", lambda w: pre(w, "data.max_nodata_fraction=1.5"),
     "data.max_nodata_fraction: expected float in [0, 1]"),
    ("pre-flip-p", lambda w: pre(w, "augment.flip_p=-0.1"), "augment.flip_p: expected float in [0, 1]"),
    ("pre-tile-too-big", lambda w: pre(w, "data.tile_size=4096"), "data.tile_size=4096 is larger than every image"),
    ("pre-tile-0", lambda w: pre(w, "data.tile_size=0"), "data.tile_size: expected int >= 1"),
    ("pre-objective", lambda w: pre(w, "objective=simclr"), "unknown objective 'simclr'"),
    ("pre-band", lambda w: pre(w, "data.bands=[9]"), "band 9 out of range"),
    ("pre-band-0", lambda w: pre(w, "data.bands=[0]"), "data.bands[0]: expected int >= 1"),
    ("pre-missing-config", lambda w: ["pretrain", "--config", str(w["root"] / "missing.yaml")], "does not exist"),
    ("pre-unknown-recipe", lambda w: ["pretrain", "--config", "simsiam_resnet99"], "no recipe of that name"),
    ("pre-yaml-bomb", lambda w: ["pretrain", "--config", str(w["bomb"])], "aliases expand to more than"),
    ("pre-run-dir-file", lambda w: pre(w, f"run_dir={w['a_file']}"), "a_file.txt is a file, expected a folder"),
    ("pre-bad-stats", lambda w: pre(w, f"data.stats={w['bad_stats']}"), "bad_stats.json: expected a band statistics"),
    ("pre-no-cuda", lambda w: pre(w, "train.device=cuda"), "train.device=cuda: CUDA is not available"),
    ("pre-bad-device", lambda w: pre(w, "train.device=tpu"), "train.device=tpu: expected auto, cpu, cuda or cuda:N"),
    # finetune
    ("ft-not-xbd", lambda w: ft(w, data=w["empty"]), "cannot tell the dataset layout (none recognised)"),
    ("ft-val-fraction", lambda w: ft(w, "data.val_fraction=1.5"), "data.val_fraction: expected float in [0, 1]"),
    ("ft-crop-0", lambda w: ft(w, "data.crop_size=0"), "data.crop_size: expected int >= 1"),
    ("ft-loss-option", lambda w: ft(w, "loss.name=focal", "loss.class_weights=[1,1,1,1,2]"),
     "loss.class_weights=[1.0, 1.0, 1.0, 1.0, 2.0] has no effect with loss.name=focal"),
    ("ft-encoder-missing", lambda w: ft(w, f"model.encoder_weights={w['root'] / 'nope'}"), "encoder.safetensors"),
    ("ft-fusion", lambda w: ft(w, "model.fusion=sum"), "unknown fusion 'sum'"),
    ("ft-ignore-index", lambda w: ft(w, "data.ignore_index=300"), "data.ignore_index: expected int in [0, 255]"),
    ("ft-label-size", lambda w: ft(w, data=xbd_variant(w, "size", label_edit(
        lambda d: d["metadata"].update(width=-5)))), "metadata gives a -5×128 image"),
    ("ft-label-huge", lambda w: ft(w, data=xbd_variant(w, "huge", label_edit(
        lambda d: d["metadata"].update(width=10**9, height=10**9)))), "expected sides in 1..100000"),
    ("ft-label-nan", lambda w: ft(w, data=xbd_variant(w, "nan", label_edit(
        lambda d: d["features"]["xy"][0].update(wkt="POLYGON ((1 1, inf 1, 5 5, 1 5, 1 1))")))),
     "non-finite coordinates"),
    ("ft-mask-value", lambda w: ft(w, data=xbd_variant(w, "mask", bad_target)), "mask value 7, expected classes 0..4"),
    # metric-train
    ("ml-loss", lambda w: ml(w, "loss.name=focal"), "unknown metric loss: loss.name 'focal'"),
    ("ml-embed-0", lambda w: ml(w, "model.embed_dim=0"), "model.embed_dim: expected int >= 1"),
    ("ml-csv-escape", lambda w: ml(w, "data.dataset=similarity-csv", data=escaping_csv(w)),
     "image path '../outside.png' must be a file inside"),
    # predict
    ("predict-overlap", lambda w: predict(w, "--overlap", "1.5"), "argument --overlap: expected float in [0, 1)"),
    ("predict-window-0", lambda w: predict(w, "--window", "0"), "argument --window: expected int >= 1, got 0"),
    ("predict-pretrain-ckpt", lambda w: predict(w, ckpt="pre_ckpt"), "is a pretrain checkpoint, expected a finetune"),
    ("predict-metric-ckpt", lambda w: predict(w, ckpt="ml"), "is a metric checkpoint, expected a finetune"),
    ("predict-bands", lambda w: ["predict", "--ckpt", str(w["ft"]), "--pre", str(w["rgba_pre"]), "--post",
                                 str(w["rgba_post"]), "--out", str(w["root"] / "new"), "--device", "cpu"],
     "4 bands selected, the model takes 3; choose them with --bands"),
    ("predict-band-range", lambda w: predict(w, "--bands", "9"), "bands [9] requested, expected 1-based indices"),
    ("predict-out-file", lambda w: predict(w)[:-4] + ["--out", str(w["a_file"]), "--device", "cpu"],
     "--out " "{a_file} is a file, expected a folder"),
    ("predict-half-pair", lambda w: ["predict", "--ckpt", str(w["ft"]), "--pre", str(w["a_file"]), "--out",
                                     str(w["root"] / "new")], "give either --pre and --post"),
    # verify
    ("verify-n-way", lambda w: verify(w, "--n-way", "1"), "argument --n-way: expected int >= 2, got 1"),
    ("verify-finetune-ckpt", lambda w: verify(w, ckpt="ft"), "is a finetune checkpoint, expected a metric"),
    # score, targets
    ("score-missing", lambda w: ["score", "--pred", str(w["root"] / "nope"), "--targ", str(w["xbd"])], "nope"),
    ("score-json-under-file", lambda w: ["score", "--pred", str(w["xbd"]), "--targ", str(w["xbd"]), "--json",
                                         str(w["a_file"] / "s.json")], "a_file.txt is a file, expected a folder"),
    ("targets-no-labels", lambda w: ["targets", str(w["no_labels"]), "--out", str(w["root"] / "new")],
     "expected an xBD labels folder"),
    # probe
    ("probe-one-class", lambda w: ["probe", "--encoder", "random:resnet18", "--data", str(w["one_class"]), "--out",
                                   str(w["root"] / "new"), "--device", "cpu", "--crop-size", "32"],
     "needs at least two classes"),
    ("probe-k-0", lambda w: probe(w, "--k", "0"), "argument --k: expected int >= 1, got 0"),
    ("probe-encoder", lambda w: probe(w)[:2] + ["banana"] + probe(w)[3:], "--encoder banana"),
    # bench, stats, report, demo, the parser
    ("bench-batch-0", lambda w: ["bench", "--batch-size", "0"], "argument --batch-size: expected int >= 1, got 0"),
    ("bench-json-folder", lambda w: ["bench", "--device", "cpu", "--json", str(w["empty"])],
     "is a folder, expected a file"),
    ("stats-tile-0", lambda w: ["stats", str(w["tiles"]), "--tile-size", "0", "--out", str(w["root"] / "s.json")],
     "argument --tile-size: expected int >= 1"),
    ("stats-out-folder", lambda w: ["stats", str(w["tiles"]), "--out", str(w["empty"])], "is a folder"),
    ("report-not-a-run", lambda w: ["report", str(w["empty"]), "--out", str(w["root"] / "new")],
     "expected metrics.json"),
    ("report-metrics-list", lambda w: ["report", str(w["root"] / "list_metrics"), "--out", str(w["root"] / "new")],
     "list_metrics/metrics.json: expected an object, as ssl-siam writes it; got list"),
    ("report-study-rows", lambda w: ["report", str(w["root"] / "rowless_study"), "--out", str(w["root"] / "new")],
     'rowless_study/study.json: expected an object with a "rows" list'),
    ("report-odd-metrics", lambda w: ["report", str(w["root"] / "odd_metrics"), "--out", str(w["root"] / "new")],
     "odd_metrics: a result file does not hold what ssl-siam writes"),
    ("demo-out-file", lambda w: ["demo", "--out", str(w["a_file"])], "is a file, expected a folder"),
    ("unknown-command", lambda w: ["pretrian"], "invalid choice: 'pretrian'"),
]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(world: dict[str, Path], capsys: pytest.CaptureFixture,
                                          argv: Callable[[dict], list[str]], expected: str) -> None:
    world.setdefault("pre_ckpt", world["pre"] / "checkpoints" / "last.pt")
    expected = expected.replace("{a_file}", str(world["a_file"]))
    shutil.rmtree(world["root"] / "new", ignore_errors=True)
    capsys.readouterr()
    try:
        code = main(argv(world))
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert not (world["root"] / "new").exists()  # no run dir, no output folder left behind


def test_there_are_at_least_forty_cases() -> None:
    commands = {c[0].split("-")[0] for c in CASES}
    assert len(CASES) >= 40 and {"pre", "ft", "ml", "predict", "verify", "score", "targets", "probe", "bench",
                                 "stats", "report", "demo"} <= commands


def test_a_refused_resume_leaves_the_run_as_it_was(world: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """objective=byol on a SimSiam run directory: refused naming what differs; config.yaml, checkpoint and every
    other file unchanged, so the documented relaunch from config.yaml still works."""
    run = world["pre"]
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".lock"}
    code = main(pre(world, "objective=byol", run="pre"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "holds another run (objective=simsiam → byol" in err, err
    after = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".lock"}
    assert after == before
    assert main(["pretrain", "--config", str(run / "config.yaml")]) == 0  # relaunch: resumes, already finished


def test_a_locked_run_dir_is_refused_naming_the_holder(world: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    run = world["root"] / "held"
    run.mkdir()
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"ssl-siam pid 4242 on node7 since 10:00:00")
    try:
        code = main(pre(world, run="held"))
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is in use by ssl-siam pid 4242 on node7" in err, err
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing else touched


def test_an_internal_error_is_one_line_exit_1(world: dict[str, Path], capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl_siam.change.tasks import damage

    monkeypatch.setattr(damage, "score_dirs", lambda *a, **k: 1 / 0)
    code = main(["score", "--pred", str(world["xbd"]), "--targ", str(world["xbd"])])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "internal error: ZeroDivisionError" in err and "rerun with --debug" in err


def test_a_full_disk_says_so(world: dict[str, Path], capsys: pytest.CaptureFixture,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from ssl_siam.data import stats

    def full(self: object, path: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(stats.BandStats, "save", full)
    code = main(["stats", str(world["tiles"]), "--tile-size", "32", "--samples", "4", "--out",
                 str(world["root"] / "s.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no space left on the device writing" in err and "s.json" in err, err


def test_an_rgba_geotiff_is_predicted_with_bands(world: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = world["root"] / "rgba_out"
    assert main(["predict", "--ckpt", str(world["ft"]), "--pre", str(world["rgba_pre"]), "--post",
                 str(world["rgba_post"]), "--out", str(out), "--device", "cpu", "--bands", "1", "2", "3"]) == 0
    assert np.asarray(Image.open(out / "rgba_damage_prediction.png")).shape == (64, 64)
    assert capsys.readouterr().err == ""


def test_a_run_that_fails_at_once_leaves_no_folder_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept").mkdir()
    assert main(["pretrain", "--config", "simsiam_resnet50", "data.root=/nonexistent/x"]) == 2
    assert "/nonexistent/x" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # no runs/ (default run dir) left
    (tmp_path / "runs" / "other").mkdir(parents=True)  # runs/ that holds another run stays
    assert main(["pretrain", "--config", "simsiam_resnet50", "data.root=/nonexistent/x"]) == 2
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["other"]
    assert main(["pretrain", "--config", "simsiam_resnet50", "data.root=/nonexistent/x",
                 f"run_dir={tmp_path / 'a' / 'b' / 'run'}"]) == 2
    assert not (tmp_path / "a").exists()
