"""The sweep report's text tables and its self-contained HTML page.

This module owns how a built report reads: the plain-text tables for the terminal and the
HTML page, rendered from the Jinja2 template ``templates/report.html.j2``.
``kerastrack.report.build`` builds the report and decides which files it writes.
"""

import base64

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

# Autoescape: a run name, a title or a key is text on the page, never markup.
_PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("kerastrack.report", "templates"),
    autoescape=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


def number(value):
    return f"{value:.4g}"


def text(df, render=pd.DataFrame.to_string, **options):
    """``df`` as an aligned plain-text table (or as ``render`` writes it), a missing value shown as '-'."""
    df = df.copy()
    # Nullable integer columns print a missing value as <NA>, whatever na_rep says.
    for column in df.columns[df.dtypes == "Int64"]:
        df[column] = df[column].astype(object).where(df[column].notna(), "-")
    return render(df, index=False, float_format=number, na_rep="-", **options)


def marked(report):
    """The per-run table with a first column "best": '*' on the best run."""
    table = report.table.copy()
    table.insert(0, "best", np.where(table["run_id"] == report.best_run_id, "*", ""))
    return table


def best_over_columns(report):
    """The best_over view's columns for the terminal: the pick, its values, the verdicts."""
    monitor, view = report.monitor, report.best_over
    test = [c for c in view.columns if c.startswith("mean_test_")]
    left_out = ["left_out"] if view["left_out"].astype(bool).any() else []
    columns = [
        "group",
        report.best_over_key,
        "edge",
        "ties",
        *left_out,
        "n",
        f"mean_best_{monitor}",
        f"std_best_{monitor}",
        *test,
        "diff_to_best",
        "ci95_low",
        "ci95_high",
        "vs_best",
        "test_diff_to_best",
        "test_vs_best",
    ]
    return [c for c in columns if c in view.columns]


def best_over_note(report):
    """What the best_over view shows, in one paragraph (plain text)."""
    view = report.best_over
    counterpart = f"test_{report.monitor.removeprefix('val_')}"
    edges = view.loc[view["edge"].isin(["low", "high"]), "group"].tolist()
    return (
        f"Best of each group over {report.best_over_key}: the value with the best mean best_{report.monitor} "
        f"over the seeds (not a test value, not one seed; only values whose every run finished), and at it the "
        f"mean of the test values; each group against the best on best_{report.monitor} and"
        + (f" on {counterpart}, which the pick did not see" if "test_diff_to_best" in view else " (no test values)")
        + " (95% interval, paired by seed). "
        + (
            f"At an edge of its grid (widen the grid): {', '.join(edges)}."
            if edges
            else "No pick sits at an edge of its grid."
        )
    )


def best_over_text(report):
    """The best_over view as plain text, its note first."""
    return f"{best_over_note(report)}\n{text(report.best_over[best_over_columns(report)])}"


def html_page(report, title, pngs, ddof):
    """The report as one HTML page, the figures embedded.

    Args:
        report: A ``kerastrack.report.build.Report``.
        title: The page's title and heading.
        pngs: The figures as PNG bytes: the learning curves, then (with a best_over view)
            the monitor against the tuned key.
        ddof: The delta degrees of freedom of the report's standard deviations.

    Returns:
        The page, a str.
    """

    def frame(df):
        # pandas escapes the cells (to_html's escape=True), so its table goes in as markup.
        return Markup(text(df, pd.DataFrame.to_html, border=0, classes="table"))

    image, *more = (base64.b64encode(png).decode("ascii") for png in pngs)
    names = report.table.loc[report.table["run_id"] == report.best_run_id, "name"]
    # None: no run has a finite value of the monitor.
    best = names.size and {"name": names.iloc[0], "run_id": report.best_run_id, "value": number(report.best_value)}
    view = report.best_over_key and {
        "key": report.best_over_key,
        "note": best_over_note(report),
        "table": frame(report.best_over),
        "images": more,
    }
    return _PAGES.get_template("report.html.j2").render(
        title=title,
        monitor=report.monitor,
        mode=report.mode,
        best=best or None,
        best_over=view or None,
        ddof=ddof,
        groups=frame(report.groups),
        runs=frame(marked(report)),
        x=report.x,
        image=image,
    )
