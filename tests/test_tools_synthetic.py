"""Tests of the synthetic xBD pairs and GeoTIFF scenes used by `make demo`."""

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.features import rasterize

from ssl_siam.tools.scenes import make_geotiff_scenes
from ssl_siam.tools.synthetic import DAMAGE, make_xbd_split

SIZE, PAIRS = 256, 20
XBD_TYPES = {"wind", "flooding", "fire", "earthquake", "tsunami", "volcano"}


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("xbd")
    return out, make_xbd_split(out, PAIRS, size=SIZE, seed=3)


def _load(out: Path, tile: str, phase: str) -> tuple[np.ndarray, dict]:
    name = f"{tile}_{phase}_disaster"
    image = np.asarray(Image.open(out / "images" / f"{name}.png"))
    return image, json.loads((out / "labels" / f"{name}.json").read_text())


def _features(label: dict, key: str = "xy") -> dict[str, tuple[shapely.Geometry, dict]]:
    feats = label["features"][key]
    return {f["properties"]["uid"]: (shapely.from_wkt(f["wkt"]), f["properties"]) for f in feats}


def test_files_have_xbd_names(split: tuple[Path, list[str]]) -> None:
    out, ids = split
    assert ids == [f"synthetic-storm_{i:08d}" for i in range(PAIRS)]
    names = {f"{t}_{p}_disaster" for t in ids for p in ("pre", "post")}
    assert {p.name for p in (out / "images").iterdir()} == {f"{n}.png" for n in names}
    assert {p.name for p in (out / "labels").iterdir()} == {f"{n}.json" for n in names}
    with Image.open(out / "images" / f"{ids[0]}_post_disaster.png") as img:
        assert (img.mode, img.size) == ("RGB", (SIZE, SIZE))


def test_labels_follow_xbd_schema(split: tuple[Path, list[str]]) -> None:
    out, ids = split
    for tile in ids:
        pre, post = (_load(out, tile, phase)[1] for phase in ("pre", "post"))
        for phase, label in (("pre", pre), ("post", post)):
            assert set(label) == {"features", "metadata"} and set(label["features"]) == {"lng_lat", "xy"}
            meta = label["metadata"]
            assert meta["img_name"] == f"{tile}_{phase}_disaster.png"
            assert (meta["width"], meta["height"], meta["disaster"]) == (SIZE, SIZE, "synthetic-storm")
            assert meta["disaster_type"] in XBD_TYPES
            xy, lnglat = _features(label), _features(label, "lng_lat")
            assert len(xy) == len(label["features"]["xy"]) > 0  # uids are unique
            assert {u: p for u, (_, p) in xy.items()} == {u: p for u, (_, p) in lnglat.items()}
            for uid, (_, props) in xy.items():
                assert uuid.UUID(uid).version == 4 and props["feature_type"] == "building"
                assert ("subtype" in props) == (phase == "post")
                assert props.get("subtype", "no-damage") in DAMAGE
        assert pre["metadata"]["capture_date"] < post["metadata"]["capture_date"]
        pre_xy, post_xy = _features(pre), _features(post)
        assert pre_xy.keys() == post_xy.keys()
        assert all(pre_xy[u][0].equals(post_xy[u][0]) for u in pre_xy)


def test_polygons_are_valid_and_inside(split: tuple[Path, list[str]]) -> None:
    out, ids = split
    holes = 0
    for tile in ids:
        label = _load(out, tile, "post")[1]
        for geom, _ in _features(label).values():
            assert geom.geom_type == "Polygon" and geom.is_valid and geom.area > 50
            assert 0 <= min(geom.bounds) and max(geom.bounds) <= SIZE
            holes += len(geom.interiors)
        for geom, _ in _features(label, "lng_lat").values():
            lon, lat = geom.centroid.x, geom.centroid.y
            assert geom.is_valid and -180 < lon < 180 and -90 < lat < 90
    assert holes >= 1


def test_damage_classes_cover_xbd(split: tuple[Path, list[str]]) -> None:
    out, ids = split
    subtypes = [p["subtype"] for t in ids for _, p in _features(_load(out, t, "post")[1]).values()]
    counts = {d: subtypes.count(d) for d in DAMAGE}
    assert all(counts.values()), counts
    assert max(counts, key=counts.get) == "no-damage" and counts["no-damage"] > 0.4 * len(subtypes)


