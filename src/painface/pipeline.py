"""``painface run PROJECT``: from a folder of recordings to a report, resumable.

Stages, in order: manifest -> keypoints (when a DeepLabCut config is given) -> extract ->
train (when no model is given) -> score -> analyze (tables, figures, results.xlsx,
report.html). Each stage records a fingerprint of its inputs and settings in
``PROJECT/.painface/state.json`` once it has finished, and is skipped while that
fingerprint is unchanged and its output exists. A fingerprint includes the fingerprint of
the stage before, so a changed setting re-runs its own stage and those after it, nothing
else. Every output is published whole (a store part, a file renamed into place, a results
folder swapped in), so a run killed at any moment and started again finishes with the
same outputs as one that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from painface.errors import PainfaceError
from painface.files import write_json, write_text
from painface.manifest import read_manifest
from painface.project import ProjectSpec, build_manifest, load_project

STAGES = ("manifest", "keypoints", "extract", "train", "score", "analyze")
STATE = Path(".painface") / "state.json"


class PipelineError(PainfaceError):
    pass


def digest(*parts) -> str:
    """A short, stable fingerprint of JSON-able values."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _load_state(root: Path) -> dict:
    path = root / STATE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # written atomically, so only a hand edit breaks it: everything re-runs


def _save_state(root: Path, state: dict) -> None:
    write_json(root / STATE, state, sort_keys=True)


def _replace_folder(new: Path, target: Path) -> None:
    """Swap a finished folder into place; the old one is removed only after the swap."""
    old = target.with_name(f".old-{os.getpid()}-{target.name}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_project(
    project: str | Path, until: str | None = None, start: str | None = None, show_progress: bool = True
) -> dict:
    """Run the stages up to date; return {stage: "ran" | "up to date" | "not needed"}."""
    for name, stage in (("--until", until), ("--from", start)):
        if stage is not None and stage not in STAGES:
            raise PipelineError(f"{name} {stage}: unknown stage (stages: {', '.join(STAGES)})")
    root, spec = load_project(project)
    root = root.resolve()
    from filelock import FileLock, Timeout

    (root / ".painface").mkdir(exist_ok=True)
    try:
        with FileLock(str(root / ".painface" / "run.lock"), timeout=0):
            return _run_locked(root, spec, until, start, show_progress)
    except Timeout:
        raise PipelineError(f"{root}: another 'painface run' is working on this project") from None


def _run_locked(root: Path, spec: ProjectSpec, until: str | None, start: str | None, show_progress: bool) -> dict:
    for leftover in list(root.glob(".results-*")) + list(root.glob(".old-*")):
        shutil.rmtree(leftover, ignore_errors=True)  # from a run that was killed (we hold the lock)
    state = _load_state(root)
    if start is not None:  # forced: forget this stage's and later stages' fingerprints
        for s in STAGES[STAGES.index(start) :]:
            state.pop(s, None)
    last = STAGES.index(until) if until else len(STAGES) - 1
    done: dict[str, str] = {}
    upstream = ""
    t0 = time.time()
    for i, stage in enumerate(STAGES[: last + 1]):
        runner = RUNNERS[stage]
        fingerprint, needed = runner.fingerprint(root, spec, upstream)
        if not needed:
            done[stage] = "not needed"
            continue
        if state.get(stage) == fingerprint and runner.output_ok(root, spec):
            done[stage] = "up to date"
            _log(f"[{i + 1}/{len(STAGES)}] {stage}: up to date")
        else:
            _log(f"[{i + 1}/{len(STAGES)}] {stage}: running")
            started = time.time()
            runner.run(root, spec, show_progress, fingerprint)
            state[stage] = fingerprint
            _save_state(root, state)
            done[stage] = "ran"
            _log(f"[{i + 1}/{len(STAGES)}] {stage}: done in {time.time() - started:.1f} s")
        upstream = fingerprint
    report = root / "results" / "report.html"
    ran = sum(v == "ran" for v in done.values())
    where = (
        f"report {report} (in the browser: painface review {root})"
        if report.exists() and "analyze" in done
        else f"stopped after {STAGES[last]}"
    )
    _log(
        f"painface run: {ran} stage(s) ran, {len(done) - ran} up to date or not needed, "
        f"{time.time() - t0:.0f} s; {where}"
    )
    return done


