"""The crop store: face crops plus a Parquet index. Its schema is defined here, once.

Layout::

    STORE/store.json                 schema version, crop size, image format
    STORE/parts/<unit>/crops.bin     the JPEG crops of one video, back to back
    STORE/parts/<unit>/index.parquet one row per crop (see INDEX_COLUMNS)
    STORE/parts/<unit>/summary.json  frames, faces found, crop-rule counts

A unit is one video (session x camera). It is written under a temporary folder and
published by renaming it, so a part either exists complete or not at all: an
interrupted extraction leaves nothing that looks finished.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from painface.errors import PainfaceError
from painface.files import atomic_write, write_json

SCHEMA_VERSION = 1
STORE_FILE = "store.json"
PARTS = "parts"
TMP_PREFIX = ".tmp-"

INDEX_COLUMNS = (
    "crop_id",
    "image",
    "offset",
    "nbytes",
    "session_id",
    "mouse_id",
    "sex",
    "strain",
    "treatment",
    "phase",
    "camera",
    "frame",
    "time_s",
    "fps",
    "label",
    "rule",
    "nose_x",
    "nose_y",
    "nose_likelihood",
    "right_eye_x",
    "right_eye_y",
    "right_eye_likelihood",
    "left_eye_x",
    "left_eye_y",
    "left_eye_likelihood",
    "box_x0",
    "box_y0",
    "box_size",
    "sharpness",  # variance of the Laplacian of the stored crop; NaN in stores extracted before it existed
)


class StoreError(PainfaceError):
    """A store that cannot be used; the message names the folder and the cause."""


@contextmanager
def writer_lock(root: str | Path):
    """One writer per store at a time: a second extraction into the same store fails at
    once with one line, instead of racing the first (or deleting its work in progress)."""
    from filelock import FileLock, Timeout

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".writer.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StoreError(
            f"{root}: another painface process is writing to this store; wait for it to finish (or use another store)"
        ) from None
    try:
        yield root
    finally:
        lock.release()


def unit_name(session_id: str, camera: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{session_id}__{camera}")
    return safe


def create_store(
    root: str | Path,
    crop_size: int = 128,
    image_format: str = "jpg",
    jpeg_quality: int = 92,
    extraction: dict | None = None,
) -> Path:
    """Create a store folder, or check that an existing one has this schema version."""
    root = Path(root)
    meta = root / STORE_FILE
    if meta.exists():
        check_version(root)
        return root
    (root / PARTS).mkdir(parents=True, exist_ok=True)
    # store_id ties predictions files to the store they were made from
    _write_json(
        meta,
        {
            "schema_version": SCHEMA_VERSION,
            "store_id": uuid.uuid4().hex,
            "crop_size": crop_size,
            "image_format": image_format,
            "jpeg_quality": jpeg_quality,
            "extraction": extraction or {},
        },
    )
    return root


def store_meta(root: str | Path) -> dict:
    root = Path(root)
    meta = root / STORE_FILE
    if not meta.is_file():
        raise StoreError(
            f"{root}: not a painface crop store (no {STORE_FILE}); build one with "
            f"'painface extract MANIFEST --store {root}' or 'painface synth' + 'painface extract'"
        )
    try:
        return json.loads(meta.read_text())
    except json.JSONDecodeError as exc:
        raise StoreError(f"{meta}: unreadable store metadata ({exc})") from exc


def check_version(root: str | Path) -> dict:
    meta = store_meta(root)
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{root}: store schema version {version}, this painface reads version {SCHEMA_VERSION}; "
            f"re-extract it with this version"
        )
    return meta


def _owner_alive(tmp: Path) -> bool:
    """A temporary part is named ``.tmp-<unit>-<pid>``: is the process writing it still running?"""
    pid = tmp.name.rsplit("-", 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_temporaries(root: str | Path) -> int:
    """Remove parts left half-written by an interrupted run; they were never published.

    Only temporaries whose writer process has ended: another run's work in progress
    in the same store is left alone.
    """
    n = 0
    for tmp in (Path(root) / PARTS).glob(TMP_PREFIX + "*"):
        if not _owner_alive(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            n += 1
    return n


def finished_units(root: str | Path) -> set[str]:
    parts = Path(root) / PARTS
    return (
        {p.name for p in parts.iterdir() if p.is_dir() and not p.name.startswith(TMP_PREFIX)}
        if parts.exists()
        else set()
    )


class PartWriter:
    """Writes one unit's crops and index under a temporary name; ``publish`` renames it."""

    def __init__(self, root: str | Path, unit: str, image_format: str = "jpg", jpeg_quality: int = 92):
        self.root = Path(root)
        self.unit = unit
        self.final = self.root / PARTS / unit
        self.tmp = self.root / PARTS / f"{TMP_PREFIX}{unit}-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.blob = open(self.tmp / "crops.bin", "wb")
        self.rows: list[dict] = []
        self.ext = "." + image_format
        self.params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpg" else []

    def add(self, image: np.ndarray, row: dict) -> None:
        ok, buf = cv2.imencode(self.ext, image, self.params)
        if not ok:
            raise StoreError(f"{self.unit}: cannot encode crop")
        offset = self.blob.tell()
        self.blob.write(buf.tobytes())
        self.rows.append({**row, "image": f"{PARTS}/{self.unit}/crops.bin", "offset": offset, "nbytes": len(buf)})

    def publish(self, summary: dict) -> Path:
        self.blob.close()
        index = (
            pd.DataFrame(self.rows, columns=list(INDEX_COLUMNS))
            if self.rows
            else pd.DataFrame(columns=list(INDEX_COLUMNS))
        )
        index.to_parquet(self.tmp / "index.parquet", index=False)
        _write_json(self.tmp / "summary.json", summary)
        if self.final.exists():  # a re-run of a unit replaces it whole
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        try:
            self.blob.close()
        except OSError:  # flushing fails on a full disk too; the part is thrown away regardless
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def read_index(root: str | Path, verify: bool = True) -> pd.DataFrame:
    """The index of every published part; checks the version and that images exist."""
    root = Path(root)
    check_version(root)
    frames = []
    for unit in sorted(finished_units(root)):
        part = root / PARTS / unit
        idx_path = part / "index.parquet"
        if not idx_path.is_file():
            raise StoreError(f"{part}: part has no index.parquet")
        try:
            idx = pd.read_parquet(idx_path)
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            raise StoreError(
                f"{idx_path}: unreadable index ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                f"delete the part folder and re-run the extraction"
            ) from None
        if "sharpness" not in idx:  # parts written before the column existed: same schema otherwise
            idx["sharpness"] = np.nan
        if verify and len(idx):
            blob = part / "crops.bin"
            if not blob.is_file():
                raise StoreError(f"{blob}: crop images missing for {len(idx)} indexed crops")
            end = int((idx["offset"] + idx["nbytes"]).max())
            if blob.stat().st_size < end:
                raise StoreError(f"{blob}: crop images truncated ({blob.stat().st_size} bytes, index needs {end})")
        frames.append(idx)
    nonempty = [f for f in frames if len(f)]  # a video with no face seen publishes an empty part
    if not nonempty:
        return frames[0] if frames else pd.DataFrame(columns=list(INDEX_COLUMNS))
    return pd.concat(nonempty, ignore_index=True)


