"""Re-create the small test crops in tests/data from the sample data (see tests/data/ATTRIBUTION.md).

Usage: python tests/data/make_test_data.py [SAMPLE_DATA_DIR]   (default /work/shared/data)

Writes, next to this script:
- geotiff/opencities_crop.tif: the 256x256 window at row 384, col 384 of opencities_665946_tile_920.tif,
  all 4 bands (RGB + alpha) uint8, window georeferencing, LZW.
- geotiff/sentinel2_{B02,B03,B04,B08}.tif: the same 128x128 window of each sentinel2_aeey_<band>.tif, uint16,
  nodata 0, window georeferencing, LZW. The window with the most nodata pixels is used; the sample scene has
  none, so the tie-break (most building/texture detail: highest B08 standard deviation) decides.
- xbd/images/joplin-tornado_00000000_{pre,post}_disaster.png: the 256x256 crop of the 1024x1024 originals with
  the most distinct post-disaster damage subtypes, then the most buildings (32-pixel search grid).
- xbd/labels/joplin-tornado_00000000_{pre,post}_disaster.json: the original label JSON with `features.xy`
  polygons clipped to the crop and shifted to crop pixel coordinates (a clip that splits a building keeps
  its largest part; clipped parts under 1 px^2 are dropped), `features.lng_lat` emptied, and
  `metadata.width/height` set to 256.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio
import shapely
from PIL import Image
from rasterio.windows import Window

OUT = Path(__file__).resolve().parent
CROP = 256
S2_CROP = 128
S2_BANDS = ("B02", "B03", "B04", "B08")
XBD_ID = "joplin-tornado_00000000"


def write_window(src_path: Path, dst_path: Path, window: Window) -> None:
    """Copy ``window`` of a GeoTIFF with its georeferencing, nodata and colour interpretation (LZW)."""
    with rasterio.open(src_path) as src:
        profile = src.profile | {
            "width": window.width,
            "height": window.height,
            "transform": src.window_transform(window),
            "compress": "lzw",
            "tiled": False,
            "blockxsize": None,
            "blockysize": None,
        }
        profile = {k: v for k, v in profile.items() if v is not None}
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.colorinterp = src.colorinterp


def sentinel_window(root: Path) -> Window:
    """128x128 window with the most nodata (0) pixels over all bands, then the highest B08 std."""
    stack = []
    for band in S2_BANDS:
        with rasterio.open(root / f"geotiff/sentinel2_aeey_{band}.tif") as src:
            stack.append(src.read(1))
    nodata = np.any(np.stack(stack) == 0, axis=0)
    best = None
    for row in range(0, nodata.shape[0] - S2_CROP + 1, 64):
        for col in range(0, nodata.shape[1] - S2_CROP + 1, 64):
            cut = (slice(row, row + S2_CROP), slice(col, col + S2_CROP))
            score = (int(nodata[cut].sum()), float(stack[-1][cut].std()))
            if best is None or score > best[0]:
                best = (score, Window(col, row, S2_CROP, S2_CROP))
    return best[1]


def clip_features(features: list[dict], col: int, row: int) -> list[dict]:
    """Clip ``features.xy`` polygons to the crop and shift them to crop pixel coordinates."""
    box = shapely.box(col, row, col + CROP, row + CROP)
    out = []
    for feature in features:
        clipped = shapely.make_valid(shapely.from_wkt(feature["wkt"])).intersection(box)
        parts = [g for g in shapely.get_parts(clipped) if g.geom_type == "Polygon" and g.area >= 1.0]
        if parts:
            polygon = shapely.affinity.translate(max(parts, key=lambda g: g.area), -col, -row)
            out.append({"properties": feature["properties"], "wkt": polygon.wkt})
    return out


def xbd_crop(root: Path) -> tuple[int, int]:
    """(col, row) of the crop with the most distinct damage subtypes, then the most buildings."""
    post = json.loads((root / f"xbd/labels/{XBD_ID}_post_disaster.json").read_text())
    best = None
    for row in range(0, 1024 - CROP + 1, 32):
        for col in range(0, 1024 - CROP + 1, 32):
            features = clip_features(post["features"]["xy"], col, row)
            score = (len({f["properties"]["subtype"] for f in features}), len(features))
            if best is None or score > best[0]:
                best = (score, (col, row))
    return best[1]


def main(root: Path) -> None:
    write_window(
        root / "geotiff/opencities_665946_tile_920.tif",
        OUT / "geotiff/opencities_crop.tif",
        Window(384, 384, CROP, CROP),
    )
    window = sentinel_window(root)
    for band in S2_BANDS:
        write_window(
            root / f"geotiff/sentinel2_aeey_{band}.tif", OUT / f"geotiff/sentinel2_{band}.tif", window
        )
    col, row = xbd_crop(root)
    for phase in ("pre", "post"):
        name = f"{XBD_ID}_{phase}_disaster"
        image = Image.open(root / f"xbd/images/{name}.png")
        (OUT / "xbd/images").mkdir(parents=True, exist_ok=True)
        extra = {"transparency": image.info["transparency"]} if "transparency" in image.info else {}
        image.crop((col, row, col + CROP, row + CROP)).save(
            OUT / f"xbd/images/{name}.png", optimize=True, **extra
        )
        label = json.loads((root / f"xbd/labels/{name}.json").read_text())
        label["features"] = {"lng_lat": [], "xy": clip_features(label["features"]["xy"], col, row)}
        label["metadata"] |= {"width": CROP, "height": CROP}
        (OUT / "xbd/labels").mkdir(parents=True, exist_ok=True)
        (OUT / f"xbd/labels/{name}.json").write_text(json.dumps(label, indent=1) + "\n")
    print(f"sentinel2 window: col {window.col_off}, row {window.row_off}; xbd crop: col {col}, row {row}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"))
