"""The predictions file: p(pain) per crop as Parquet, with painface metadata (torch-free).

``painface score`` / ``predict.py`` write it; ``painface analyze``, ``render`` and the
notebooks read it. The metadata ties it to the store it was made from (``store_id``),
the checkpoint (path and digest) and the calibration temperature.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from painface.errors import PainfaceError
from painface.files import atomic_write
from painface.store import check_version


class PredictionError(PainfaceError):
    pass


def file_digest(path: str | Path, n: int = 1 << 20) -> str:
    """sha256 of a file's first MiB plus its size: enough to tell checkpoints apart (an
    exported model folder: of its weights)."""
    if Path(path).is_dir():
        path = Path(path) / "model.safetensors"
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(n))
    h.update(str(Path(path).stat().st_size).encode())
    return h.hexdigest()[:16]


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x if isinstance(x, (int, float, str, bool, type(None))) else str(x)


def write_predictions(pred: pd.DataFrame, out: str | Path, meta: dict) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(pred, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"painface": json.dumps(meta).encode()})
    with atomic_write(out) as tmp:
        pq.write_table(table, tmp)
    return out


def read_predictions(path: str | Path, store: str | Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a predictions file; with ``store``, check that it was made from that store."""
    path = Path(path)
    if not path.is_file():
        raise PredictionError(f"{path}: predictions file not found")
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"painface", b"{}"))
    if store is not None:
        smeta = check_version(store)
        if meta.get("store_id") != smeta.get("store_id"):
            raise PredictionError(
                f"{path}: predictions were made for another store ({meta.get('store', '?')}), not {store}"
            )
    return table.to_pandas(), meta
