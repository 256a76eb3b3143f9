"""Bad input through the real command lines: a non-zero exit, one stderr line naming the
file, key or row, no traceback, and nothing written that looks complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT

PAINFACE = [sys.executable, "-c", "import sys; from painface.cli import main; sys.exit(main())"]


def _run(cmd, cwd=None):
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=cwd, env={**__import__("os").environ, "WANDB_MODE": "offline"}
    )


def _one_error_line(r, *names, code=1):
    """Exit status, exactly one line that says error (progress bars aside), naming each of ``names``."""
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, r.stderr[-2000:]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def good_manifest(manifest, tmp_path_factory):
    """Two rows of the test study with absolute paths, and a copy of their keypoint files."""
    m = pd.read_csv(manifest).head(2)
    for col in ("video", "keypoints"):
        m[col] = [str(manifest.parent / p) for p in m[col]]
    return m


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A valid (untrained) painface checkpoint at 64 px."""
    import lightning as L

    from painface.models import PainClassifier

    path = tmp_path_factory.mktemp("ck") / "model.ckpt"
    m = PainClassifier(net={"name": "paper", "input_size": 64})
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_progress_bar=False)
    trainer.strategy.connect(m)
    trainer.save_checkpoint(path)
    return path


def _manifest_case(tmp_path, good, change):
    m = good.copy()
    change(m, tmp_path)
    path = tmp_path / "m.csv"
    m.to_csv(path, index=False)
    return path


def _kp_copy(m, tmp_path, edit):
    """Rewrite the first row's keypoint file (h5) with ``edit`` applied to its table."""
    src = m.at[0, "keypoints"]
    df = pd.read_hdf(src, "df_with_missing")
    edit(df)
    dst = tmp_path / Path(src).name
    df.to_hdf(dst, key="df_with_missing", format="table", mode="w")
    m.at[0, "keypoints"] = str(dst)


def _set_first(col, value):
    def change(m, _):
        m[col] = m[col].astype(object) if col in m else None
        m.at[0, col] = value

    return change


