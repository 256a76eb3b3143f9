import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from painface.analysis import StudyAnalysisError, analyze_study, per_minute_table
from painface.predict import PredictionError, read_predictions, write_predictions
from painface.stats import StatsError
from painface.store import read_index, store_meta
from tests.conftest import analysis_study_file as _study
from tests.conftest import fake_predictions as _fake_predictions


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
    # the methods text states the crop rules the store was actually extracted with
    extraction = store_meta(store)["extraction"]
    assert f"likelihood &gt;= {extraction['threshold']:g}" in html  # HTML-escaped
    assert "an unpaired two-tailed t-test" in html


def test_a_labs_own_report_template(store, tmp_path):
    template = tmp_path / "mine.html.j2"
    template.write_text("<h1>Lab X: {{ name }}</h1>{{ methods }}{% for f in figures %}<img src='{{ f }}'>{% endfor %}")
    report = analyze_study(
        _study(tmp_path), _fake_predictions(store, tmp_path), store, tmp_path / "out", template=template
    )
    html = report.read_text()
    assert html.startswith("<h1>Lab X: t</h1>") and html.count("data:image/png;base64") == 2
    (tmp_path / "bad.html.j2").write_text("{{ no_such_variable }}")
    with pytest.raises(ValueError, match="bad.html.j2.*no_such_variable"):
        analyze_study(
            _study(tmp_path),
            _fake_predictions(store, tmp_path),
            store,
            tmp_path / "o2",
            template=tmp_path / "bad.html.j2",
        )


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
    meta = other / "store.json"
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
    from painface.synthetic.study_run import run_study
    from painface.training import train

    train(
        compose(
            "trainer.max_epochs=6",
            "data.samples_per_epoch=1024",
            "data.batch_size=64",
            "data.strains=[BALB/c]",
            "data.n_folds=3",
            "~callbacks.gradcam",
        )
    )
    ckpt = next((tmp_path / "checkpoints").glob("epoch*.ckpt"))
    report = run_study(
        "experiments/ac_dose_response.yaml",
        ckpt,
        tmp_path / "study",
        mice_per_group=4,
        time_scale=0.1,
        crop_size=64,
        signal=3.0,
        fps=5,
        width=320,
        height=180,
        show_progress=False,
    )
    assert report.exists()
    animals = pd.read_csv(tmp_path / "study" / "results" / "per_animal.csv")
    means = animals.groupby("treatment")["pain_probability"].mean()
    assert means["vehicle"] < means["ac_0.6"] < means["ac_1.0"]
    stats = pd.read_csv(tmp_path / "study" / "results" / "statistics.csv").set_index("group")
    assert stats.loc["ac_1.0", "p"] < 0.05


def test_every_window_is_tested_and_an_empty_window_is_refused(store, tmp_path):
    analyze_study(_study(tmp_path), _fake_predictions(store, tmp_path), store, tmp_path / "out")
    windows = pd.read_csv(tmp_path / "out" / "statistics_windows.csv")
    assert sorted(windows["window"]) == ["post", "pre"]
    per_window = pd.read_csv(tmp_path / "out" / "per_animal_windows.csv")
    # fake predictions: every pre crop is no pain, every post crop is pain
    assert set(per_window.loc[per_window.window == "pre", "pain_probability"]) == {0.0}
    assert set(per_window.loc[per_window.window == "post", "pain_probability"]) == {1.0}
    with pytest.raises(StudyAnalysisError, match=r"analysis.windows.pre: \[30, 0\] is empty"):
        analyze_study(
            _study(tmp_path, windows={"pre": [30, 0], "post": [0, 1]}),
            _fake_predictions(store, tmp_path),
            store,
            tmp_path / "o",
        )


