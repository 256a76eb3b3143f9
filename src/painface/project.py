"""A lab's project folder, in the spirit of DeepLabCut's: one validated ``painface.yaml``,
an animals sheet, and a folder for what each stage writes.

``painface init`` writes the skeleton; ``painface manifest build`` finds the videos by a
filename pattern, joins the animals sheet, finds DeepLabCut's outputs by DeepLabCut's own
naming and writes ``manifest.csv``; ``painface run`` (``painface.pipeline``) goes from
there to the report.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd
import yaml

from painface import defaults
from painface.cluster import ClusterConfig
from painface.errors import PainfaceError
from painface.files import write_text

PROJECT_FILE = "painface.yaml"
ANIMAL_COLUMNS = ("mouse_id", "sex", "strain", "treatment")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v")
FIELDS = ("mouse_id", "phase", "camera", "session")


class ProjectError(PainfaceError):
    pass


@dataclass
class VideosSection:
    folder: str = "videos"
    # the fields painface reads from a file name; {phase} and {session} are optional
    pattern: str = "{mouse_id}_{phase}_{camera}.mp4"
    phase: str | None = None  # the phase of every video, when the names do not say
    # when the treatment happened, in seconds into each video: "end" = at the end of the video
    # (the pre-injection recording), a number = that second (0: the post recording starts with it)
    treatment_time: dict = field(default_factory=lambda: {"pre": "end", "post": 0})
    # frames to drop at the start of one camera's video so the cameras of a session line up
    frame_offsets: dict = field(default_factory=dict)  # {session_id: {camera: frames}}


@dataclass
class KeypointsSection:
    folder: str = "keypoints"  # DeepLabCut's .h5/.csv files (found by DeepLabCut's naming)
    dlc_config: str | None = None  # a DeepLabCut project's config.yaml: painface runs DeepLabCut
    shuffle: int = 1
    analysis_height: int = 720  # the paper analysed 4K video at 1280x720
    device: str = "auto"
    filtered: bool = False  # prefer DeepLabCut's filtered output when both exist
    bodypart_map: dict = field(default_factory=dict)  # {nose: snout, right_eye: reye, left_eye: leye}
    # DeepLabCut frames per batch; null: 8 on the CPU, 64 on a GPU (halved while it runs out of
    # memory). The one pass holds 4 batches of full-resolution frames: 6.4 GB at 4K for 64
    batch_size: int | None = None


@dataclass
class ExtractSection:
    crop_size: int = defaults.CROP_SIZE
    threshold: float = defaults.LIKELIHOOD_THRESHOLD
    crop_px: int = defaults.CROP_PX
    reference_rows: int = defaults.REFERENCE_ROWS
    workers: int = 2


@dataclass
class ModelSection:
    # a Lightning checkpoint or a folder from 'painface model export'; null: the train stage
    # trains one on this project's crops with the overrides below
    checkpoint: str | None = None
    train_overrides: list = field(default_factory=lambda: ["model=paper", "trainer.max_epochs=20"])
    temperature: float | str | None = None  # calibrate p(pain): a number or "auto"
    batch_size: int = 256


@dataclass
class ProjectSpec:
    name: str = "my_study"
    description: str = ""
    animals: str = "animals.csv"
    videos: VideosSection = field(default_factory=VideosSection)
    keypoints: KeypointsSection = field(default_factory=KeypointsSection)
    extract: ExtractSection = field(default_factory=ExtractSection)
    model: ModelSection = field(default_factory=ModelSection)
    # where keypoints, extract and score run: executor local, or slurm (a job array per stage)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    analysis: dict = field(
        default_factory=lambda: {
            "group_column": "treatment",
            "control": "vehicle",
            "order": ["vehicle", "ac"],
            "windows": {"pre": [-10, 0], "post": [0, 30]},
            "summary_window": "post",
            "bin_s": 60,
        }
    )


SECTIONS = {
    "videos": VideosSection,
    "keypoints": KeypointsSection,
    "extract": ExtractSection,
    "model": ModelSection,
    "cluster": ClusterConfig,
}

TEMPLATE_HEADER = """\
# painface project (painface init). Every key is checked when the project loads; an
# unknown key or a wrong type fails naming it. Paths are relative to this folder.
"""


def _check_keys(data: dict, cls, where: str) -> dict:
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ProjectError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
    return data


def load_project(project: str | Path) -> tuple[Path, ProjectSpec]:
    """The project folder and its validated ``painface.yaml``."""
    root = Path(project)
    path = root / PROJECT_FILE if root.is_dir() else root
    root = path.parent
    if not path.is_file():
        raise ProjectError(f"{path}: no painface project here (create one with 'painface init {root}')")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ProjectError(f"{path}: expected a mapping of settings")
    _check_keys(doc, ProjectSpec, str(path))
    kwargs = {}
    for key, value in doc.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ProjectError(f"{path}: '{key}' must be a mapping")
            kwargs[key] = SECTIONS[key](**_check_keys(value, SECTIONS[key], f"{path}: {key}"))
        else:
            kwargs[key] = value
    spec = ProjectSpec(**kwargs)
    _check_values(spec, path)
    return root, spec


def _check_values(spec: ProjectSpec, path: Path) -> None:
    v = spec.videos
    names = re.findall(r"{(\w+)}", v.pattern)
    for name in names:
        if name not in FIELDS:
            raise ProjectError(f"{path}: videos.pattern: unknown field '{{{name}}}' (use {', '.join(FIELDS)})")
    for need in ("mouse_id",):  # without {camera}: one camera, called cam1
        if need not in names:
            raise ProjectError(f"{path}: videos.pattern: '{v.pattern}' must contain {{{need}}}")
    if "phase" not in names and v.phase not in ("pre", "post"):
        raise ProjectError(f"{path}: videos.phase: the pattern has no {{phase}}, so set videos.phase to pre or post")
    for phase, when in v.treatment_time.items():
        if phase not in ("pre", "post") or not (when == "end" or isinstance(when, (int, float))):
            raise ProjectError(f"{path}: videos.treatment_time.{phase}: expected 'end' or seconds, got {when!r}")
    k = spec.keypoints
    counts = {"shuffle": k.shuffle, "analysis_height": k.analysis_height}
    if k.batch_size is not None:  # null: DeepLabCut's default for the device
        counts["batch_size"] = k.batch_size
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ProjectError(f"{path}: keypoints.{key}: must be a positive integer, got {value!r}")
    e = spec.extract
    if not 0 <= e.threshold <= 1:
        raise ProjectError(f"{path}: extract.threshold: must be in [0, 1], got {e.threshold!r}")
    for key in ("crop_size", "crop_px", "reference_rows", "workers"):
        if not isinstance(getattr(e, key), int) or getattr(e, key) < 1:
            raise ProjectError(f"{path}: extract.{key}: must be a positive integer, got {getattr(e, key)!r}")
    bin_s = spec.analysis.get("bin_s", 60)
    if not isinstance(bin_s, (int, float)) or bin_s <= 0:
        raise ProjectError(f"{path}: analysis.bin_s: must be a positive number of seconds, got {bin_s!r}")


def init_project(
    project: str | Path, pattern: str | None = None, phase: str | None = None, force: bool = False
) -> Path:
    """Write ``painface.yaml``, an ``animals.csv`` template and the stage folders."""
    root = Path(project)
    path = root / PROJECT_FILE
    if path.exists() and not force:
        raise ProjectError(f"{path}: a project already exists here (--force overwrites its painface.yaml)")
    spec = ProjectSpec(name=root.resolve().name)
    if pattern:
        spec.videos.pattern = pattern
    spec.videos.phase = phase
    try:
        _check_values(spec, path)
    except ProjectError as exc:  # nothing written yet; say which option sets it
        raise ProjectError(str(exc).replace("set videos.phase", "give --phase").replace("videos.pattern", "--pattern"))
    root.mkdir(parents=True, exist_ok=True)
    write_text(path, TEMPLATE_HEADER + yaml.safe_dump(asdict(spec), sort_keys=False))
    animals = root / "animals.csv"
    if not animals.exists():
        write_text(animals, "mouse_id,sex,strain,treatment\nm01,female,BALB/c,vehicle\nm02,male,BALB/c,ac\n")
    for folder in ("videos", "keypoints", "store", "predictions", "results", "models"):
        (root / folder).mkdir(exist_ok=True)
    return path


# -- discovery ------------------------------------------------------------------------


def pattern_regex(pattern: str) -> re.Pattern:
    """``{mouse_id}_{phase}_{camera}.mp4`` -> a regex with one named group per field."""
    out, pos = "", 0
    for m in re.finditer(r"{(\w+)}", pattern):
        # the phase can only be pre or post, which lets mouse ids contain the separator (ac_m01_pre_cam1)
        value = "pre|post" if m.group(1) == "phase" else "[^/]+?"
        out += re.escape(pattern[pos : m.start()]) + f"(?P<{m.group(1)}>{value})"
        pos = m.end()
    return re.compile("^" + out + re.escape(pattern[pos:]) + "$")


def read_animals(path: Path) -> pd.DataFrame:
    """The animals sheet (CSV or XLSX): one row per mouse, at least mouse_id, sex, strain, treatment."""
    if not path.is_file():
        raise ProjectError(f"{path}: animals sheet not found")
    try:
        if path.suffix.lower() in (".xlsx", ".xls"):
            df = pd.read_excel(path, dtype={"mouse_id": str})
        else:
            df = pd.read_csv(path, dtype={"mouse_id": str})
    except Exception as exc:  # pandas and openpyxl raise many kinds for a damaged sheet
        raise ProjectError(f"{path}: cannot read the animals sheet ({type(exc).__name__}: {exc})") from None
    for col in ANIMAL_COLUMNS:
        if col not in df.columns:
            raise ProjectError(f"{path}: missing column '{col}' (required: {', '.join(ANIMAL_COLUMNS)})")
    for i, row in df.iterrows():
        for col in ANIMAL_COLUMNS:
            if pd.isna(row[col]) or str(row[col]).strip() == "":
                raise ProjectError(f"{path}: row {i + 2}, column '{col}' is empty")
    dup = df["mouse_id"].duplicated()
    if dup.any():
        raise ProjectError(f"{path}: row {int(dup.idxmax()) + 2}: mouse '{df.loc[dup.idxmax(), 'mouse_id']}' twice")
    df["mouse_id"] = df["mouse_id"].astype(str).str.strip()
    return df


def find_dlc_output(video: Path, folders: list[Path], filtered: bool = False) -> Path | None:
    """DeepLabCut's file for ``video``: ``<stem>DLC_<scorer>...[filtered].h5`` (or .csv)."""
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [
                p for p in folder.iterdir() if p.name.startswith(video.stem + "DLC") and p.suffix in (".h5", ".csv")
            ]
    if not found:
        return None
    # one scorer: h5 before csv, and filtered or not as asked
    ranked = sorted(set(found), key=lambda p: (p.stem.endswith("filtered") != filtered, p.suffix != ".h5", p.name))
    stems = {p.stem.removesuffix("filtered") for p in ranked}
    if len(stems) > 1:
        raise ProjectError(f"{video}: DeepLabCut files of several models ({', '.join(sorted(stems))}); keep one")
    return ranked[0]