def _abs_diff_by_class(out: Path, ids: list[str]) -> dict[str, float]:
    """Mean |post - pre| inside the buildings of each damage class and on the ground far from buildings."""
    sums, counts = dict.fromkeys((*DAMAGE, "background"), 0.0), dict.fromkeys((*DAMAGE, "background"), 0)
    for tile in ids:
        (pre, _), (post, label) = _load(out, tile, "pre"), _load(out, tile, "post")
        diff = np.abs(post.astype(float) - pre.astype(float)).mean(-1)
        feats = list(_features(label).values())
        near = rasterize([g.buffer(12) for g, _ in feats], out_shape=diff.shape).astype(bool)
        masks = {d: rasterize([g for g, p in feats if p["subtype"] == d] or [shapely.Point(-9, -9)],
                              out_shape=diff.shape).astype(bool) for d in DAMAGE}
        for key, mask in {**masks, "background": ~near}.items():
            sums[key] += diff[mask].sum()
            counts[key] += mask.sum()
    return {k: sums[k] / counts[k] for k in sums}


def test_damage_is_visible_and_graded(split: tuple[Path, list[str]]) -> None:
    diff = _abs_diff_by_class(*split)
    assert diff["no-damage"] < diff["minor-damage"] < diff["major-damage"] < diff["destroyed"], diff
    assert diff["destroyed"] > 3 * diff["no-damage"], diff
    assert 0.5 < diff["no-damage"] / diff["background"] < 1.5, diff


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    runs = [make_xbd_split(tmp_path / d, 2, size=128, seed=s) for d, s in (("a", 5), ("b", 5), ("c", 6))]
    assert runs[0] == runs[1] == runs[2]
    for name in (f"images/{runs[0][1]}_post_disaster.png", f"labels/{runs[0][1]}_post_disaster.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_geotiff_scenes(tmp_path: Path) -> None:
    paths = make_geotiff_scenes(tmp_path, 2, size=320, seed=1, nodata_fraction=0.15)
    assert [p.name for p in paths] == ["scene_0000.tif", "scene_0001.tif"]
    for path in paths:
        with rasterio.open(path) as src:
            assert (src.count, src.dtypes, src.nodata, src.width) == (4, ("uint16",) * 4, 0, 320)
            assert src.crs.to_epsg() == 32636 and src.crs.is_projected
            assert src.transform[:6] == (0.5, 0, src.transform.c, 0, -0.5, src.transform.f)
            assert src.transform.c > 100_000 and src.transform.f > 1_000_000  # UTM metres, not pixels
            assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
            assert src.profile["compress"] == "deflate"
            assert src.descriptions == ("red", "green", "blue", "nir")
            data = src.read().astype(float)
        nodata = (data == 0).all(0)
        assert abs(nodata.mean() - 0.15) < 0.02 and not (data[:, ~nodata] == 0).any()
        red, nir = data[0, ~nodata], data[3, ~nodata]
        assert 100 < np.median(red) and nir.max() <= 10_000  # reflectance × 10 000
        veg = (nir - red) / (nir + red) > 0.5
        assert veg.mean() > 0.2 and nir[veg].mean() > 4 * red[veg].mean()


@pytest.mark.parametrize(("bands", "dtype", "nodata"), [(3, "uint8", 0), (1, "float32", -9999.0)])
def test_geotiff_options(tmp_path: Path, bands: int, dtype: str, nodata: float) -> None:
    (path,) = make_geotiff_scenes(tmp_path, 1, size=96, bands=bands, dtype=dtype, nodata_fraction=0)
    with rasterio.open(path) as src:
        assert (src.count, src.dtypes[0], src.nodata, src.height) == (bands, dtype, nodata, 96)
        assert not (src.read() == nodata).any()


@pytest.mark.parametrize("kwargs", [{"bands": 5}, {"dtype": "int8"}, {"nodata_fraction": 1.0}])
def test_geotiff_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_geotiff_scenes(tmp_path, 1, size=32, **kwargs)
