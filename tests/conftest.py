"""Shared fixtures: one small synthetic study and crop store per session, Hydra configs.

The store is built once (two BALB/c groups and one C57BL/6 group, short sessions,
strong signal) through the real path: render -> DLC files -> extract.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

STUDY = {
    "name": "test_study",
    "generate": {
        "seed": 7,
        "fps": 10,
        "width": 320,
        "height": 180,
        "cameras": 2,
        "pre_min": 0.25,
        "post_min": 0.25,
        "zero_fraction": 0.0,
        "signal": 3.0,
        "groups": {
            "ac": {"n": 6, "females": 2, "timeline": [[0, 0.9], [1, 0.9]]},
            "b6": {"n": 2, "strain": "C57BL/6", "timeline": [[0, 0.9], [1, 0.9]]},
        },
    },
}


def shared_data(*parts) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real fixture {path} not present")
    return path


@pytest.fixture(scope="session")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "test_study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    return path


@pytest.fixture(scope="session")
def manifest(study_file, tmp_path_factory) -> Path:
    from painface.synthetic.study import generate_study

    return generate_study(study_file, tmp_path_factory.mktemp("videos"), workers=2, show_progress=False)


@pytest.fixture(scope="session")
def store(manifest, tmp_path_factory) -> Path:
    from painface.extract import ExtractConfig, extract

    root = tmp_path_factory.mktemp("store") / "store"
    _, errors = extract(manifest, root, ExtractConfig(crop_size=64, workers=2), show_progress=False)
    assert not errors
    return root


# the small, fast training every test starts from; Hydra refuses a key given twice, so a
# test changes these through train_overrides(..., **{"key": value}), not by appending
TRAIN_OVERRIDES = {
    "data": "store",
    "data.num_workers": 0,
    "data.persistent_workers": "false",
    "data.samples_per_epoch": 64,
    "data.batch_size": 32,
    "data.n_folds": 2,
    "model.net.input_size": 64,
    "trainer.accelerator": "cpu",
    "trainer.enable_progress_bar": "false",
}


def train_overrides(store, output_dir=None, **changes) -> list[str]:
    """Hydra overrides for a quick training on ``store`` (writing to ``output_dir`` unless
    None); ``"~key": None`` deletes a key."""
    where = {} if output_dir is None else {"paths.output_dir": output_dir}
    merged = {**TRAIN_OVERRIDES, "data.store": store, **where, **changes}
    return [key if key.startswith("~") else f"{key}={value}" for key, value in merged.items()]


@pytest.fixture(scope="session")
def quick_checkpoint(store, tmp_path_factory) -> Path:
    """A model trained for one short epoch on the test store, for tests where any model will
    do (they compare two routes to one answer, or need a network to run): trained once."""
    from painface.entry import compose_config
    from painface.training import train

    out = tmp_path_factory.mktemp("quick_model")
    changes = {"data.samples_per_epoch": 128, "trainer.max_epochs": 1, "logger": "csv", "~callbacks.gradcam": None}
    train(compose_config("train", train_overrides(store, out, **changes)))
    return next((out / "checkpoints").glob("epoch*.ckpt"))


@pytest.fixture
def compose(store, tmp_path):
    """Compose the training config as train.py would, pointed at the test store."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def _compose(*overrides, config_name="train"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = hydra_compose(
                config_name=config_name,
                overrides=[*train_overrides(store, tmp_path), *overrides],
            )
        return cfg

    return _compose


# shared by the analysis, report, render and notebook tests
ANALYSIS_STUDY = {
    "name": "t",
    "analysis": {
        "group_column": "treatment",
        "control": "ac",
        "order": ["ac", "b6"],
        "windows": {"pre": [-1, 0], "post": [0, 1]},
        "summary_window": "post",
    },
}


def fake_predictions(store, tmp_path, p=None):
    """Predictions with known probabilities: 0.9 for post crops, 0.2 for pre crops."""
    import numpy as np

    from painface.predictions import write_predictions
    from painface.store import read_index, store_meta

    idx = read_index(store)
    pp = np.where(idx["phase"] == "post", 0.9, 0.2) if p is None else p(idx)
    pred = idx[
        ["crop_id", "session_id", "mouse_id", "treatment", "phase", "camera", "frame", "time_s", "label"]
    ].assign(p_pain=pp, p_no_pain=1 - pp)
    path = tmp_path / "pred.parquet"
    write_predictions(pred, path, {"store_id": store_meta(store)["store_id"], "checkpoint": "none"})
    return path


def analysis_study_file(tmp_path, **change):
    doc = yaml.safe_load(yaml.safe_dump(ANALYSIS_STUDY))
    doc["analysis"].update(change)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def lab_folder(manifest: Path, dest: Path) -> Path:
    """The synthetic study as a lab has it: renamed videos, DeepLabCut-named keypoints, an
    animals.xlsx, and no manifest or ground truth."""
    import pandas as pd

    from painface.manifest import read_manifest

    m = read_manifest(manifest)
    (dest / "videos").mkdir(parents=True)
    (dest / "keypoints").mkdir()
    for _, r in m.iterrows():
        stem = f"{r.mouse_id}_{r.phase}_{r.camera}"
        shutil.copyfile(r.video, dest / "videos" / f"{stem}.mp4")
        shutil.copyfile(r.keypoints, dest / "keypoints" / f"{stem}DLC_resnet50_faceNov4shuffle1_100000.h5")
    animals = m.drop_duplicates("mouse_id")[["mouse_id", "sex", "strain", "treatment"]]
    animals = pd.concat(
        [animals, pd.DataFrame([{"mouse_id": "never_filmed", "sex": "male", "strain": "BALB/c", "treatment": "ac"}])]
    )
    animals.to_excel(dest / "animals.xlsx", index=False)
    (dest / "videos" / "notes_about_day1.mp4").write_bytes(b"")  # not a recording: reported, not used
    return dest
