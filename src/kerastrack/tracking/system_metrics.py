"""MLflow's system-metrics sampler for one run (``tracking.system_metrics=true``)."""


def start_sampler(run_id, interval, resumed, tracking_uri):
    """Starts MLflow's own sampler on its thread and returns it (call ``finish()`` on it).

    Not ``mlflow.start_run(log_system_metrics=True)``: that stops the sampler only after the
    run has ended, and never when the run ends spooled.

    Args:
        run_id: The run the samples go into.
        interval: Seconds between samples.
        resumed: Whether the run continues an earlier one: its samples go on from its last
            step, as MLflow does for a resumed run.
        tracking_uri: The store.
    """
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    sampler = SystemMetricsMonitor(
        run_id, sampling_interval=interval, resume_logging=resumed, tracking_uri=tracking_uri
    )
    sampler.start()
    return sampler
