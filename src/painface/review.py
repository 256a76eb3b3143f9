"""``painface review``: a study's results in the browser, served from 127.0.0.1.

Four pages, every script and style served by this server (no CDN: the page works with
the network unplugged):

- study: per-animal, per-minute pain probability with its Wilson interval, the group
  means +- SEM and the tests; clicking a minute plays the annotated recording there;
- gallery: crops with their Grad-CAM overlays, filtered by animal, phase, predicted
  class, crop rule and Grad-CAM-positive region (the paper's touch rule, Fig. 2C);
- store: the crop store by mouse, session and camera, with why frames were skipped;
- mgs: blind Mouse Grimace Scale scoring of a ``painface mgs sample`` kit, one image
  at a time, saved after every image, with Cohen's kappa between scorers.

Flask (a small, well-kept WSGI framework whose templates are the jinja2 the report
already uses) serves the pages; Plotly draws the traces from the ``plotly.min.js``
that ships inside the ``plotly`` Python package. Both come with ``painface[review]``.
Slow things (annotated videos, Grad-CAM) are computed once and cached in a folder
beside the results, written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from painface.errors import PainfaceError
from painface.files import write_json

TEMPLATES = Path(__file__).resolve().parent / "templates" / "review"


class ReviewError(PainfaceError):
    pass


@dataclass
class Sources:
    """Where a review's inputs live."""

    results: Path | None
    store: Path | None
    predictions: Path | None
    checkpoint: Path | None
    cache: Path
    kit: Path | None = None

    @cached_property
    def fingerprint(self) -> str:
        """The predictions and checkpoint in use, hashed once: cached renders and Grad-CAM
        carry it, so a re-scored study never shows a stale video or gallery."""
        from painface.pipeline import digest, file_digest

        inputs = (self.predictions, self.checkpoint)
        return digest(*(file_digest(p) if p and Path(p).is_file() else None for p in inputs))


def locate(
    path: str | Path | None,
    store=None,
    predictions=None,
    ckpt_path=None,
    kit=None,
    cache=None,
) -> Sources:
    """A project folder (painface.yaml), a results folder (from ``painface analyze``), or
    only an MGS kit; explicit paths override what the folder records."""
    found = dict(results=None, store=None, predictions=None, checkpoint=None)
    root = Path(path) if path else None
    if root is not None:
        if not root.exists():
            raise ReviewError(f"{root}: not found")
        if (root / "painface.yaml").is_file():
            from painface.pipeline import checkpoint_of
            from painface.project import load_project

            root, spec = load_project(root)
            ckpt = checkpoint_of(root, spec)
            found = dict(
                results=root / "results",
                store=root / "store",
                predictions=root / "predictions" / "predictions.parquet",
                checkpoint=ckpt if ckpt.exists() else None,
            )
            default_cache = root / "review"
        elif (root / "per_minute.csv").is_file():
            prov_file = root / "provenance.json"
            if not prov_file.is_file():
                raise ReviewError(
                    f"{root}: no provenance.json (analysed by an older painface): pass --store and --predictions"
                )
            prov = json.loads(prov_file.read_text())
            ckpt = Path(prov.get("checkpoint", ""))
            found = dict(
                results=root,
                store=Path(prov["store"]),
                predictions=Path(prov["predictions"]),
                checkpoint=ckpt if ckpt.suffix and ckpt.exists() else None,
            )
            default_cache = root / "review"
        else:
            raise ReviewError(f"{root}: neither a project folder (painface.yaml) nor a results folder (per_minute.csv)")
    else:
        default_cache = Path(kit) / "review" if kit else Path("review")
    for key, given in (("store", store), ("predictions", predictions), ("checkpoint", ckpt_path)):
        if given:
            found[key] = Path(given)
    for key in ("results", "store", "predictions", "checkpoint"):
        if found[key] is not None and not Path(found[key]).exists():
            raise ReviewError(f"{key}: not found: {found[key]}")
    if kit is not None:
        from painface.mgs import kit_images

        kit_images(kit)  # fails naming the folder when it is not a kit
    if root is None and kit is None:
        raise ReviewError("nothing to review: give a project or results folder, or --mgs KIT")
    return Sources(**found, cache=Path(cache) if cache else default_cache, kit=Path(kit) if kit else None)