def read_summaries(root: str | Path) -> pd.DataFrame:
    rows = []
    for unit in sorted(finished_units(root)):
        path = Path(root) / PARTS / unit / "summary.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
    return pd.DataFrame(rows)


class CropReader:
    """Random access to crop images; memory-maps each part once (safe in DataLoader workers)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._maps: dict[str, mmap.mmap] = {}

    def read(self, image: str, offset: int, nbytes: int, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
        m = self._maps.get(image)
        if m is None:
            path = self.root / image
            try:
                with open(path, "rb") as fh:
                    m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (FileNotFoundError, ValueError) as exc:
                raise StoreError(f"{path}: crop images missing ({exc})") from exc
            self._maps[image] = m
        buf = np.frombuffer(m, dtype=np.uint8, count=int(nbytes), offset=int(offset))
        img = cv2.imdecode(buf, flags)
        if img is None:
            raise StoreError(f"{self.root / image}: corrupt crop at offset {offset}")
        return img

    def __getstate__(self):  # mmaps do not pickle; each worker reopens its own
        return {"root": self.root, "_maps": {}}


def _write_json(path: Path, data: dict) -> None:
    write_json(path, data, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(type(o))


def select_index(root: str | Path, query: str | None = None, n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The index, filtered by a pandas ``query`` and (optionally) ``n`` rows drawn at random.

    A query that does not apply, or an empty selection, raises StoreError naming it.
    """
    idx = read_index(root)
    if query:
        try:
            idx = idx.query(query)
        except Exception as exc:
            raise StoreError(f"query '{query}': cannot apply it to {root} ({exc})") from None
    if idx.empty:
        raise StoreError(f"{root}: empty selection" + (f" (query '{query}')" if query else ""))
    if n is not None:
        idx = idx.sample(n=min(n, len(idx)), random_state=seed)
    return idx.reset_index(drop=True)


def export_crops(root: str | Path, out: str | Path, n: int = 50, query: str | None = None, seed: int = 0) -> int:
    """Write up to ``n`` randomly chosen crops as PNGs named after their crop_id."""
    pick = select_index(root, query, n, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reader = CropReader(root)
    for _, r in pick.iterrows():
        name = r["crop_id"].replace("/", "__") + f"__{r['label']}.png"
        with atomic_write(out / name) as tmp:
            cv2.imwrite(str(tmp), reader.read(r["image"], r["offset"], r["nbytes"]))
    return len(pick)
