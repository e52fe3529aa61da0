"""``ssl-siam search --eval``: precision@k and average precision against hand computations, leave-self-out
ranking, and the encoder table (seeds, 95 % CI, paired differences to random init) on a planted folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_scene_folder

from ssl_siam.cli import main
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder
from ssl_siam.eval.scores import average_precision, precision_at_k
from ssl_siam.search.evaluate import retrieval


def test_precision_at_k_and_average_precision_by_hand() -> None:
    relevant = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
    np.testing.assert_allclose(precision_at_k(relevant, 2), [0.5, 0.0, 0.0])
    np.testing.assert_allclose(precision_at_k(relevant, 5), [0.4, 0.4, 0.0])
    # AP: mean of precision at the relevant ranks: (1/1 + 2/3) / 2, (1/4 + 2/5) / 2, none relevant -> 0
    np.testing.assert_allclose(average_precision(relevant), [(1 + 2 / 3) / 2, (1 / 4 + 2 / 5) / 2, 0.0])


def test_each_query_ranks_the_others_without_itself() -> None:
    features = np.array([[1.0, 0.0], [0.9, 0.44], [0.6, 0.8], [0.0, 1.0]])
    labels = np.array([0, 1, 0, 1])
    # query 0 ranks 1 (0.90), 2 (0.60), 3 (0.00): relevant at rank 2 only; query 3 ranks 2, 1, 0: rank 2 only;
    # query 1 ranks 0 (0.90), 2 (0.89), 3 (0.44): relevant at rank 3
    precision, ap = retrieval(features, labels, np.array([0, 3, 1]), k=1)
    np.testing.assert_allclose(precision, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(ap, [0.5, 0.5, 1 / 3])


def test_eval_table_compares_encoders_with_random_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_scene_folder(tmp_path / "scenes", per_class=6)
    export_encoder(create_encoder("resnet18", 3), tmp_path / "run", EncoderMeta("resnet18", 3, objective="simsiam"))
    out = tmp_path / "eval"
    assert main(["search", "--eval", str(folder), "--encoder", str(tmp_path / "run"), "--encoder",
                 "random:resnet18", "--seeds", "0", "1", "--k", "3", "--query-fraction", "0.5", "--crop-size", "32",
                 "--out", str(out)]) == 0
    result = json.loads((out / "search_eval.json").read_text())
    assert result["baseline"] == "random:resnet18" and result["images"] == 18 and len(result["runs"]) == 4
    assert all(r["queries"] == 9 for r in result["runs"])  # half of each class
    runs = {(r["encoder"], r["seed"]): r for r in result["runs"]}
    ssl, rnd = result["encoders"]
    assert ssl["encoder"] == "run" and "map_diff" not in rnd
    assert ssl["map"]["mean"] == pytest.approx((runs["run", 0]["map"] + runs["run", 1]["map"]) / 2)
    diffs = [runs["run", s]["precision"] - runs["random:resnet18", s]["precision"] for s in (0, 1)]
    assert ssl["precision_diff"]["mean"] == pytest.approx(np.mean(diffs)) and ssl["precision_diff"]["n"] == 2
    assert set(ssl["per_class"]) == {"field", "forest", "water"}
    assert len(list((out / "cache").glob("*.pt"))) == 3  # the export once, random weights drawn per seed
    table = (out / "search_eval.md").read_text()
    assert "| encoder | P@3 | mAP | Δ P@3 vs random:resnet18 | Δ mAP vs random:resnet18 |" in table
    assert "| run |" in capsys.readouterr().out


def test_eval_without_encoders_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_scene_folder(tmp_path / "scenes", per_class=2)
    assert main(["search", "--eval", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == ("ssl-siam search: error: --encoder: expected at least one encoder to "
                                               "evaluate")