# ------------------------------------------------------------------ the study page's data
def study_data(results: Path, store: Path | None) -> dict:
    """Everything the study page draws, as JSON-able values."""
    per_minute = pd.read_csv(results / "per_minute.csv")
    prov = json.loads((results / "provenance.json").read_text()) if (results / "provenance.json").is_file() else {}
    col = prov.get("group_column", "treatment")
    order = prov.get("order") or sorted(per_minute[col].dropna().unique())
    bin_s = float(prov.get("bin_s", 60.0))
    per_minute = per_minute[per_minute[col].isin(order)]
    # per animal and minute (an animal's sessions share the clock: minutes from treatment)
    animal = (
        per_minute.groupby([col, "mouse_id", "minute"], sort=False)
        .agg(
            p=("pain_probability", "mean"),
            lo=("ci_low", "mean"),
            hi=("ci_high", "mean"),
            pain=("pain", "sum"),
            no_pain=("no_pain", "sum"),
            skipped=("skipped", "sum"),
            session_id=("session_id", "first"),
        )
        .reset_index()
    )
    minutes = sorted(animal["minute"].unique())
    animals = []
    for g in order:
        for mouse, a in animal[animal[col] == g].groupby("mouse_id", sort=True):
            a = a.set_index("minute").reindex(minutes)
            animals.append(
                {
                    "mouse_id": str(mouse),
                    "group": str(g),
                    "p": _floats(a["p"]),
                    "lo": _floats(a["lo"]),
                    "hi": _floats(a["hi"]),
                    "pain": _ints(a["pain"]),
                    "no_pain": _ints(a["no_pain"]),
                    "skipped": _ints(a["skipped"]),
                    "session": [None if pd.isna(s) else str(s) for s in a["session_id"]],
                }
            )
    groups = []
    for g in order:
        table = animal[animal[col] == g].pivot_table(index="minute", columns="mouse_id", values="p").reindex(minutes)
        n = table.notna().sum(axis=1)
        sem = table.std(axis=1, ddof=1) / np.sqrt(n)
        groups.append({"group": str(g), "mean": _floats(table.mean(axis=1)), "sem": _floats(sem), "n": _ints(n)})
    stats_file = results / "statistics_windows.csv"
    stats = pd.read_csv(stats_file) if stats_file.is_file() else pd.DataFrame()
    return {
        "name": prov.get("name", results.name),
        "group_column": col,
        "bin_s": bin_s,
        "minutes": [float(m) for m in minutes],
        "animals": animals,
        "groups": groups,
        "sessions": _sessions(store) if store is not None else {},
        "statistics": stats.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0),
    }


def _sessions(store: Path) -> dict:
    """Per session: its cameras, fps and where minute 0 (the treatment) is in each video."""
    from painface.store import read_summaries

    out: dict[str, dict] = {}
    for _, s in read_summaries(store).iterrows():
        entry = out.setdefault(str(s["session_id"]), {"cameras": {}})
        entry["cameras"][str(s["camera"])] = {
            "fps": float(s["fps"]),
            # seconds into the video file: the camera's offset, then the treatment time
            "zero_s": int(np.nan_to_num(s.get("frame_offset", 0))) / float(s["fps"]) + float(s["treatment_time_s"]),
            "faces": int(s["faces"]),
        }
    return out


def _floats(s) -> list:
    return [None if pd.isna(v) else round(float(v), 6) for v in s]


def _ints(s) -> list:
    return [None if pd.isna(v) else int(v) for v in s]


