import cv2
import numpy as np

from painface.render_video import render_annotated
from painface.store import read_index
from tests.conftest import fake_predictions as _fake_predictions


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
    x0, y0, s = int(row.box_x0), int(row.box_y0), int(row.box_size)
    # the crop box outline is drawn in the pain colour (p = 0.9 for post crops)
    col = min(max(x0, 0), b.shape[1] - 1) if 0 <= x0 else x0 + s  # the left edge, or the right one if it is off-frame
    edge = b[max(y0, 0) + 2 : min(y0 + s, b.shape[0]) - 2, col]
    redness = edge[:, 2].astype(int) - edge[:, 0].astype(int)
    assert redness.mean() > 60, "no pain-coloured box edge"
    assert np.abs(a.astype(int) - b.astype(int)).sum() > 0
    # H.264 in an MP4, as browsers play it (OpenCV's own writer can only make mp4v)
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(out))
    meta = next(frames)
    frames.close()
    assert meta["codec"] == "h264", meta
    assert not list(tmp_path.glob(".tmp-*"))
