"""xBD label parsing and rasterisation (centre rule, holes, overlap), on hand-made and real sample labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from shapely.geometry import Polygon, box

from ssl_siam.core.errors import DataError
from ssl_siam.data.xbd.labels import (
    DAMAGE_CLASSES,
    damage_mask,
    load_label,
    localization_mask,
    rasterize,
    write_targets,
)

SAMPLE = Path("/work/shared/data/xbd")


def brute_force(polygons_with_values, height: int, width: int) -> np.ndarray:
    """Reference: test every pixel centre against every polygon with shapely."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    out = np.zeros((height, width), np.uint8)
    for polygon, value in polygons_with_values:
        out[shapely.contains_xy(polygon, cols, rows)] = value
    return out


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ((2.0, 2.0, 5.0, 5.0), 9),  # centres 2.5, 3.5, 4.5 in each axis
        ((2.4, 2.4, 5.6, 5.6), 16),  # centres 2.5 .. 5.5
        ((2.6, 2.6, 5.4, 5.4), 4),  # centres 3.5, 4.5
        ((2.6, 2.0, 2.9, 9.0), 0),  # thin sliver between two centres
        ((-3.0, -3.0, 1.2, 1.2), 1),  # clipped at the image corner: only (0, 0)
    ],
)
def test_square_follows_centre_rule(bounds, expected):
    mask = rasterize([(box(*bounds), 1)], 8, 8)
    assert mask.dtype == np.uint8
    assert mask.shape == (8, 8)
    assert int(mask.sum()) == expected
    np.testing.assert_array_equal(mask, brute_force([(box(*bounds), 1)], 8, 8))


def test_square_exact_cells():
    mask = rasterize([(box(1.2, 2.7, 3.6, 4.1), 3)], 6, 6)
    expected = np.zeros((6, 6), np.uint8)
    expected[3, 1:4] = 3  # rows: centre 3.5 in (2.7, 4.1); columns: centres 1.5, 2.5, 3.5 in (1.2, 3.6)
    np.testing.assert_array_equal(mask, expected)


def test_polygon_with_hole():
    donut = Polygon(
        [(1, 1), (9, 1), (9, 9), (1, 9)], holes=[[(3.2, 3.2), (6.2, 3.2), (6.2, 6.2), (3.2, 6.2)]]
    )
    mask = rasterize([(donut, 2)], 10, 10)
    assert int((mask == 2).sum()) == 64 - 9  # 8x8 outer minus the 3x3 centres 3.5..5.5 of the hole
    assert mask[5, 5] == 0
    assert mask[1, 1] == 2
    np.testing.assert_array_equal(mask, brute_force([(donut, 2)], 10, 10))


def test_overlap_later_wins():
    polygons = [(box(0, 0, 6, 6), 1), (box(3, 3, 9, 9), 4), (Polygon([(2, 0), (8, 0), (5, 7)]), 2)]
    mask = rasterize(polygons, 10, 10)
    np.testing.assert_array_equal(mask, brute_force(polygons, 10, 10))
    assert mask[4, 4] == 2
    assert mask[8, 8] == 4
    assert mask[5, 0] == 1
    assert rasterize(polygons[:2], 10, 10)[4, 4] == 4


def test_random_polygons_match_brute_force():
    rng = np.random.default_rng(0)
    polygons = []
    for i in range(40):
        centre = rng.uniform(0, 64, 2)
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 12)))
        radii = rng.uniform(2, 15, angles.size)
        ring = np.c_[centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)]
        polygons.append((Polygon(ring), i % 4 + 1))
    np.testing.assert_array_equal(rasterize(polygons, 60, 70), brute_force(polygons, 60, 70))


def write_label(path: Path, features: object, width: int = 16, height: int = 16) -> Path:
    path.write_text(
        json.dumps({"features": {"xy": features}, "metadata": {"width": width, "height": height}})
    )
    return path


def feature(wkt: str, subtype: str | None = None, uid: str = "u") -> dict:
    props = {"feature_type": "building", "uid": uid}
    if subtype is not None:
        props["subtype"] = subtype
    return {"properties": props, "wkt": wkt}


