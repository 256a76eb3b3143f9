"""Per-video work on a SLURM cluster: one job-array task per video (or per chunk of videos),
submitted with submitit, so ``painface keypoints``/``extract``/``score`` (and ``painface run``)
scale past one machine with ``--executor slurm``.

The tasks write exactly what a local run writes (each store part is published whole by
the task that made it), so a cluster-built store equals a local one, and a cancelled array
re-run finishes only what is missing. The submitting process waits, showing progress, and
collects each task's result or the reason it did not finish.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from painface.errors import PainfaceError


class ClusterError(PainfaceError):
    pass


@dataclass
class ClusterConfig:
    executor: str = "local"  # local | slurm
    partition: str | None = None
    time_min: int = 120  # per task
    mem_gb: float = 8
    cpus_per_task: int = 2
    gpus_per_task: int = 0  # DeepLabCut and scoring use a GPU when given one
    array_parallelism: int = 64  # tasks running at once
    videos_per_task: int = 1
    folder: str | None = None  # submitit's scripts and logs (default: beside the output)
    setup: list = field(default_factory=list)  # shell lines run before each task, e.g. "module load cuda"

    def __post_init__(self):
        if self.executor not in ("local", "slurm"):
            raise ClusterError(f"--executor: '{self.executor}' unknown (local or slurm)")
        for key in ("time_min", "cpus_per_task", "array_parallelism", "videos_per_task"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ClusterError(f"cluster.{key}: must be a positive integer, got {getattr(self, key)!r}")
        if self.gpus_per_task < 0 or self.mem_gb <= 0:
            raise ClusterError("cluster.gpus_per_task must be >= 0 and cluster.mem_gb > 0")

    @property
    def remote(self) -> bool:
        return self.executor == "slurm"


def add_cluster_options(parser) -> None:
    """The same options on every command that can run on the cluster."""
    g = parser.add_argument_group("cluster (SLURM, through submitit)")
    g.add_argument("--executor", default="local", choices=("local", "slurm"), help="where the per-video work runs")
    g.add_argument("--partition", default=None, help="SLURM partition (none: the cluster's default)")
    g.add_argument("--time-min", type=int, default=120, help="time limit per task, minutes")
    g.add_argument("--mem-gb", type=float, default=8, help="memory per task")
    g.add_argument("--cpus-per-task", type=int, default=2, help="CPUs per task")
    g.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per task")
    g.add_argument("--array-parallelism", type=int, default=64, help="tasks running at once")
    g.add_argument("--videos-per-task", type=int, default=1, help="videos per array task")


def from_args(args) -> ClusterConfig:
    return ClusterConfig(
        executor=args.executor,
        partition=args.partition,
        time_min=args.time_min,
        mem_gb=args.mem_gb,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
        array_parallelism=args.array_parallelism,
        videos_per_task=args.videos_per_task,
    )


def executor(cfg: ClusterConfig, folder: Path, name: str):
    try:
        import submitit
    except ImportError:
        raise ClusterError("--executor slurm needs submitit: pip install 'painface[slurm]'") from None
    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
    params = {
        "timeout_min": cfg.time_min,
        "mem_gb": cfg.mem_gb,
        "cpus_per_task": cfg.cpus_per_task,
        "slurm_array_parallelism": cfg.array_parallelism,
        "name": name,
        "slurm_setup": list(cfg.setup),
    }
    if cfg.partition:
        params["slurm_partition"] = cfg.partition
    if cfg.gpus_per_task:
        params["gpus_per_node"] = cfg.gpus_per_task
    ex.update_parameters(**params)
    return ex


def map_on_slurm(
    fn, items: list, cfg: ClusterConfig, folder: Path, name: str, show_progress: bool = True, unit: str = "video"
) -> list:
    """``fn(chunk)`` for each chunk of ``items`` as a SLURM job array; returns, per chunk, its
    result or the exception that stopped it (a cancelled or failed task)."""
    chunks = [items[i : i + cfg.videos_per_task] for i in range(0, len(items), cfg.videos_per_task)]
    if not chunks:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    jobs = executor(cfg, folder, name).map_array(fn, chunks)
    bar = tqdm(
        total=len(items),
        desc=f"{name} on SLURM (array {jobs[0].job_id.split('_')[0]})",
        unit=unit,
        disable=not show_progress,
    )
    pending = dict(enumerate(jobs))
    results: list = [None] * len(jobs)
    try:
        while pending:
            for i, job in list(pending.items()):
                if job.done():
                    state = job.state
                    if not job.paths.result_pickle.exists() and not state.startswith("COMPLETED"):
                        # cancelled or killed before it wrote anything: say so now (result() would
                        # wait 15 s per task for a file that will never come)
                        results[i] = ClusterError(f"SLURM task {job.job_id} ended {state} before finishing")
                    else:
                        try:
                            results[i] = job.result()
                        except Exception as exc:  # crashed or timed out: reported, not raised
                            results[i] = ClusterError(f"SLURM task {job.job_id} ({state}): {str(exc).splitlines()[0]}")
                    bar.update(len(chunks[i]))
                    del pending[i]
            if pending:
                time.sleep(0.5)
    except BaseException:
        for job in pending.values():  # Ctrl-C on the submitting side stops the array too
            job.cancel(check=False)
        raise
    finally:
        bar.close()
    return results


def run_on_slurm(fn, cfg: ClusterConfig, folder: Path, name: str, *args, **kwargs):
    """``fn(*args, **kwargs)`` as one SLURM job; its result, or a one-line error."""
    folder.mkdir(parents=True, exist_ok=True)
    job = executor(cfg, folder, name).submit(fn, *args, **kwargs)
    print(f"{name}: SLURM job {job.job_id}, logs in {folder}", flush=True)
    try:
        return job.result()
    except PainfaceError:
        raise
    except Exception as exc:
        raise ClusterError(f"SLURM job {job.job_id} ({job.state}): {str(exc).strip().splitlines()[-1]}") from None


def describe(cfg: ClusterConfig) -> dict:
    return asdict(cfg)