def probe(video: Path) -> tuple[float, int]:
    from painface.video import open_video

    cap, n, fps, _ = open_video(video)
    cap.release()
    return fps, n


def build_manifest(project: str | Path) -> tuple[Path, list[str]]:
    """Write ``PROJECT/manifest.csv``; return it and one line per video or animal left out."""
    from painface.manifest import validate_manifest, write_manifest

    root, spec = load_project(project)
    v = spec.videos
    folder = root / v.folder
    if not folder.is_dir():
        raise ProjectError(f"{folder}: videos folder not found (videos.folder in {root / PROJECT_FILE})")
    animals = read_animals(root / spec.animals).set_index("mouse_id")
    regex = pattern_regex(v.pattern)
    unmatched: list[str] = []
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES):
        m = regex.match(path.relative_to(folder).as_posix())
        if not m:
            unmatched.append(f"{path}: name does not match videos.pattern '{v.pattern}'")
            continue
        f = m.groupdict()
        phase = f.get("phase") or v.phase
        if phase not in ("pre", "post"):
            unmatched.append(f"{path}: phase '{phase}' is neither pre nor post")
            continue
        if f["mouse_id"] not in animals.index:
            unmatched.append(f"{path}: mouse '{f['mouse_id']}' is not in {spec.animals}")
            continue
        fps, n_frames = probe(path)
        session = f.get("session") or f"{f['mouse_id']}_{phase}"
        f["camera"] = f.get("camera") or "cam1"
        offset = int((v.frame_offsets.get(session) or {}).get(f["camera"], 0))
        when = v.treatment_time.get(phase, 0)
        treatment = (n_frames - offset) / fps if when == "end" else float(when)
        keypoints = find_dlc_output(path, [root / spec.keypoints.folder, path.parent], spec.keypoints.filtered)
        if keypoints is None and not spec.keypoints.dlc_config:
            unmatched.append(f"{path}: no DeepLabCut file '{path.stem}DLC_*.h5' in {spec.keypoints.folder}/")
            continue
        a = animals.loc[f["mouse_id"]]
        rows.append(
            {
                "session_id": session,
                "mouse_id": f["mouse_id"],
                **{c: a[c] for c in ("sex", "strain", "treatment")},
                "phase": phase,
                "camera": f["camera"],
                "video": str(path.resolve()),
                "keypoints": str(keypoints.resolve()) if keypoints else pd.NA,
                "fps": fps,
                "treatment_time_s": treatment,
                "frame_offset": offset,
                "frames": n_frames,
            }
        )
    seen = {r["mouse_id"] for r in rows}
    unmatched += [f"{spec.animals}: mouse '{m}' has no video" for m in animals.index if m not in seen]
    if not rows:
        raise ProjectError(f"{folder}: no video matches videos.pattern '{v.pattern}'" + _first(unmatched))
    df = pd.DataFrame(rows)
    _check_cameras(df)
    out = root / "manifest.csv"
    validate_manifest(df.drop(columns=["frames"]), source=str(out))
    write_manifest(df.drop(columns=["frames"]), out)
    return out, unmatched


def _first(lines: list[str]) -> str:
    return f" (e.g. {lines[0]})" if lines else ""


def _check_cameras(df: pd.DataFrame) -> None:
    """Fusion pairs the cameras' frames by index: a session's cameras must agree."""
    for session, g in df.groupby("session_id"):
        if g["fps"].nunique() > 1:
            raise ProjectError(
                f"session '{session}': cameras disagree on fps ("
                + ", ".join(f"{c}: {f:g}" for c, f in zip(g["camera"], g["fps"]))
                + ")"
            )
        usable = g["frames"] - g["frame_offset"]
        if usable.nunique() > 1:
            raise ProjectError(
                f"session '{session}': cameras have different frame counts ("
                + ", ".join(f"{c}: {n}" for c, n in zip(g["camera"], usable))
                + "); declare videos.frame_offsets in painface.yaml if one started early"
            )
