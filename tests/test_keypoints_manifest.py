import numpy as np
import pandas as pd
import pytest

from painface.keypoints import KeypointError, face_points, read_dlc, write_dlc
from painface.manifest import ManifestError, read_manifest
from tests.conftest import shared_data


def test_reads_real_analyze_videos_output_h5_and_csv():
    folder = shared_data("dlc-two-camera")
    h5 = folder / "vid1_camera-1DLC_resnet50_TESTNov4shuffle1_10.h5"
    tidy = read_dlc(h5)
    raw = pd.read_hdf(h5, "df_with_missing")  # DeepLabCut's own file, read with plain pandas
    scorer = raw.columns.get_level_values(0)[0]
    assert set(tidy["bodypart"]) == {"bodypart1", "bodypart2", "bodypart3", "objectA"}
    assert tidy["frame"].max() == len(raw) - 1
    sub = tidy[tidy.bodypart == "bodypart2"].sort_values("frame")
    np.testing.assert_allclose(sub["x"], raw[(scorer, "bodypart2", "x")])
    np.testing.assert_allclose(sub["likelihood"], raw[(scorer, "bodypart2", "likelihood")])
    csv = read_dlc(folder / "vid1_camera-1DLC_resnet50_TESTNov4shuffle1_10filtered.csv")
    assert set(csv["bodypart"]) == set(tidy["bodypart"]) and len(csv) == len(tidy)


def test_maps_body_parts_and_reports_missing_ones():
    folder = shared_data("dlc-two-camera")
    tidy = read_dlc(folder / "vid1_camera-2DLC_resnet50_TESTNov4shuffle2_10.h5")
    pts = face_points(tidy, {"nose": "bodypart1", "right_eye": "bodypart2", "left_eye": "bodypart3"})
    assert pts["nose"].shape == (12, 3)
    with pytest.raises(KeypointError, match="body part 'snout'"):
        face_points(tidy, {"nose": "snout"}, source="x.h5")


def test_reads_real_label_file_from_an_older_pandas():
    folder = shared_data("dlc-openfield", "labeled-data", "m4s1")
    tidy = read_dlc(folder / "CollectedData_Pranav.h5")
    assert set(tidy["bodypart"]) == {"snout", "leftear", "rightear", "tailbase"}
    assert tidy["frame"].nunique() == 116


def test_multi_animal_layout_and_writer_round_trip(tmp_path):
    pts = {
        "nose": np.array([[1.0, 2.0, 0.9], [3.0, 4.0, 0.5]]),
        "right_eye": np.zeros((2, 3)),
        "left_eye": np.ones((2, 3)),
    }
    h5, csv = write_dlc(pts, tmp_path / "video", "DLC_any_scorer")
    assert h5.name == "videoDLC_any_scorer.h5"
    np.testing.assert_allclose(face_points(read_dlc(h5))["nose"], pts["nose"])
    np.testing.assert_allclose(face_points(read_dlc(csv))["nose"], pts["nose"])
    cols = pd.MultiIndex.from_product(
        [["sc"], ["mouse1", "mouse2"], ["nose", "right_eye", "left_eye"], ["x", "y", "likelihood"]],
        names=["scorer", "individuals", "bodyparts", "coords"],
    )
    # values 0.00 .. 0.35: likelihoods must lie in [0, 1]
    wide = pd.DataFrame(np.arange(2 * 18, dtype=float).reshape(2, 18) / 100, columns=cols)
    wide.to_hdf(tmp_path / "ma.h5", key="df_with_missing", mode="w")
    got = face_points(read_dlc(tmp_path / "ma.h5", individual="mouse2"))
    np.testing.assert_allclose(got["nose"][0], [0.09, 0.10, 0.11])


def test_bad_dlc_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(KeypointError, match="broken.h5"):
        read_dlc(bad)


def _manifest(tmp_path, **change):
    row = {
        "session_id": "s1",
        "mouse_id": "m1",
        "sex": "male",
        "strain": "BALB/c",
        "treatment": "ac",
        "phase": "pre",
        "camera": "cam1",
        "video": "v.mp4",
        "fps": 30,
        "treatment_time_s": 600,
    }
    rows = [row, {**row, "camera": "cam2"}]
    df = pd.DataFrame(rows)
    for k, v in change.items():
        if v is None:
            df = df.drop(columns=k)
        else:
            df.loc[1, k] = v
    path = tmp_path / "manifest.csv"
    df.to_csv(path, index=False)
    return path


def test_manifest_validation(tmp_path):
    df = read_manifest(_manifest(tmp_path))
    assert list(df["label"]) == ["no_pain", "no_pain"]
    with pytest.raises(ManifestError, match="missing column 'treatment_time_s'"):
        read_manifest(_manifest(tmp_path, treatment_time_s=None))
    with pytest.raises(ManifestError, match="row 3, column 'phase'"):
        read_manifest(_manifest(tmp_path, phase="during"))
    with pytest.raises(ManifestError, match="row 3.*duplicate"):
        read_manifest(_manifest(tmp_path, camera="cam1"))


@pytest.mark.parametrize("bad", ["abc", -2, 1.5])
def test_a_bad_frame_offset_names_the_row(bad):
    from painface.manifest import ManifestError, validate_manifest

    row = {
        "session_id": "s",
        "mouse_id": "m",
        "sex": "f",
        "strain": "BALB/c",
        "treatment": "t",
        "phase": "pre",
        "camera": "c",
        "video": "v.mp4",
        "fps": 30,
        "treatment_time_s": 0,
        "frame_offset": bad,
    }
    with pytest.raises(ManifestError, match="row 2, column 'frame_offset'"):
        validate_manifest(pd.DataFrame([row]))
