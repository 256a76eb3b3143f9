import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from painface.analysis import StudyAnalysisError, analyze_study, per_minute_table
from painface.predict import PredictionError, read_predictions, write_predictions
from painface.stats import StatsError
from painface.store import read_index, store_meta

STUDY = {"name": "t", "analysis": {"group_column": "treatment", "control": "ac", "order": ["ac", "b6"],
                                   "windows": {"pre": [-1, 0], "post": [0, 1]}, "summary_window": "post"}}


def _fake_predictions(store, tmp_path, p=None):
    """Predictions with known probabilities: 0.9 for post crops, 0.2 for pre crops."""
    idx = read_index(store)
    pp = np.where(idx["phase"] == "post", 0.9, 0.2) if p is None else p(idx)
    pred = idx[["crop_id", "session_id", "mouse_id", "treatment", "phase", "camera", "frame", "time_s", "label"]].assign(
        p_pain=pp, p_no_pain=1 - pp)
    path = tmp_path / "pred.parquet"
    write_predictions(pred, path, {"store_id": store_meta(store)["store_id"], "checkpoint": "none"})
    return path


def _study(tmp_path, **change):
    doc = yaml.safe_load(yaml.safe_dump(STUDY))
    doc["analysis"].update(change)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_per_minute_counts_against_the_store(store, tmp_path):
    pred, _ = read_predictions(_fake_predictions(store, tmp_path), store)
    table = per_minute_table(pred, store)
    idx = read_index(store)
    # independent count: frames of each session where any camera has a crop
    faces = idx.groupby("session_id")["frame"].nunique()
    got = table.groupby("session_id")[["pain", "no_pain"]].sum().sum(axis=1)
    pd.testing.assert_series_equal(got.sort_index(), faces.sort_index(), check_names=False)
    assert (table.loc[table.session_id.str.endswith("_pre"), "minute"] < 0).all()
    assert set(table.loc[table.session_id.str.endswith("_post"), "pain_probability"].dropna()) == {1.0}


def test_report_and_tables_are_written(store, tmp_path):
    report = analyze_study(_study(tmp_path), _fake_predictions(store, tmp_path), store, tmp_path / "out")
    html = report.read_text()
    assert "data:image/png;base64" in html and "Methods" in html and store_meta(store)["store_id"] in html
    stats = pd.read_csv(tmp_path / "out" / "statistics.csv")
    assert stats.loc[0, "test"] == "unpaired t-test"


def test_unknown_group_or_column(store, tmp_path):
    pred = _fake_predictions(store, tmp_path)
    with pytest.raises(StudyAnalysisError, match="group 'saline' not found"):
        analyze_study(_study(tmp_path, order=["ac", "saline"]), pred, store, tmp_path / "o")
    with pytest.raises(StudyAnalysisError, match="group_column 'dose'"):
        analyze_study(_study(tmp_path, group_column="dose"), pred, store, tmp_path / "o")
    with pytest.raises(StudyAnalysisError, match="unknown key 'contrl'"):
        analyze_study(_study(tmp_path, contrl="x"), pred, store, tmp_path / "o")


def test_predictions_for_another_store(store, tmp_path):
    pred = _fake_predictions(store, tmp_path)
    other = tmp_path / "other"
    shutil.copytree(store, other)
    meta = (other / "store.json")
    meta.write_text(meta.read_text().replace(store_meta(store)["store_id"], "0" * 32))
    with pytest.raises(PredictionError, match="another store"):
        analyze_study(_study(tmp_path), pred, other, tmp_path / "o")


def test_single_animal_group_is_refused(store, tmp_path):
    pred = _fake_predictions(store, tmp_path)
    df, meta = read_predictions(pred)
    keep = df[(df.treatment == "ac") | (df.mouse_id == df.loc[df.treatment == "b6", "mouse_id"].iloc[0])]
    write_predictions(keep, tmp_path / "one.parquet", meta)
    with pytest.raises(StatsError, match="group 'b6' has 1 animal"):
        analyze_study(_study(tmp_path), tmp_path / "one.parquet", store, tmp_path / "o")


@pytest.mark.slow
def test_ac_dose_response_study_end_to_end(compose, tmp_path):
    """The planted answer: groups ordered by dose, AC 1 % differs from vehicle at p < 0.05."""
    from painface.study_run import run_study
    from painface.training import train

    train(compose("trainer.max_epochs=6", "data.samples_per_epoch=1024", "data.batch_size=64",
                  "data.strains=[BALB/c]", "data.n_folds=3", "~callbacks.gradcam"))
    ckpt = next((tmp_path / "checkpoints").glob("epoch*.ckpt"))
    report = run_study("experiments/ac_dose_response.yaml", ckpt, tmp_path / "study", mice_per_group=4,
                       time_scale=0.1, crop_size=64, signal=3.0, fps=5, width=320, height=180, show_progress=False)
    assert report.exists()
    animals = pd.read_csv(tmp_path / "study" / "results" / "per_animal.csv")
    means = animals.groupby("treatment")["pain_probability"].mean()
    assert means["vehicle"] < means["ac_0.6"] < means["ac_1.0"]
    stats = pd.read_csv(tmp_path / "study" / "results" / "statistics.csv").set_index("group")
    assert stats.loc["ac_1.0", "p"] < 0.05
