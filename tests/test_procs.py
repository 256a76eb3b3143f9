"""Child processes end with the painface process that started them (SIGKILL, SIGINT, SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from painface import store as st

PAINFACE = [sys.executable, "-c", "import sys; from painface.cli import main; sys.exit(main())"]


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid``, read from /proc."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents.setdefault(int(fields[1]), []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(p)
    return alive


def _wait_for_workers(proc, n: int, timeout: float = 60) -> set[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        kids = _children(proc.pid)
        if len(kids) >= n:
            time.sleep(1.0)  # let them start on a video
            kids = _children(proc.pid)
            assert len(kids) >= n and proc.poll() is None, "the workers ended early"
            return kids
        assert proc.poll() is None, f"the extraction ended before its workers started: {proc.stderr.read()}"
        time.sleep(0.05)
    pytest.fail(f"no {n} worker processes after {timeout} s")


def _wait_gone(pids: set[int], timeout: float = 10) -> set[int]:
    end = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < end:
        time.sleep(0.1)
    return _alive(pids)


def _start_extract(manifest: Path, root: Path, tmp_path: Path):
    # the test study's videos, each listed 20 times as its own session: long enough to be killed mid-way
    m = pd.read_csv(manifest)
    for col in ("video", "keypoints"):  # paths in a manifest are relative to its folder
        m[col] = [str(manifest.parent / p) for p in m[col]]
    m = pd.concat([m.assign(session_id=m["session_id"] + f"_r{k}") for k in range(20)], ignore_index=True)
    m.to_csv(tmp_path / "m.csv", index=False)
    cmd = [*PAINFACE, "extract", str(tmp_path / "m.csv"), "--store", str(root), "--crop-size", "32", "--workers", "2"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkilled_extraction_leaves_no_orphan_workers(manifest, tmp_path):
    proc = _start_extract(manifest, tmp_path / "store", tmp_path)
    kids = _wait_for_workers(proc, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _wait_gone(kids), f"orphaned workers still running: {_alive(kids)}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_extraction_stops_promptly_and_leaves_only_whole_parts(manifest, tmp_path, sig):
    root = tmp_path / "store"
    proc = _start_extract(manifest, root, tmp_path)
    kids = _wait_for_workers(proc, 2)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10, "the extraction did not stop promptly"
    assert proc.returncode in (130, 128 + sig), (proc.returncode, err)
    assert not _wait_gone(kids, 5), f"workers still running: {_alive(kids)}"
    assert not list((root / "parts").glob(st.TMP_PREFIX + "*")), "half-written parts left behind"
    for part in st.finished_units(root):  # whatever was published is complete: index and summary agree
        summary = pd.read_json(root / "parts" / part / "summary.json", typ="series")
        index = pd.read_parquet(root / "parts" / part / "index.parquet")
        assert len(index) == summary["faces"], part


def test_a_running_writers_temporary_is_not_cleaned(tmp_path):
    parts = tmp_path / "parts"
    live = parts / f"{st.TMP_PREFIX}s1_cam1-{os.getppid()}"  # our parent: alive
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = parts / f"{st.TMP_PREFIX}s2_cam1-{int(proc.stdout)}"  # a process that has ended
    live.mkdir(parents=True)
    dead.mkdir()
    assert st.clean_temporaries(tmp_path) == 1
    assert live.exists() and not dead.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_a_subprocess_started_with_subprocess_kwargs_dies_with_its_parent(tmp_path):
    """The DeepLabCut runner's subprocess (dlc._run) is started this way."""
    pidfile = tmp_path / "child.pid"
    child_code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    script = tmp_path / "parent.py"
    script.write_text(
        "import subprocess, sys, time\nfrom painface.procs import subprocess_kwargs\n"
        f"subprocess.Popen([sys.executable, '-c', {child_code!r}], **subprocess_kwargs())\ntime.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    end = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < end:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert _alive({child})
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert not _wait_gone({child}), "the subprocess outlived its parent"
