import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from painface import store as st
from painface.extract import ExtractConfig, extract
from painface.manifest import read_manifest, write_manifest


def test_store_holds_every_face_the_rules_accept(store, manifest):
    idx = st.read_index(store)
    rows = read_manifest(manifest)
    expected = 0
    for _, r in rows.iterrows():
        # independent count, with plain pandas on DeepLabCut's own layout: nose and >= 1 eye at >= 0.9
        like = pd.read_hdf(r["keypoints"]).xs("likelihood", axis=1, level="coords").droplevel(0, axis=1)
        expected += int(((like["nose"] >= 0.9) & ((like["right_eye"] >= 0.9) | (like["left_eye"] >= 0.9))).sum())
    assert len(idx) == expected
    assert set(idx.columns) >= set(st.INDEX_COLUMNS)
    assert idx["crop_id"].is_unique
    assert set(idx.loc[idx.phase == "pre", "label"]) == {"no_pain"} and set(idx.loc[idx.phase == "post", "label"]) == {
        "pain"
    }
    pre = idx[idx.phase == "pre"]
    assert (pre["time_s"] < 0).all()  # minutes before the injection are negative
    img = st.CropReader(store).read(*idx.iloc[0][["image", "offset", "nbytes"]])
    assert img.shape == (64, 64, 3) and img.std() > 5


def test_summary_counts_rules(store):
    s = st.read_summaries(store)
    assert (s["rule_i"] + s["rule_ii"] + s["rule_iii"] + s["rule_iv"] == s["frames"]).all()
    assert (s["faces"] == s["frames"] - s["rule_iv"]).all()


def _copy_manifest(manifest, tmp_path, n=None):
    df = read_manifest(manifest)
    if n:
        df = df.head(n)
    out = tmp_path / "m.csv"
    write_manifest(df, out)
    return out, df


def test_bad_videos_fail_alone(manifest, tmp_path):
    m, df = _copy_manifest(manifest, tmp_path, n=3)
    trunc = tmp_path / "trunc.mp4"
    data = open(df.loc[0, "video"], "rb").read()
    trunc.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    df.loc[0, "video"], df.loc[1, "video"] = str(trunc), str(empty)
    write_manifest(df, m)
    summary, errors = extract(m, tmp_path / "store", ExtractConfig(crop_size=32), show_progress=False)
    assert len(summary) == 1  # the good video still finished
    assert any("trunc.mp4" in e for e in errors) and any("empty.mp4" in e and "0 bytes" in e for e in errors)
    assert not list((tmp_path / "store" / "parts").glob(".tmp-*"))


def test_frame_count_mismatch_names_the_file(manifest, tmp_path):
    m, df = _copy_manifest(manifest, tmp_path, n=1)
    wide = pd.read_hdf(df.loc[0, "keypoints"])
    short = tmp_path / "shortDLC.h5"
    wide.iloc[:-5].to_hdf(short, key="df_with_missing", mode="w")
    df.loc[0, "keypoints"] = str(short)
    write_manifest(df, m)
    _, errors = extract(m, tmp_path / "store", ExtractConfig(crop_size=32), show_progress=False)
    assert len(errors) == 1 and "shortDLC.h5" in errors[0] and "frames" in errors[0]


