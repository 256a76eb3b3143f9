"""Child processes that end with the painface process that started them.

A closed terminal, an out-of-memory kill or a scheduler's cancel often SIGKILLs only the
parent; without care, its pool workers and DeepLabCut subprocesses live on as orphans.
Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) makes the kernel kill them;
elsewhere the workers are at least terminated on every exit that Python sees.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent ends (Linux; a no-op elsewhere).

    ``parent_pid`` closes the race where the parent died before the request was made.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: fall back to the parent's own clean-up
            pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def _worker_init(parent_pid: int) -> None:
    die_with_parent(parent_pid)
    # Ctrl-C reaches the whole foreground process group: the parent alone decides how to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers die with the parent (even SIGKILLed) and are terminated
    at once when the ``with`` body raises (Ctrl-C, SIGTERM, an error), instead of finishing
    their current video first."""
    pool = ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())  # no public terminate before 3.14
        pool.shutdown(wait=False, cancel_futures=True)  # (this forgets the processes: read them first)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        for proc in procs:
            proc.join(timeout=5)
        raise
    pool.shutdown(wait=True)


def subprocess_kwargs() -> dict:
    """``subprocess.run``/``Popen`` arguments that make the child die with this process."""
    parent = os.getpid()
    return {"preexec_fn": lambda: die_with_parent(parent)} if sys.platform.startswith("linux") else {}


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that ``finally`` blocks and pool clean-up run."""

    exit_code = 128 + signal.SIGTERM


def exit_on_sigterm() -> None:
    def _raise(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, _raise)


def exit_now(code: int) -> None:
    """Leave after an interrupt without the interpreter's exit hooks: an interrupt can land
    while the main thread holds a future's lock, and ``concurrent.futures`` then waits
    forever at exit for its (already killed) pool's manager thread."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