# ------------------------------------------------------------------ the store page's data
def store_table(store: Path) -> pd.DataFrame:
    """Per video: frames, faces by crop rule, frames skipped and why."""
    from painface.store import read_index, read_summaries

    s = read_summaries(store)
    if s.empty:
        raise ReviewError(f"{store}: the store has no extracted videos")
    meta = read_index(store, verify=False).drop_duplicates("session_id").set_index("session_id")
    s = s.join(meta[["mouse_id", "phase", "treatment"]], on="session_id")
    s["skipped"] = s["frames"] - s["faces"]
    for c in ("skip_no_nose", "skip_no_eye"):
        if c not in s:
            s[c] = np.nan
    cols = ["mouse_id", "treatment", "phase", "session_id", "camera", "frames", "faces"]
    cols += ["rule_i", "rule_ii", "rule_iii", "skipped", "skip_no_nose", "skip_no_eye"]
    return s[cols].sort_values(["mouse_id", "session_id", "camera"]).reset_index(drop=True)


# ------------------------------------------------------------------ the gallery
GALLERY_VERSION = 1


def build_gallery(
    sources: Sources, n: int = 120, seed: int = 0, threshold: float = 0.5, show_progress: bool = True
) -> dict:
    """Grad-CAM overlays of ``n`` random crops, with the regions each one's positive area
    touches (the paper's rule). Cached: rebuilt only when the checkpoint, predictions, n
    or seed change."""
    from painface.store import read_index

    if n < 1:
        raise ReviewError(f"--gallery-n: show at least one crop, got {n}")
    folder = sources.cache / "gallery"
    key = {
        "version": GALLERY_VERSION,
        "sources": sources.fingerprint,
        "store": str(sources.store),
        "n": n,
        "seed": seed,
        "threshold": threshold,
    }
    index_file = folder / "gallery.json"
    if index_file.is_file():
        cached = json.loads(index_file.read_text())
        if cached.get("key") == key:
            return cached
    idx = read_index(sources.store, verify=False)
    pick = idx.iloc[np.random.default_rng(seed).permutation(len(idx))[:n]].reset_index(drop=True)
    folder.mkdir(parents=True, exist_ok=True)
    from painface.scoring import is_pain

    items = []
    if sources.checkpoint is not None:
        from painface.data import CropDataset
        from painface.gradcam import overlay
        from painface.interpret import load_for_explain, run_gradcam
        from painface.regions import crop_keypoints, positive_regions, region_masks_from_keypoints

        model = load_for_explain(sources.checkpoint)
        ds = CropDataset(sources.store, pick, model.input_size, train=False)
        maps, probs, rgbs, _ = run_gradcam(model, ds, show_progress=show_progress)
        kps = crop_keypoints(pick, maps.shape[-1])
        for i, r in pick.iterrows():
            masks = region_masks_from_keypoints(maps.shape[-1], *kps[i], image=rgbs[i])
            hot = [k for k, v in positive_regions(maps[i], masks, threshold).items() if v and k != "others"]
            name = f"{i:05d}.png"
            both = np.hstack([(rgbs[i] * 255).astype(np.uint8), overlay(rgbs[i], maps[i])])
            _write_png(folder / name, both)
            items.append(_item(r, name, float(probs[i]), "pain" if is_pain(probs[i]) else "no_pain", hot))
    else:  # no checkpoint: the crops and their stored predictions, no Grad-CAM
        pred = _predictions(sources)
        from painface.store import CropReader

        reader = CropReader(sources.store)
        for i, r in pick.iterrows():
            name = f"{i:05d}.png"
            _write_png(folder / name, reader.read(r["image"], r["offset"], r["nbytes"])[..., ::-1])
            p = pred.get(r["crop_id"], np.nan)
            items.append(_item(r, name, p, "unscored" if p != p else "pain" if is_pain(p) else "no_pain", []))
    out = {"key": key, "gradcam": sources.checkpoint is not None, "items": items}
    write_json(index_file, out)
    return out


def _predictions(sources: Sources) -> pd.Series:
    if sources.predictions is None or not sources.predictions.is_file():
        return pd.Series(dtype=float)
    from painface.predictions import read_predictions

    pred, _ = read_predictions(sources.predictions)
    return pred.set_index("crop_id")["p_pain"]


