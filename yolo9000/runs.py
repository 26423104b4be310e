"""Run-folder safety: one process per run folder (a lock naming its holder), and SIGTERM handled like Ctrl-C.

Two `yolo9000 train` into one `--out`, or two `--resume` of one run, would otherwise both write `last.pt` and
`scalars.csv` (every step logged twice, one run lost). `RunLock` takes an exclusive `flock` on `<run>/.lock` and
writes the holder's pid there; a second process is refused with that pid. The kernel drops the lock when the
holder dies, even by SIGKILL, so a crashed run never leaves a stale lock behind.

Schedulers (SLURM, Kubernetes, `timeout`) stop jobs with SIGTERM; `sigterm_as_interrupt` turns it into the
KeyboardInterrupt the trainer already handles by saving a checkpoint.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from yolo9000.errors import RunLockedError

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive lock on a run folder, held from `acquire()` to `release()` (or the `with` block).

    Args:
        run_dir: the run folder (created).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock. Raises RunLockedError naming the holder's pid when another process has it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"{self.run_dir} is in use by another yolo9000 process (pid {holder}): wait for it "
                                 "to end or stop it, or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        # The file stays: removing it would let a third process lock a new inode while a second waits on the old.
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread (as SIGINT does), so the trainer
    saves a checkpoint before the process ends. Outside the main thread this does nothing (signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ignore(signum: int, frame: object) -> None:
        pass

    def interrupt(signum: int, frame: object) -> None:
        # Once: a second SIGTERM (schedulers repeat it) must not abort the checkpoint the first one asked for.
        # A Python no-op rather than SIG_IGN/SIG_DFL: a signal that already arrived but whose Python handler has not
        # run yet would otherwise raise "OSError: Signal N ignored due to race condition".
        signal.signal(signal.SIGTERM, ignore)
        # A SIGTERM sent to the whole process group kills the DataLoader workers too; torch's SIGCHLD handler
        # would then raise "worker killed" in the middle of the checkpoint being saved. The run is ending anyway.
        signal.signal(signal.SIGCHLD, ignore)
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    previous_child = signal.getsignal(signal.SIGCHLD)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_child is not None:
            signal.signal(signal.SIGCHLD, previous_child)
