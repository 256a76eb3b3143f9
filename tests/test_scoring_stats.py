import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from painface.calibration import fit_temperature
from painface.scoring import fuse_cameras, pain_probability_per_minute, wilson_interval
from painface.stats import StatsError, chi2_bonferroni, compare_groups


def test_camera_fusion_by_hand():
    pred = pd.DataFrame(
        {
            "session_id": "s",
            "camera": ["cam1", "cam2", "cam1", "cam2", "cam1"],
            "frame": [0, 0, 1, 1, 2],
            "p_pain": [0.7, 0.2, 0.6, 0.45, 0.3],
        }
    )
    fused = fuse_cameras(pred).set_index("frame")
    # frame 0: pain 0.7+0.2=0.9 vs no pain 0.3+0.8=1.1 -> no pain, although cam1 alone says pain
    assert fused.loc[0, "sum_pain"] == pytest.approx(0.9) and not fused.loc[0, "pain"]
    # frame 1: 1.05 vs 0.95 -> pain
    assert fused.loc[1, "pain"]
    # frame 2: one camera, its own prediction
    assert fused.loc[2, "n_cameras"] == 1 and not fused.loc[2, "pain"]


def test_pain_probability_per_minute_by_hand():
    fps = 1.0  # 60 frames per minute keeps the hand count small
    frames = np.arange(0, 180)
    fused = pd.DataFrame(
        {"frame": frames[:150], "pain": np.r_[np.ones(30, bool), np.zeros(30, bool), np.ones(90, bool)]}
    )
    # drop minute 2's faces entirely and some of minute 0's
    fused = fused[(fused.frame < 120) & ~fused.frame.between(50, 59)]
    out = pain_probability_per_minute(fused, n_frames=180, fps=fps, treatment_time_s=60).set_index("minute")
    assert list(out.index) == [-1, 0, 1]
    assert (out.loc[-1, "pain"], out.loc[-1, "no_pain"], out.loc[-1, "skipped"]) == (30, 20, 10)
    assert out.loc[-1, "pain_probability"] == pytest.approx(30 / 50)
    assert out.loc[0, "pain_probability"] == 1.0
    assert np.isnan(out.loc[1, "pain_probability"]) and out.loc[1, "skipped"] == 60  # empty, not 0


def test_wilson_interval_matches_statsmodels():
    lo, hi = wilson_interval([3, 0, 50], [10, 5, 50])
    for i, (k, n) in enumerate([(3, 10), (0, 5), (50, 50)]):
        ref = proportion_confint(k, n, method="wilson")
        assert lo[i] == pytest.approx(ref[0]) and hi[i] == pytest.approx(ref[1])
    # by hand, 3 of 10 at z = 1.959964: centre (0.3 + z^2/20) / (1 + z^2/10) = 0.355506,
    # half-width z sqrt(0.021 + z^2/400) / (1 + z^2/10) = 0.247717
    assert (lo[0], hi[0]) == pytest.approx((0.107789, 0.603223), abs=2e-5)
    assert (lo[1], hi[1]) == (0.0, pytest.approx(0.434482, abs=2e-5))  # 0 of 5: upper z^2/(5 + z^2)
    lo, hi = wilson_interval([0], [0])
    assert np.isnan(lo[0]) and np.isnan(hi[0])  # no face that minute: no interval


def test_holm_and_bonferroni_over_planned_tests_by_hand():
    counts = pd.DataFrame({"pain": [30, 10], "no_pain": [10, 10]}, index=["eye", "ear"])
    totals = pd.Series({"pain": 50, "no_pain": 50})
    bonf = chi2_bonferroni(counts, totals, n_tests=3).set_index("category")
    holm = chi2_bonferroni(counts, totals, n_tests=3, method="holm").set_index("category")
    p = bonf["p"]
    assert bonf.loc["eye", "p_adjusted"] == pytest.approx(3 * p["eye"])
    # Holm: the smallest p times 3, the next max(that, 2 p), the planned-but-absent test is p = 1
    assert holm.loc["eye", "p_adjusted"] == pytest.approx(3 * p["eye"])
    assert holm.loc["ear", "p_adjusted"] == pytest.approx(min(1.0, max(3 * p["eye"], 2 * p["ear"])))
    with pytest.raises(StatsError, match="sidak"):
        chi2_bonferroni(counts, totals, method="sidak")


def test_dunnett_1955_published_example():
    # Dunnett (1955), JASA 50:1096, Table 1: blood counts, control and two drugs.
    control = [7.40, 8.50, 7.20, 8.24, 9.84, 8.32]
    drug_a = [9.76, 8.80, 7.68, 9.36]
    drug_b = [12.80, 9.68, 12.16, 9.20, 10.55]
    out = compare_groups({"control": control, "A": drug_a, "B": drug_b}, control="control").set_index("group")
    # by hand: means 8.25 / 8.90 / 10.878; pooled s^2 = 16.567 / 12 = 1.3806 (s = 1.175)
    # t_A = 0.65 / (1.175 * sqrt(1/4 + 1/6)) = 0.857;  t_B = 2.628 / (1.175 * sqrt(1/5 + 1/6)) = 3.69
    assert out.loc["A", "statistic"] == pytest.approx(0.857, abs=0.005)
    assert out.loc["B", "statistic"] == pytest.approx(3.69, abs=0.01)
    # Dunnett's conclusion: drug B raises the count (1 % level), drug A does not
    assert out.loc["A", "anova_F"] == pytest.approx(out.loc["B", "anova_F"])
    assert out.loc["B", "p"] < 0.01 < out.loc["A", "p"]


