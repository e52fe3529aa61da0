"""What happens before the first training step, as a function of the data's size (docs/benchmark.md): scanning
a flat folder of N small PNG tiles, reading their headers (no cache; with ``data.cache_dir``: the first start
decoding them, a restart from the index), band statistics; pairing N xBD pairs; rasterising N label pairs.

    python scripts/startup_scaling.py OUT_DIR [--tiles 1000 10000 100000] [--pairs 220 2200 22000]
        [--masks 32 64 128] [--workers 2] [--xbd ../shared/data/xbd]

Tiles are generated (96² RGB, distinct pixels, one flat folder); xBD pairs and labels are symlinks to the pairs of
``--xbd`` (real 1024² images) under new ids, or generated synthetic pairs when it is absent. Writes
OUT_DIR/startup.json and prints a markdown table. Every stage runs in a fresh Python process, as a (re)started
training would; the OS page cache is warm after a folder's first stage, as on a node that has just read the data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

_TILES = ("from ssl_siam.data.tiles import TileDataset as T; from ssl_siam.data.cache import DecodedCache as C; "
          "from ssl_siam.data.stats import compute_stats")
_CACHED = "T(ROOT, 64, workers=WORKERS, cache=C(Path(CACHE)))"
STAGES = {  # stage -> (set-up, timed code), run in a fresh process with ROOT, CACHE, WORKERS defined
    "scan": ("from ssl_siam.data.sources import resolve_sources", "resolve_sources(ROOT, None)"),
    "tiles, no cache": (_TILES, "T(ROOT, 64, workers=WORKERS)"),
    "tiles, cache: first start": (_TILES, _CACHED),
    "tiles, cache: restart": (_TILES, _CACHED),
    "band statistics (256 windows)": (f"{_TILES}; d = {_CACHED}", "compute_stats(d, 256)"),
    "xBD pairing": ("from ssl_siam.data.xbd.pairs import find_pairs", "find_pairs(ROOT)"),
    "mask rasterisation": ("from ssl_siam.data.xbd.pairs import find_pairs; from ssl_siam.data.xbd.targets import "
                           "ensure_targets; r = find_pairs(ROOT)[0]", "ensure_targets(r, CACHE, workers=WORKERS)"),
}


def timed(stage: str, root: Path, cache: Path, workers: int) -> float:
    """Seconds of ``stage``'s timed code in a fresh Python process (imports and set-up not counted)."""
    setup, work = STAGES[stage]
    code = (f"import time; from pathlib import Path; ROOT, CACHE, WORKERS = {str(root)!r}, {str(cache)!r}, "
            f"{workers}; {setup}; START = time.perf_counter(); {work}; print(time.perf_counter() - START)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def make_tiles(folder: Path, n: int) -> None:
    """``n`` distinct 96² RGB PNG tiles in one flat folder (kept between runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = len(os.listdir(folder))
    rng = np.random.default_rng(0)
    base = [(rng.integers(0, 255, (96, 96, 3)) // 16 * 16).astype(np.uint8) for _ in range(16)]
    for i in range(have, n):
        tile = base[i % 16].copy()
        tile.reshape(-1)[i % tile.size] ^= 0xFF
        Image.fromarray(tile).save(folder / f"tile_{i:06d}.png", compress_level=1)


def make_xbd(folder: Path, n: int, source: Path | None) -> None:
    """``n`` xBD pairs: symlinks to ``source``'s pairs under new ids, or generated when ``source`` is None."""
    if (folder / "images").is_dir():
        return
    if source is None:
        from ssl_siam.tools.synthetic import make_xbd_split

        make_xbd_split(folder / "seed", 2, size=1024, seed=0, disaster="synthetic-storm")
        source = folder / "seed"
    ids = sorted({p.name.rsplit("_", 2)[0] for p in (source / "images").glob("*_pre_disaster.png")})
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
    for i in range(n):
        for phase in ("pre", "post"):
            src_id = ids[i % len(ids)]
            for sub, ext in (("images", "png"), ("labels", "json")):
                (folder / sub / f"scaling_{i:08d}_{phase}_disaster.{ext}").symlink_to(
                    (source / sub / f"{src_id}_{phase}_disaster.{ext}").resolve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tiles", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--pairs", type=int, nargs="*", default=[220, 2200, 22000])
    parser.add_argument("--masks", type=int, nargs="*", default=[32, 64, 128])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--xbd", type=Path, default=Path("../shared/data/xbd"))
    args = parser.parse_args()
    source = args.xbd if (args.xbd / "images").is_dir() else None
    rows: list[dict] = []
    for n in args.tiles:
        root, cache = args.out / f"tiles_{n}", args.out / f"cache_{n}"
        make_tiles(root, n)
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        for stage in ("scan", "tiles, no cache", "tiles, cache: first start", "tiles, cache: restart",
                      "band statistics (256 windows)"):
            rows.append({"stage": stage, "n": n, "seconds": timed(stage, root, cache, args.workers)})
            print(rows[-1], flush=True)
    for n in args.pairs:
        root = args.out / f"xbd_{n}"
        make_xbd(root, n, source)
        rows.append({"stage": "xBD pairing", "n": n, "seconds": timed("xBD pairing", root, root, args.workers)})
        print(rows[-1], flush=True)
    for n in args.masks:
        root, cache = args.out / f"xbd_masks_{n}", args.out / f"masks_{n}"
        make_xbd(root, n, source)
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        rows.append({"stage": "mask rasterisation", "n": n,
                     "seconds": timed("mask rasterisation", root, cache, args.workers)})
        print(rows[-1], flush=True)
    result = {"workers": args.workers, "cpus": os.cpu_count(), "xbd": str(source or "synthetic"),
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    (args.out / "startup.json").write_text(json.dumps(result, indent=1))
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    print(f"\n| stage ({args.workers} processes) | N | seconds | per item |\n|---|---|---|---|")
    for stage in stages:
        for r in (r for r in rows if r["stage"] == stage):
            print(f"| {stage} | {r['n']:,} | {r['seconds']:.2f} | {r['seconds'] / r['n'] * 1e3:.3f} ms |")


if __name__ == "__main__":
    main()
