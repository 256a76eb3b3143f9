import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from painface.config import ConfigError
from painface.data import DataError
from painface.models import ModelError, PainClassifier, PaperCNN
from painface.training import train
from tests.conftest import ROOT, train_overrides

FAST = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
]


@pytest.mark.parametrize("model", ["paper", "resnet18"])
@pytest.mark.parametrize("data", ["store", "balbc", "c57bl6"])
def test_fast_dev_run_every_data_and_model(compose, store, data, model):
    cfg = compose(f"data={data}", f"model={model}", "debug=fdr", "data.n_folds=2")
    cfg.data.store = str(store)
    metrics = train(cfg)
    assert np.isfinite(metrics["test/loss"])


def test_paper_cnn_shape():
    net = PaperCNN(channels=[4, 8, 8, 8, 8, 16], fc=[8, 4])
    convs = [m for m in net.features.modules() if m.__class__.__name__ == "Conv2d"]
    assert len(convs) == 6 and all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    import torch

    out = net(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 2)
    assert net.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 16, 1, 1)


def test_to_tensor_by_hand():
    """BGR bytes -> RGB planes, (x / 255 - 0.5) / 0.25, in float32; a flipped (strided) view too."""
    import torch

    from painface.data import to_tensor

    img = np.array([[[0, 128, 255], [255, 255, 255]]], np.uint8)  # 1 x 2 pixels, BGR
    t = to_tensor(img)
    assert t.shape == (3, 1, 2) and t.dtype == torch.float32 and t.is_contiguous()
    by_hand = {(0, 0): 2.0, (1, 0): (128 / 255 - 0.5) / 0.25, (2, 0): -2.0}  # R, G, B of pixel 0
    for (c, x), v in by_hand.items():
        assert t[c, 0, x].item() == pytest.approx(v, abs=1e-6)
    assert torch.all(t[:, 0, 1] == 2.0)  # white
    assert torch.equal(to_tensor(img[:, ::-1]), t.flip(-1))


def test_callbacks_write_images_with_content_and_checkpoints_resume(compose, tmp_path):
    import cv2

    cfg = compose(*FAST)
    train(cfg)
    images = Path(tmp_path) / "csv" / "version_0" / "images"
    cam = cv2.imread(str(next(images.glob("val_gradcam_epoch000.png"))))
    top, bottom = np.split(cam, 2, axis=0)
    assert (bottom.astype(int) - top.astype(int)).std() > 5  # the overlay differs from the image
    cm = pd.read_json(next(images.glob("val_confusion_matrix_epoch000.json")), typ="series")
    assert cm[["tn", "fp", "fn", "tp"]].sum() > 0
    # the same images reach TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(tmp_path) / "tensorboard" / "version_0"), size_guidance={"images": 0})
    events.Reload()
    assert {"val/confusion_matrix", "val/gradcam", "test/confusion_matrix"} <= set(events.Tags()["images"])
    calib = json.loads((Path(tmp_path) / "calibration.json").read_text())
    assert calib["temperature"] > 0 and (Path(tmp_path) / "reliability.png").exists()
    last = Path(tmp_path) / "checkpoints" / "last.ckpt"
    assert last.exists() and len(list((Path(tmp_path) / "checkpoints").glob("epoch*.ckpt"))) == 1
    model = PainClassifier.load_from_checkpoint(last)  # no other arguments needed
    assert model.hparams.net["name"] == "paper"
    cfg2 = compose(*FAST, "trainer.max_epochs=2", f"ckpt_path={last}")
    train(cfg2)
    resumed = pd.read_csv(Path(tmp_path) / "csv" / "version_1" / "metrics.csv")
    trained = resumed.dropna(subset=["train/loss_epoch"])["epoch"].tolist()
    assert trained == [1]  # resumed after epoch 0 and trained only epoch 1


def test_gradcam_map_is_not_constant(compose, tmp_path):
    import torch

    from painface.gradcam import gradcam_maps

    torch.manual_seed(0)  # an untrained net's Grad-CAM can be all zero (its ReLU); fix one that is not
    net = PaperCNN()
    maps = gradcam_maps(net, torch.randn(2, 3, 64, 64), targets=[1, 1])
    assert maps.shape == (2, 64, 64) and maps.min() >= 0 and maps.max() <= 1
    assert maps[0].std() > 0.01


def test_config_typos_fail_with_the_key_name(compose):
    with pytest.raises(ConfigError, match="data.samples_per_epok"):
        train(compose("+data.samples_per_epok=5"))
    with pytest.raises(ConfigError, match="model.net.name"):
        train(compose("model.net.name=vgg99"))
    with pytest.raises(ConfigError, match="trainer.max_epoch"):
        train(compose("+trainer.max_epoch=3"))
    with pytest.raises(ConfigError, match="callbacks.gradcam.every_n_epoch"):
        train(compose("+callbacks.gradcam.every_n_epoch=3"))