def test_store_of_another_version_or_missing_images(store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    parts = sorted((copy / "parts").glob("*/crops.bin"))
    parts[0].unlink()
    with pytest.raises(st.StoreError, match="crops.bin"):
        st.read_index(copy)
    parts[0].parent.rename(copy / "removed")  # leave the other parts readable
    # a corrupt crop (bytes overwritten) names the file and the offset when it is read
    blob = next(b for b in (copy / "parts").glob("*/crops.bin") if b.stat().st_size)
    first = pd.read_parquet(blob.parent / "index.parquet").iloc[0]
    data = bytearray(blob.read_bytes())
    data[int(first["offset"]) : int(first["offset"]) + int(first["nbytes"])] = b"\0" * int(first["nbytes"])
    blob.write_bytes(bytes(data))
    with pytest.raises(st.StoreError, match=f"crops.bin: corrupt crop at offset {int(first['offset'])}"):
        st.CropReader(copy).read(first["image"], first["offset"], first["nbytes"])
    (copy / "store.json").write_text('{"schema_version": 99}')
    with pytest.raises(st.StoreError, match="schema version 99"):
        st.read_index(copy)


def _extract_cmd(manifest, root):
    code = (
        "import sys; from painface.extract import extract, ExtractConfig; "
        f"extract({str(manifest)!r}, {str(root)!r}, ExtractConfig(crop_size=32), show_progress=False)"
    )
    return [sys.executable, "-c", code]


def _snapshot(root):
    idx = st.read_index(root).sort_values("crop_id").reset_index(drop=True)
    reader = st.CropReader(root)
    images = [
        reader.read(*r, flags=cv2.IMREAD_UNCHANGED).tobytes() for r in idx[["image", "offset", "nbytes"]].to_numpy()
    ]
    return idx.drop(columns=["offset"]), images


@pytest.mark.slow
def test_killed_extraction_resumes_to_an_identical_store(manifest, tmp_path):
    m, _ = _copy_manifest(manifest, tmp_path, n=6)
    ref = tmp_path / "ref"
    subprocess.run(_extract_cmd(m, ref), check=True)
    root = tmp_path / "killed"
    rng = np.random.default_rng(0)
    for _ in range(5):
        proc = subprocess.Popen(_extract_cmd(m, root))
        time.sleep(float(rng.uniform(1.0, 3.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(_extract_cmd(m, root), check=True)
    a_idx, a_img = _snapshot(ref)
    b_idx, b_img = _snapshot(root)
    pd.testing.assert_frame_equal(a_idx, b_idx)
    assert a_img == b_img
    assert not list((root / "parts").glob(".tmp-*"))


@pytest.mark.slow
def test_two_concurrent_extractions_into_one_store(manifest, tmp_path):
    """Started together: one holds the store's lock and finishes, the other fails at once with
    one line; the store equals a single run's."""
    m, _ = _copy_manifest(manifest, tmp_path, n=6)
    ref = tmp_path / "ref"
    subprocess.run(_extract_cmd(m, ref), check=True)
    root = tmp_path / "both"
    procs = [subprocess.Popen(_extract_cmd(m, root), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 1]), results
    for code, err in results:
        if code:
            assert "another painface process is writing to this store" in err, err
    subprocess.run(_extract_cmd(m, root), check=True)  # completes whatever the loser left
    a_idx, a_img = _snapshot(ref)
    b_idx, b_img = _snapshot(root)
    pd.testing.assert_frame_equal(a_idx, b_idx)
    assert a_img == b_img


def test_select_index_filters_samples_and_names_bad_queries(store):
    full = st.read_index(store)
    post = st.select_index(store, "phase == 'post'")
    assert len(post) == (full["phase"] == "post").sum() and set(post["phase"]) == {"post"}
    picked = st.select_index(store, "phase == 'pre'", n=5, seed=3)
    assert len(picked) == 5 and picked["crop_id"].is_unique and set(picked["phase"]) == {"pre"}
    assert picked["crop_id"].tolist() == st.select_index(store, "phase == 'pre'", n=5, seed=3)["crop_id"].tolist()
    with pytest.raises(st.StoreError, match="query 'no_such_column == 1'"):
        st.select_index(store, "no_such_column == 1")
    with pytest.raises(st.StoreError, match="empty selection"):
        st.select_index(store, "phase == 'nope'")


def test_store_info_and_export_through_the_command_line(store, tmp_path):
    idx = pd.concat(pd.read_parquet(p) for p in (store / "parts").glob("*/index.parquet"))  # plain pandas
    r = subprocess.run(
        [sys.executable, "-m", "painface.cli", "store", "info", str(store)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert f"{len(idx)} crops" in r.stdout
    for mouse, count in idx["mouse_id"].value_counts().items():
        assert any(line.split() == [mouse, str(count)] for line in r.stdout.splitlines()), mouse
    out = tmp_path / "peek"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "painface.cli",
            "store",
            "export",
            str(store),
            "--out",
            str(out),
            "--n",
            "4",
            "--query",
            "label == 'pain'",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 4 and all(p.name.endswith("__pain.png") for p in pngs)
    # the PNG is the stored JPEG decoded, pixel for pixel
    p = pngs[0]
    crop_id = p.name[: -len("__pain.png")].replace("__", "/")
    row = idx.set_index("crop_id").loc[crop_id]
    raw = (store / row["image"]).read_bytes()[int(row["offset"]) : int(row["offset"]) + int(row["nbytes"])]
    stored = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(cv2.imread(str(p)), stored)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "painface.cli",
            "store",
            "export",
            str(store),
            "--out",
            str(out),
            "--query",
            "label == 'nope'",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "empty selection" in r.stderr


def test_a_4k_30fps_recording_renders_and_crops_800px_boxes(tmp_path):
    """The paper's format end to end: 3840x2160 at 30 fps, 800 px boxes (step 3)."""
    from painface.synthetic.recording import SessionSpec, make_mouse, render_session

    mouse = make_mouse("m4k", "male", "BALB/c", np.random.default_rng(1))
    spec = SessionSpec(
        "s4k_post",
        mouse,
        "post",
        "AC",
        seconds=0.2,
        fps=30,
        width=3840,
        height=2160,
        cameras=2,
        timeline=[(0, 0.8), (1, 0.8)],
        seed=3,
    )
    rows = render_session(spec, tmp_path / "videos")
    cap = cv2.VideoCapture(rows[0]["video"])
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (3840, 2160)
    assert cap.get(cv2.CAP_PROP_FPS) == 30 and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 6
    cap.release()
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    _, errors = extract(
        tmp_path / "manifest.csv", tmp_path / "store", ExtractConfig(crop_size=64, workers=1), show_progress=False
    )
    assert not errors
    idx = st.read_index(tmp_path / "store")
    assert len(idx) > 0 and set(idx["box_size"]) == {800}
    assert (idx["fps"] == 30).all()


def test_the_store_records_its_crop_rules_and_refuses_others(manifest, tmp_path):
    m, _ = _copy_manifest(manifest, tmp_path, n=1)
    root = tmp_path / "s"
    extract(m, root, ExtractConfig(crop_size=64, threshold=0.8), show_progress=False)
    assert st.store_meta(root)["extraction"] == {
        "threshold": 0.8,
        "crop_px": 800,
        "reference_rows": 2160,
        "bodypart_map": {},
    }
    # a second extraction with another threshold would mix two crop rules in one store
    with pytest.raises(st.StoreError, match="threshold = 0.8.*asks for 0.9"):
        extract(m, root, ExtractConfig(crop_size=64, threshold=0.9), show_progress=False)
