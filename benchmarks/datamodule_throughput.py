"""DataModule throughput and CPU training speed (issue: training framework, performance).

- crops/s delivered by PainFaceDataModule.train_dataloader() (--workers, default 2; augmentation on),
  divided by a bare single-process loop that decodes and augments the same crops
  (target >= 0.9);
- training images/s of the paper CNN on CPU (forward + backward + Adam step);
- with a CUDA GPU: images/s with bf16 autocast and channels_last, and the share of
  each step the GPU waits on the loader.

  python benchmarks/datamodule_throughput.py [--store PATH] [--samples 30000] [--input-size 96]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from painface.data import PainFaceDataModule, augment_and_resize, to_tensor
from painface.models import PaperCNN
from painface.store import CropReader
from painface.synthetic.store import build_synthetic_store

p = argparse.ArgumentParser()
p.add_argument("--store", default=None, help="an existing crop store (default: build a small synthetic one)")
# the paper's epoch: 30,000 random crops (step 5); the workers' start-up is part of every epoch
p.add_argument("--samples", type=int, default=30000)
p.add_argument("--input-size", type=int, default=96)
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--train-batches", type=int, default=10)
p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
args = p.parse_args()

tmp = tempfile.TemporaryDirectory()
store = Path(args.store or Path(tmp.name) / "store")
if not (store / "store.json").exists():
    print("building a synthetic store ...", file=sys.stderr, flush=True)  # stdout is the JSON
    build_synthetic_store(store, "experiments/train_balbc.yaml", workers=2, mice_per_group=4, pre_min=0.5, post_min=0.5)

dm = PainFaceDataModule(
    str(store),
    samples_per_epoch=args.samples,
    batch_size=args.batch_size,
    num_workers=args.workers,
    input_size=args.input_size,
    persistent_workers=False,
    pin_memory=torch.cuda.is_available(),
)
dm.setup()
loader = dm.train_dataloader()

# bare loop: the same decode + augment + normalise, no DataLoader, one process
rows = dm.train_index.sample(args.samples, replace=True, random_state=0)[["image", "offset", "nbytes"]].to_numpy()
reader, rng = CropReader(store), np.random.default_rng(0)
t0 = time.perf_counter()
for image, offset, nbytes in rows:
    to_tensor(augment_and_resize(reader.read(image, offset, nbytes), args.input_size, rng))
bare = len(rows) / (time.perf_counter() - t0)

t0, n = time.perf_counter(), 0
for batch in loader:
    n += len(batch["label"])
module = n / (time.perf_counter() - t0)  # includes worker start-up, as a real epoch does

# CPU training speed
torch.manual_seed(0)
net = PaperCNN().to(memory_format=torch.channels_last)  # the layout PainClassifier trains in
opt = torch.optim.Adam(net.parameters(), 1e-3)
x = torch.randn(args.batch_size, 3, args.input_size, args.input_size).to(memory_format=torch.channels_last)
y = torch.randint(0, 2, (args.batch_size,))


def step(model, xb, yb, autocast=False):
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


step(net, x, y)  # warm-up
t0 = time.perf_counter()
for _ in range(args.train_batches):
    step(net, x, y)
cpu_train = args.train_batches * args.batch_size / (time.perf_counter() - t0)

result = {
    "store": str(store),
    "input_size": args.input_size,
    "samples": n,
    "bare_decode_augment_crops_per_s": round(bare, 1),
    "workers": args.workers,
    "datamodule_crops_per_s": round(module, 1),
    "ratio": round(module / bare, 2),
    "target_ratio": 0.9,
    "cpu_train_images_per_s": round(cpu_train, 1),
    "torch_threads": torch.get_num_threads(),
    "machine": f"{platform.machine()} {os.cpu_count()} cores",
}

if torch.cuda.is_available():
    dev = torch.device("cuda")
    net = PaperCNN().to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    xg = x.to(dev).to(memory_format=torch.channels_last)
    yg = y.to(dev)
    for _ in range(3):
        step(net, xg, yg, autocast=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(50):
        step(net, xg, yg, autocast=True)
    torch.cuda.synchronize()
    gpu_compute = 50 * args.batch_size / (time.perf_counter() - t0)
    # end to end from the loader: time spent waiting for batches vs computing
    wait = compute = 0.0
    t = time.perf_counter()
    for batch in loader:
        t1 = time.perf_counter()
        wait += t1 - t
        xb = batch["image"].to(dev, non_blocking=True).to(memory_format=torch.channels_last)
        step(net, xb, batch["label"].to(dev, non_blocking=True), autocast=True)
        torch.cuda.synchronize()
        t = time.perf_counter()
        compute += t - t1
    result.update(
        {
            "gpu": torch.cuda.get_device_name(),
            "gpu_bf16_channels_last_images_per_s": round(gpu_compute, 1),
            "gpu_loader_wait_fraction": round(wait / (wait + compute), 2),
        }
    )
print(json.dumps(result, indent=2))