def _item(r, name: str, p: float, predicted: str, regions: list[str]) -> dict:
    return {
        "file": name,
        "crop_id": str(r["crop_id"]),
        "mouse_id": str(r["mouse_id"]),
        "phase": str(r["phase"]),
        "camera": str(r["camera"]),
        "rule": str(r["rule"]),
        "p_pain": None if p != p else round(float(p), 4),
        "predicted": predicted,
        "regions": regions,
    }


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    from painface.files import atomic_write

    with atomic_write(path) as tmp:
        cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1]))


# ------------------------------------------------------------------ annotated videos
_render_lock = threading.Lock()


def annotated_video(sources: Sources, session_id: str, camera: str) -> Path:
    """The recording with crop box, keypoints and running p(pain) drawn, in H.264 (which
    browsers play); rendered once per video and kept in the cache."""
    from painface.store import read_summaries

    name = f"{session_id}__{camera}__{sources.fingerprint[:8]}.mp4".replace("/", "_")
    out = sources.cache / "videos" / name
    with _render_lock:  # one render at a time: two clicks on the same video wait for one file
        if out.is_file():
            return out
        s = read_summaries(sources.store)
        row = s[(s.session_id == session_id) & (s.camera == camera)]
        if row.empty:
            raise ReviewError(f"{sources.store}: no video for session '{session_id}', camera '{camera}'")
        video = Path(row.iloc[0]["video"])
        if not video.is_file():
            raise ReviewError(f"{video}: recording not found (moved since extraction?)")
        from painface.render_video import render_annotated

        out.parent.mkdir(parents=True, exist_ok=True)
        render_annotated(video, sources.store, sources.predictions, session_id, camera, out)
        return out