def test_load_label_and_masks(tmp_path):
    squares = ["POLYGON ((1 1, 5 1, 5 5, 1 5, 1 1))", "POLYGON ((8 8, 12 8, 12 12, 8 12, 8 8))"]
    post = write_label(
        tmp_path / "a_post_disaster.json",
        [feature(squares[0], "destroyed"), feature(squares[1], "un-classified")],
    )
    label = load_label(post)
    assert (label.width, label.height) == (16, 16)
    assert [p.subtype for p in label.polygons] == ["destroyed", "un-classified"]
    assert label.polygons[0].geometry.area == 16
    assert np.bincount(damage_mask(label).ravel(), minlength=256)[[0, 1, 4]].tolist() == [224, 16, 16]
    assert int((damage_mask(label, "ignore") == 255).sum()) == 16
    assert int((damage_mask(label, "ignore", ignore_index=9) == 9).sum()) == 16
    pre = load_label(write_label(tmp_path / "a_pre_disaster.json", [feature(w) for w in squares]))
    assert pre.polygons[0].subtype is None
    np.testing.assert_array_equal(localization_mask(pre), damage_mask(label) > 0)
    with pytest.raises(DataError, match="no subtype"):
        damage_mask(pre)


def label_json(*features: dict) -> str:
    return json.dumps({"features": {"xy": list(features)}, "metadata": {"width": 4, "height": 4}})


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "expected an xBD label JSON"),
        (json.dumps({"features": {}, "metadata": {"width": 4, "height": 4}}), "features.xy"),
        (json.dumps({"features": {"xy": []}}), "metadata"),
        (label_json(feature("POLYGON ((0 0, 1 1")), "invalid WKT"),
        (label_json(feature("POINT (1 1)")), "expected a POLYGON"),
        (
            label_json(feature("POLYGON ((0 0, 1 0, 1 1, 0 0))", "wrecked")),
            "unknown subtype 'wrecked', expected one of no-damage, minor-damage, major-damage, destroyed",
        ),
    ],
)
def test_load_label_errors(tmp_path, content, match):
    path = tmp_path / "bad_post_disaster.json"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        load_label(path)
    assert str(path) in str(info.value)


def test_write_targets_round_trip(tmp_path):
    labels = tmp_path / "split" / "labels"
    labels.mkdir(parents=True)
    wkt = "POLYGON ((2 2, 6 2, 6 6, 2 6, 2 2))"
    write_label(labels / "x_1_pre_disaster.json", [feature(wkt)])
    write_label(labels / "x_1_post_disaster.json", [feature(wkt, "un-classified")])
    assert write_targets(tmp_path / "split", tmp_path / "out") == 1
    loc = np.array(Image.open(tmp_path / "out" / "x_1_localization_target.png"))
    dmg = np.array(Image.open(tmp_path / "out" / "x_1_damage_target.png"))
    assert loc.dtype == dmg.dtype == np.uint8
    assert loc.shape == dmg.shape == (16, 16)
    assert int(loc.sum()) == 16
    assert int(dmg.sum()) == 16
    assert dmg.max() == 1
    write_targets(tmp_path / "split", tmp_path / "out2", unclassified="ignore")
    assert np.array(Image.open(tmp_path / "out2" / "x_1_damage_target.png")).max() == 255

    write_label(labels / "x_2_pre_disaster.json", [feature(wkt)])
    with pytest.raises(DataError, match=re.escape("x_2_post_disaster.json: missing")):
        write_targets(tmp_path / "split", tmp_path / "out")
    with pytest.raises(DataError, match="labels folder"):
        write_targets(tmp_path / "nowhere", tmp_path / "out")


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="sample xBD data not available")
@pytest.mark.parametrize("image_id", ["joplin-tornado_00000000", "joplin-tornado_00000001"])
def test_real_sample_labels(image_id):
    pre = load_label(SAMPLE / "labels" / f"{image_id}_pre_disaster.json")
    post = load_label(SAMPLE / "labels" / f"{image_id}_post_disaster.json")
    assert (post.height, post.width) == Image.open(SAMPLE / "images" / f"{image_id}_post_disaster.png").size[
        ::-1
    ]
    assert {p.uid for p in post.polygons} <= {p.uid for p in pre.polygons}

    mask = damage_mask(post)
    counts = np.bincount(mask.ravel(), minlength=5)
    areas = np.zeros(5)
    for p in post.polygons:
        areas[DAMAGE_CLASSES.get(p.subtype, 1)] += p.geometry.intersection(
            box(0, 0, post.width, post.height)
        ).area
    for value in range(1, 5):
        assert counts[value] == pytest.approx(areas[value], rel=0.01, abs=20), value
    loc = localization_mask(pre)
    union = shapely.union_all([p.geometry for p in pre.polygons]).intersection(
        box(0, 0, pre.width, pre.height)
    )
    assert loc.sum() == pytest.approx(union.area, rel=0.01)
    np.testing.assert_array_equal(loc, brute_force([(union, 1)], pre.height, pre.width))
