"""The change package's extension contract: a new task, dataset layout and fusion are each one class registered
with one line, and every entry point (finetune, predict, score, the format check) then reads them from the
registries — nothing else needs to know their names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ssl_siam.change.datasets import LAYOUTS, detect_format, find_change_pairs
from ssl_siam.change.datasets.folders import FolderLayout
from ssl_siam.change.evaluate import evaluate
from ssl_siam.change.models.fusion import FUSIONS
from ssl_siam.change.run import load_finetuned
from ssl_siam.change.tasks import TASKS, change_task
from ssl_siam.change.tasks.binary import BinaryTask
from ssl_siam.cli import main
from ssl_siam.tools.scenes import make_levir_split

TINY = ["model.backbone=resnet18", "data.crop_size=64", "train.batch_size=2", "train.max_steps=2",
        "train.device=cpu", "data.num_workers=0", "train.progress=false", "data.stats_samples=4",
        "model.decoder_channels=[16,16,8,8,8]", "optim.warmup_steps=0", "data.val_window=128"]


class BeforeAfterLayout(FolderLayout):  # a new layout: three folders of another name, labelling the new task
    task = "flood"
    folders: ClassVar[tuple[str, str, str]] = ("before", "after", "water")


class FloodTask(BinaryTask):  # a new task: binary change under another name and metric
    metric = "flood F1"


class SumFusion(nn.Module):  # a new fusion
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = channels

    def forward(self, f_pre: torch.Tensor, f_post: torch.Tensor) -> torch.Tensor:
        return f_pre + f_post


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one registration line of each, undone after the test."""
    monkeypatch.setitem(LAYOUTS._items, "before-after", BeforeAfterLayout)
    monkeypatch.setitem(TASKS._items, "flood", FloodTask)
    monkeypatch.setitem(FUSIONS._items, "sum", SumFusion)


def before_after(root: Path, n: int, seed: int) -> Path:
    make_levir_split(root, n, size=128, seed=seed)
    for old, new in zip(("A", "B", "label"), BeforeAfterLayout.folders):
        (root / old).rename(root / new)
    return root


def test_registered_task_layout_and_fusion_run_every_entry_point(registered: None, tmp_path: Path) -> None:
    train, val = before_after(tmp_path / "train", 4, 0), before_after(tmp_path / "val", 2, 1)
    assert detect_format(train) == "before-after" and len(find_change_pairs([train], "before-after", tmp_path)) == 4
    run = tmp_path / "run"
    assert main(["finetune", "task=flood", "model.fusion=sum", f"data.root={train}", f"data.val_root={val}",
                 f"run_dir={run}", *TINY]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert "f1" in metrics["val"] and "best_f1" in metrics  # the task's validator chose best.pt
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "last.pt"), "--data", str(val), "--out", str(out),
                 "--device", "cpu", "--window", "128"]) == 0
    masks = sorted(out.glob("*_change_mask.png"))  # the task's outputs
    assert len(masks) == 2 and set(np.unique(np.asarray(Image.open(masks[0])))) <= {0, 1}
    report = tmp_path / "score.json"
    assert main(["score", "--task", "flood", "--pred", str(out), "--targ", str(val / "water"),
                 "--json", str(report)]) == 0
    assert 0 <= json.loads(report.read_text())["f1"] <= 1
    assert change_task("flood").metric == "flood F1"


def test_a_run_resolves_its_task_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """finetune resolves ``task=`` (with ``data.mask_threshold``) once, where the run is built; predict and evaluate
    once, where the model is loaded; every other site is handed that object."""
    train, val = tmp_path / "train", tmp_path / "val"
    make_levir_split(train, 4, size=128, seed=0)
    make_levir_split(val, 2, size=128, seed=1)
    resolved: list[str] = []
    get = TASKS.get
    monkeypatch.setattr(TASKS, "get", lambda name: resolved.append(name) or get(name))
    run = tmp_path / "run"
    assert main(["finetune", "task=binary", "data.mask_threshold=128", f"data.root={train}", f"data.val_root={val}",
                 f"run_dir={run}", *TINY]) == 0
    assert resolved == ["binary"]
    ckpt = run / "checkpoints" / "last.pt"
    assert main(["predict", "--ckpt", str(ckpt), "--data", str(val), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--window", "128"]) == 0
    assert resolved == ["binary"] * 2
    score = evaluate(ckpt, find_change_pairs([val], "levir", tmp_path), tmp_path / "eval", device="cpu", window=128)
    assert resolved == ["binary"] * 3 and 0 <= score.to_dict()["score"] <= 1
    assert load_finetuned(ckpt, "cpu").change.mask_threshold == 128


def test_a_layout_of_another_task_and_unknown_names_are_one_line_errors(registered: None, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    train = before_after(tmp_path / "train", 2, 0)
    assert main(["finetune", "task=binary", f"data.root={train}", f"run_dir={tmp_path / 'a'}", *TINY]) == 2
    err = capsys.readouterr().err
    assert "data.format=before-after does not fit task=binary" in err and "levir" in err and "before-after" not in \
        err.split("needs")[1]
    assert main(["finetune", "task=nope", f"data.root={train}", f"run_dir={tmp_path / 'b'}", *TINY]) == 2
    assert "unknown task 'nope'; valid: binary, damage, flood, semantic" in capsys.readouterr().err
    assert main(["score", "--task", "nope", "--pred", str(train), "--targ", str(train)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
