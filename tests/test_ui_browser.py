"""End to end in a real headless Chromium: a sweep, ``python -m kerastrack.ui``, the MLflow UI.

Debian's ``chromium`` package, driven by Playwright with the system browser (no browser
download). ``KERASTRACK_SCREENSHOT=docs/ui-sweep.png`` also writes the README's screenshot:

    KERASTRACK_SCREENSHOT=docs/ui-sweep.png .venv/bin/python -m pytest tests/test_ui_browser.py
"""

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import CHROMIUM, ROOT, UiProcess

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EPOCHS = 3
OPTIMIZERS = ("sgd", "adam")

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.extra("chromium")]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A directory where ``python train.py -m`` ran a small real sweep into ./mlflow.db."""
    cwd = tmp_path_factory.mktemp("sweep")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", f"optimizer={','.join(OPTIMIZERS)}",
         f"trainer.epochs={EPOCHS}", "trainer.verbose=0", "tracking.log_model=false"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd


@pytest.fixture
def page():
    """A page in headless Chromium."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def test_sweep_in_the_mlflow_ui(sweep_dir, page, tmp_path):
    with UiProcess(sweep_dir) as ui:
        ui.wait_ready()
        try:
            walk_through(page, ui.url, tmp_path)
        except Exception:
            page.screenshot(path=tmp_path / "failure.png")
            raise
        assert ui.stop() == 0


def walk_through(page, url, tmp_path):
    """What a user does after a sweep, checking what the UI shows; screenshots in tmp_path."""
    expect = sync_api.expect

    # The experiment, from the UI's home page, in the "Model training" view (MLflow 3
    # opens experiments in its GenAI view).
    page.goto(url)
    page.get_by_role("link", name="kerastrack", exact=True).first.click()
    page.get_by_text("Model training", exact=True).click()
    close_assistant(page)
    parent = page.get_by_role("row").filter(has_text="sweep optimizer")
    expect(parent).to_have_count(1)
    children = [page.get_by_role("link", name=f"optimizer={name}", exact=True) for name in OPTIMIZERS]
    for child in children:  # nested: hidden until the parent is expanded
        expect(child).to_have_count(0)
    parent.locator('button[data-component-id*="runnamecellrenderer"]').click()
    for child in children:
        expect(child).to_be_visible()
    expect(page.get_by_text("3 matching runs")).to_be_visible()
    page.screenshot(path=tmp_path / "sweep-runs.png")

    # Both children side by side: the chart view, without the parent's own points.
    page.locator('label:has(input[name="runs-view-mode"][value="CHART"])').click()
    page.get_by_role("row").filter(has_text="sweep optimizer").get_by_text("Hide run").click(force=True)
    for metric in ("loss", "val_loss"):
        expect(chart(page, metric).locator("path.point")).to_have_count(EPOCHS * len(OPTIMIZERS))
    page.get_by_placeholder("Search metric charts").fill("")
    accuracy = page.get_by_test_id("experiment-view-compare-runs-card").filter(has=page.locator('h4[title="accuracy"]'))
    expect(accuracy.locator("path.point")).to_have_count(EPOCHS * len(OPTIMIZERS))
    page.mouse.move(0, 0)
    page.screenshot(path=tmp_path / "sweep-charts.png")
    if os.environ.get("KERASTRACK_SCREENSHOT"):
        shutil.copy(tmp_path / "sweep-charts.png", os.environ["KERASTRACK_SCREENSHOT"])

    # One child: a chart per epoch metric, one point per epoch; its plots as artifacts.
    page.locator('label:has(input[name="runs-view-mode"][value="TABLE"])').click()
    children[1].click()
    page.get_by_role("tab", name="Model metrics").click()
    for metric in ("loss", "val_loss", "learning_rate"):
        expect(chart(page, metric).locator("path.point")).to_have_count(EPOCHS)
    page.screenshot(path=tmp_path / "child-metrics.png")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("plots", exact=True).click()
    page.get_by_text("learning_curves.png", exact=True).click()
    image = page.locator('img[alt="plots/learning_curves.png"]')
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") > 100  # the PNG was served and decoded
    page.screenshot(path=tmp_path / "child-artifacts.png")


def chart(page, metric):
    """The chart card titled ``metric``, found with the charts' search box: cards out of
    view are not rendered."""
    page.get_by_placeholder("Search metric charts").fill(metric)
    return page.get_by_test_id("experiment-view-compare-runs-card").filter(has=page.locator(f'h4[title="{metric}"]'))


def close_assistant(page):
    """Closes the MLflow Assistant side panel, which MLflow 3.17 opens by default."""
    close = page.get_by_role("button", name="Close")
    try:
        close.first.click(timeout=5_000)
    except sync_api.TimeoutError:  # not open: nothing to close
        pass