def test_t_test_matches_hand_computation():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0, 5.0, 6.0])
    # pooled variance = (5/3 + 5/3) / 2 = 5/3; t = -2 / sqrt(5/3 * (1/4 + 1/4)) = -2.1909
    out = compare_groups({"a": a, "b": b}, control="b")
    assert out.loc[0, "statistic"] == pytest.approx(-2.19089, abs=1e-4)
    assert out.loc[0, "test"] == "unpaired t-test"


def test_single_animal_group_is_refused():
    with pytest.raises(StatsError, match="group 'x' has 1 animal"):
        compare_groups({"x": [0.5], "c": [0.1, 0.2]}, control="c")


def test_chi2_bonferroni_by_hand():
    counts = pd.DataFrame({"pain": [30, 10], "no_pain": [10, 10]}, index=["eye", "ear"])
    out = chi2_bonferroni(counts, pd.Series({"pain": 50, "no_pain": 50})).set_index("category")
    # eye: table [[30,20],[10,40]], expected 20/30 in each cell -> chi2 = 2*(100/20+100/30) = 16.667
    assert out.loc["eye", "chi2"] == pytest.approx(16.6667, abs=1e-3)
    assert out.loc["ear", "chi2"] == pytest.approx(0.0)
    assert out.loc["eye", "p_bonferroni"] == pytest.approx(min(2 * out.loc["eye", "p"], 1))


def test_chi2_yates_and_a_planned_number_of_tests():
    from scipy.stats import chi2_contingency

    counts = pd.DataFrame({"pain": [30, 10], "no_pain": [10, 10]}, index=["eye", "ear"])
    out = chi2_bonferroni(counts, pd.Series({"pain": 50, "no_pain": 50}), yates=True, n_tests=13).set_index("category")
    # Yates by hand: N (|ad - bc| - N/2)^2 / (r1 r2 c1 c2) = 100 (1000 - 50)^2 / (50 50 40 60) = 15.0417
    assert out.loc["eye", "chi2"] == pytest.approx(15.0417, abs=1e-3)
    ref = chi2_contingency(np.array([[30, 20], [10, 40]]), correction=True)
    assert out.loc["eye", "p"] == pytest.approx(ref.pvalue)
    assert out.loc["eye", "p_bonferroni"] == pytest.approx(min(13 * ref.pvalue, 1))
    plain = chi2_contingency(np.array([[30, 20], [10, 40]]), correction=False)
    assert chi2_bonferroni(counts, pd.Series({"pain": 50, "no_pain": 50})).loc[0, "p"] == pytest.approx(plain.pvalue)
    with pytest.raises(StatsError, match="Bonferroni over 1 tests, but 2"):
        chi2_bonferroni(counts, pd.Series({"pain": 50, "no_pain": 50}), n_tests=1)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    logits = np.column_stack([np.zeros(4000), true_logit * 3.0])  # over-confident by a factor of 3
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.1)


def test_ece_by_hand():
    from painface.calibration import expected_calibration_error

    # one prediction in each of four bins, away from the edges: |y - p| = 0.15, 0.75, 0.15, 0.95
    p, y = [0.15, 0.25, 0.85, 0.95], [0, 1, 1, 0]
    assert expected_calibration_error(p, y) == pytest.approx((0.15 + 0.75 + 0.15 + 0.95) / 4)
    # two in one bin: |mean y - mean p| = |0.5 - 0.34| weighted 2/3, plus |1 - 0.9| weighted 1/3
    assert expected_calibration_error([0.32, 0.36, 0.9], [0, 1, 1]) == pytest.approx(2 / 3 * 0.16 + 1 / 3 * 0.1)


def test_chi2_category_never_positive_is_not_significant():
    counts = pd.DataFrame({"pain": [0], "no_pain": [0]}, index=["hand"])
    out = chi2_bonferroni(counts, pd.Series({"pain": 10, "no_pain": 10}))
    assert out.loc[0, "p"] == 1.0 and out.loc[0, "stars"] == "n.s."


def test_apply_temperature_by_hand():
    from painface.calibration import apply_temperature

    # p = 0.8: logit = ln 4; at T = 2, sigmoid(ln 2) = 2/3. T = 1 changes nothing; 0.5 stays 0.5.
    assert apply_temperature([0.8, 0.5, 0.2], 2.0) == pytest.approx([2 / 3, 0.5, 1 / 3])
    assert apply_temperature([0.3], 1.0) == pytest.approx([0.3])
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature([0.3], 0.0)
