"""``data=synthetic``: the embedded data set, rendered, keypointed and cropped on first use."""

from __future__ import annotations

import json
from pathlib import Path

from painface.data import DataError
from painface.files import write_json


def _build_settings(build: dict) -> dict:
    return {k: v for k, v in sorted(build.items()) if k != "workers"}


def build_synthetic_store(store: Path, study: str, workers: int = 2, crop_size: int = 128, **gen) -> None:
    """``data=synthetic`` builds its store on first use: render the study, then extract."""
    from painface.extract import ExtractConfig, extract
    from painface.synthetic.study import generate_study

    store = Path(store)
    raw = store.parent / (store.name + "_videos")
    mice = gen.pop("mice_per_group", None)
    manifest = generate_study(study, raw, workers=workers, mice_per_group=mice, **gen)
    _, errors = extract(manifest, store, ExtractConfig(crop_size=crop_size, workers=workers))
    if errors:
        raise DataError("synthetic store build failed: " + "; ".join(errors))
    settings = _build_settings({"study": study, "crop_size": crop_size, "mice_per_group": mice, **gen})
    write_json(store / "build.json", settings)


def check_build(store: Path, build: dict) -> None:
    path = Path(store) / "build.json"
    if not path.exists():
        return
    have = json.loads(path.read_text())
    want = _build_settings(build)
    if have != want:
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise DataError(
            f"{store}: synthetic store was built with other settings ({', '.join(diff)}); "
            f"delete it or set data.store to another folder"
        )
