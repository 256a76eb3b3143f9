"""Figures (mean +- SEM, as in the paper) and a self-contained HTML report."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd

from painface.errors import PainfaceError
from painface.figures import PALETTE, pyplot, save_figure
from painface.files import write_text

TEMPLATES = Path(__file__).parent / "templates"


class ReportError(PainfaceError):
    pass


def time_course_figure(per_minute: pd.DataFrame, col: str, order, out: Path, title: str = "", windows=None) -> Path:
    """Pain probability per minute, mean +- SEM over animals (paper Fig. 1A/B/D/F/H)."""
    plt = pyplot()
    animal = per_minute.groupby([col, "mouse_id", "minute"])["pain_probability"].mean().reset_index()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, g in enumerate(order):
        sub = animal[animal[col] == g].groupby("minute")["pain_probability"]
        mean, sem, n = sub.mean(), sub.sem(), sub.count()
        x = mean.index.to_numpy() + 0.5
        ax.errorbar(
            x,
            mean.to_numpy(),
            yerr=sem.fillna(0).to_numpy(),
            color=PALETTE[i % len(PALETTE)],
            marker="o",
            ms=3,
            lw=1.4,
            capsize=2,
            label=f"{g} (n={int(n.max())})",
        )
    ax.axvline(0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("time from injection (min)")
    ax.set_ylabel("pain probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, out)


def window_average_figure(
    per_animal: pd.DataFrame,
    col: str,
    order,
    stats_table: pd.DataFrame,
    out: Path,
    window=None,
    value: str = "pain_probability",
    ylabel: str | None = None,
) -> Path:
    """Each animal's window average, group mean +- SEM and significance stars (paper Fig. 1C/E/G/I)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.3 + 1.0 * len(order), 3.6))
    rng = np.random.default_rng(0)
    probability = value == "pain_probability"  # bounded to [0, 1]; other values scale to the data
    top = 0.0
    for i, g in enumerate(order):
        v = per_animal.loc[per_animal[col] == g, value].dropna().to_numpy()
        mean = v.mean() if len(v) else np.nan
        sem = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
        ax.bar(i, mean, color=PALETTE[i % len(PALETTE)], alpha=0.35, width=0.65)
        ax.errorbar(i, mean, yerr=sem, color="k", capsize=4, lw=1.2)
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=14, color=PALETTE[i % len(PALETTE)], zorder=3)
        top = max(top, np.nanmax(v) if len(v) else 0)
        row = stats_table[stats_table.group == g]
        if len(row):
            local = max(v.max() if len(v) else 0, mean + sem)
            top = max(top, local)
            y = min(local + 0.05, 1.08) if probability else local * 1.05
            ax.text(i, y, row["stars"].iloc[0], ha="center", fontsize=10)
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
    if probability:
        ax.set_ylabel(f"pain probability, {window[0]:g} to {window[1]:g} min" if window else "pain probability")
        ax.set_ylim(0, 1.15)
    else:
        ax.set_ylabel(ylabel or value)
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, out)


def methods_paragraph(
    spec,
    hparams: dict,
    generate: dict | None,
    stats_table: pd.DataFrame,
    n_animals: int,
    store_meta: dict | None = None,
) -> str:
    net = (hparams or {}).get("net", {}) or {}
    test = stats_table["test"].iloc[0] if len(stats_table) else "?"
    lo, hi = spec.windows[spec.summary_window]
    arch = (
        (
            "a six-block convolutional network (3x3 convolution, ReLU, batch normalisation and 2x2 max pooling per "
            f"block; widths {net.get('channels')}), global average pooling and three fully connected layers "
            f"({net.get('fc')} units)"
        )
        if net.get("name") == "paper"
        else f"a {net.get('name', '?')} network"
    )
    data = ""
    if generate:
        data = (
            f" Recordings were synthetic ({generate.get('width')}x{generate.get('height')} pixels, "
            f"{generate.get('fps')} fps, {generate.get('cameras')} cameras 90 degrees apart) with a planted "
            "facial pain expression (painface.synthetic)."
        )
    tests = {
        "unpaired t-test": "an unpaired two-tailed t-test",
        "paired t-test": "a two-tailed paired t-test within animals (crossover design)",
        "Dunnett": "one-way ANOVA followed by Dunnett's test against the control group",
    }.get(test)
    if tests is None:
        raise ValueError(f"methods text: no description of the test '{test}'")
    extraction = (store_meta or {}).get("extraction") or {}
    if "threshold" in extraction:
        rule = (
            f"with likelihood >= {extraction['threshold']:g} ({extraction['crop_px']}-pixel crops at "
            f"{extraction['reference_rows']} rows, scaled with the frame; stored at {store_meta.get('crop_size')} px)"
        )
    else:
        rule = "(the store does not record its likelihood threshold; it predates painface 0.2)"
    return (
        f"Face crops were taken where DeepLabCut found the nose and at least one eye {rule} "
        f"(Kobayashi et al. 2025, rules i-iii) and classified by {arch} on {net.get('input_size', '?')}-pixel "
        f"inputs, giving p(pain) per crop. Where both cameras saw the face, the class probabilities were summed over "
        f"cameras and the larger sum taken; each minute's pain probability is the fraction of face frames classified "
        f"as pain, with frames without a face skipped.{data} For each of {n_animals} animals the pain probability "
        f"was averaged from {lo:g} to {hi:g} min after injection and groups ('{spec.group_column}') were compared "
        f"with {tests} (control: {spec.control}). Figures show mean +- SEM."
    )


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def write_report(
    out: Path,
    name: str,
    description: str,
    figs: dict,
    stats_table: pd.DataFrame,
    per_animal: pd.DataFrame,
    provenance: dict,
    methods: str,
    per_minute: pd.DataFrame,
    template: str | Path | None = None,
) -> Path:
    """One self-contained HTML page (figures embedded) from a jinja2 template: painface's
    own (templates/report.html.j2) or a lab's copy of it (``template``)."""
    import jinja2

    fmt = {
        "p": "{:.4g}".format,
        "statistic": "{:.3f}".format,
        "mean": "{:.3f}".format,
        "sem": "{:.3f}".format,
        "control_mean": "{:.3f}".format,
        "anova_F": "{:.3f}".format,
        "anova_p": "{:.4g}".format,
    }
    counts = per_minute.groupby("session_id")[["pain", "no_pain", "skipped"]].sum().reset_index()
    folder, file = (Path(template).parent, Path(template).name) if template else (TEMPLATES, "report.html.j2")
    if template and not Path(template).is_file():
        raise ReportError(f"--template: file not found: {template}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    try:
        body = env.get_template(file).render(
            name=name,
            description=description,
            figures=[_data_uri(figs[k]) for k in ("time_course", "window_average") if k in figs],
            stats_html=stats_table.to_html(
                index=False, formatters={k: v for k, v in fmt.items() if k in stats_table}, border=0
            ),
            per_animal_html=per_animal.to_html(index=False, float_format="{:.3f}".format, border=0),
            methods=methods,
            provenance={str(k): str(v) for k, v in provenance.items()},
            counts_html=counts.to_html(index=False, border=0),
        )
    except jinja2.TemplateError as exc:
        raise ReportError(f"{Path(folder) / file}: {type(exc).__name__}: {exc}") from None
    write_text(out, body)
    return out
