"""The ``painface`` command: one sub-command per stage of the data's path.

Errors that users can cause (bad files, bad configs) end as one line on stderr that
names the file or key, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from painface import defaults, errors


def _layer(text: str):
    """--layer: auto, last, or a conv block number."""
    if text in ("auto", "last"):
        return None if text == "last" else "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not auto, last or a block number") from None


def _frames(text: str) -> int:
    """A DeepLabCut batch: a positive number of frames."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of frames")
    return value


def _init(args):
    from painface.project import init_project

    path = init_project(args.project, pattern=args.pattern, phase=args.phase, force=args.force)
    print(
        f"project: {path}\nnext: put videos in {path.parent / 'videos'}, fill in {path.parent / 'animals.csv'}, "
        f"edit {path.name}, then 'painface manifest build {args.project}'"
    )


def _manifest_build(args):
    from painface.project import build_manifest

    out, unmatched = build_manifest(args.project)
    for line in unmatched:
        print(f"not used: {line}", file=sys.stderr)
    print(f"manifest: {out} ({len(unmatched)} video(s) or animal(s) not used)")


def _run(args):
    from painface.pipeline import run_project

    run_project(args.project, until=args.until, start=args.start, show_progress=not args.quiet)


def _synth(args):
    import yaml

    from painface.synthetic.study import generate_study

    doc = yaml.safe_load(open(args.study)) if os.path.isfile(args.study) else {}
    if isinstance(doc, dict) and "topview" in doc and "generate" not in doc:  # a locomotion study
        from painface.synthetic.topview import generate_topview_study

        overrides = {k: getattr(args, k) for k in ("fps", "width", "height", "seed", "minutes")}
        print(f"animals: {generate_topview_study(args.study, args.out, **overrides)}")
        return
    overrides = {
        k: getattr(args, k) for k in ("pre_min", "post_min", "fps", "width", "height", "cameras", "signal", "seed")
    }
    manifest = generate_study(
        args.study, args.out, workers=args.workers, mice_per_group=args.mice_per_group, **overrides
    )
    print(f"manifest: {manifest}")


def _contact_sheet(args):
    from painface.synthetic.sheet import contact_sheet

    print(contact_sheet(args.out))


def _bodypart_map(pairs):
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise errors.PainfaceError(f"--bodypart-map: expected FACEPOINT=BODYPART, got '{pair}'")
        face, part = pair.split("=", 1)
        if face not in ("nose", "right_eye", "left_eye"):
            raise errors.PainfaceError(f"--bodypart-map: unknown face point '{face}' (nose, right_eye, left_eye)")
        out[face] = part
    return out


