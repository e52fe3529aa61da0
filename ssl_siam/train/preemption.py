"""Preemption: SIGTERM / SIGUSR1 (Slurm's warning before it preempts or times out a job) end a run cleanly."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def preemption_signals() -> Iterator[list[signal.Signals]]:
    """While active, SIGTERM and SIGUSR1 only append themselves to the yielded list: the loop finishes the current
    step, checkpoints and raises :class:`~ssl_siam.core.errors.Preempted`. The previous handlers come back after.
    Signals can only be caught in the main thread; elsewhere the list stays empty."""
    received: list[signal.Signals] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, lambda s, _: received.append(signal.Signals(s)))
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
