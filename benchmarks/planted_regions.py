"""Does the region analysis find the planted action unit? (Fig. 2 validation, issue 10 item 5)

For each action unit and seed: render a study with the pain expression planted in that
unit only, train the paper CNN through ``painface.training.train`` and rank the facial
regions with ``painface interpret``'s own function on three mice that neither trained
the network nor chose its checkpoint (painface.synthetic.planted). One JSON line per run
is appended to the results file (named after the settings), so an interrupted benchmark
resumes; a run whose store is already rendered reuses it.

    python benchmarks/planted_regions.py [--units orbital ear ...] [--seeds 1 2 3 4 5]
           [--epochs 15] [--samples-per-epoch 2048] [--block 4 | --block last]
           [--work /tmp/painface-planted]

Three rankings of the planted region come from each run's tables: by Grad-CAM
enrichment on pain predictions (regions_random.csv), by the positivity difference pain -
no pain (touch rule) that the paper's chi-squared tests, and by the pain-class contrast
(regions_contrast.csv).
"""

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import pandas as pd

from painface.synthetic.planted import planted_ranking, planted_run
from painface.synthetic.render import ACTION_UNITS

p = argparse.ArgumentParser()
p.add_argument("--units", nargs="+", default=list(ACTION_UNITS))
p.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3, 4, 5], help="none: only summarise what is done")
p.add_argument("--epochs", type=int, default=15)
p.add_argument("--samples-per-epoch", type=int, default=2048)
p.add_argument("--block", default="4", help="Grad-CAM conv block, or 'last' for the paper's last conv layer")
p.add_argument("--work", default="/tmp/painface-planted")
p.add_argument("--results", default=None, help="default: benchmarks/results/planted_regions_<block>_<epochs>ep.jsonl")
args = p.parse_args()


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    names = (
        [line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if "model name" in line]
        if info.exists()
        else []
    )
    return names[0] if names else platform.processor() or "?"


CPU = cpu_name()
COMMIT = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"

block = None if args.block == "last" else int(args.block)
tag = f"{'lastlayer' if block is None else f'block{block}'}_{args.epochs}ep"
results = Path(args.results or f"benchmarks/results/planted_regions_{tag}.jsonl")
work = Path(args.work)
# a run is done when its row has every ranking; an older row is redone, reusing its training
done = (
    {(r["unit"], r["seed"]) for r in map(json.loads, results.read_text().splitlines()) if "contrast" in r}
    if results.exists()
    else set()
)
for seed in args.seeds:
    for au in args.units:
        if (au, seed) in done:
            continue
        t0 = time.perf_counter()
        run_dir = work / tag / f"{au}_{seed}"
        shared_store = work / f"{au}_{seed}"  # the rendered store depends on unit and seed only
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("store", "store_videos"):
            if (shared_store / name).exists() and not (run_dir / name).exists():
                (run_dir / name).symlink_to(shared_store / name)
        row = planted_run(au, seed, run_dir, epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, block=block)
        row.update(
            seconds=round(time.perf_counter() - t0, 1),
            machine=f"{platform.machine()}, {platform.processor() or '?'}",
            cpu=CPU,
            commit=COMMIT,  # the rows of one table may come from different commits: each says which
        )
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

rows = pd.DataFrame(map(json.loads, results.read_text().splitlines())).drop_duplicates(["unit", "seed"], keep="last")
# the rankings each row recorded; where the run's folder survives, recomputed from its own
# regions tables (the same rule for every row), so a lost work folder drops no row
for col, key in (("rank_positivity", "positivity"), ("rank_contrast", "contrast")):
    if key in rows:
        rows[col] = rows[key].map(lambda d: d["rank"] if isinstance(d, dict) else None)
for i, r in rows.iterrows():
    csv = work / tag / f"{r['unit']}_{r['seed']}" / "interpret" / "regions_random.csv"
    if csv.exists():
        enrichment = planted_ranking(csv, r["unit"])
        rows.at[i, "rank"], rows.at[i, "planted_enrichment"] = enrichment["rank"], enrichment["planted_enrichment"]
        rows.at[i, "rank_positivity"] = planted_ranking(csv, r["unit"], by="positivity_difference")["rank"]
        contrast = csv.with_name("regions_contrast.csv")
        if contrast.exists():
            rows.at[i, "rank_contrast"] = planted_ranking(contrast, r["unit"], "contrast")["rank"]
lines = [f"settings: {tag} (128 px input; Grad-CAM {'last conv layer' if block is None else f'conv block {block}'})"]
for col, what in (
    ("rank", "Grad-CAM enrichment on pain predictions"),
    ("rank_positivity", "positivity difference pain - no pain (touch rule)"),
    ("rank_contrast", "pain-class Grad-CAM enrichment, pain - no-pain predictions (regions_contrast.csv)"),
):
    if col not in rows:
        continue
    rank = rows.pivot_table(index="unit", columns="seed", values=col, aggfunc="first")
    n = rank.notna().sum(axis=1)
    summary = pd.DataFrame(
        {
            "first": (rank == 1).sum(axis=1).astype(str) + "/" + n.astype(str),
            "top two": (rank <= 2).sum(axis=1).astype(str) + "/" + n.astype(str),
        }
    )
    lines += [f"\nrank of the planted region by {what} (1 = first)"]
    lines += [pd.concat([rank.astype("Int64").add_prefix("seed "), summary], axis=1).to_string()]
enrich = rows.pivot_table(index="unit", columns="seed", values="planted_enrichment", aggfunc="first")
acc = rows.pivot_table(index="unit", columns="seed", values="val_acc", aggfunc="first")
lines += ["\nenrichment of the planted region (Grad-CAM mass share / area share; 1 = chance)"]
lines += [enrich.add_prefix("seed ").to_string()]
lines += ["\naccuracy on the validation mice", acc.add_prefix("seed ").to_string()]
text = "\n".join(lines)
print(text)
results.with_suffix(".txt").write_text(text + "\n")
