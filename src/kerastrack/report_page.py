"""The sweep report's text tables and its self-contained HTML page (``kerastrack.report``
builds the report; this module only writes it out)."""

import base64
import html

import numpy as np
import pandas as pd

# How the report numbers epochs, said on the page: as Keras prints them, while MLflow's
# steps (and the best_epoch metric a run logs) count from 0.
EPOCH_NUMBERING = ("Epochs are numbered from 1, as Keras prints them (\"Epoch 1/N\"); MLflow stores "
                   "them as steps from 0, so epoch k here is step k&minus;1 there (and a run's "
                   "<code>best_epoch</code> metric is the step).")


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


def html_page(report, title, png, ddof):
    """The report as one HTML page, the figure embedded.

    Args:
        report: A ``kerastrack.report.Report``.
        title: The page's title and heading.
        png: The figure as PNG bytes.
        ddof: The delta degrees of freedom of the report's standard deviations.

    Returns:
        The page, a str.
    """
    def frame(df):
        return text(df, pd.DataFrame.to_html, border=0, classes="table")

    image = base64.b64encode(png).decode("ascii")
    best = report.table.loc[report.table["run_id"] == report.best_run_id, "name"]
    summary = (f"Best run: <b>{html.escape(best.iloc[0])}</b> ({report.best_run_id}), "
               f"{report.monitor} = {number(report.best_value)}" if len(best) else "No run has a finite value of the monitor.")
    x_axis = ("x: epoch" if report.x == "epoch" else
              "x: seconds of training, the group's mean <code>epoch_time_s</code> summed over its epochs")
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
<h2>Groups</h2>
<p>Mean and sample standard deviation (ddof={ddof}) of the best value over each group's finished runs.</p>
{frame(report.groups)}
<h2>Runs</h2>
{frame(marked(report))}
<h2>Learning curves</h2>
<p>Mean per epoch over the runs of a group that reached it; the band is ± one standard deviation ({x_axis}).</p>
<img alt="learning curves" src="data:image/png;base64,{image}">
</body></html>
"""
