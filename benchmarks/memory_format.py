"""The paper CNN on CPU in the default (NCHW) and channels_last memory layouts.

PainClassifier keeps its network in channels_last. This measures why: training images/s
(forward + backward + Adam step) and inference images/s for both layouts, and the
largest difference between their p(pain) on the same weights and images (float rounding
only). Writes one JSON object to stdout.

  python benchmarks/memory_format.py [--sizes 96 128] [--batch-size 64] [--batches 8]
"""

import argparse
import json
import os
import platform
import time

import torch

from painface.models import PaperCNN

p = argparse.ArgumentParser()
p.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--batches", type=int, default=8)
args = p.parse_args()


def images_per_s(fn, n_images: int) -> float:
    fn()  # warm-up: oneDNN picks its kernels on the first call
    t0 = time.perf_counter()
    for _ in range(args.batches):
        fn()
    return args.batches * n_images / (time.perf_counter() - t0)


rows = []
for size in args.sizes:
    torch.manual_seed(0)
    reference = PaperCNN()
    x = torch.randn(args.batch_size, 3, size, size)
    y = torch.randint(0, 2, (args.batch_size,))
    row = {"input_size": size, "batch_size": args.batch_size}
    probs = {}
    for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        net = PaperCNN().to(memory_format=fmt)
        net.load_state_dict(reference.state_dict())
        opt = torch.optim.Adam(net.parameters(), 1e-3)

        def train_step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

        net.eval()
        with torch.no_grad():
            probs[layout] = torch.softmax(net(x), 1)[:, 1]
            row[f"{layout}_infer_images_per_s"] = round(images_per_s(lambda: net(x), len(x)), 1)
        net.train()
        row[f"{layout}_train_images_per_s"] = round(images_per_s(train_step, len(x)), 1)
    row["train_speedup"] = round(row["channels_last_train_images_per_s"] / row["nchw_train_images_per_s"], 2)
    row["infer_speedup"] = round(row["channels_last_infer_images_per_s"] / row["nchw_infer_images_per_s"], 2)
    row["max_abs_p_pain_difference"] = float((probs["nchw"] - probs["channels_last"]).abs().max())
    rows.append(row)
    print(json.dumps(row), flush=True)

print(
    json.dumps(
        {
            "rows": rows,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {os.cpu_count()} cores",
        },
        indent=2,
    )
)
