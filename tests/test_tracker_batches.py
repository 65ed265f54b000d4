"""Short epochs' metrics go to MLflow in few calls, and every one of them reaches the record,
in order, before anything logged after it and before the run ends."""

from kerastrack.tracking import MlflowTracker
from kerastrack.tracking.spool import SPOOL_DIRNAME, Spool


def _tracker(store, request, **kwargs):
    tracker = MlflowTracker(tracking_uri=store, experiment_name=request.node.name[:200], log_model=False, **kwargs)
    tracker.metrics_every_s = 3600  # nothing is sent on time: only other calls and the end send
    return tracker


def test_many_epochs_metrics_are_sent_in_one_call_and_all_are_on_record(store, request, tmp_path):
    tracker = _tracker(store, request)
    client = tracker._client()
    calls, log_batch = [], client.log_batch

    def counted(*args, **kwargs):  # MLflow's own call, counted
        calls.append(len(kwargs["metrics"]))
        return log_batch(*args, **kwargs)

    client.log_batch = counted
    with tracker.run("batches", output_dir=tmp_path):
        tracker.log_metrics({"loss": 9.0, "val_loss": 10.0}, step=0)  # the first is sent at once
        for epoch in range(1, 50):
            tracker.log_metrics({"loss": 1.0 / epoch, "val_loss": 2.0 / epoch}, step=epoch)
        tracker.set_tags({"after": "epochs"})  # sends what waits first
        tracker.log_metrics({"best_loss": 0.02}, step=0)
    assert calls == [2, 98, 1]
    history = client.get_metric_history(tracker.run_id, "loss")
    assert [m.step for m in history] == list(range(50))
    assert [m.value for m in history][1:] == [1.0 / epoch for epoch in range(1, 50)]
    assert [m.timestamp for m in history] == sorted(m.timestamp for m in history)
    run = client.get_run(tracker.run_id)
    assert run.data.metrics["best_loss"] == 0.02 and run.info.status == "FINISHED"


def test_waiting_metrics_are_spooled_one_op_an_epoch_when_offline(store, request, tmp_path):
    tracker = _tracker(store, request, offline=True)
    with tracker.run("offline", output_dir=tmp_path):
        for epoch in range(5):
            tracker.log_metrics({"loss": float(epoch)}, step=epoch)
    ops = Spool(tmp_path / SPOOL_DIRNAME).pending()
    assert [(op["step"], op["metrics"]) for op in ops if op["op"] == "metrics"] == [
        (e, {"loss": float(e)}) for e in range(5)
    ]
    assert ops[-1]["op"] == "terminate"  # after every epoch
