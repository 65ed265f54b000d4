"""Figures logged at the end of a run (matplotlib, no display needed)."""

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in sweeps without a display

import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def learning_curves(epochs, metric_names):
    """Loss, each metric (train and validation) and the learning rate per epoch.

    Args:
        epochs: One dict of logged values per epoch (EpochLogger.epochs).
        metric_names: Metric names besides the loss, e.g. ["accuracy"].

    Returns:
        A matplotlib Figure.
    """
    panels = ["loss", *metric_names, "learning_rate"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    x = list(range(len(epochs)))
    for ax, name in zip(axes[0], panels):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if any(key in e for e in epochs):
                ax.plot(x, [e.get(key, float("nan")) for e in epochs], marker=".", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        if name == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        elif len(ax.lines) > 1:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(y_true, y_pred, class_names):
    """A confusion matrix of test-set predictions (rows: true class, columns: predicted)."""
    size = max(4.0, 0.45 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(range(len(class_names))), display_labels=class_names,
        ax=ax, colorbar=False, xticks_rotation=45 if len(class_names) > 4 else "horizontal",
    )
    ax.set_title("test set")
    fig.tight_layout()
    return fig


def close(fig):
    plt.close(fig)