def test_bad_training_inputs(compose, store, tmp_path):
    with pytest.raises(DataError, match="only one class"):
        train(compose(*FAST, "data.phases=[pre]"))
    empty = tmp_path / "empty"
    from painface.store import create_store

    create_store(empty)
    with pytest.raises(DataError, match="empty"):
        train(compose(*FAST, f"data.store={empty}"))
    from painface.store import StoreError

    with pytest.raises(StoreError, match="no crop store"):
        train(compose(*FAST, f"data.store={tmp_path / 'nowhere'}"))
    # a checkpoint of another architecture, as a fine-tuning start point
    import torch

    other = PainClassifier(net={"name": "paper", "channels": [8, 8, 8, 8, 8, 8], "fc": [8, 8]})
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": other.state_dict()}, ckpt)
    with pytest.raises(ModelError, match="other.ckpt.*another architecture"):
        train(compose(*FAST, f"model.init_from={ckpt}"))


def _cli(args, cwd, env_extra=None, timeout=600):
    env = {**os.environ, "WANDB_MODE": "offline", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _cli_overrides(store):
    return [*train_overrides(store), *FAST]


def test_unknown_names_and_typos_exit_nonzero_with_one_line(store, tmp_path):
    def one_line(r):
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        return lines[0]

    # Hydra's own errors, folded to one line that names the option or key
    assert "'data/nosuch'" in one_line(_cli(["data=nosuch"], tmp_path))
    assert "'model.widht'" in one_line(_cli(["model.widht=3"], tmp_path))
    assert "'model.widht'" in one_line(_cli(["-m", "model.widht=3,4"], tmp_path))
    assert "ckpt_path=[" in one_line(_cli(["ckpt_path=["], tmp_path))
    # the painface command: a mistyped option is one line too, exit 2 as argparse does
    r = subprocess.run(
        [sys.executable, "-m", "painface.cli", "explain", "ckpt_path=x.ckpt", "data.store=s", "out=o", "nn=5"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nn=5" in r.stderr, r.stderr
    r = _cli([*_cli_overrides(store), "+data.bach_size=3"], tmp_path)
    assert r.returncode == 1 and "error: config key 'data.bach_size'" in r.stderr
    # the paper's recipe on a lab store that is not there yet: the one "no crop store" line
    r = _cli(
        ["experiment=paper", "data=balbc", f"data.store={tmp_path}/nowhere", f"paths.output_dir={tmp_path}"], tmp_path
    )
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: data.store: no crop store at"), (
        r.stderr
    )


@pytest.mark.slow
def test_multirun_sweep_through_the_command_line(store, tmp_path):
    r = _cli(["-m", "model=paper,resnet18", *_cli_overrides(store), f"paths.log_dir={tmp_path}/logs"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = list((tmp_path / "logs" / "train" / "multiruns").glob("*/*/metrics.json"))
    assert len(runs) == 2


@pytest.mark.slow
def test_optuna_search_on_the_joblib_launcher(store, tmp_path):
    r = _cli(
        [
            "-m",
            "hparams_search=optuna",
            "hydra/launcher=joblib",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2",
            *_cli_overrides(store),
            f"paths.log_dir={tmp_path}/logs",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    sweep = next((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    import yaml

    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    # batch size is fixed on the command line, so only the other two are searched
    assert set(result["best_params"]) == {"model.optimizer.lr", "model.net.dropout"}
    assert 0.0 <= result["best_value"] <= 1.0  # val/auroc, the optimized metric


@pytest.mark.slow
def test_wandb_offline_run(store, tmp_path):
    r = _cli([*_cli_overrides(store), "logger=wandb", f"paths.log_dir={tmp_path}/logs"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = list(tmp_path.glob("logs/train/runs/*/wandb/offline-run-*"))
    assert runs, "no offline W&B run directory"
    assert list(runs[0].glob("run-*.wandb"))
    # the callbacks' images reach W&B as wandb.Image media
    media = {p.name.rsplit("_", 2)[0] for p in runs[0].glob("files/media/images/*/*.png")}
    assert {"confusion_matrix", "gradcam"} <= media, media
    # the run's config holds the datamodule's settings and the seed, not only the model's
    hparams = (tmp_path / "logs" / "train" / "runs").glob("*/csv/version_0/hparams.yaml")
    import yaml

    hp = yaml.safe_load(next(hparams).read_text())
    assert hp["store"] == str(store) and hp["samples_per_epoch"] == 64 and hp["seed"] == 42


@pytest.mark.slow
def test_ddp_on_cpu_two_processes(compose, tmp_path):
    cfg = compose(*FAST, "trainer=ddp_cpu", "trainer.accelerator=cpu", "~callbacks.gradcam")
    metrics = train(cfg)
    assert np.isfinite(metrics["test/acc"])
    # synced across ranks: the confusion matrix counts both ranks' 2 test batches of 32
    # (one process alone would count 64)
    total = sum(metrics[f"test/confmat_{k}"] for k in ("tn", "fp", "fn", "tp"))
    assert total == 2 * 2 * 32


@pytest.mark.slow
def test_real_training_generalises_to_held_out_mice(compose):
    cfg = compose(
        "trainer.max_epochs=8",
        "data.samples_per_epoch=1024",
        "data.batch_size=64",
        "model.net.input_size=64",
        "data.strains=[BALB/c]",
        "data.n_folds=3",
        "~callbacks.gradcam",
    )
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.85
    assert metrics["test/auroc"] > 0.9


def test_split_protocols_by_mouse(store):
    from painface.data import PainFaceDataModule
    from painface.store import read_index

    mice = set(read_index(store)["mouse_id"])
    dm = PainFaceDataModule(str(store), n_folds=4, fold=0, test_fold=1, num_workers=0)
    dm.setup()
    train_m, val_m, test_m = (set(p["mouse_id"]) for p in (dm.train_index, dm.val_index, dm.test_index))
    # the test fold neither trains nor chooses the checkpoint; together the three are every mouse
    assert not (train_m & val_m) and not (train_m & test_m) and not (val_m & test_m)
    assert train_m | val_m | test_m == mice and "held-out test mice" in dm.test_role
    dm = PainFaceDataModule(str(store), n_folds=4, fold=0, num_workers=0)
    dm.setup()
    assert set(dm.test_index["mouse_id"]) == set(dm.val_index["mouse_id"]) and "chose the checkpoint" in dm.test_role
    dm = PainFaceDataModule(str(store), n_folds=1, num_workers=0)  # the paper's Table 1: train on all mice
    dm.setup()
    assert len(dm.train_index) == len(dm.val_index) == len(dm.test_index) == len(dm.index)
    assert "Table 1" in dm.test_role
    for bad in (
        {"n_folds": 4, "fold": 0, "test_fold": 0},
        {"n_folds": 4, "test_fold": 4},
        {"n_folds": 1, "test_fold": 0},
    ):
        with pytest.raises(DataError, match="data.test_fold"):
            PainFaceDataModule(str(store), num_workers=0, **bad).setup()


def test_table1_arithmetic_of_the_paper():
    from painface.stats import table1

    # Kobayashi et al. Table 1 (all mice): TP 269,497, FN 8,437, FP 1,526, TN 266,354
    m = {
        "test/confmat_tp": 269497,
        "test/confmat_fn": 8437,
        "test/confmat_fp": 1526,
        "test/confmat_tn": 266354,
        "test/confmat_tp_sex=male": 3,
        "test/confmat_fn_sex=male": 1,
        "test/confmat_fp_sex=male": 0,
        "test/confmat_tn_sex=male": 2,
        "test/acc": 0.98,
    }
    t = table1(m)
    assert list(t.index) == ["all", "sex=male"]
    assert (
        t.loc["all", "sensitivity"] == pytest.approx(269497 / 277934)
        and round(100 * t.loc["all", "sensitivity"], 1) == 97.0
    )
    assert (
        t.loc["all", "specificity"] == pytest.approx(266354 / 267880)
        and round(100 * t.loc["all", "specificity"], 1) == 99.4
    )
    assert t.loc["sex=male", "sensitivity"] == 0.75 and t.loc["sex=male", "specificity"] == 1.0


def test_paper_protocol_trains_on_all_mice_and_writes_table1(compose, tmp_path):
    # every test image, so that both sexes are in it
    cfg = compose(*FAST[:3], "data.n_folds=1", "~callbacks.gradcam", "logger=csv")
    metrics = train(cfg)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert "Table 1" in summary["test_on"]
    t = pd.read_csv(tmp_path / "table1.csv", index_col=0)
    assert {"all", "sex=female", "sex=male"} <= set(t.index)
    # per-sex counts add up to the whole
    assert (
        t.loc[["sex=female", "sex=male"], ["TP", "FN", "FP", "TN"]].sum() == t.loc["all", ["TP", "FN", "FP", "TN"]]
    ).all()
    assert t.loc["all", ["TP", "FN", "FP", "TN"]].sum() == sum(
        metrics[f"test/confmat_{k}"] for k in ("tp", "fn", "fp", "tn")
    )


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_to_the_same_epoch_and_step(store, tmp_path):
    import signal
    import time

    import torch

    args = train_overrides(
        store,
        **{
            "data.samples_per_epoch": 512,
            "trainer.max_epochs": 4,
            "~callbacks.gradcam": None,
            "logger": "csv",
            "test": "false",
        },
    )

    def final(run):
        ck = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        return ck["epoch"], ck["global_step"]

    ref = _cli([*args, f"paths.output_dir={tmp_path / 'ref'}", f"hydra.run.dir={tmp_path / 'h1'}"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-1500:]
    run = tmp_path / "killed"
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, f"paths.output_dir={run}", f"hydra.run.dir={tmp_path / 'h2'}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 300
    while not (run / "checkpoints" / "last.ckpt").exists() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # into the next epoch
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch_at_kill, _ = final(run)
    assert epoch_at_kill < 3
    resumed = _cli(
        [
            *args,
            f"paths.output_dir={run}",
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            f"hydra.run.dir={tmp_path / 'h3'}",
        ],
        tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert final(run) == final(tmp_path / "ref")