# -- the stages --------------------------------------------------------------------------


class Stage:
    def fingerprint(self, root: Path, spec: ProjectSpec, upstream: str) -> tuple[str, bool]:
        raise NotImplementedError

    def output_ok(self, root: Path, spec: ProjectSpec) -> bool:
        raise NotImplementedError

    def run(self, root: Path, spec: ProjectSpec, show_progress: bool, fingerprint: str) -> None:
        raise NotImplementedError


class ManifestStage(Stage):
    """Always rebuilt (cheap: it reads each video's header); its fingerprint is the manifest's
    content, so later stages re-run only when the recordings or their metadata changed."""

    def fingerprint(self, root, spec, upstream):
        out, unmatched = build_manifest(root)
        for line in unmatched:
            _log(f"  not used: {line}")
        if spec.keypoints.dlc_config:  # keypoint files are then this run's output, not its input
            import pandas as pd

            return digest(pd.read_csv(out).drop(columns=["keypoints"]).to_csv(index=False)), True
        return file_digest(out), True

    def output_ok(self, root, spec):
        return (root / "manifest.csv").is_file()

    def run(self, root, spec, show_progress, fingerprint):
        pass  # built while fingerprinting


class KeypointsStage(Stage):
    """DeepLabCut on every video without a keypoint file, into ``keypoints/`` (DeepLabCut's
    own file names, so discovery finds them next time)."""

    def fingerprint(self, root, spec, upstream):
        k = spec.keypoints
        # a DeepLabCut project is run inside extract, on the frames it decodes (one pass); this
        # stage remains for keypoints on a cluster (cluster.executor: slurm), one task per video
        if not k.dlc_config or not spec.cluster.remote:
            return "", False
        config = (root / k.dlc_config).resolve()
        return digest(upstream, file_digest(config), k.shuffle, k.analysis_height), True

    def output_ok(self, root, spec):
        from painface.manifest import read_manifest

        return read_manifest(root / "manifest.csv")["keypoints"].notna().all()

    def run(self, root, spec, show_progress, fingerprint):
        from painface.dlc import add_keypoints

        k = spec.keypoints
        add_keypoints(
            root / "manifest.csv",
            (root / k.dlc_config).resolve(),
            root / k.folder,
            shuffle=k.shuffle,
            analysis_height=k.analysis_height,
            device=k.device,
            cluster=spec.cluster,
            show_progress=show_progress,
            batch_size=k.batch_size,
        )
        build_manifest(root)  # now with the new keypoint files


class ExtractStage(Stage):
    def fingerprint(self, root, spec, upstream):
        k = spec.keypoints
        dlc = [file_digest((root / k.dlc_config).resolve()), k.shuffle, k.analysis_height] if k.dlc_config else None
        return digest(upstream, asdict(spec.extract), k.bodypart_map, dlc), True

    def output_ok(self, root, spec):
        return (root / "store" / "store.json").is_file()

    def run(self, root, spec, show_progress, fingerprint):
        from painface.extract import ExtractConfig, extract

        e = spec.extract
        cfg = ExtractConfig(
            crop_size=e.crop_size,
            threshold=e.threshold,
            crop_px=e.crop_px,
            reference_rows=e.reference_rows,
            workers=e.workers,
            bodypart_map=dict(spec.keypoints.bodypart_map),
        )
        store, started = root / "store", root / ".painface" / "extract.started"
        # a store begun with these inputs and settings is resumed where it stopped; any other
        # store (other settings, other recordings) is rebuilt, never mixed into
        if store.exists() and (not started.exists() or started.read_text() != fingerprint):
            shutil.rmtree(store)
        write_text(started, fingerprint)
        k = spec.keypoints
        if k.dlc_config and read_manifest(root / "manifest.csv")["keypoints"].isna().any():
            from painface.dlc import extract_onepass

            _, errors = extract_onepass(
                root / "manifest.csv",
                store,
                cfg,
                (root / k.dlc_config).resolve(),
                root / k.folder,
                shuffle=k.shuffle,
                analysis_height=k.analysis_height,
                device=k.device,
                batch_size=k.batch_size,
            )
            if errors:
                raise PipelineError("extract: " + "; ".join(errors))
            build_manifest(root)  # now naming DeepLabCut's new files
        _, errors = extract(root / "manifest.csv", store, cfg, show_progress=show_progress, cluster=spec.cluster)
        if errors:
            raise PipelineError("extract: " + "; ".join(errors))


