"""The worked notebook (examples/notebooks/), executed top to bottom on a real Jupyter kernel
(nbclient + ipykernel), shrunk to a few epochs: what a user opening it sees."""

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT, store_client

NOTEBOOK = ROOT / "examples" / "notebooks" / "compare_optimizers.ipynb"
# The test's copy trains less; the notebook as committed is what the README promises.
SHRINK = {'"trainer.epochs=8"': '"trainer.epochs=2", "data.limit=200"', "seed=range(3)": "seed=range(2)"}


def test_the_notebook_is_committed_without_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_and_shows_the_groups_and_the_figure(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for old, new in SHRINK.items():
        assert any(old in cell.source for cell in notebook.cells), f"the notebook no longer has {old}"
        for cell in notebook.cells:
            cell.source = cell.source.replace(old, new)
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)  # the kernel's store is ./mlflow.db, as a user's
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    shown = {cell.source: cell.outputs for cell in notebook.cells if cell.cell_type == "code"}
    assert all(o.output_type != "error" for outputs in shown.values() for o in outputs)
    groups = _data(shown, "report.groups[")["text/html"]
    assert "vs_best" in groups and "optimizer=adam" in groups and "optimizer=momentum" in groups
    assert "image/png" in _data(shown, "report.figure"), "the figure shows inline"
    assert "epoch" in _data(shown, "run.history")["text/html"]
    client = store_client(Path(tmp_path))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 7 and {r.info.status for r in runs} == {"FINISHED"}  # a parent and 3 x 2 jobs


def _data(shown, code):
    """What the one cell whose source has ``code`` shows as its result."""
    (outputs,) = [outputs for source, outputs in shown.items() if code in source]
    (result,) = [o for o in outputs if o.output_type in ("execute_result", "display_data")]
    return result.data
