"""Run directories: where a run's config, checkpoints, logs and metrics live, whether to resume, and one writer.

A run directory is held by one process at a time: an exclusive OS file lock on ``RUN/.lock`` (``flock``, released
by the kernel when its holder exits or is killed), taken before anything in the directory is touched. A second
process on the same directory (launched twice, a Slurm requeue while the old job still runs) is refused with one
line naming the holder. Under torchrun / Slurm the lock is rank 0's.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ssl_siam.core.config import save_config
from ssl_siam.core.errors import UserError
from ssl_siam.train.config import RunConfig
from ssl_siam.train.distributed import World, broadcast

MIN_FREE_BYTES = 200 * 2**20
LOCK_NAME = ".lock"


@dataclass
class RunDir:
    """An opened run directory: its path, the checkpoint to resume from, whether this process created the folder
    (so a run that fails before training can remove it again), and the lock (rank 0 only)."""

    path: Path
    resume_from: Path | None
    created: bool
    lock_fd: int | None = None
    created_parents: tuple[Path, ...] = ()  # folders above ``path`` this process created, deepest first

    def save_config(self, config: RunConfig) -> None:
        """Write ``config.yaml`` (after every check that can refuse the run has passed)."""
        save_config(config, self.path / "config.yaml")

    def discard(self) -> None:
        """Remove the folder if this process created it (a run that failed before its first step)."""
        if self.created and self.lock_fd is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            for parent in self.created_parents:  # e.g. runs/ made for it; kept if another run is in it now
                try:
                    parent.rmdir()
                except OSError:
                    break

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing the descriptor releases the flock
            self.lock_fd = None


def _lock(run_dir: Path) -> int:
    """Take the run directory's exclusive lock, or refuse naming the process that holds it."""
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"run_dir {run_dir} is in use by {holder}; wait for it to finish or choose another "
                        "run_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"ssl-siam pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}".encode(),
              0)
    return fd


def last_checkpoint_path(run_dir: Path) -> Path:
    """Where every training writes its latest checkpoint, ``RUN/checkpoints/last.pt`` (whether it exists or not):
    the one place the name is spelled, for the loop that writes it and the runners and messages that read it."""
    return run_dir / "checkpoints" / "last.pt"


def last_checkpoint(run_dir: Path) -> Path | None:
    """:func:`last_checkpoint_path` when it exists. An opened run dir (:func:`open_run_dir`) holds one only when the
    run resumes from it (``resume=false`` refuses such a dir), so builders ask this to tell a resume."""
    ckpt = last_checkpoint_path(run_dir)
    return ckpt if ckpt.is_file() else None


def open_run_dir(config: RunConfig, default_name: str) -> RunDir:
    """Create (or reopen) the run dir (``config.run_dir`` or ``runs/<name>-<time>``) and lock it; the checkpoint to
    resume from follows ``config.resume``. ``config.yaml`` is not written here: see :meth:`RunDir.save_config`."""
    run_dir = Path(config.run_dir or f"runs/{default_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run_dir {run_dir} is a file, expected a folder (or a path that does not exist yet)")
    ckpt = last_checkpoint(run_dir)
    if config.resume is True and ckpt is None:
        raise UserError(f"resume=true but {last_checkpoint_path(run_dir)} does not exist")
    if config.resume is False and ckpt is not None:
        raise UserError(f"run_dir {run_dir} already holds {ckpt.name}; use resume=auto to continue it "
                        "or choose another run_dir")
    created = not run_dir.exists()
    parents = tuple(p for p in run_dir.parents if not p.exists())  # deepest first
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _lock(run_dir)
    except OSError as exc:
        raise UserError(f"run_dir {run_dir} is not writable: {exc.strerror}") from None
    opened = RunDir(run_dir, None, created, fd, parents)
    try:
        checkpoints = run_dir / "checkpoints"
        checkpoints.mkdir(exist_ok=True)
        # half-written by a process killed mid-save (older versions named them .NAME.tmp-PID)
        for stale in [*checkpoints.glob(".*.tmp"), *checkpoints.glob(".*.tmp-*")]:
            stale.unlink(missing_ok=True)
        free = shutil.disk_usage(run_dir).free
        if free < MIN_FREE_BYTES:
            raise UserError(f"run_dir {run_dir}: only {free / 2**20:.0f} MiB free on its disk, "
                            f"need at least {MIN_FREE_BYTES / 2**20:.0f} MiB for checkpoints")
    except BaseException:
        opened.discard()
        opened.release()
        raise
    config.run_dir = str(run_dir)
    opened.resume_from = ckpt  # resume=false with a checkpoint was refused above
    return opened


def open_shared_run_dir(config: RunConfig, default_name: str, world: World) -> RunDir:
    """:func:`open_run_dir` on rank 0 (which holds the lock); the other ranks wait for it and receive the path and
    resume checkpoint, or the same one-line error."""
    result: RunDir | str | None = None
    if world.is_main:
        try:
            result = open_run_dir(config, default_name)
        except UserError as exc:
            if world.size == 1:
                raise
            result = str(exc)
    payload = result if isinstance(result, str) or result is None else (result.path, result.resume_from, result.created)
    shared = broadcast(payload, world) if world.size > 1 else None
    if isinstance(shared, str):
        raise UserError(shared)
    if not world.is_main:
        path, resume_from, created = shared  # type: ignore[misc]
        result = RunDir(path, resume_from, created)
    assert isinstance(result, RunDir)
    config.run_dir = str(result.path)
    return result
