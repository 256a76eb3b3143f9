"""Submit-to-result overhead of one job on a SLURM cluster (run scripts/local-slurm start
first for the local one): a trivial sbatch job, and a trivial submitit job (what painface's
--executor slurm and hydra/launcher=slurm pay per task), N times each."""

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def nothing() -> int:
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=5)
    args = p.parse_args()
    import submitit

    out = {
        "machine": f"{platform.node()} ({platform.machine()}, {subprocess.getoutput('nproc')} CPUs)",
        "slurm": subprocess.getoutput("sinfo --version"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        sb = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            subprocess.run(["sbatch", "--wait", "-o", "/dev/null", "--wrap", "true"], check=True, capture_output=True)
            sb.append(time.perf_counter() - t0)
        ex = submitit.AutoExecutor(folder=str(Path(tmp) / "%j"), cluster="slurm")
        ex.update_parameters(timeout_min=5, mem_gb=1, cpus_per_task=1)
        st = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            ex.submit(nothing).result()
            st.append(time.perf_counter() - t0)
    out["sbatch --wait, trivial job (s)"] = {
        "median": round(statistics.median(sb), 2),
        "all": [round(x, 2) for x in sb],
    }
    out["submitit job, trivial function (s)"] = {
        "median": round(statistics.median(st), 2),
        "all": [round(x, 2) for x in st],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
