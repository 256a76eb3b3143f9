"""The house rules a contributor relies on (docs/ARCHITECTURE.md): torch-free analysis
modules, configs that instantiate a user's own classes, and a net added by registering it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT, train_overrides


def test_a_registered_toy_net_trains_from_one_config_file(compose, tmp_path):
    from torch import nn

    from painface.models import NETS, register_net
    from painface.training import train

    @register_net("toy_test_net")
    class Toy(nn.Module):
        def __init__(self, num_classes: int = 2, width: int = 4):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
            self.blocks = [self.features[1]]
            self.target_layer = self.features[1]

        def forward_features(self, x):
            return self.features(x)

        def forward(self, x):
            return self.head(self.features(x))

    try:
        metrics = train(
            compose(
                "model.net.name=toy_test_net",
                "~model.net.channels",
                "~model.net.fc",
                "~model.net.dropout",
                "+model.net.width=3",
                "+trainer.fast_dev_run=true",
                "logger=csv",
                "callbacks=none",
            )
        )
        assert "train/loss" in metrics
        from painface.config import ConfigError

        with pytest.raises(ConfigError, match="model.net.channels.*'toy_test_net' network has no setting 'channels'"):
            train(compose("model.net.name=toy_test_net", "+trainer.fast_dev_run=true"))
    finally:
        NETS.pop("toy_test_net")


def test_a_net_setting_reaches_the_network(compose):
    from painface.config import ConfigError, validate
    from painface.training import build

    _, model, _ = build(validate(compose("model=resnet18", "model.net.dropout=0.5", "model.net.input_size=64")))
    drops = [m.p for m in model.net.modules() if m.__class__.__name__ == "Dropout"]
    assert drops == [0.5]
    with pytest.raises(ConfigError, match="config key 'model.net.channels'.*'resnet18' network has no setting"):
        validate(compose("model=resnet18", "+model.net.channels=[8,8,8,8,8,8]"))


def test_a_users_own_lightning_module_through_model_target(store, tmp_path):
    """A lab's subclass in its own package and its own config folder, with no change to painface."""
    pkg = tmp_path / "my_lab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(
        textwrap.dedent("""
        from painface.models import PainClassifier

        class WarmupClassifier(PainClassifier):
            def __init__(self, warmup_note: str = "", **kw):
                super().__init__(**kw)
                self.warmup_note = warmup_note

            def on_fit_start(self):
                open(self.warmup_note, "w").write(type(self).__name__)
    """)
    )
    conf = tmp_path / "conf" / "model"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text(
        textwrap.dedent(f"""
        defaults:
          - paper
          - _self_
        _target_: my_lab.models.WarmupClassifier
        warmup_note: {tmp_path / "used.txt"}
    """)
    )
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--config-dir",
            str(tmp_path / "conf"),
            *train_overrides(
                store,
                tmp_path / "out",
                **{
                    "model": "mine",
                    "+trainer.fast_dev_run": "true",
                    "logger": "csv",
                    "callbacks": "none",
                    "hydra.run.dir": tmp_path / "run",
                },
            ),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "used.txt").read_text() == "WarmupClassifier"
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--config-dir",
            str(tmp_path / "conf"),
            "model=mine",
            "+model.warmup_nte=1",
            "data=store",
            f"data.store={store}",
            f"hydra.run.dir={tmp_path / 'run2'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert bad.returncode != 0
    assert "model.warmup_nte" in bad.stderr.strip().splitlines()[-1]


def test_one_vocabulary_for_the_face():
    """The renderer's action units, the MGS units and the region names come from one table."""
    from painface import mgs, regions
    from painface.synthetic import planted, render

    assert render.ACTION_UNITS == ("orbital", "nose", "cheek", "ear", "whisker", "forehead")
    assert tuple(regions.ACTION_UNITS) == render.ACTION_UNITS
    assert mgs.MGS_UNITS == ("orbital_tightening", "nose_bulge", "cheek_bulge", "ear_position", "whisker_change")
    for au, (_, names) in regions.ACTION_UNITS.items():
        assert set(names) <= set(regions.PAPER_REGIONS), au
        assert planted.PLANTED_REGIONS[au] == names
    assert set(regions.COLOURS) == set(regions.PAPER_REGIONS)  # every region has a colour
