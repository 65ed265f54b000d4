"""The sweep report's text tables and its self-contained HTML page (``kerastrack.report.build``
builds the report; this module only writes it out)."""

import base64
import html

import numpy as np
import pandas as pd

# How the report numbers epochs, said on the page: as Keras prints them, while MLflow's
# steps (and the best_epoch metric a run logs) count from 0.
EPOCH_NUMBERING = (
    'Epochs are numbered from 1, as Keras prints them ("Epoch 1/N"); MLflow stores '
    "them as steps from 0, so epoch k here is step k&minus;1 there (and a run's "
    "<code>best_epoch</code> metric is the step)."
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
        return text(df, pd.DataFrame.to_html, border=0, classes="table")

    image, *more = (base64.b64encode(png).decode("ascii") for png in pngs)
    best = report.table.loc[report.table["run_id"] == report.best_run_id, "name"]
    summary = (
        f"Best run: <b>{html.escape(best.iloc[0])}</b> ({report.best_run_id}), "
        f"{report.monitor} = {number(report.best_value)}"
        if len(best)
        else "No run has a finite value of the monitor."
    )
    x_axis = (
        "x: epoch"
        if report.x == "epoch"
        else "x: seconds of training, the group's mean <code>epoch_time_s</code> summed over its epochs"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table.table {{ border-collapse: collapse; font-size: 0.9em; margin-bottom: 2em; }}
table.table th, table.table td {{ padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }}
table.table th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Ranked by {html.escape(report.monitor)} ({report.mode}; the best epoch of each run). {summary}</p>
<p>{EPOCH_NUMBERING}</p>
{_best_over_section(report, more, frame)}<h2>Groups</h2>
<p>Mean and sample standard deviation (ddof={ddof}) of the best value over each group's finished runs.</p>
{frame(report.groups)}
<h2>Runs</h2>
{frame(marked(report))}
<h2>Learning curves</h2>
<p>Mean per epoch over the runs of a group that reached it; the band is ± one standard deviation ({x_axis}).</p>
<img alt="learning curves" src="data:image/png;base64,{image}">
</body></html>
"""


def _best_over_section(report, images, frame):
    if not report.best_over_key:
        return ""
    key = html.escape(report.best_over_key)
    figure = "".join(f'<img alt="best over {key}" src="data:image/png;base64,{image}">' for image in images)
    return (
        f"<h2>Best of each group over <code>{key}</code></h2>\n<p>{html.escape(best_over_note(report))}</p>\n"
        f"{frame(report.best_over)}\n{figure}\n"
    )
