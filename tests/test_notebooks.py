"""The notebooks run on small data, so they cannot rot."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT
from tests.conftest import analysis_study_file as _study
from tests.conftest import fake_predictions as _fake_predictions


def _run(name, env, cwd):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


@pytest.mark.slow
def test_quickstart_notebook(compose, store, tmp_path):
    from painface.training import train

    train(
        compose(
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=2",
            "+trainer.limit_test_batches=2",
            "~callbacks.gradcam",
        )
    )
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    _run(
        "quickstart.ipynb",
        {"PAINFACE_CKPT": str(ckpt), "PAINFACE_STORE": str(store), "PAINFACE_OUT": str(tmp_path / "nb")},
        tmp_path,
    )
    assert (tmp_path / "nb" / "session.png").exists()


def test_study_figures_notebook(store, tmp_path):
    from painface.analysis import analyze_study

    study = _study(tmp_path)
    analyze_study(study, _fake_predictions(store, tmp_path), store, tmp_path / "results")
    _run("study_figures.ipynb", {"PAINFACE_RESULTS": str(tmp_path / "results"), "PAINFACE_STUDY": str(study)}, tmp_path)
    assert (tmp_path / "results" / "nb_window_average.png").exists()
