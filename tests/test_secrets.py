"""Credentials never appear in plain text in what kerastrack writes or prints."""

import json
import os
import subprocess
import sys

import keras
import pytest
from omegaconf import OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.pipeline import train
from kerastrack.tracking.server import free_port
from kerastrack.utils.secrets import mask_override, mask_secrets, mask_text, mask_uri, unmask
from tests.helpers import ROOT, run_train

PASSWORD, TOKEN, URI_PASSWORD = "hunter2-secret", "tok-from-env-s3cret", "pw-in-uri-s3cret"
SECRETS = (PASSWORD, TOKEN, URI_PASSWORD)


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("http://alice:pw@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
        ("https://alice:p%40ss@mlflow.example.com/api?x=1", "https://alice:***@mlflow.example.com/api?x=1"),
        ("postgresql+psycopg2://bob:pw@db:5432/mlflow", "postgresql+psycopg2://bob:***@db:5432/mlflow"),
        ("mysql://bob:pw@db/mlflow", "mysql://bob:***@db/mlflow"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("/tmp/mlruns", "/tmp/mlruns"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://alice@host:5000", "http://alice@host:5000"),
    ],
)
def test_a_uri_shows_everything_but_its_password(uri, shown):
    assert mask_uri(uri) == shown


def test_an_override_is_masked_by_its_key_or_its_uri():
    assert mask_override("+db_password=hunter2") == "+db_password=***"
    assert mask_override("+aws.secret_access_key=x") == "+aws.secret_access_key=***"
    assert mask_override("tracking.tracking_uri=http://u:pw@h:1") == "tracking.tracking_uri=http://u:***@h:1"
    assert mask_override("+trainer.tokenizer_vocab=ok") == "+trainer.tokenizer_vocab=ok"
    assert mask_override("optimizer=adam") == "optimizer=adam"
    assert mask_override("~db_password") == "~db_password"


def test_free_text_is_masked_like_hydras_launch_lines_and_mlflows_errors():
    assert (
        mask_text("\t#0 : +db_password=hunter2 optimizer=adam +api_token='a b'")
        == "\t#0 : +db_password=*** optimizer=adam +api_token=***"
    )
    assert mask_text("+db_password=hunter2,optimizer=adam") == "+db_password=***,optimizer=adam"  # override_dirname
    assert (
        mask_text("API request to http://u:pw@h:1/api/2.0/x failed")
        == "API request to http://u:***@h:1/api/2.0/x failed"
    )


def test_a_secret_copied_by_an_interpolation_is_masked_there_too():
    cfg = OmegaConf.create(
        {
            "db_password": PASSWORD,
            "conn": {"dsn": "host=db password=${db_password}"},
            "opt": "adam",
            "api_key": "adam",
            "tracking": {"tracking_uri": f"http://u:{URI_PASSWORD}@h"},
        }
    )
    masked = mask_secrets(OmegaConf.to_container(cfg, resolve=True))
    assert masked == {
        "db_password": "***",
        "conn": {"dsn": "host=db password=***"},
        "opt": "adam",  # too short
        "api_key": "***",
        "tracking": {"tracking_uri": "http://u:***@h"},
    }


def test_unmasking_takes_the_secrets_of_this_invocation_and_names_a_missing_one():
    recorded = OmegaConf.create({"db_password": "***", "url": "http://u:***@h/d.csv", "x": 1})
    current = OmegaConf.create({"db_password": PASSWORD, "url": "http://u:pw@h/d.csv", "x": 1})
    assert OmegaConf.to_container(unmask(recorded.copy(), current, "state/config.yaml")) == OmegaConf.to_container(
        current
    )
    with pytest.raises(
        ConfigError,
        match=r"resume: db_password is a secret, masked in state/config.yaml.*"
        r"\+db_password=\.\.\..*Received: db_password=\*\*\*",
    ):
        unmask(recorded.copy(), OmegaConf.create({"url": "http://u:pw@h/d.csv", "x": 1}), "state/config.yaml")
    with pytest.raises(ConfigError, match="resume: url is a secret"):  # another server is another experiment
        unmask(recorded.copy(), OmegaConf.create({"db_password": "p", "url": "http://v:pw@h/d.csv"}), "s")


class RecordValue(keras.callbacks.Callback):
    """Keeps the value it was configured with (a config value copied by an interpolation)."""

    seen = []

    def __init__(self, value):
        super().__init__()
        RecordValue.seen.append(value)


def test_a_resumed_run_takes_its_masked_secrets_from_the_new_invocation(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("KT_TEST_TOKEN", TOKEN)
    out = tmp_path / "run"
    secrets = [
        "+trainer.db_password=" + PASSWORD,
        "+trainer.api_token=${oc.env:KT_TEST_TOKEN}",
        "+callbacks.check._target_=tests.test_secrets.RecordValue",
        "+callbacks.check.value=${trainer.db_password}",
    ]
    stop = [
        "+callbacks.stop._target_=tests.support.SignalAtEpoch",
        "+callbacks.stop.epoch=0",
        f"+callbacks.stop.once={tmp_path / 'signalled'}",
    ]
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("tracking=none", "trainer.epochs=2", *secrets, *stop, f"paths.output_dir={out}"))
    state = (out / "state" / "config.yaml").read_text()
    assert PASSWORD not in state and TOKEN not in state and "db_password: '***'" in state

    with pytest.raises(
        ConfigError, match=r"resume: trainer.db_password, trainer.api_token, callbacks.check.value are secrets"
    ):
        train(make_cfg("tracking=none", "trainer.epochs=2", f"resume={out}"))
    monkeypatch.delenv("KT_TEST_TOKEN")
    with pytest.raises(ConfigError, match=r"resume: trainer.api_token, callbacks.check.value are secrets"):
        train(make_cfg("tracking=none", "trainer.epochs=2", f"resume={out}", *secrets[:2]))
    monkeypatch.setenv("KT_TEST_TOKEN", TOKEN)
    RecordValue.seen.clear()
    train(make_cfg("tracking=none", "trainer.epochs=2", f"resume={out}", *secrets))
    assert RecordValue.seen == [PASSWORD]  # the real value, not the mask
    assert PASSWORD not in (out / "state" / "config.yaml").read_text()


def assert_no_secret(text, where):
    for secret in SECRETS:
        assert secret not in text, f"{secret} in {where}:\n{text[-3000:]}"


def assert_no_secret_in_files(directory):
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert_no_secret(path.read_bytes().decode("latin-1"), path)
    return files


@pytest.mark.slow
def test_no_secret_is_written_or_printed_by_a_run_or_its_upload(tmp_path):
    port = free_port()  # nothing listens there: an offline run needs no server
    uri = f"http://alice:{URI_PASSWORD}@127.0.0.1:{port}"
    out = tmp_path / "out"
    done = run_train(
        tmp_path,
        f"hydra.run.dir={out}",
        "trainer.epochs=1",
        "tracking.offline=true",
        "tracking.log_model=false",
        f"tracking.tracking_uri={uri}",
        f"+db_password={PASSWORD}",
        "+service.api_token=${oc.env:MY_TOKEN}",
        env={"MY_TOKEN": TOKEN},
    )
    assert done.returncode == 0, done.stderr
    assert_no_secret(done.stdout + done.stderr, "the console")
    names = {p.relative_to(out).as_posix() for p in assert_no_secret_in_files(out)}
    assert {
        "state/config.yaml",
        "mlflow-spool/meta.json",
        "mlflow-spool/ops.jsonl",
        "train.log",
        ".hydra/config.yaml",
        ".hydra/hydra.yaml",
        ".hydra/overrides.yaml",
    } <= names
    masked_uri = f"http://alice:***@127.0.0.1:{port}"
    assert json.loads((out / "mlflow-spool" / "meta.json").read_text())["tracking_uri"] == masked_uri
    assert "db_password: '***'" in (out / "state" / "config.yaml").read_text()
    assert "+db_password=***" in (out / ".hydra" / "overrides.yaml").read_text()
    assert masked_uri in (out / "train.log").read_text()  # the offline run's "upload it to ..." line

    # The upload, with nothing listening: from the spool's URI (no password kept), then
    # with the password given on the command line.
    for extra in ([], ["--tracking-uri", uri]):
        upload = subprocess.run(
            [sys.executable, "-m", "kerastrack.upload", str(out), *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert upload.returncode == 1 and "is unreachable" in upload.stderr, upload.stderr
        assert_no_secret(upload.stdout + upload.stderr, "the upload's output")
    assert f"http://alice:***@127.0.0.1:{port} is unreachable" in upload.stderr


@pytest.mark.slow
def test_a_multirun_masks_hydras_files_and_launch_lines(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_train(
        tmp_path,
        "-m",
        f"hydra.sweep.dir={sweep}",
        "tracking=none",
        "trainer.epochs=1",
        "seed=1,2",
        f"+db_password={PASSWORD}",
        "+service.api_token=${oc.env:MY_TOKEN}",
        env={"MY_TOKEN": TOKEN},
    )
    assert done.returncode == 0, done.stderr
    console = done.stdout + done.stderr
    assert_no_secret(console, "the console")
    assert "seed=1 +db_password=*** +service.api_token=***" in console  # Hydra's "#0 : ..." line
    names = {p.relative_to(sweep).as_posix() for p in assert_no_secret_in_files(sweep)}
    assert {"multirun.yaml", "0/.hydra/hydra.yaml", "1/.hydra/overrides.yaml", "1/train.log"} <= names
    assert "+db_password=***" in (sweep / "multirun.yaml").read_text()


def test_an_upload_refused_for_want_of_credentials_says_where_they_come_from(tmp_path):
    import http.server
    import threading

    from kerastrack.tracking.spool import Spool
    from kerastrack.upload import upload_dir

    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        masked = f"http://alice:***@127.0.0.1:{server.server_port}"
        spool = Spool(tmp_path / "mlflow-spool")
        spool.write_meta(tracking_uri=masked, experiment_name="e", run_id=None, run_name="r")
        spool.append({"op": "terminate", "status": "FINISHED", "end_time": 1})
        with pytest.raises(
            ConfigError,
            match=r"needs credentials \(HTTP 401\): the spool keeps no password: set "
            r"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD .*--tracking-uri",
        ):
            upload_dir(tmp_path)
        with pytest.raises(ConfigError) as refused:
            upload_dir(tmp_path, f"http://alice:{URI_PASSWORD}@127.0.0.1:{server.server_port}")
        assert URI_PASSWORD not in str(refused.value) and masked in str(refused.value)
    finally:
        server.shutdown()


# -- error paths: what Hydra and Python print of an error --

BROKEN_TRAIN = """
import runpy, sys, types
def train(cfg):  # an error that is not kerastrack's own, naming the store as MLflow's errors do
    raise RuntimeError("lost the store " + cfg.tracking.tracking_uri)
sys.modules["kerastrack.pipeline"] = types.SimpleNamespace(train=train)
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path(sys.argv.pop(1), run_name="__main__")
"""


@pytest.mark.slow
def test_no_secret_reaches_the_terminal_on_an_error_path(tmp_path):
    store = f"postgresql://u:{URI_PASSWORD}@127.0.0.1:{free_port()}/db"  # nothing listens there
    secret_overrides = [f"tracking.tracking_uri={store}", f"+db_password={PASSWORD}"]
    # A store that cannot be reached: one line, also with Hydra's full tracebacks asked for.
    refused = run_train(tmp_path, *secret_overrides, env={"HYDRA_FULL_ERROR": "1"})
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"Error: the MLflow store {store.replace(URI_PASSWORD, '***')} cannot be reached (connection failed: connection "
        f'to server at "127.0.0.1", port {store.split(":")[3].split("/")[0]} failed: Connection refused Is the server '
        f"running on that host and accepting TCP/IP connections?). Check that the database server runs and the host, "
        f"port, user, password and database name, or record into a local store: "
        f"tracking.tracking_uri=sqlite:///mlflow.db. Received: tracking.tracking_uri={store.replace(URI_PASSWORD, '***')}"
    ]
    # Hydra's own error for a mistyped key prints the override ("To append ... use +trackin...").
    mistyped = run_train(tmp_path, f"trackin.tracking_uri={store}")
    assert mistyped.returncode == 1 and "+trackin.tracking_uri=postgresql://u:***@" in mistyped.stderr
    console = refused.stdout + refused.stderr + mistyped.stdout + mistyped.stderr
    # Any other exception reaches Hydra's handler ("Error executing job with overrides: [...]" and
    # a traceback), and with HYDRA_FULL_ERROR=1 Python's.
    for env in ({}, {"HYDRA_FULL_ERROR": "1"}):
        broken = subprocess.run(
            [sys.executable, "-c", BROKEN_TRAIN, str(ROOT / "train.py"), *secret_overrides],
            cwd=tmp_path,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert broken.returncode == 1 and "RuntimeError: lost the store postgresql://u:***@127.0.0.1" in broken.stderr
        console += broken.stdout + broken.stderr
    assert "Error executing job with overrides: ['tracking.tracking_uri=postgresql://u:***@" in console
    assert "'+db_password=***" in console  # masked to the end of the line: a password may hold any character
    assert_no_secret(console, "the console")
