"""Run directories: where a run's config, checkpoints, logs and metrics live, and whether to resume."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ssl_siam.core.config import save_config
from ssl_siam.core.errors import UserError
from ssl_siam.train.config import RunConfig
from ssl_siam.train.distributed import World, broadcast

MIN_FREE_BYTES = 200 * 2**20


def prepare_run_dir(config: RunConfig, default_name: str) -> tuple[Path, Path | None]:
    """Create the run dir (``config.run_dir`` or ``runs/<name>-<time>``), save ``config.yaml`` there, and
    return ``(run_dir, checkpoint to resume from or None)`` according to ``config.resume``."""
    run_dir = Path(config.run_dir or f"runs/{default_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    ckpt = run_dir / "checkpoints" / "last.pt"
    if config.resume is True and not ckpt.is_file():
        raise UserError(f"resume=true but {ckpt} does not exist")
    if config.resume is False and ckpt.is_file():
        raise UserError(f"run_dir {run_dir} already holds {ckpt.name}; use resume=auto to continue it "
                        "or choose another run_dir")
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"run_dir {run_dir} is not writable: {exc.strerror}") from None
    for stale in (run_dir / "checkpoints").glob(".*.tmp-*"):  # half-written by a process killed mid-save
        stale.unlink(missing_ok=True)
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"run_dir {run_dir}: only {free / 2**20:.0f} MiB free on its disk, "
                        f"need at least {MIN_FREE_BYTES / 2**20:.0f} MiB for checkpoints")
    config.run_dir = str(run_dir)
    save_config(config, run_dir / "config.yaml")
    return run_dir, ckpt if ckpt.is_file() and config.resume is not False else None


def prepare_shared_run_dir(config: RunConfig, default_name: str, world: World) -> tuple[Path, Path | None]:
    """:func:`prepare_run_dir` on rank 0; every process gets its run dir and resume checkpoint."""
    result = prepare_run_dir(config, default_name) if world.is_main else None
    run_dir, resume_from = broadcast(result, world)  # type: ignore[misc]
    config.run_dir = str(run_dir)
    return run_dir, resume_from
