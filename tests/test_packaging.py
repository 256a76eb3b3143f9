"""A wheel built from the repository works on its own: installed into a fresh environment,
outside any clone, it trains (configs and experiments ship inside the package) and runs a
project."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, lab_folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv holding the built wheel; its dependencies come from the test
    environment's site-packages (added as a path, so no editable painface comes with it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next((tmp / "dist").glob("painface-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return venv


def _run(venv, *args, cwd, timeout=900):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [str(venv / "bin" / "painface"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def test_the_wheel_is_used_not_the_clone(installed, tmp_path):
    r = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import painface; print(painface.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert str(installed) in r.stdout and str(ROOT / "src") not in r.stdout
    version = _run(installed, "--version", cwd=tmp_path)
    assert version.stdout.startswith("painface ")


@pytest.mark.slow
def test_the_installed_wheel_trains_from_its_packaged_configs(installed, tmp_path):
    # data=synthetic (the default) builds its store from experiments/train_balbc.yaml, shipped in the wheel
    r = _run(
        installed,
        "train",
        "debug=fdr",
        "data.build.mice_per_group=2",
        "data.build.pre_min=0.1",
        "data.build.post_min=0.1",
        "+data.build.width=320",
        "+data.build.height=180",
        "+data.build.fps=5",
        "data.n_folds=2",
        "model.net.input_size=64",
        "trainer.enable_progress_bar=false",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "data" / "synthetic" / "store" / "store.json").exists()
    assert list((tmp_path / "logs" / "train" / "runs").glob("*/train.log"))


@pytest.mark.slow
def test_the_installed_wheel_runs_a_project(installed, manifest, quick_checkpoint, tmp_path):
    ckpt = quick_checkpoint  # trained by the clone: the installed wheel must read its checkpoints
    project = lab_folder(manifest, tmp_path / "study")
    assert (
        _run(installed, "init", project, "--pattern", "{mouse_id}_{phase}_{camera}.mp4", cwd=tmp_path).returncode == 0
    )
    doc = yaml.safe_load((project / "painface.yaml").read_text())
    doc.update(
        animals="animals.xlsx",
        analysis={
            "group_column": "treatment",
            "control": "ac",
            "order": ["ac", "b6"],
            "windows": {"post": [0, 1]},
            "summary_window": "post",
        },
    )
    doc["model"]["checkpoint"] = str(ckpt)
    doc["extract"].update(crop_size=64, workers=2)
    (project / "painface.yaml").write_text(yaml.safe_dump(doc))
    r = _run(installed, "run", project, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (project / "results" / "report.html").exists() and (project / "results" / "results.xlsx").exists()
