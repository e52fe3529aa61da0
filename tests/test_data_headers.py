"""Raster headers: the index (reused while size and mtime hold, re-read when a file changes, one entry per distinct
header, a broken index rebuilt), side-car files still honoured without GDAL's folder listing, and cache entries
of linked sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from ssl_siam.data import headers as headers_module
from ssl_siam.data.cache import DecodedCache
from ssl_siam.data.headers import read_header, read_headers


def tiles(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"t{i}.png")
        Image.fromarray(np.full((8, 8, 3), i % 256, np.uint8)).save(paths[-1])
    return paths


def test_index_is_reused_refreshed_and_deduplicated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, index = tiles(tmp_path / "t", 5), tmp_path / "idx" / "headers.json"
    first = read_headers(paths, index=index)
    assert all(first[p].height == 8 and first[p].dtypes == ("uint8",) * 3 for p in paths)
    stored = json.loads(index.read_text())
    assert len(stored["headers"]) == 1 and len(stored["files"]) == 5  # five files, one distinct header
    opened = []
    monkeypatch.setattr(headers_module, "read_header", lambda p: opened.append(p) or read_header(p))
    assert read_headers(paths, index=index) == first and opened == []  # nothing opened again
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(paths[2])  # a changed file: new size and mtime
    os.utime(paths[2], ns=(1, 1))
    again = read_headers(paths, index=index)
    assert opened == [paths[2]] and (again[paths[2]].height, again[paths[2]].width) == (6, 10)
    assert len(json.loads(index.read_text())["headers"]) == 2
    index.write_text("{not json")  # a broken index is rebuilt, never trusted
    opened.clear()
    assert read_headers(paths, index=index) == again and len(opened) == 5
    assert json.loads(index.read_text())["version"] == 2


def test_parallel_headers_equal_serial(tmp_path: Path) -> None:
    paths = tiles(tmp_path, 300)  # above the pool threshold
    assert read_headers(paths, workers=2) == read_headers(paths)


def test_side_car_files_are_still_read(tmp_path: Path) -> None:
    """Opening without listing the folder (GDAL_DISABLE_READDIR_ON_OPEN=TRUE) still finds a .aux.xml."""
    assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "TRUE"
    path = tmp_path / "a.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 4, 4), np.uint8))
    assert read_header(path).nodatavals == (None,)
    Path(f"{path}.aux.xml").write_text('<PAMDataset><PAMRasterBand band="1"><NoDataValue>7</NoDataValue>'
                                       "</PAMRasterBand></PAMDataset>")
    assert read_header(path).nodatavals == (7.0,)


def test_cache_entry_of_a_link_is_its_target(tmp_path: Path) -> None:
    (source,) = tiles(tmp_path / "data", 1)
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "other.png"
    link.symlink_to(source)
    linked_folder = tmp_path / "folder_link"
    linked_folder.symlink_to(tmp_path / "data")
    cache = DecodedCache(tmp_path / "cache", min_pixels=0)
    entry = cache.entry(source)
    assert cache.entry(link) == entry == cache.entry(linked_folder / "t0.png")
    assert entry.name == "t0.tif"  # named after the file the link points to
    built = cache.paths([source, link, linked_folder / "t0.png"])
    assert built == [entry] * 3 and len(list((tmp_path / "cache").glob("decoded/*/*/*.tif"))) == 1
    os.utime(source, ns=(5, 5))  # a changed source gets a new entry
    assert cache.entry(link) != entry
