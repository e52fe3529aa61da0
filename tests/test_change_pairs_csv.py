"""``pairs-csv`` on a real aerial change set's folders: ``<site>/<n>/im1.png``, ``im2.png``, ``gt.png`` beside a CSV
``pre,post,mask``, with anti-aliased masks and symlinked files and folders; finetune → predict → score end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_change_layouts import TINY

from ssl_siam.change.datasets import find_change_pairs
from ssl_siam.change.metrics.binary import BinaryAccumulator, read_binary_mask
from ssl_siam.cli import main
from ssl_siam.core.errors import DataError
from ssl_siam.data.pair_crops import PairCropDataset

ANTI_ALIASED = (64, 128, 191)  # edge values of a 0 / 255 mask saved with smoothing


def aerial_set(tmp_path: Path, size: int = 64) -> Path:
    """``data/<site>/<n>/{im1,im2,gt}.png`` for sites a (1, 2) and b (1, 2) and ``data/pairs.csv``; ``b`` is a
    folder linked in from elsewhere and ``a/2/im1.png`` a linked file, both pointing outside ``data/``."""
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    rng = np.random.default_rng(0)
    for site, n in (("a", 1), ("a", 2), ("b", 1), ("b", 2)):
        folder = (elsewhere if site == "b" else root) / site / str(n)
        folder.mkdir(parents=True)
        pre = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        post, mask = pre.copy(), np.zeros((size, size), np.uint8)
        mask[10:30, 12:34] = 255
        mask[9, 12:34], mask[30, 12:34], mask[10:30, 11] = ANTI_ALIASED  # a smoothed outline
        post[10:30, 12:34] = 255 - post[10:30, 12:34]
        for name, array in (("im1", pre), ("im2", post), ("gt", mask)):
            Image.fromarray(array).save(folder / f"{name}.png")
    (root / "b").symlink_to(elsewhere / "b", target_is_directory=True)
    (elsewhere / "a2_im1.png").write_bytes((root / "a" / "2" / "im1.png").read_bytes())
    (root / "a" / "2" / "im1.png").unlink()
    (root / "a" / "2" / "im1.png").symlink_to(elsewhere / "a2_im1.png")
    rows = "".join(f"{s}/{n}/im1.png,{s}/{n}/im2.png,{s}/{n}/gt.png\n" for s in "ab" for n in (1, 2))
    (root / "pairs.csv").write_text("pre,post,mask\n" + rows)
    return root


def test_ids_links_and_paths(tmp_path: Path) -> None:
    root = aerial_set(tmp_path)
    records = find_change_pairs([root / "pairs.csv"], "pairs-csv", tmp_path / "cache")
    assert [r.id for r in records] == ["a_1_im2", "a_2_im2", "b_1_im2", "b_2_im2"]  # every post is im2: path ids
    assert records[1].pre_image == root.resolve() / "a" / "2" / "im1.png"  # a linked file, followed
    assert records[2].post_image.is_file() and records[2].post_image.parent.parent.is_symlink()  # a linked folder
    named = root / "named.csv"
    named.write_text("id,pre,post,mask\nnorth,a/1/im1.png,a/1/im2.png,a/1/gt.png\n"
                     "south,b/1/im1.png,b/1/im2.png,b/1/gt.png\n")
    assert [r.id for r in find_change_pairs([named], "pairs-csv", tmp_path)] == ["north", "south"]
    for rows, message in [
        ("id,pre,post,mask\nx,a/1/im1.png,a/1/im2.png,a/1/gt.png\nx,b/1/im1.png,b/1/im2.png,b/1/gt.png\n",
         r"bad.csv:3: pair id 'x' also on line 2; expected unique ids"),
        ("id,pre,post,mask\nx/y,a/1/im1.png,a/1/im2.png,a/1/gt.png\n", r"bad.csv:2: pair id 'x/y' cannot name files"),
        ("pre,post,mask\na/../a/1/im1.png,a/1/im2.png,a/1/gt.png\n", r"bad.csv:2: image path .* must be a file inside"),
        (f"pre,post,mask\n{root.resolve()}/a/1/im1.png,a/1/im2.png,a/1/gt.png\n", r"bad.csv:2: .* must be a file "
         "inside"),
    ]:
        (root / "bad.csv").write_text(rows)
        with pytest.raises(DataError, match=message):
            find_change_pairs([root / "bad.csv"], "pairs-csv", tmp_path)


def test_mask_threshold_reads_anti_aliased_masks(tmp_path: Path) -> None:
    root = aerial_set(tmp_path)
    gt = root / "a" / "1" / "gt.png"
    with pytest.raises(DataError, match=r"mask values \[0, 64, 128, 191, 255\].*set a mask threshold"):
        read_binary_mask(gt)
    raw = np.asarray(Image.open(gt))
    assert np.array_equal(read_binary_mask(gt, threshold=128), (raw >= 128).astype(np.uint8))
    records = find_change_pairs([root / "pairs.csv"], "pairs-csv", tmp_path)
    item = PairCropDataset(records[:1], None, train=False, num_classes=2, mask_map={255: 1}, mask_threshold=128)[0]
    assert np.array_equal(item["mask"].numpy(), (raw >= 128).astype(np.int64))


def test_aerial_csv_finetune_predict_score(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = aerial_set(tmp_path)
    csv = root / "pairs.csv"
    levir = ["finetune", "--config", "levir_resnet50", f"data.root={csv}", *TINY, "data.val_fraction=0.25"]
    assert main([*levir, f"run_dir={tmp_path / 'r0'}"]) == 2  # the recipe names the A/ B/ label/ layout
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is laid out as pairs-csv, not data.format=levir; set " \
        "data.format=pairs-csv" in err, err
    assert main([*levir, "data.format=pairs-csv", f"run_dir={tmp_path / 'r1'}"]) == 2  # masks are anti-aliased
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gt.png: mask value" in err and "set data.mask_threshold" in err, err
    assert main(["finetune", "task=damage", f"data.root={tmp_path / 'none'}", "data.mask_threshold=128",
                 f"run_dir={tmp_path / 'r2'}", *TINY]) == 2
    assert "task=damage masks hold classes" in capsys.readouterr().err

    run = tmp_path / "run"
    assert main([*levir, "data.format=pairs-csv", "data.mask_threshold=128", f"run_dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["val"]["images"] == 1 and "f1" in metrics["val"]
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "last.pt"), "--data", str(csv), "--out", str(out),
                 "--device", "cpu", "--window", "64"]) == 0
    ids = ["a_1_im2", "a_2_im2", "b_1_im2", "b_2_im2"]
    assert sorted(p.name for p in out.glob("*_change_mask.png")) == [f"{i}_change_mask.png" for i in ids]
    score = ["score", "--task", "binary", "--pred", str(out), "--targ", str(csv)]
    assert main(score) == 2 and "set a mask threshold" in capsys.readouterr().err
    assert main([*score, "--mask-threshold", "128", "--json", str(tmp_path / "s.json")]) == 0
    acc = BinaryAccumulator()  # the same counts by hand: the masks thresholded at 128
    for i, (site, n) in zip(ids, (("a", 1), ("a", 2), ("b", 1), ("b", 2))):
        target = (np.asarray(Image.open(root / site / str(n) / "gt.png")) >= 128).astype(np.uint8)
        acc.update(np.asarray(Image.open(out / f"{i}_change_mask.png")), target)
    got = json.loads((tmp_path / "s.json").read_text())
    assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (acc.result().tp, acc.result().fp, acc.result().fn,
                                                            acc.result().tn)
    assert main(["score", "--task", "damage", "--pred", str(out), "--targ", str(csv), "--mask-threshold", "1"]) == 2
