"""One base class for bad input, and the one-line reporting every front end uses.

A ``PainfaceError`` is something the user can fix (a file, a key, a row); its message
names it. The command-line tools print it as one line on stderr and exit 1. Anything
else (a KeyError from a bug, a crash in a library) keeps its traceback, so that it gets
reported and fixed rather than mistaken for bad input. A leaf module: it imports nothing
from painface.
"""

from __future__ import annotations

import sys


class PainfaceError(ValueError):
    """Bad input a user can fix; the message names the file, key or row."""


def run_hydra_task(task, cfg):
    """Run a Hydra task (train.py, eval.py, predict.py); a PainfaceError becomes one line
    on stderr and exit status 1."""
    try:
        return task(cfg)
    except PainfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
