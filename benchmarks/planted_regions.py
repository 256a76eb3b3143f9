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
p.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3, 4, 5], help="none: only summarise what is done")
p.add_argument("--work", default="/tmp/painface-planted")
p.add_argument("--results", default="benchmarks/results/planted_regions.jsonl")
args = p.parse_args()

results = Path(args.results)
done = (
    {(r["unit"], r["seed"]) for r in map(json.loads, results.read_text().splitlines())} if results.exists() else set()
)
for seed in args.seeds:
    for au in args.units:
        if (au, seed) in done:
            continue
        t0 = time.perf_counter()
        row = planted_run(au, seed, Path(args.work) / f"{au}_{seed}")
        row.update(
            seconds=round(time.perf_counter() - t0, 1), machine=f"{platform.machine()}, {platform.processor() or '?'}"
        )
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

rows = pd.DataFrame(map(json.loads, results.read_text().splitlines()))
# rank and enrichment recomputed from each run's own regions table (the same rule for every row)
from painface.synthetic.planted import planted_ranking  # noqa: E402

for i, r in rows.iterrows():
    csv = Path(args.work) / f"{r['unit']}_{r['seed']}" / "interpret" / "regions_random.csv"
    if csv.exists():
        for k, v in planted_ranking(csv, r["unit"]).items():
            rows.at[i, k] = v if not isinstance(v, list) else str(v)
rank = rows.pivot_table(index="unit", columns="seed", values="rank", aggfunc="first")
enrich = rows.pivot_table(index="unit", columns="seed", values="planted_enrichment", aggfunc="first")
n = rank.notna().sum(axis=1)
summary = pd.DataFrame(
    {
        "first": (rank == 1).sum(axis=1).astype(str) + "/" + n.astype(str),
        "top two": (rank <= 2).sum(axis=1).astype(str) + "/" + n.astype(str),
        "enrichment > 1": (enrich > 1).sum(axis=1).astype(str) + "/" + n.astype(str),
    }
)
print("\nrank of the planted region among the assessed regions (1 = highest Grad-CAM enrichment)")
print(pd.concat([rank.astype("Int64").add_prefix("seed "), summary], axis=1).to_string())
print("\nenrichment of the planted region (Grad-CAM mass share / area share; 1 = chance)")
print(enrich.add_prefix("seed ").to_string())