def _extract(args):
    from painface.extract import ExtractConfig, extract, format_summary

    cfg = ExtractConfig(
        crop_size=args.crop_size,
        threshold=args.threshold,
        jpeg_quality=args.jpeg_quality,
        workers=args.workers,
        bodypart_map=_bodypart_map(args.bodypart_map),
    )
    if args.dlc_config:  # one pass: DeepLabCut and the crop rules on the same decoded frames
        from painface.dlc import extract_onepass

        summary, errors = extract_onepass(
            args.manifest,
            args.store,
            cfg,
            args.dlc_config,
            args.keypoints_out or Path(args.store) / "keypoints",
            shuffle=args.shuffle,
            analysis_height=args.analysis_height,
            device=args.device,
            batch_size=args.dlc_batch_size,
        )
        if not errors:  # the videos that already had keypoint files
            summary, errors = extract(
                Path(args.keypoints_out or Path(args.store) / "keypoints") / "manifest.csv", args.store, cfg
            )
    else:
        summary, errors = extract(args.manifest, args.store, cfg, cluster=_cluster(args))
    print(format_summary(summary))
    for e in errors:
        print(f"painface extract: error: {e}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


def _store_info(args):
    from painface.store import read_index, store_meta

    meta = store_meta(args.store)
    idx = read_index(args.store)
    print(f"store {args.store}: schema v{meta.get('schema_version')}, {len(idx)} crops of {meta.get('crop_size')} px")
    for col in ("mouse_id", "phase", "label", "camera", "strain", "rule"):
        if len(idx):
            print(f"\nby {col}:\n" + idx[col].value_counts().sort_index().to_string())


def _store_export(args):
    from painface.store import export_crops

    print(f"wrote {export_crops(args.store, args.out, n=args.n, query=args.query, seed=args.seed)} PNGs to {args.out}")


def _keypoints(args):
    from painface.dlc import add_keypoints

    print(
        "manifest with keypoints: "
        + str(
            add_keypoints(
                args.manifest,
                args.config,
                args.out,
                shuffle=args.shuffle,
                analysis_height=args.analysis_height,
                device=args.device,
                cluster=_cluster(args),
                batch_size=args.batch_size,
            )
        )
    )


def _dlc_train(args):
    from painface.dlc import train_face_model

    r = train_face_model(
        args.config,
        shuffle=args.shuffle,
        net_type=args.net_type,
        epochs=args.epochs,
        batch_size=args.batch_size,
        weights=args.weights,
        augment=not args.no_augment,
        image_size=args.image_size,
        device=args.device,
    )
    print(f"DeepLabCut snapshots: {', '.join(r['snapshots'])}")


def _dlc_relocate(args):
    from painface.dlc import relocate_project

    print(f"updated {relocate_project(args.config)}")


def _model_export(args):
    from painface.bundle import export_model

    print(f"exported {export_model(args.run, args.out)}")


def _cluster(args):
    from painface.cluster import from_args

    return from_args(args)


def _score(args):
    from painface.predict import score

    kwargs = dict(
        store=args.store,
        images=args.images,
        out=args.out,
        batch_size=args.batch_size,
        accelerator=args.accelerator,
        temperature=args.temperature,
        query=args.query,
    )
    cluster = _cluster(args)
    if cluster.remote:  # the whole store in one job (on a GPU node with --gpus-per-task 1)
        from painface.cluster import run_on_slurm

        run_on_slurm(score, cluster, Path(args.out).parent / ".submitit", "score", args.ckpt_path, **kwargs)
        print(f"predictions: {args.out}")
        return
    pred = score(args.ckpt_path, **kwargs)
    print(f"scored {len(pred)} crops -> {args.out}")


def _analyze(args):
    from painface.analysis import analyze_study

    report = analyze_study(
        args.study, args.predictions, args.store, args.out, time_scale=args.time_scale, template=args.template
    )
    print(f"report: {report}")


def _study_run(args):
    from painface.synthetic.study_run import run_study

    overrides = {k: getattr(args, k) for k in ("signal", "fps", "width", "height")}
    report = run_study(
        args.study,
        args.ckpt_path,
        args.out,
        workers=args.workers,
        mice_per_group=args.mice_per_group,
        time_scale=args.time_scale,
        crop_size=args.crop_size,
        **overrides,
    )
    print(f"report: {report}")


def _render(args):
    from painface.render_video import render_annotated

    print(
        render_annotated(args.video, args.store, args.predictions, args.session, args.camera, args.out, args.window_s)
    )


def _locomotion(args):
    from painface.locomotion import LocomotionError, compare_locomotion, locomotion_report

    if not args.video.endswith(".csv"):
        print(locomotion_report(args.video, args.out, cm_per_pixel=args.cm_per_pixel, threshold=args.threshold))
        return
    if not args.control:
        raise LocomotionError(f"{args.video}: comparing groups needs --control GROUP")
    table = compare_locomotion(args.video, args.out, args.control, args.group_column, args.cm_per_pixel, args.threshold)
    print(table[["group", "control", "test", "p", "stars"]].to_string(index=False))
    print(f"figures and tables: {args.out}")


def _explain(args):
    from painface.interpret import explain

    print(
        "Grad-CAM panels and maps: "
        + str(
            explain(
                args.ckpt_path,
                args.out,
                store=args.store,
                images=args.images,
                n=args.n,
                method=args.method,
                query=args.query,
                seed=args.seed,
            )
        )
    )


def _interpret(args):
    from painface.interpret import interpret_store

    out = interpret_store(
        args.ckpt_path,
        args.store,
        args.out,
        n=args.n,
        n_pairs=args.pairs,
        per_class=args.per_class,
        method=args.method,
        embedding=args.embedding,
        source=args.source,
        pair_space=args.pair_space,
        query=args.query,
        seed=args.seed,
        threshold=args.threshold,
        min_fraction=args.min_fraction,
        yates=args.yates,
        block=args.layer,
        annotation=args.annotation,
        **({} if args.stage_max_grey is None else {"stage_max_grey": args.stage_max_grey}),
    )
    print(f"embedding, pairs and region charts: {out}")


def _mgs_sample(args):
    from painface.mgs import KEY_FILE, sample

    out = sample(args.store, args.out, n=args.n, seed=args.seed, query=args.query, min_sharpness=args.min_sharpness)
    print(f"blinded images and scoring sheet in {out}; keep {out / KEY_FILE} away from the scorer")


def _mgs_compare(args):
    import json

    from painface.mgs import compare

    print(json.dumps(compare(args.sheet, args.key, args.out, predictions=args.predictions), indent=2))


def _mgs_agreement(args):
    from painface.files import atomic_write
    from painface.mgs import agreement, scorers

    table = agreement(args.kit)
    if table.empty:
        raise errors.PainfaceError(f"{args.kit}: agreement needs two scorers; found {len(scorers(args.kit))}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        with atomic_write(args.out) as tmp:
            table.to_csv(tmp, index=False)


def _review(args):
    from painface import review

    _need("flask", "review")
    _need("plotly", "review")
    sources = review.locate(
        getattr(args, "path", None),
        store=getattr(args, "store", None),
        predictions=getattr(args, "predictions", None),
        ckpt_path=getattr(args, "ckpt_path", None),
        kit=args.mgs,
    )
    review.serve(sources, port=args.port, gallery_n=getattr(args, "gallery_n", 120), open_browser=args.open)


def _need(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise errors.PainfaceError(f"this command needs {module}: pip install 'painface[{extra}]'")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and defaults in the help; the full usage is one ``-h`` away."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    from painface import __version__
    from painface.cluster import add_cluster_options

    p = _Parser(
        prog="painface", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"painface {__version__}")
    sub = p.add_subparsers(
        dest="command",
        required=True,
        parser_class=lambda **kw: _Parser(formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kw),
    )

    s = sub.add_parser(
        "init",
        help="create a project folder: painface.yaml, animals.csv, a folder per stage",
        epilog="example: painface init my_study --pattern '{mouse_id}_{phase}_{camera}.mp4'",
    )
    s.add_argument("project", help="the folder to create")
    s.add_argument(
        "--pattern",
        default=None,
        help="how video names encode mouse, phase and camera (default: {mouse_id}_{phase}_{camera}.mp4)",
    )
    s.add_argument("--phase", default=None, choices=("pre", "post"), help="every video's phase, if names omit it")
    s.add_argument("--force", action="store_true", help="overwrite an existing painface.yaml")
    s.set_defaults(func=_init)

    s = sub.add_parser("manifest", help="build a project's manifest.csv from its videos and animals sheet")
    msub = s.add_subparsers(dest="manifest_command", required=True)
    t = msub.add_parser(
        "build",
        help="find videos by pattern, join animals, find DeepLabCut files",
        epilog="example: painface manifest build my_study",
    )
    t.add_argument("project")
    t.set_defaults(func=_manifest_build)

    s = sub.add_parser(
        "run",
        help="a project from videos to report, resumable (manifest ... analyze)",
        epilog="example: painface run my_study --until extract",
    )
    s.add_argument("project")
    s.add_argument("--until", default=None, help="stop after this stage")
    s.add_argument("--from", dest="start", default=None, help="re-run from this stage even if up to date")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_run)

    for name, what in (
        ("train", "train the CNN (Hydra: painface train model=paper data=balbc)"),
        ("eval", "evaluate a checkpoint (Hydra: painface eval ckpt_path=...)"),
        ("predict", "score a store with a checkpoint (Hydra: painface predict ckpt_path=...)"),
    ):
        s = sub.add_parser(name, help=what, add_help=False)
        s.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides, -m, --config-dir, --help")

    s = sub.add_parser("synth", help="render a synthetic study (videos, DLC keypoints, ground truth, manifest)")
    s.add_argument("study", help="study YAML, e.g. experiments/ac_dose_response.yaml")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--mice-per-group", type=int, default=None, help="cap the number of mice per group (demo/tests)")
    s.add_argument("--pre-min", type=float, default=None)
    s.add_argument("--post-min", type=float, default=None)
    s.add_argument("--fps", type=float, default=None)
    s.add_argument("--width", type=int, default=None)
    s.add_argument("--height", type=int, default=None)
    s.add_argument("--cameras", type=int, default=None)
    s.add_argument("--signal", type=float, default=None, help="scale of the planted expression")
    s.add_argument("--minutes", type=float, default=None, help="recording length of a top-view (locomotion) study")
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(func=_synth)

    s = sub.add_parser("extract", help="stream videos into a crop store (paper steps 2-3)")
    s.add_argument("manifest")
    s.add_argument("--store", required=True)
    s.add_argument("--crop-size", type=int, default=defaults.CROP_SIZE, help="stored crop resolution in pixels")
    s.add_argument(
        "--threshold", type=float, default=defaults.LIKELIHOOD_THRESHOLD, help="likelihood threshold of the crop rules"
    )
    s.add_argument("--jpeg-quality", type=int, default=92)
    s.add_argument("--workers", type=int, default=2, help="videos processed in parallel")
    s.add_argument("--bodypart-map", nargs="*", help="e.g. nose=snout right_eye=reye left_eye=leye")
    g = s.add_argument_group("keypoints in the same pass (videos without a keypoint file)")
    g.add_argument("--dlc-config", default=None, help="a DeepLabCut project: run it on the decoded frames")
    g.add_argument("--keypoints-out", default=None, help="where DeepLabCut's .h5 files go (default: STORE/keypoints)")
    g.add_argument("--shuffle", type=int, default=1, help="the DeepLabCut shuffle")
    g.add_argument("--analysis-height", type=int, default=720, help="DeepLabCut sees frames this tall (paper: 720)")
    g.add_argument("--device", default="auto", help="auto: the GPU when there is one, else cpu")
    g.add_argument(
        "--dlc-batch-size",
        type=_frames,
        default=None,
        help="frames per DeepLabCut batch (default: 8 on the CPU, 64 on a GPU, halved while the GPU is out of memory)",
    )
    add_cluster_options(s)
    s.set_defaults(func=_extract)

    s = sub.add_parser("store", help="inspect a crop store")
    ssub = s.add_subparsers(dest="store_command", required=True)
    t = ssub.add_parser("info", help="counts by mouse, phase, label, camera")
    t.add_argument("store")
    t.set_defaults(func=_store_info)
    t = ssub.add_parser("export", help="write chosen crops as PNGs")
    t.add_argument("store")
    t.add_argument("--out", required=True)
    t.add_argument("--n", type=int, default=50)
    t.add_argument(
        "--query", default=None, help="pandas query on the index, e.g. \"label == 'pain' and camera == 'cam1'\""
    )
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_store_export)

    s = sub.add_parser(
        "keypoints", help="DeepLabCut keypoints for every video of a manifest (frames downscaled in memory)"
    )
    s.add_argument("manifest")
    s.add_argument("--config", required=True, help="DeepLabCut project config.yaml")
    s.add_argument("--out", required=True, help="folder for keypoint files and the updated manifest")
    s.add_argument("--shuffle", type=int, default=1)
    s.add_argument("--analysis-height", type=int, default=720, help="downscale to this many rows first (paper: 720)")
    s.add_argument("--device", default="auto", help="auto: the GPU when there is one, else cpu")
    s.add_argument(
        "--batch-size",
        type=_frames,
        default=None,
        help="frames per DeepLabCut batch (default: 8 on the CPU, 64 on a GPU, halved while the GPU is out of memory)",
    )
    add_cluster_options(s)
    s.set_defaults(func=_keypoints)

    s = sub.add_parser("dlc", help="DeepLabCut face model: relocate a project, train offline")
    dsub = s.add_subparsers(dest="dlc_command", required=True)
    t = dsub.add_parser("relocate", help="point a moved project at its folder")
    t.add_argument("config")
    t.set_defaults(func=_dlc_relocate)
    t = dsub.add_parser("train", help="create_training_dataset + train_network with pretrained: false")
    t.add_argument("config")
    t.add_argument("--shuffle", type=int, default=1)
    t.add_argument("--net-type", default="resnet_50")
    t.add_argument("--epochs", type=int, default=200)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--weights", default=None, help="local snapshot to start from (default: random init)")
    t.add_argument("--image-size", type=int, default=None)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--device", default="auto", help="auto: the GPU when there is one, else cpu")
    t.set_defaults(func=_dlc_train)

    s = sub.add_parser("score", help="p(pain) per crop of a store, or per image of a folder")
    m = s.add_mutually_exclusive_group(required=True)
    m.add_argument("--ckpt-path", help="a Lightning checkpoint from train.py")
    m.add_argument(
        "--model", dest="ckpt_path", help="a folder written by 'painface model export' (loads without pickle)"
    )
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--store")
    g.add_argument("--images", help="a plain folder of PNG/JPEG images")
    s.add_argument("--out", required=True, help="predictions .parquet")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--accelerator", default="auto")
    s.add_argument(
        "--temperature", default=None, help="calibrate p(pain): a number, or 'auto' (the run's calibration.json)"
    )
    s.add_argument(
        "--query",
        default=None,
        help='score only these crops, e.g. "sharpness >= 50" (left-out frames count as skipped per minute)',
    )
    add_cluster_options(s)
    s.set_defaults(func=_score)

    s = sub.add_parser("model", help="portable models: export a run's checkpoint as safetensors + config + model card")
    msub = s.add_subparsers(dest="model_command", required=True)
    t = msub.add_parser("export", help="write model.safetensors, config.json and MODEL_CARD.md")
    t.add_argument("run", help="a training run folder (its best checkpoint) or a .ckpt file")
    t.add_argument("--out", required=True)
    t.set_defaults(func=_model_export)

    s = sub.add_parser("analyze", help="per-minute pain probability, statistics, figures, HTML report")
    s.add_argument("study", help="study YAML with an analysis: section")
    s.add_argument("--predictions", required=True)
    s.add_argument("--store", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--time-scale", type=float, default=1.0, help="the time scale the study was generated at")
    s.add_argument("--template", default=None, help="a jinja2 report template (copy painface/templates/report.html.j2)")
    s.set_defaults(func=_analyze)

    s = sub.add_parser("study", help="run a synthetic study end to end")
    stsub = s.add_subparsers(dest="study_command", required=True)
    t = stsub.add_parser("run", help="synth -> extract -> score -> analyze -> report")
    t.add_argument("study")
    t.add_argument("--ckpt-path", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--mice-per-group", type=int, default=None)
    t.add_argument("--time-scale", type=float, default=1.0, help="shrink durations and timelines (e.g. 0.1)")
    t.add_argument("--crop-size", type=int, default=defaults.CROP_SIZE)
    t.add_argument("--signal", type=float, default=None)
    t.add_argument("--fps", type=float, default=None)
    t.add_argument("--width", type=int, default=None)
    t.add_argument("--height", type=int, default=None)
    t.set_defaults(func=_study_run)

    s = sub.add_parser("render", help="annotated copy of a recording: crop box, keypoints, running pain probability")
    s.add_argument("video")
    s.add_argument("--store", required=True)
    s.add_argument("--predictions", required=True)
    s.add_argument("--session", required=True)
    s.add_argument("--camera", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--window-s", type=float, default=10.0)
    s.set_defaults(func=_render)

    s = sub.add_parser("locomotion", help="moving distance per second from a top-view video, or groups compared")
    s.add_argument("video", help="a top-view video, or a CSV (video, animal, group) of one video per animal")
    s.add_argument("--out", required=True)
    s.add_argument("--cm-per-pixel", type=float, default=None, help="calibration; default reports pixels")
    s.add_argument("--threshold", type=int, default=40, help="grey-level difference from the background")
    s.add_argument("--control", default=None, help="control group (with a CSV)")
    s.add_argument("--group-column", default="group")
    s.set_defaults(func=_locomotion)

    s = sub.add_parser("explain", help="Grad-CAM panels (original, heatmap, overlay) and raw maps")
    s.add_argument("--ckpt-path", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--store")
    g.add_argument("--images", help="a plain folder of PNG/JPEG images")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--method", choices=["gradcam", "gradcam++"], default="gradcam")
    s.add_argument("--query", default=None)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_explain)

    s = sub.add_parser("interpret", help="embedding, similar-composition pairs and facial-region attribution (Fig. 2)")
    s.add_argument("--ckpt-path", required=True)
    s.add_argument("--store", required=True)
    s.add_argument("--out", required=True)
    s.add_argument(
        "--n", type=int, default=None, help="embed a random n of the selection (default: all of it, as the paper)"
    )
    s.add_argument("--pairs", type=int, default=500, help="pairs drawn at random from all mutual pairs (paper: 500)")
    s.add_argument(
        "--per-class",
        type=int,
        default=1000,
        help="random comparison: this many images of each predicted class (paper Fig. S5F: 1000)",
    )
    s.add_argument(
        "--pair-space",
        choices=["embedding", "features"],
        default="embedding",
        help="pair nearest neighbours in the 2-D embedding (paper) or the full CNN feature space",
    )
    s.add_argument("--method", choices=["gradcam", "gradcam++"], default="gradcam")
    s.add_argument(
        "--layer",
        type=_layer,
        default="auto",
        help="Grad-CAM target: auto (the deepest conv block whose map is >= 16 px wide: block 4 at "
        "128 px, the last layer at >= 512 px), last (the paper's last conv layer) or block N (1-based)",
    )
    s.add_argument("--embedding", choices=["umap", "tsne"], default="umap")
    s.add_argument("--source", choices=["features", "pixels"], default="features")
    s.add_argument("--threshold", type=float, default=0.5, help="Grad-CAM value counted as hot")
    s.add_argument(
        "--min-fraction",
        type=float,
        default=None,
        help="positive only when this share of a region is hot (default: the paper's rule, a hot area touches it)",
    )
    s.add_argument(
        "--yates", action="store_true", help="chi-squared with Yates' continuity correction (default: without)"
    )
    s.add_argument("--annotation", default=None, help="manual region polygons (JSON)")
    s.add_argument(
        "--stage-max-grey",
        type=float,
        default=None,
        help="grey level (0-255) below which the floor under the face is the stage (default 28)",
    )
    s.add_argument("--query", default=None)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_interpret)

    s = sub.add_parser("mgs", help="Mouse Grimace Scale blind-scoring kit")
    msub = s.add_subparsers(dest="mgs_command", required=True)
    t = msub.add_parser("sample", help="blinded images + scoring sheet")
    t.add_argument("store")
    t.add_argument("--out", required=True)
    t.add_argument("--n", type=int, default=1000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--query", default=None)
    t.add_argument(
        "--min-sharpness",
        type=float,
        default=None,
        help="leave out blurred crops: variance of the Laplacian below this (see the store's 'sharpness')",
    )
    t.set_defaults(func=_mgs_sample)
    t = msub.add_parser("compare", help="un-blind a filled sheet; MGS vs weak labels and CNN")
    t.add_argument("sheet")
    t.add_argument("--key", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--predictions", default=None)
    t.set_defaults(func=_mgs_compare)

    t = msub.add_parser("score", help="blind scoring of a kit in the browser (saved after every image)")
    t.add_argument("mgs", metavar="KIT", help="a kit folder from 'painface mgs sample'")
    t.add_argument("--port", type=int, default=8050)
    t.add_argument("--open", action="store_true", help="open the page in the default browser")
    t.set_defaults(func=_review)
    t = msub.add_parser("agreement", help="Cohen's kappa between the kit's scorers, per unit and total")
    t.add_argument("kit")
    t.add_argument("--out", default=None, help="also write the table as CSV")
    t.set_defaults(func=_mgs_agreement)

    s = sub.add_parser(
        "review",
        help="review a study in the browser: traces linked to the video, Grad-CAM gallery, store, MGS scoring",
        epilog="example: painface review my_study   (then open the printed http://127.0.0.1 URL)",
    )
    s.add_argument("path", nargs="?", default=None, help="a project folder, or a results folder from 'analyze'")
    s.add_argument("--store", default=None, help="override the store the folder records")
    s.add_argument("--predictions", default=None, help="override the predictions the folder records")
    s.add_argument("--ckpt-path", default=None, help="checkpoint for the Grad-CAM gallery")
    s.add_argument("--mgs", default=None, help="also serve blind scoring of this MGS kit")
    s.add_argument("--gallery-n", type=int, default=120, help="random crops in the Grad-CAM gallery")
    s.add_argument("--port", type=int, default=8050, help="0: any free port")
    s.add_argument("--open", action="store_true", help="open the page in the default browser")
    s.set_defaults(func=_review)

    s = sub.add_parser("contact-sheet", help="render pain / no-pain faces of both coats across poses")
    s.add_argument("--out", default="docs/contact_sheet.png")
    s.set_defaults(func=_contact_sheet)
    _describe_defaults(p)
    return p


def _describe_defaults(parser: argparse.ArgumentParser) -> None:
    """argparse prints a default only beside help text: give every option that has a
    default at least "(default: ...)", so each sub-command's --help shows all of them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _describe_defaults(sub)
        elif (
            action.help is None
            and action.option_strings
            and action.default not in (None, False)
            and action.default is not argparse.SUPPRESS
        ):
            action.help = "(default: %(default)s)"


_OVERRIDE = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)=(.*)$")


def hydra_style(argv: list[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Accept the Hydra spelling the training scripts use: ``ckpt_path=X data.store=Y n=5``.

    ``key=value`` becomes ``--key value`` (underscores to dashes; a ``data.`` prefix is
    dropped, since these commands take the store directly) only where ``--key`` is an
    option of the chosen command: values such as ``nose=snout`` or ``phase=='post'``
    pass through untouched.
    """
    options = _options_of(parser or build_parser(), argv)
    out = []
    for token in argv:
        m = _OVERRIDE.match(token)
        key = m and "--" + m.group(1).removeprefix("data.").replace("_", "-").replace(".", "-")
        if m and key in options:
            out += [key, m.group(2)]
        else:
            out.append(token)
    return out


def _options_of(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The option strings of the (sub-)command that ``argv`` selects."""
    for token in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token not in subs[0].choices:
            break
        parser = subs[0].choices[token]
    return set(parser._option_string_actions)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # no command: show what there is
        parser.print_help()
        return 0
    if argv[0] in ("train", "eval", "predict"):  # Hydra parses the rest, as train.py does
        from painface.entry import hydra_main

        hydra_main(argv[0], argv[1:])
        return 0
    args = parser.parse_args(hydra_style(argv, parser))
    from painface.procs import exit_now, exit_on_sigterm

    exit_on_sigterm()  # SIGTERM unwinds like Ctrl-C: workers are stopped, temporaries removed
    try:
        args.func(args)
    except errors.PainfaceError as exc:
        print(f"painface {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"painface {args.command}: interrupted; finished outputs are kept, re-run to complete", file=sys.stderr)
        exit_now(getattr(exc, "exit_code", 130))
    return 0


run_hydra_task = errors.run_hydra_task  # the scripts' old import path


if __name__ == "__main__":
    sys.exit(main())