# ------------------------------------------------------------------ the web application
def create_app(sources: Sources, gallery_n: int = 120, seed: int = 0):
    """The Flask application; no route reaches beyond the sources it was given."""
    from flask import Flask, abort, jsonify, render_template, request, send_file, send_from_directory

    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=None)
    app.config["JSON_SORT_KEYS"] = False
    pages = []
    if sources.results is not None:
        pages += [("study", "/", "Study"), ("gallery", "/gallery", "Grad-CAM gallery"), ("store", "/store", "Store")]
    if sources.kit is not None:
        pages += [("mgs", "/mgs", "MGS scoring")]

    @app.context_processor
    def _nav():
        return {"pages": pages, "sources": sources}

    @app.errorhandler(PainfaceError)
    def _error(exc):
        return render_template("error.html.j2", message=str(exc)), 400

    @app.get("/static/plotly.min.js")
    def plotly_js():
        import plotly

        return send_from_directory(Path(plotly.__file__).parent / "package_data", "plotly.min.js", max_age=3600)

    @app.get("/")
    def study():
        if sources.results is None:
            return mgs_start()
        return render_template("study.html.j2", data=study_data(sources.results, sources.store))

    @app.get("/video/<path:session_id>/<camera>.mp4")
    def video(session_id, camera):
        if sources.store is None or sources.predictions is None:
            abort(404)
        return send_file(annotated_video(sources, session_id, camera), mimetype="video/mp4", conditional=True)

    @app.get("/gallery")
    def gallery():
        if sources.store is None:
            abort(404)
        from painface.regions import PAPER_REGIONS

        data = build_gallery(sources, gallery_n, seed, show_progress=False)
        return render_template("gallery.html.j2", data=data, regions=PAPER_REGIONS)

    @app.get("/gallery/img/<name>")
    def gallery_image(name):
        return send_from_directory(sources.cache / "gallery", name)

    @app.get("/store")
    def store_page():
        if sources.store is None:
            abort(404)
        table = store_table(sources.store)
        return render_template("store.html.j2", table=table.to_dict("records"), columns=list(table.columns))

    @app.get("/store/crops")
    def store_crops():
        from painface.store import StoreError, select_index

        q = {k: v for k, v in request.args.items() if k in ("mouse_id", "session_id", "camera", "rule", "phase") and v}
        query = " and ".join(f"{k} == {json.dumps(v)}" for k, v in q.items()) or None
        try:
            idx = select_index(sources.store, query, n=int(request.args.get("n", 48)), seed=seed)
        except StoreError:  # nothing matches the filters: the page shows no crops
            return jsonify([])
        rows = zip(idx.crop_id, idx.rule, idx.frame)
        return jsonify([{"crop_id": c, "rule": r, "frame": int(f)} for c, r, f in rows])

    @app.get("/store/crop/<path:crop_id>.jpg")
    def store_crop(crop_id):
        import cv2

        from painface.store import CropReader

        idx = _index_by_id(sources.store)
        if crop_id not in idx.index:
            abort(404)
        r = idx.loc[crop_id]
        ok, buf = cv2.imencode(".jpg", CropReader(sources.store).read(r["image"], r["offset"], r["nbytes"]))
        return app.response_class(buf.tobytes(), mimetype="image/jpeg")

    # ---------------------------------------------------------------- MGS scoring
    @app.get("/mgs")
    def mgs_start():
        from painface.mgs import agreement, scorers

        if sources.kit is None:
            abort(404)
        table = agreement(sources.kit)
        return render_template(
            "mgs_start.html.j2",
            scorers=scorers(sources.kit),
            agreement=table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a", border=0)
            if len(table)
            else "",
        )

    @app.get("/mgs/score/<scorer>")
    def mgs_score(scorer):
        from painface.mgs import load_scores
        from painface.regions import MGS_UNITS

        sheet = load_scores(sources.kit, scorer)
        return render_template(
            "mgs_score.html.j2", scorer=scorer, units=MGS_UNITS, sheet=sheet.to_dict("records"), kit=str(sources.kit)
        )

    @app.post("/mgs/score/<scorer>")
    def mgs_save(scorer):
        from painface.mgs import save_score

        body = request.get_json(force=True)
        sheet = save_score(sources.kit, scorer, body.get("image", ""), body.get("scores"), body.get("exclude", ""))
        done = int(((sheet["exclude"] != "") | (sheet.iloc[:, 1:6] != "").all(axis=1)).sum())
        return jsonify({"saved": body.get("image"), "done": done, "total": len(sheet)})

    @app.get("/mgs/img/<name>")
    def mgs_image(name):
        return send_from_directory(sources.kit / "images", name)

    return app


_index_cache: dict = {}


def _index_by_id(store: Path) -> pd.DataFrame:
    from painface.store import read_index

    key = (str(store), (Path(store) / "parts").stat().st_mtime)
    if key not in _index_cache:
        _index_cache.clear()
        _index_cache[key] = read_index(store, verify=False).set_index("crop_id")
    return _index_cache[key]


class Server:
    """The app on 127.0.0.1 in a background thread (``port=0``: any free port)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        from werkzeug.serving import make_server

        self.httpd = make_server(host, port, app, threaded=True)
        self.url = f"http://{host}:{self.httpd.server_port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.thread.join(timeout=5)


def _check_port(host: str, port: int) -> None:
    """Fail in one line on a taken port (werkzeug would print a paragraph and exit)."""
    import socket

    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ReviewError(
                f"--port {port}: {exc.strerror or exc}; choose another (--port 0: any free port)"
            ) from None


def serve(sources: Sources, host: str = "127.0.0.1", port: int = 8050, gallery_n: int = 120, open_browser=False):
    """Serve until Ctrl-C; prints the URL. Grad-CAM for the gallery is computed first, with progress."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        # the pages show unpublished data and accept writes (MGS scores): keep them on this machine
        raise ReviewError(f"--host {host}: review serves only on this machine (127.0.0.1)")
    if sources.results is not None and sources.store is not None:
        build_gallery(sources, gallery_n, show_progress=True)
    _check_port(host, port)
    server = Server(create_app(sources, gallery_n), host, port)
    print(f"painface review: {server.url}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
