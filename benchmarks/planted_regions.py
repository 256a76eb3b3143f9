"""Does the region analysis find the planted action unit? (Fig. 2 validation, issue 10 item 5)

For each action unit and seed: render a study with the pain expression planted in that
unit only, train the paper CNN through ``painface.training.train`` and rank the facial
regions with ``painface interpret``'s own function on three mice that neither trained
the network nor chose its checkpoint (painface.synthetic.planted). One JSON line per run
is appended to the results file, so an interrupted benchmark resumes.

    python benchmarks/planted_regions.py [--units orbital ear ...] [--seeds 1 2 3 4 5]
           [--work /tmp/planted] [--results benchmarks/results/planted_regions.jsonl]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import pandas as pd

from painface.synthetic.planted import planted_run
from painface.synthetic.render import ACTION_UNITS

p = argparse.ArgumentParser()
p.add_argument("--units", nargs="+", default=list(ACTION_UNITS))
p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
p.add_argument("--work", default="/tmp/painface-planted")
p.add_argument("--results", default="benchmarks/results/planted_regions.jsonl")
args = p.parse_args()

results = Path(args.results)
done = {(r["unit"], r["seed"]) for r in map(json.loads, results.read_text().splitlines())} if results.exists() else set()
for seed in args.seeds:
    for au in args.units:
        if (au, seed) in done:
            continue
        t0 = time.perf_counter()
        row = planted_run(au, seed, Path(args.work) / f"{au}_{seed}")
        row.update(seconds=round(time.perf_counter() - t0, 1), machine=f"{platform.machine()}, {platform.processor() or '?'}")
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

rows = pd.DataFrame(map(json.loads, results.read_text().splitlines()))
table = rows.pivot_table(index="unit", columns="seed", values="rank", aggfunc="first")
table["first in"] = (table == 1).sum(axis=1).astype(str) + f"/{table.shape[1]}"
table["top two in"] = (table.drop(columns="first in") <= 2).sum(axis=1).astype(str) + f"/{table.shape[1] - 1}"
print("\nrank of the planted region (1 = highest Grad-CAM enrichment among the 12 assessed regions)")
print(table.to_string())
