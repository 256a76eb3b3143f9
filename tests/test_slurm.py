"""painface on a real SLURM cluster: a single node with accounting, started on this machine
by scripts/local-slurm (make test starts it through this fixture and stops it after)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from painface import store as st
from painface.cluster import ClusterConfig
from painface.extract import ExtractConfig, extract
from tests.conftest import ROOT, train_overrides

SCRIPT = ROOT / "scripts" / "local-slurm"
SMALL = dict(executor="slurm", cpus_per_task=1, mem_gb=1, time_min=10)


@pytest.fixture(scope="session")
def slurm():
    r = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if r.returncode == 3:  # only where the machine cannot run it: not root, or no apt
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-2000:]
    yield
    subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


def _parts(root: Path) -> dict:
    """Each part's index and crop bytes: what two stores must share to be the same store."""
    out = {}
    for part in sorted((root / st.PARTS).iterdir()):
        if not part.name.startswith("."):
            idx = pd.read_parquet(part / "index.parquet")
            out[part.name] = (
                idx.drop(columns=[c for c in idx.columns if c == "part"]).to_json(),
                (part / "crops.bin").read_bytes() if (part / "crops.bin").exists() else b"",
            )
    return out


def test_extract_as_a_job_array_equals_the_local_store(slurm, manifest, store, tmp_path):
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    root = tmp_path / "s"
    summary, errors = extract(
        manifest,
        root,
        ExtractConfig(crop_size=64, workers=2),
        show_progress=False,
        cluster=ClusterConfig(**SMALL, videos_per_task=4),
    )
    assert not errors
    assert _parts(root) == _parts(store)
    assert _completed("extract", since, want=8) == 8  # 32 videos, 4 per array task: the work ran on SLURM


def test_a_cancelled_array_resumes_without_redoing_finished_videos(slurm, manifest, store, tmp_path):
    root = tmp_path / "s"
    cmd = [
        sys.executable,
        "-m",
        "painface",
        "extract",
        str(manifest),
        "--store",
        str(root),
        "--crop-size",
        "64",
        "--executor",
        "slurm",
        "--cpus-per-task",
        "1",
        "--mem-gb",
        "1",
        "--array-parallelism",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((root / st.PARTS).glob("[!.]*"))) < 2:  # two videos finished
        time.sleep(0.2)
    arrays = subprocess.run(
        ["squeue", "-h", "-n", "extract", "-o", "%F"], capture_output=True, text=True
    ).stdout.split()
    assert arrays, "no extraction array in the queue"
    subprocess.run(["scancel", *set(arrays)], check=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "re-run to extract it" in err
    finished = {p.name: (p / "summary.json").stat().st_mtime_ns for p in (root / st.PARTS).glob("[!.]*")}
    assert 2 <= len(finished) < 32
    again = subprocess.run(cmd[:-2] + ["--array-parallelism", "8"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {n: (root / st.PARTS / n / "summary.json").stat().st_mtime_ns for n in finished} == finished
    assert _parts(root) == _parts(store)


def _fast_overrides(store, tmp_path):
    return train_overrides(
        store,
        **{
            "trainer.max_epochs": 1,
            "logger": "csv",
            "~callbacks.gradcam": None,
            "paths.log_dir": tmp_path / "logs",
        },
    )


def test_a_hydra_sweep_runs_as_slurm_jobs(slurm, store, tmp_path):
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            "hydra/launcher=slurm",
            "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.tasks_per_node=1",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=20",
            "seed=1,2",
            *_fast_overrides(store, tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "offline"},
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((tmp_path / "logs" / "train" / "multiruns").glob("*/[01]"))
    assert [p.name for p in runs] == ["0", "1"]  # where a local sweep puts them
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())["metrics"]
        assert 0 <= metrics["test/acc"] <= 1
        assert list((run / "checkpoints").glob("epoch*.ckpt"))
    assert _completed("train", since, want=2) == 2


def _completed(name: str, since: str, want: int) -> int:
    """Jobs called ``name`` that accounting shows COMPLETED since ``since`` (it may lag the
    result files by a moment)."""
    for _ in range(60):
        out = subprocess.run(
            ["sacct", "-n", "-X", "-S", since, "-o", "JobName,State", "-P"], capture_output=True, text=True
        ).stdout
        if out.count(f"{name}|COMPLETED") >= want:
            break
        time.sleep(0.5)
    return out.count(f"{name}|COMPLETED")


@pytest.fixture(scope="module")
def ckpt(quick_checkpoint):
    return quick_checkpoint


def test_two_srun_tasks_count_every_test_image_once(slurm, store, ckpt, tmp_path):
    """Lightning's SLURM environment: srun starts 2 gloo ranks; the synced confusion counts
    equal one process's counts on the same data (DistributedSampler pads an odd count by one)."""
    from painface.store import read_index

    common = [
        f"ckpt_path={ckpt}",
        "data=store",
        f"data.store={store}",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.batch_size=32",
        "logger=csv",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]
    single = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), *common, f"hydra.run.dir={tmp_path / 'one'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    script = tmp_path / "ddp.sh"
    script.write_text(
        "#!/bin/bash\n"
        + " ".join(
            [
                "srun",
                sys.executable,
                str(ROOT / "eval.py"),
                *common,
                "trainer.devices=2",
                "+trainer.strategy=ddp",
                "+trainer.num_nodes=1",
                f"hydra.run.dir={tmp_path / 'two'}",
            ]
        )
        + "\n"
    )
    r = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--ntasks=2",
            "--ntasks-per-node=2",
            "--cpus-per-task=1",
            "--mem=4G",
            "-o",
            str(tmp_path / "ddp.out"),
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, (tmp_path / "ddp.out").read_text()[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["metrics"]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["metrics"]
    cells = ("tn", "fp", "fn", "tp")
    n = len(read_index(store))
    assert sum(one[f"test/confmat_{c}"] for c in cells) == n
    assert sum(two[f"test/confmat_{c}"] for c in cells) == n + n % 2
    if n % 2 == 0:
        assert all(one[f"test/confmat_{c}"] == two[f"test/confmat_{c}"] for c in cells)
    assert "[rank: 1]" in (tmp_path / "ddp.out").read_text()  # two ranks, from SLURM's environment


def test_painface_run_on_slurm_equals_the_local_run(slurm, manifest, ckpt, tmp_path):
    import yaml

    from painface.pipeline import run_project
    from tests.conftest import lab_folder

    results = {}
    for executor in ("local", "slurm"):
        project = lab_folder(manifest, tmp_path / executor / "study")
        subprocess.run(
            [sys.executable, "-m", "painface", "init", str(project), "--pattern", "{mouse_id}_{phase}_{camera}.mp4"],
            check=True,
            capture_output=True,
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
        doc["cluster"].update(executor=executor, cpus_per_task=1, mem_gb=2, time_min=20, videos_per_task=8)
        (project / "painface.yaml").write_text(yaml.safe_dump(doc))
        run_project(project, show_progress=False)
        results[executor] = project
    assert _parts(results["local"] / "store") == _parts(results["slurm"] / "store")
    for name in ("per_minute.csv", "per_animal.csv", "statistics.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(results["local"] / "results" / name), pd.read_csv(results["slurm"] / "results" / name)
        )
    assert list((results["slurm"] / "predictions" / ".submitit").iterdir())  # scoring ran as a SLURM job
