"""Shared fixtures: one small synthetic study and crop store per session, Hydra configs.

The store is built once (two BALB/c groups and one C57BL/6 group, short sessions,
strong signal) through the real path: render -> DLC files -> extract.
"""

from __future__ import annotations

import os
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
        "seed": 7, "fps": 10, "width": 320, "height": 180, "cameras": 2, "pre_min": 0.25, "post_min": 0.25,
        "zero_fraction": 0.0, "signal": 3.0,
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


@pytest.fixture
def compose(store, tmp_path):
    """Compose the training config as train.py would, pointed at the test store."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def _compose(*overrides, config_name="train"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=[
                "data=store", f"data.store={store}", f"paths.output_dir={tmp_path}", "data.num_workers=0",
                "data.persistent_workers=false", "data.samples_per_epoch=64", "data.batch_size=32", "data.n_folds=2",
                "model.net.input_size=64", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                *overrides])
        return cfg

    return _compose