MANIFEST_CASES = {
    "fps zero": (_set_first("fps", 0), ["m.csv", "row 2", "fps"]),
    "fps negative": (_set_first("fps", -5), ["m.csv", "row 2", "fps"]),
    "fps not a number": (_set_first("fps", "fast"), ["m.csv", "row 2", "fps"]),
    "fps infinite": (_set_first("fps", "inf"), ["m.csv", "row 2", "fps"]),
    "treatment time nan": (_set_first("treatment_time_s", "nan"), ["m.csv", "row 2", "treatment_time_s"]),
    "unknown phase": (_set_first("phase", "during"), ["m.csv", "row 2", "phase"]),
    "unknown label": (_set_first("label", "maybe"), ["m.csv", "row 2", "label"]),
    "empty session id": (_set_first("session_id", ""), ["m.csv", "row 2", "session_id"]),
    "missing column": (lambda m, _: m.drop(columns=["fps"], inplace=True), ["m.csv", "fps"]),
    "header only": (lambda m, _: m.drop(m.index, inplace=True), ["m.csv", "no rows"]),
    "colliding session names": (
        lambda m, _: m.__setitem__("session_id", ["m01 pre", "m01_pre"]) or m.__setitem__("camera", ["cam1", "cam1"]),
        ["m.csv", "m01 pre", "m01_pre"],
    ),
    "duplicate session and camera": (
        lambda m, _: m.__setitem__("camera", ["cam1", "cam1"]) or m.__setitem__("session_id", ["s", "s"]),
        ["m.csv", "duplicate"],
    ),
    "likelihood above 1": (
        lambda m, t: _kp_copy(m, t, lambda df: df.__setitem__([c for c in df.columns if c[2] == "likelihood"][0], 5.0)),
        ["DLC", "likelihood 5", "outside [0, 1]"],
    ),
    "negative likelihood": (
        lambda m, t: _kp_copy(
            m, t, lambda df: df.__setitem__([c for c in df.columns if c[2] == "likelihood"][0], -0.5)
        ),
        ["DLC", "outside [0, 1]"],
    ),
    "NaN coordinate at likelihood 1": (
        lambda m, t: _kp_copy(
            m,
            t,
            lambda df: (
                df.__setitem__([c for c in df.columns if c[2] == "likelihood"][0], 1.0),
                df.__setitem__([c for c in df.columns if c[2] == "x"][0], np.nan),
            ),
        ),
        ["DLC", "not finite"],
    ),
    "missing body part": (
        lambda m, t: _kp_copy(
            m, t, lambda df: df.drop(columns=[c for c in df.columns if c[1] == "nose"], inplace=True)
        ),
        ["DLC", "'nose'"],
    ),
    "keypoint file missing": (_set_first("keypoints", "/nonexistent/kp.h5"), ["kp.h5"]),
    "video missing": (_set_first("video", "/nonexistent/v.mp4"), ["v.mp4"]),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_bad_manifest_or_keypoints(case, good_manifest, tmp_path):
    change, names = MANIFEST_CASES[case]
    path = _manifest_case(tmp_path, good_manifest, change)
    r = _run([*PAINFACE, "extract", str(path), "--store", str(tmp_path / "store"), "--workers", "1"])
    _one_error_line(r, *names)
    parts = tmp_path / "store" / "parts"
    if parts.exists():  # a failed video publishes nothing
        assert not [p for p in parts.iterdir() if p.name.startswith(".tmp-")]


EXTRACT_OPTIONS = {
    "crop size zero": (["--crop-size", "0"], ["--crop-size"]),
    "threshold above 1": (["--threshold", "1.5"], ["--threshold"]),
    "jpeg quality zero": (["--jpeg-quality", "0"], ["--jpeg-quality"]),
    "zero workers": (["--workers", "0"], ["--workers"]),
    "bad body-part map": (["--bodypart-map", "nose"], ["--bodypart-map"]),
    "unknown face point": (["--bodypart-map", "chin=snout"], ["--bodypart-map", "chin"]),
}


@pytest.mark.parametrize("case", list(EXTRACT_OPTIONS))
def test_bad_extract_options_write_nothing(case, good_manifest, tmp_path):
    args, names = EXTRACT_OPTIONS[case]
    good_manifest.to_csv(tmp_path / "m.csv", index=False)
    r = _run([*PAINFACE, "extract", str(tmp_path / "m.csv"), "--store", str(tmp_path / "store"), *args])
    _one_error_line(r, *names)
    assert not (tmp_path / "store" / "store.json").exists(), "a bad option must not create the store"


def _ckpt_file(kind, tmp_path, ckpt):
    path = tmp_path / f"{kind}.ckpt"
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 255, 4096, np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is a README, not a checkpoint\n")
    elif kind == "no_net_settings":
        import torch

        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        ck["hyper_parameters"]["net"].pop("input_size")
        torch.save(ck, path)
    elif kind == "missing":
        pass
    return path


CKPT_KINDS = ["garbage", "empty", "text", "no_net_settings", "missing"]


@pytest.mark.parametrize("kind", CKPT_KINDS)
def test_bad_checkpoint_for_score(kind, ckpt, store, tmp_path):
    bad = _ckpt_file(kind, tmp_path, ckpt)
    r = _run([*PAINFACE, "score", "--ckpt-path", str(bad), "--store", str(store), "--out", str(tmp_path / "p.parquet")])
    _one_error_line(r, bad.name)
    assert not (tmp_path / "p.parquet").exists()


@pytest.mark.parametrize("kind", ["garbage", "empty", "text", "no_net_settings"])
@pytest.mark.parametrize("script", ["eval.py", "predict.py", "train.py"])
def test_bad_checkpoint_for_the_hydra_scripts(script, kind, ckpt, store, tmp_path):
    bad = _ckpt_file(kind, tmp_path, ckpt)
    extra = {
        "predict.py": [f"out={tmp_path / 'p.parquet'}"],
        "eval.py": ["data=store", "data.n_folds=2"],
        "train.py": ["data=store", "data.n_folds=2", "model.net.input_size=64"],
    }[script]
    out = [] if script == "predict.py" else [f"paths.output_dir={tmp_path / 'out'}"]
    r = _run(
        [
            sys.executable,
            str(ROOT / script),
            f"ckpt_path={bad}",
            f"data.store={store}",
            *extra,
            f"hydra.run.dir={tmp_path / 'run'}",
            *out,
        ],
        cwd=tmp_path,
    )
    line = _one_error_line(r, bad.name)
    assert line.startswith("error:")


TRAIN_KEYS = {
    "data.samples_per_epoch=0": "data.samples_per_epoch",
    "data.batch_size=0": "data.batch_size",
    "data.num_workers=-1": "data.num_workers",
    "data.n_folds=-2": "data.n_folds",
    "model.net.input_size=16": "model.net.input_size",
    "data.min_sharpness=-1": "data.min_sharpness",
    "data.test_fold=0": "data.test_fold",
}


@pytest.mark.parametrize("override", list(TRAIN_KEYS))
def test_bad_training_values_name_the_key(override, store, tmp_path):
    r = _run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "data=store",
            f"data.store={store}",
            "data.n_folds=2",
            "model.net.input_size=64",
            "trainer.max_epochs=1",
            override,
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
    )
    _one_error_line(r, TRAIN_KEYS[override])
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_corrupt_index_under_train_and_score(store, ckpt, tmp_path):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    part = sorted((copy / "parts").iterdir())[0]
    (part / "index.parquet").write_bytes(b"PAR1 this is not parquet")
    r = _run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "data=store",
            f"data.store={copy}",
            "data.n_folds=2",
            "model.net.input_size=64",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
    )
    _one_error_line(r, f"{part.name}/index.parquet")
    r = _run([*PAINFACE, "score", "--ckpt-path", str(ckpt), "--store", str(copy), "--out", str(tmp_path / "p.parquet")])
    _one_error_line(r, f"{part.name}/index.parquet")


