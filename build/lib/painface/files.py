"""Writing results whole or not at all: a file is written under a temporary name beside its
target and renamed onto it only when complete, so a crash never leaves a file that looks
finished (a reader sees the old version or the new one)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


def temporary_name(path: Path) -> Path:
    """``.tmp-<pid>-<name>``: hidden, unique to this process, and keeping the suffix that
    tells OpenCV, matplotlib and pandas the format."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it onto ``path`` on success, remove it on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: nothing was written")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data, **kwargs) -> Path:
    return write_text(path, json.dumps(data, indent=2, **kwargs))


PACKAGE = Path(__file__).resolve().parent


def study_path(path: str | Path) -> Path:
    """A study file as given, or else the one shipped with painface: ``experiments/x.yaml``
    works from any folder, with an installed wheel as in a clone."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and path.parts[:1] == ("experiments",):
        packaged = PACKAGE / path
        if packaged.is_file():
            return packaged
    return path
