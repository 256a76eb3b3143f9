"""Same networks, two Grad-CAM layers: does the last conv layer (the paper's) or conv block 4
find the planted region? (issue 10 item 4)

Re-runs ``painface interpret`` with ``--layer last`` on networks that
``benchmarks/planted_regions.py`` (defaults: 128 px, 15 epochs, block 4) already trained,
on the same three held-out mice, and ranks the planted region by enrichment and by the
pain-class contrast. One JSON line per run; the block-4 ranks of the same networks are in
planted_regions_block4_15ep.jsonl.

    python benchmarks/planted_layers.py orbital_1 nose_1 ... [--work /tmp/painface-planted/block4_15ep]
"""

import argparse
import json
import platform
from pathlib import Path

from painface.interpret import interpret_store
from painface.store import read_index
from painface.synthetic.planted import planted_ranking

p = argparse.ArgumentParser()
p.add_argument("runs", nargs="+", help="UNIT_SEED directories of the block-4 benchmark")
p.add_argument("--work", default="/tmp/painface-planted/block4_15ep")
p.add_argument("--held-out", type=int, default=3, help="as planted_run: the last N mice")
p.add_argument("--results", default="benchmarks/results/planted_regions_layers.jsonl")
args = p.parse_args()

for name in args.runs:
    au, seed = name.rsplit("_", 1)
    run = Path(args.work) / name
    checkpoint = json.loads((run / "run" / "metrics.json").read_text())["checkpoint"]
    held_out = sorted(read_index(run / "store")["mouse_id"].unique())[-args.held_out :]
    out = interpret_store(
        checkpoint,
        run / "store",
        run / "interpret_last",
        query=f"mouse_id in {held_out!r}",
        embedding="tsne",
        seed=int(seed),
        show_progress=False,
        block=None,
    )
    contrast = planted_ranking(out / "regions_contrast.csv", au, by="contrast")
    row = {
        "run": name,
        "block": "last",
        "rank_enrichment": planted_ranking(out / "regions_random.csv", au)["rank"],
        "rank_contrast": contrast["rank"],
        "top3_contrast": contrast["top3"],
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
    }
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
