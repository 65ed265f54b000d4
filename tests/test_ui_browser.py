"""End to end in a real headless Chromium: a sweep, ``python -m kerastrack.ui``, the MLflow UI.

Debian's ``chromium`` package, driven by Playwright with the system browser (no browser
download). ``KERASTRACK_SCREENSHOT=docs/ui-sweep.png`` also writes the README's screenshot:

    KERASTRACK_SCREENSHOT=docs/ui-sweep.png .venv/bin/python -m pytest tests/test_ui_browser.py
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import CHROMIUM, ROOT, UiProcess

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EPOCHS = 3
OPTIMIZERS = ("sgd", "rmsprop", "adam")

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.extra("chromium")]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A directory where ``python train.py -m`` ran a small real sweep into ./mlflow.db."""
    cwd = tmp_path_factory.mktemp("sweep")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            f"optimizer={','.join(OPTIMIZERS)}",
            f"trainer.epochs={EPOCHS}",
            "trainer.verbose=0",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
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
        printed = ui.wait_ready()
        landing = re.search(r"^Sweep '.*', its runs side by side: (http://\S+)$", printed, re.MULTILINE)
        assert landing, printed
        try:
            walk_through(page, landing.group(1), tmp_path)
        except Exception:
            page.screenshot(path=tmp_path / "failure.png")
            raise
        assert ui.stop() == 0


def walk_through(page, url, tmp_path):
    """What a user sees at the URL ``python -m kerastrack.ui`` printed, without a click;
    then one child's own page. Screenshots in tmp_path."""
    expect = sync_api.expect

    # The latest sweep's children side by side, in the model-training side of the UI.
    page.goto(url)
    # The sidebar of the model-training side (the GenAI side lists judges and prompts).
    expect(page.get_by_role("link", name="Model registry")).to_be_visible()
    expect(page.get_by_role("link", name="Judges")).to_have_count(0)
    expect(page.get_by_text(f"{len(OPTIMIZERS)} matching runs")).to_be_visible()
    for name in OPTIMIZERS:  # listed flat, not hidden under the parent
        expect(page.get_by_role("link", name=f"optimizer={name}", exact=True)).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="sweep optimizer")).to_have_count(0)
    for metric in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"):
        card = chart(page, metric)
        # One line a child, one point an epoch, and a legend entry naming each child.
        expect(card.locator("path.point")).to_have_count(EPOCHS * len(OPTIMIZERS))
        for name in OPTIMIZERS:
            expect(card.get_by_text(f"optimizer={name} ({metric})", exact=True)).to_be_visible()
    # The one-value metrics are bars, one a child; the sweep's counts are no chart at all.
    for metric in ("best_val_loss", "test_accuracy"):
        expect(chart(page, metric).locator("g.trace.bars")).to_have_count(1)
    for metric in ("n_jobs", "n_failed"):
        expect(chart(page, metric)).to_have_count(0)
    page.get_by_placeholder("Search metric charts").fill("")
    page.mouse.move(0, 0)
    first = page.get_by_test_id("experiment-view-compare-runs-card").filter(has=page.locator('h4[title="loss"]'))
    expect(first.locator("path.point")).to_have_count(EPOCHS * len(OPTIMIZERS))
    page.screenshot(path=tmp_path / "sweep-charts.png")
    if os.environ.get("KERASTRACK_SCREENSHOT"):
        shutil.copy(tmp_path / "sweep-charts.png", os.environ["KERASTRACK_SCREENSHOT"])

    # One child: its data and its model on its overview, a chart per epoch metric, one
    # point per epoch, its plots as artifacts.
    page.locator('label:has(input[name="runs-view-mode"][value="TABLE"])').click()
    page.get_by_role("link", name=f"optimizer={OPTIMIZERS[1]}", exact=True).click()
    # Its data: three dataset inputs (the first shown, "+2" more), named with their digest.
    expect(page.get_by_text(re.compile(r"^digits \([0-9a-f]{10}\)$")).first).to_be_visible()
    expect(page.get_by_text(re.compile("^training$", re.IGNORECASE)).first).to_be_visible()
    expect(page.get_by_text("+2", exact=True).first).to_be_visible()
    # Its model: the one-value metrics measure the logged model, linked by name.
    for metric in ("best_val_loss", "test_accuracy"):
        row = page.get_by_role("row").filter(has=page.get_by_text(metric, exact=True))
        expect(row.get_by_role("link", name="model", exact=True)).to_be_visible()
    expect(
        page.get_by_role("row")
        .filter(has=page.get_by_text("val_loss", exact=True))
        .get_by_role("link", name="model", exact=True)
    ).to_have_count(0)  # per-epoch metrics measure training
    page.screenshot(path=tmp_path / "child-overview.png", full_page=True)
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
