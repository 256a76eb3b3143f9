import cv2
import numpy as np

from painface.render_video import render_annotated
from painface.store import read_index
from tests.conftest import fake_predictions as _fake_predictions


def _box_redness(frame, row) -> float:
    """How red the left edge of the crop box is (pain colour, p = 0.9 for post crops)."""
    x0, y0, s = int(row.box_x0), int(row.box_y0), int(row.box_size)
    col = min(max(x0, 0), frame.shape[1] - 1) if 0 <= x0 else x0 + s  # the left edge, or the right one if off-frame
    edge = frame[max(y0, 0) + 2 : min(y0 + s, frame.shape[0]) - 2, col]
    return float((edge[:, 2].astype(int) - edge[:, 0].astype(int)).mean())


def test_annotated_video_draws_boxes_on_face_frames(store, manifest, tmp_path):
    idx = read_index(store)
    row = idx[(idx.session_id == "ac_m01_post") & (idx.camera == "cam1")].iloc[0]
    from painface.manifest import read_manifest

    m = read_manifest(manifest)
    video = m[(m.session_id == "ac_m01_post") & (m.camera == "cam1")]["video"].iloc[0]
    out = render_annotated(video, store, _fake_predictions(store, tmp_path), "ac_m01_post", "cam1", tmp_path / "a.mp4")
    src, ann = cv2.VideoCapture(video), cv2.VideoCapture(str(out))
    assert int(ann.get(cv2.CAP_PROP_FRAME_COUNT)) == int(src.get(cv2.CAP_PROP_FRAME_COUNT))
    for cap in (src, ann):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(row.frame))
    _, a = src.read()
    _, b = ann.read()
    assert _box_redness(b, row) > 60, "no pain-coloured box edge"
    assert np.abs(a.astype(int) - b.astype(int)).sum() > 0
    # H.264 in an MP4, as browsers play it (OpenCV's own writer can only make mp4v)
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(out))
    meta = next(frames)
    frames.close()
    assert meta["codec"] == "h264", meta
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_cameras_frame_offset_moves_the_drawing_with_it(manifest, tmp_path):
    """The store counts frames from the camera's frame_offset; the box belongs on raw frame
    (store frame + offset), where the keypoints that placed it were found."""
    from painface.extract import ExtractConfig, extract
    from painface.manifest import read_manifest

    m = read_manifest(manifest)
    m = m[(m.session_id == "ac_m01_post") & (m.camera == "cam1")].assign(frame_offset=7)
    m.to_csv(tmp_path / "m.csv", index=False)
    store = tmp_path / "store"
    _, errors = extract(tmp_path / "m.csv", store, ExtractConfig(crop_size=64, workers=1), show_progress=False)
    assert not errors
    idx = read_index(store)
    # a face frame whose box moved between frames, so the wrong frame would show it elsewhere
    moved = idx.set_index("frame")["box_x0"].diff().abs()
    row = idx.set_index("frame").loc[moved[moved >= 6].index[0]]
    out = render_annotated(
        m.video.iloc[0], store, _fake_predictions(store, tmp_path), "ac_m01_post", "cam1", tmp_path / "o.mp4"
    )
    ann = cv2.VideoCapture(str(out))
    ann.set(cv2.CAP_PROP_POS_FRAMES, int(row.name) + 7)
    _, b = ann.read()
    assert _box_redness(b, row) > 60