def test_resuming_another_network_names_the_key(ckpt, store, tmp_path):
    r = _run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "data=store",
            f"data.store={store}",
            "data.n_folds=2",
            "model=resnet18",
            f"ckpt_path={ckpt}",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
    )
    _one_error_line(r, "model.net.name", "paper")


def test_eval_says_which_network_it_evaluates(ckpt, store, tmp_path):
    r = _run(
        [
            sys.executable,
            str(ROOT / "eval.py"),
            f"ckpt_path={ckpt}",
            "data=store",
            f"data.store={store}",
            "model=resnet18",
            "+trainer.limit_test_batches=1",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "evaluating the checkpoint's own network (paper, 64 px), not model=resnet18" in r.stderr


def test_predict_py_on_a_folder_with_a_corrupt_image(ckpt, tmp_path):
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), np.full((80, 80, 3), 128, np.uint8))
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    r = _run(
        [
            sys.executable,
            str(ROOT / "predict.py"),
            f"ckpt_path={ckpt}",
            f"images={folder}",
            f"out={tmp_path / 'p.parquet'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
    )
    _one_error_line(r, "bad.jpg", "corrupt or unreadable image")
    assert not (tmp_path / "p.parquet").exists()


def test_other_commands(ckpt, store, tmp_path):
    r = _run(
        [
            *PAINFACE,
            "explain",
            "--ckpt-path",
            str(ckpt),
            "--store",
            str(store),
            "--out",
            str(tmp_path / "x"),
            "--n",
            "0",
        ]
    )
    _one_error_line(r, "--n")
    r = _run(
        [
            *PAINFACE,
            "score",
            "--ckpt-path",
            str(ckpt),
            "--store",
            str(store),
            "--out",
            str(tmp_path / "p.parquet"),
            "--temperature",
            "abc",
        ]
    )
    _one_error_line(r, "--temperature", "'abc'")
    r = _run(
        [
            sys.executable,
            str(ROOT / "predict.py"),
            f"ckpt_path={ckpt}",
            f"data.store={store}",
            "temperature=auto",
            f"out={tmp_path / 'p.parquet'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
    )
    _one_error_line(r, "calibration.json")
    study = tmp_path / "study.yaml"
    study.write_text(json.dumps({"analysis": {"windows": {"pre": [30, 0]}, "summary_window": "pre"}}))
    r = _run(
        [
            *PAINFACE,
            "analyze",
            str(study),
            "--predictions",
            str(tmp_path / "none.parquet"),
            "--store",
            str(store),
            "--out",
            str(tmp_path / "a"),
        ]
    )
    _one_error_line(r, "study.yaml", "analysis.windows.pre")


def test_a_second_writer_fails_cleanly_and_the_first_finishes(good_manifest, tmp_path):
    from painface.store import read_index, writer_lock

    good_manifest.to_csv(tmp_path / "m.csv", index=False)
    root = tmp_path / "store"
    with writer_lock(root):  # another run holds the store
        r = _run([*PAINFACE, "extract", str(tmp_path / "m.csv"), "--store", str(root), "--crop-size", "32"])
        _one_error_line(r, str(root), "another painface process")
    r = _run([*PAINFACE, "extract", str(tmp_path / "m.csv"), "--store", str(root), "--crop-size", "32"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(read_index(root)) > 0


def test_key_value_option_values_are_not_rewritten(manifest, store, tmp_path):
    """--bodypart-map nose=snout and --query "phase=='post'" reach their options intact."""
    from painface.store import read_index

    m = pd.read_csv(manifest).head(2)
    for col in ("video", "keypoints"):
        m[col] = [str(manifest.parent / p) for p in m[col]]
    m.to_csv(tmp_path / "m.csv", index=False)
    r = _run(
        [
            *PAINFACE,
            "extract",
            str(tmp_path / "m.csv"),
            "--store",
            str(tmp_path / "s"),
            "--crop-size",
            "32",
            "--bodypart-map",
            "nose=nose",
            "right_eye=right_eye",
            "left_eye=left_eye",
        ]
    )
    assert r.returncode == 0, r.stderr[-1500:]
    r = _run(
        [
            *PAINFACE,
            "store",
            "export",
            str(store),
            "--out",
            str(tmp_path / "x"),
            "--n",
            "1000",
            "--query",
            "phase=='post'",
        ]
    )
    assert r.returncode == 0, r.stderr[-1500:]
    assert len(list((tmp_path / "x").glob("*.png"))) == int((read_index(store)["phase"] == "post").sum())


def test_model_export_round_trip_without_pickle(compose, store, tmp_path):
    """A trained run -> painface model export -> painface score --model: the same
    probabilities as the checkpoint; the config and card describe the training data."""
    from painface.training import train

    train(
        compose(
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=2",
            "~callbacks.gradcam",
            "logger=csv",
            "data.strains=[BALB/c]",
        )
    )
    run = tmp_path
    r = _run([*PAINFACE, "model", "export", str(run), "--out", str(tmp_path / "bundle")])
    assert r.returncode == 0, r.stderr[-1500:]
    cfg = json.loads((tmp_path / "bundle" / "config.json").read_text())
    data = cfg["provenance"]["training_data"]
    assert cfg["net"]["input_size"] == 64 and data["crop_size"] == 64 and data["strains"] == ["BALB/c"]
    assert "BALB/c" in (tmp_path / "bundle" / "MODEL_CARD.md").read_text()
    ckpt = json.loads((run / "metrics.json").read_text())["checkpoint"]
    a = _run([*PAINFACE, "score", "--ckpt-path", ckpt, "--store", str(store), "--out", str(tmp_path / "a.parquet")])
    b = _run(
        [
            *PAINFACE,
            "score",
            "--model",
            str(tmp_path / "bundle"),
            "--store",
            str(store),
            "--out",
            str(tmp_path / "b.parquet"),
        ]
    )
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-800:], b.stderr[-800:])
    pa, pb = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    np.testing.assert_allclose(pa["p_pain"], pb["p_pain"], atol=1e-6)
    # the test store also holds C57BL/6 mice, which this model never saw: said in one line
    assert "strain(s) C57BL/6 the model never saw" in b.stderr
    (tmp_path / "bundle" / "model.safetensors").write_bytes(b"broken")
    r = _run(
        [
            *PAINFACE,
            "score",
            "--model",
            str(tmp_path / "bundle"),
            "--store",
            str(store),
            "--out",
            str(tmp_path / "c.parquet"),
        ]
    )
    _one_error_line(r, "model.safetensors")


def test_command_line_conventions():
    from painface import __version__

    r = _run([sys.executable, "-m", "painface", "--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"painface {__version__}"
    r = _run([sys.executable, "-m", "painface"])  # no command: the help, not an error
    assert r.returncode == 0 and "usage: painface" in r.stdout and "extract" in r.stdout
    r = _run([sys.executable, "-m", "painface", "extract", "--help"])
    assert r.returncode == 0 and "(default: 2)" in r.stdout  # defaults shown


def test_every_sub_command_help_shows_every_default():
    import argparse

    from painface.cli import build_parser

    def walk(parser, name):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for key, sub in subs[0].choices.items():
                yield from walk(sub, f"{name} {key}")
        else:
            yield name, parser

    checked = 0
    for name, parser in walk(build_parser(), "painface"):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and action.help:
                shown = action.default if not isinstance(action.default, list) else action.default
                assert f"(default: {shown})" in text, f"{name} {action.option_strings[0]}: default not in --help"
                checked += 1
    assert checked > 30  # the commands have about 35 options with defaults


def test_score_query_leaves_blurred_crops_out(ckpt, store, tmp_path):
    from painface.store import read_index

    idx = read_index(store)
    cut = float(idx["sharpness"].median())
    r = _run(
        [
            *PAINFACE,
            "score",
            "--ckpt-path",
            str(ckpt),
            "--store",
            str(store),
            "--out",
            str(tmp_path / "p.parquet"),
            "--query",
            f"sharpness >= {cut}",
        ]
    )
    assert r.returncode == 0, r.stderr[-1000:]
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == int((idx["sharpness"] >= cut).sum())


def test_a_full_disk_names_the_video_and_leaves_no_temporaries(good_manifest, tmp_path):
    """A file-size limit stands in for a full disk: every write past it fails with an OSError."""
    import resource

    good_manifest.to_csv(tmp_path / "m.csv", index=False)
    root = tmp_path / "store"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # 20 kB: store.json fits, the crops do not

    r = subprocess.run(
        [*PAINFACE, "extract", str(tmp_path / "m.csv"), "--store", str(root), "--crop-size", "64", "--workers", "1"],
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-1500:]
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == len(good_manifest), errors  # one line per video, naming it
    for video, line in zip(sorted(good_manifest["video"]), sorted(errors)):
        assert Path(video).name in line and "cannot write its part" in line, line
    assert not list((root / "parts").glob(".tmp-*")) and not [p for p in (root / "parts").iterdir()]


def test_commands_that_load_a_checkpoint_print_no_lightning_banner(ckpt, store, tmp_path):
    r = _run(
        [*PAINFACE, "score", "--ckpt-path", str(ckpt), "--store", str(store), "--out", str(tmp_path / "p.parquet")]
    )
    assert r.returncode == 0 and "GPU available" not in r.stderr and "Tip:" not in r.stderr, r.stderr[-800:]


def test_eval_on_a_store_with_fewer_mice_than_folds(ckpt, store, tmp_path):
    from painface.store import read_index

    mice = sorted(read_index(store)["mouse_id"].unique())[:3]
    r = _run(
        [
            sys.executable,
            str(ROOT / "eval.py"),
            f"ckpt_path={ckpt}",
            "data=store",
            f"data.store={store}",
            "model.net.input_size=64",
            f"data.mice=[{','.join(mice)}]",
            "+trainer.limit_test_batches=1",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-1500:]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["test_on"] == "every selected mouse of the store"


def test_folder_notes_for_non_square_and_greyscale_images(tmp_path):
    import cv2

    from painface.predict import folder_notes

    cv2.imwrite(str(tmp_path / "wide.png"), np.full((40, 80, 3), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((50, 50), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "ok.png"), np.full((50, 50, 3), 100, np.uint8))
    notes = folder_notes(sorted(tmp_path.glob("*.png")))
    assert len(notes) == 2
    assert "1 image(s) are not square" in notes[0] and "wide.png" in notes[0]
    assert "1 image(s) are greyscale" in notes[1] and "grey.png" in notes[1]
