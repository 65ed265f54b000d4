"""A run's summary once training is done: its one-value metrics (best_*, test_*), its
figures and its model; what a resumed run logged of them before it was stopped is not
logged again (as the loggers in ``recording`` do with epochs)."""

import logging
import math

from kerastrack.figures import curves as plots

log = logging.getLogger(__name__)


class Summary:
    """Logs a run's one-value metrics, figures and model once training is done.

    Args:
        tracker: The run's tracker.
        on_record: What the store has of the run: key -> steps.
        epochs: One dict of logged values per epoch.
    """

    def __init__(self, tracker, on_record, epochs):
        self.tracker = tracker
        self.on_record = on_record
        self.epochs = epochs
        self.keys = []  # the one-value metrics, logged now or before a resume: linked to the model

    def log(self, metrics, step):
        self.keys += metrics
        metrics = {k: v for k, v in metrics.items() if k not in self.on_record}
        if metrics:
            self.tracker.log_metrics(metrics, step=step)

    def log_best(self, monitor, mode):
        values = [e[monitor] for e in self.epochs if math.isfinite(e.get(monitor, math.nan))]
        if not values:
            return math.nan
        best = max(values) if mode == "max" else min(values)
        best_epoch = next(i for i, e in enumerate(self.epochs) if e.get(monitor) == best)
        # One value a run, at step 0: the MLflow UI then compares runs on it in a bar chart
        # (a value at a later step makes a line chart of lone dots).
        self.log({f"best_{monitor}": best, "best_epoch": best_epoch}, step=0)
        return best

    def log_results(self, model, data, head, metric_names, batch_size, output_dir):
        """Test metrics, figures and the model, with the weights training ended with."""
        results = model.evaluate(
            data.x_test, head.encode(data.y_test), batch_size=batch_size, return_dict=True, verbose=0
        )
        self.log({f"test_{k}": float(v) for k, v in results.items()}, step=0)
        log.info("test: %s", ", ".join(f"{k}={float(v):.4f}" for k, v in results.items()))

        figures = {"learning_curves.png": plots.learning_curves(self.epochs, metric_names)}
        if data.task != "regression":
            predicted = head.predict_classes(model.predict(data.x_test, batch_size=batch_size, verbose=0))
            figures["confusion_matrix.png"] = plots.confusion_matrix(data.y_test, predicted, data.class_names)
        for name, fig in figures.items():
            fig.savefig(output_dir / name, dpi=100)
            self.tracker.log_artifact(output_dir / name, "plots")
        if self.tracker.log_model:
            self.tracker.log_keras_model(model, data.x_test[:5], step=len(self.epochs) - 1, metrics=self.keys)
