"""Group statistics as in the paper (step 7), through scipy and statsmodels.

- two groups: unpaired t-test;
- more than two: one-way ANOVA, then Dunnett's test of each group against the control;
- frequencies: chi-squared per category with Bonferroni correction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from painface.errors import PainfaceError


class StatsError(PainfaceError):
    pass


def _check(groups: dict[str, np.ndarray], need: int = 2):
    for name, values in groups.items():
        v = np.asarray(values, float)
        if np.isfinite(v).sum() < need:
            raise StatsError(f"group '{name}' has {np.isfinite(v).sum()} animal(s); the test needs at least {need}")


def compare_groups(
    groups: dict[str, np.ndarray], control: str, subjects: dict[str, list] | None = None
) -> pd.DataFrame:
    """Each group against the control: t-test for two groups, ANOVA + Dunnett for more.

    ``subjects`` (a crossover design, each animal in every group): the animal of each
    value; the two groups are then compared with a paired t-test over the animals that
    have both values.
    """
    if control not in groups:
        raise StatsError(f"control group '{control}' not among {list(groups)}")
    if subjects is not None:
        return _paired(groups, control, subjects)
    _check(groups)
    clean = {k: np.asarray(v, float)[np.isfinite(v)] for k, v in groups.items()}
    others = [g for g in clean if g != control]
    rows = []
    if len(clean) == 2:
        g = others[0]
        t = stats.ttest_ind(clean[g], clean[control])  # unpaired, equal variances, as in the paper
        rows.append(
            {"group": g, "control": control, "test": "unpaired t-test", "statistic": t.statistic, "p": t.pvalue}
        )
    else:
        anova = stats.f_oneway(*clean.values())
        d = stats.dunnett(*[clean[g] for g in others], control=clean[control])
        for g, s, p in zip(others, d.statistic, d.pvalue):
            rows.append(
                {
                    "group": g,
                    "control": control,
                    "test": "Dunnett",
                    "statistic": s,
                    "p": p,
                    "anova_F": anova.statistic,
                    "anova_p": anova.pvalue,
                }
            )
    out = pd.DataFrame(rows)
    for g in out["group"]:
        out.loc[out.group == g, "mean"] = clean[g].mean()
        out.loc[out.group == g, "sem"] = stats.sem(clean[g])
    out["control_mean"] = clean[control].mean()
    out["stars"] = out["p"].map(stars)
    return out


def _paired(groups: dict[str, np.ndarray], control: str, subjects: dict[str, list]) -> pd.DataFrame:
    if len(groups) != 2:
        raise StatsError(
            f"a paired (crossover) comparison needs exactly two conditions, got {len(groups)}: {list(groups)}"
        )
    other = next(g for g in groups if g != control)
    series = {g: pd.Series(np.asarray(groups[g], float), index=list(subjects[g])) for g in (other, control)}
    for g, v in series.items():
        if v.index.duplicated().any():
            raise StatsError(f"condition '{g}': animal {v.index[v.index.duplicated()][0]} appears twice")
    both = pd.concat(series, axis=1).dropna()
    if len(both) < 2:
        raise StatsError(f"a paired t-test needs at least 2 animals with both conditions, got {len(both)}")
    t = stats.ttest_rel(both[other], both[control])
    return pd.DataFrame(
        [
            {
                "group": other,
                "control": control,
                "test": "paired t-test",
                "statistic": t.statistic,
                "p": t.pvalue,
                "n_pairs": len(both),
                "mean": both[other].mean(),
                "sem": stats.sem(both[other]),
                "control_mean": both[control].mean(),
                "stars": stars(t.pvalue),
            }
        ]
    )


def chi2_bonferroni(
    counts: pd.DataFrame,
    totals: pd.Series,
    yates: bool = False,
    n_tests: int | None = None,
    method: str = "bonferroni",
) -> pd.DataFrame:
    """Per category (row), chi-squared on [positive, negative] x class, Bonferroni over rows.

    ``counts``: rows = categories (e.g. facial regions), columns = two classes, values =
    number of images where the category is positive; ``totals``: images per class.
    ``yates``: Yates' continuity correction (the paper does not say; off by default, as
    Pearson's plain chi-squared). ``n_tests``: the Bonferroni factor, when more categories
    were planned than ``counts`` holds (the paper's 13 regions, with one not assessed).
    ``method``: the correction, ``bonferroni`` (the paper's) or ``holm`` (statsmodels'
    ``multipletests``; a planned test that was not run counts as p = 1).
    """
    from statsmodels.stats.multitest import multipletests

    if method not in ("bonferroni", "holm"):
        raise StatsError(f"multiple-comparison correction '{method}' unknown (bonferroni or holm)")
    rows = []
    for cat, row in counts.iterrows():
        table = np.array([[row[c], totals[c] - row[c]] for c in counts.columns])
        if (table.sum(axis=0) == 0).any():  # never (or always) positive: no difference to test
            chi2, p = 0.0, 1.0
        else:
            chi2, p, _, _ = stats.chi2_contingency(table, correction=yates)
        rows.append({"category": cat, "chi2": chi2, "p": p})
    out = pd.DataFrame(rows)
    n_tests = len(out) if n_tests is None else n_tests
    if n_tests < len(out):
        raise StatsError(f"Bonferroni over {n_tests} tests, but {len(out)} categories were tested")
    padded = np.concatenate([out["p"].to_numpy(float), np.ones(n_tests - len(out))])
    out["p_adjusted"] = multipletests(padded, method=method)[1][: len(out)] if len(out) else []
    out["correction"] = f"{method} over {n_tests}"
    out[f"p_{method}"] = out["p_adjusted"]
    out["stars"] = out["p_adjusted"].map(stars)
    return out


def table1(metrics: dict, stage: str = "test") -> pd.DataFrame:
    """The paper's Table 1 layout from logged confusion counts: TP, FN, FP, TN, sensitivity
    (TP / (TP + FN)) and specificity (TN / (TN + FP)), for all images and per group (e.g. sex).

    ``metrics`` holds ``{stage}/confmat_tp`` ... and ``{stage}/confmat_tp_sex=female`` ...
    """
    rows = {}
    prefix = f"{stage}/confmat_"
    for key, value in metrics.items():
        if not key.startswith(prefix):
            continue
        cell, _, group = key[len(prefix) :].partition("_")
        if cell in ("tp", "fn", "fp", "tn"):
            rows.setdefault(group or "all", {})[cell.upper()] = int(round(float(value)))
    if "all" not in rows:
        raise StatsError(f"no {stage} confusion counts in the metrics (was the {stage} stage run?)")
    out = pd.DataFrame.from_dict(rows, orient="index")[["TP", "FN", "FP", "TN"]]
    out = out.loc[["all"] + sorted(k for k in out.index if k != "all")]
    out["sensitivity"] = out["TP"] / (out["TP"] + out["FN"]).replace(0, np.nan)
    out["specificity"] = out["TN"] / (out["TN"] + out["FP"]).replace(0, np.nan)
    out.index.name = "images"
    return out


def stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."
