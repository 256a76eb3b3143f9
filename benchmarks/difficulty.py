"""Is the synthetic task non-trivial, yet learnable? (issue: synthetic mice, difficulty)

On mice held out from training, at the default signal:
  - logistic regression on grey 32x32 pixels should stay at <= 70 % accuracy;
  - the paper's CNN (conf/model/paper.yaml, Adam 1e-3, batch 128, +-20 deg rotation,
    horizontal flip) should reach >= 90 %.
Crops are rendered directly (centred as the crop rules centre them), 96x96 px.

    python benchmarks/difficulty.py [--train-mice 24] [--test-mice 8] [--per-mouse 200] [--epochs 12]
"""

import argparse
import json
import time

import cv2
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from painface.data import augment_and_resize, to_tensor
from painface.models import PaperCNN
from painface.synthetic.crops import render_crops

p = argparse.ArgumentParser()
p.add_argument("--train-mice", type=int, default=24)
p.add_argument("--val-mice", type=int, default=4, help="held-out mice that pick the epoch, as ModelCheckpoint does")
p.add_argument("--test-mice", type=int, default=8)
p.add_argument("--per-mouse", type=int, default=200)
p.add_argument("--epochs", type=int, default=12)
p.add_argument("--input-size", type=int, default=64)
p.add_argument("--signal", type=float, default=1.0)
args = p.parse_args()
torch.manual_seed(0)
t0 = time.time()
x, y, mouse = render_crops(
    args.train_mice + args.val_mice + args.test_mice, args.per_mouse, seed=11, size=96, signal=args.signal
)
train = mouse < args.train_mice
val = (mouse >= args.train_mice) & (mouse < args.train_mice + args.val_mice)
test = mouse >= args.train_mice + args.val_mice
grey = np.stack([cv2.resize(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA) for i in x])
grey = grey.reshape(len(x), -1) / 255.0
lr_acc = max(
    LogisticRegression(C=c, max_iter=3000).fit(grey[train], y[train]).score(grey[test], y[test])
    for c in (0.01, 0.1, 1.0)
)
print(f"logistic regression, grey 32x32, held-out mice: {lr_acc:.3f} (best of C in 0.01/0.1/1)", flush=True)

net = PaperCNN()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
xt, yt = x[train], torch.tensor(y[train])
test_x = torch.stack([to_tensor(augment_and_resize(i, args.input_size, None)) for i in x[test]])
val_x = torch.stack([to_tensor(augment_and_resize(i, args.input_size, None)) for i in x[val]])
best_val, best_test = -1.0, None
for epoch in range(args.epochs):
    net.train()
    order = rng.permutation(len(xt))
    for b in range(0, len(order), 128):
        idx = order[b : b + 128]
        batch = torch.stack([to_tensor(augment_and_resize(xt[i], args.input_size, rng)) for i in idx])
        loss = torch.nn.functional.cross_entropy(net(batch), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        val_acc = (net(val_x).argmax(1).numpy() == y[val]).mean()
        cnn_acc = (net(test_x).argmax(1).numpy() == y[test]).mean()
    if val_acc > best_val:
        best_val, best_test = val_acc, cnn_acc
    print(f"epoch {epoch + 1}: val mice {val_acc:.3f}, test mice {cnn_acc:.3f}", flush=True)
print(
    json.dumps(
        {
            "logreg_acc": round(float(lr_acc), 3),
            "cnn_acc_selected_on_val": round(float(best_test), 3),
            "cnn_acc_last_epoch": round(float(cnn_acc), 3),
            "train_mice": args.train_mice,
            "val_mice": args.val_mice,
            "test_mice": args.test_mice,
            "per_mouse": args.per_mouse,
            "epochs": args.epochs,
            "seconds": round(time.time() - t0),
        }
    )
)