class TrainStage(Stage):
    """Only when painface.yaml names no model: train on this project's crops (the weak
    labels of paper step 4) with the package's configs and ``model.train_overrides``."""

    def fingerprint(self, root, spec, upstream):
        if spec.model.checkpoint:
            return "", False
        return digest(upstream, list(spec.model.train_overrides)), True

    def output_ok(self, root, spec):
        return (root / "models" / "trained.ckpt").is_file()

    def run(self, root, spec, show_progress, fingerprint):
        from painface.training import compose_config, train

        work = root / "models" / "run"
        shutil.rmtree(work, ignore_errors=True)
        cfg = compose_config(
            "train",
            [
                "data=store",
                f"data.store={root / 'store'}",
                f"paths.output_dir={work}",
                f"paths.log_dir={work}",
                *(["trainer.enable_progress_bar=false"] if not show_progress else []),
                *spec.model.train_overrides,
            ],
        )
        train(cfg)
        best = sorted((work / "checkpoints").glob("*.ckpt"))
        best = [p for p in best if p.name != "last.ckpt"] or best
        if not best:
            raise PipelineError(f"train: no checkpoint written in {work / 'checkpoints'}")
        tmp = root / "models" / ".trained.ckpt.tmp"
        shutil.copyfile(best[0], tmp)
        os.replace(tmp, root / "models" / "trained.ckpt")


def checkpoint_of(root: Path, spec: ProjectSpec) -> Path:
    if spec.model.checkpoint:
        path = (root / spec.model.checkpoint).resolve()
        if not path.exists():
            raise PipelineError(f"{root / 'painface.yaml'}: model.checkpoint: not found: {path}")
        return path
    return root / "models" / "trained.ckpt"


class ScoreStage(Stage):
    def fingerprint(self, root, spec, upstream):
        ckpt = checkpoint_of(root, spec)
        ident = (
            file_digest(ckpt)
            if ckpt.is_file()
            else digest(sorted((p.name, file_digest(p)) for p in ckpt.iterdir() if p.is_file()))
            if ckpt.is_dir()
            else "pending"
        )
        return digest(upstream, ident, spec.model.temperature), True

    def output_ok(self, root, spec):
        return (root / "predictions" / "predictions.parquet").is_file()

    def run(self, root, spec, show_progress, fingerprint):
        from painface.predict import score

        kwargs = dict(
            store=root / "store",
            out=root / "predictions" / "predictions.parquet",
            batch_size=spec.model.batch_size,
            temperature=spec.model.temperature,
        )
        if spec.cluster.remote:  # the whole store in one job (a GPU node with cluster.gpus_per_task: 1)
            from painface.cluster import run_on_slurm

            run_on_slurm(
                score, spec.cluster, root / "predictions" / ".submitit", "score", checkpoint_of(root, spec), **kwargs
            )
        else:
            score(checkpoint_of(root, spec), **kwargs)


class AnalyzeStage(Stage):
    def fingerprint(self, root, spec, upstream):
        return digest(upstream, spec.name, spec.description, spec.analysis), True

    def output_ok(self, root, spec):
        return (root / "results" / "report.html").is_file()

    def run(self, root, spec, show_progress, fingerprint):
        from painface.analysis import analyze_study

        tmp = root / f".results-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        analyze_study(root / "painface.yaml", root / "predictions" / "predictions.parquet", root / "store", tmp)
        _replace_folder(tmp, root / "results")


RUNNERS: dict[str, Stage] = {
    "manifest": ManifestStage(),
    "keypoints": KeypointsStage(),
    "extract": ExtractStage(),
    "train": TrainStage(),
    "score": ScoreStage(),
    "analyze": AnalyzeStage(),
}