def test_paired_analysis_within_animals(store, tmp_path):
    """Each mouse as its own control (phase pre vs post), as a crossover study is analysed."""
    rng = np.random.default_rng(3)
    mice = sorted(read_index(store)["mouse_id"].unique())
    level = dict(zip(mice, rng.uniform(0.1, 0.9, len(mice))))
    # per mouse: a fraction of post crops above 0.5 that differs between mice
    p = lambda idx: np.where((idx["phase"] == "post") & (rng.random(len(idx)) < idx["mouse_id"].map(level)), 0.9, 0.2)  # noqa: E731
    pred = _fake_predictions(store, tmp_path, p)
    study = _study(
        tmp_path,
        group_column="phase",
        control="pre",
        order=["pre", "post"],
        windows={"all": [-1, 1]},
        summary_window="all",
        paired=True,
    )
    analyze_study(study, pred, store, tmp_path / "out")
    stats = pd.read_csv(tmp_path / "out" / "statistics.csv")
    animals = pd.read_csv(tmp_path / "out" / "per_animal.csv").pivot(
        index="mouse_id", columns="phase", values="pain_probability"
    )
    d = animals["post"] - animals["pre"]
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))  # the paired t statistic by hand
    assert stats.loc[0, "test"] == "paired t-test" and stats.loc[0, "n_pairs"] == len(mice)
    assert stats.loc[0, "statistic"] == pytest.approx(t)


def test_paired_t_test_by_hand_matches_animals_not_order():
    from painface.stats import compare_groups

    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641, df 2
    out = compare_groups(
        {"drug": [3.0, 4.0, 6.0], "vehicle": [3.0, 2.0, 2.0]},
        "vehicle",
        subjects={"drug": ["c", "a", "b"], "vehicle": ["b", "c", "a"]},
    )
    # pairs: a 4-2, b 6-3, c 3-2 -> differences 2, 3, 1
    assert out.loc[0, "statistic"] == pytest.approx(3.4641, abs=1e-4) and out.loc[0, "n_pairs"] == 3
    with pytest.raises(StatsError, match="exactly two conditions"):
        compare_groups({"a": [1, 2], "b": [1, 2], "c": [1, 2]}, "a", subjects={"a": [1, 2], "b": [1, 2], "c": [1, 2]})


def test_crossover_study_renders_the_same_animals_in_every_group(tmp_path):
    from painface.synthetic.study import StudyError, load_generate_spec, session_specs

    path = tmp_path / "x.yaml"
    doc = {
        "name": "x",
        "generate": {
            "crossover": True,
            "pre_min": 0,
            "post_min": 1,
            "groups": {
                "vehicle": {"n": 3, "females": 3, "timeline": [[0, 0.1]]},
                "cgrp": {"n": 3, "females": 3, "timeline": [[0, 0.5]]},
            },
        },
    }
    path.write_text(yaml.safe_dump(doc))
    sessions = session_specs(load_generate_spec(path)[1])
    assert len(sessions) == 6 and {s.phase for s in sessions} == {"post"}  # pre_min 0: no pre recording
    by = {(s.treatment, s.mouse.mouse_id): s for s in sessions}
    for m in ("m01", "m02", "m03"):
        assert by[("vehicle", m)].mouse == by[("cgrp", m)].mouse  # one individual, both conditions
        assert by[("vehicle", m)].session_id != by[("cgrp", m)].session_id
        assert by[("vehicle", m)].seed != by[("cgrp", m)].seed
    doc["generate"]["groups"]["cgrp"]["n"] = 4
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(StudyError, match="crossover: every group must have the same n"):
        load_generate_spec(path)


def test_the_torch_free_modules_do_not_import_torch():
    """analysis, scoring, stats, predictions and report are pandas jobs: fast to import."""
    import subprocess
    import sys

    code = (
        "import sys, painface.analysis, painface.scoring, painface.stats, painface.predictions, painface.report, "
        "painface.calibration, painface.figures; "
        "print(sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr[-500:])


def test_settings_and_checkpoints_are_checked_without_lightning():
    """config, nets and predict check a bad value or a bad checkpoint before Lightning (6 s)
    is imported; models re-exports the networks from nets, one registry for both."""
    import subprocess
    import sys

    code = (
        "import sys, painface.config, painface.nets, painface.predict, painface.training, painface.entry; "
        "print(sorted(m for m in ('lightning', 'torchmetrics') if m in sys.modules)); "
        "import painface.models as m, painface.nets as n; print(m.NETS is n.NETS, m.register_net is n.register_net)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split("\n")[:2] == ["[]", "True True"], (r.stdout, r.stderr[-500:])
