"""Credentials never written or printed in plain text: what kerastrack masks, and how.

A value is a secret by its key (``db_password``, ``api_token``, ``aws.secret_access_key``:
see ``SECRET_KEY``) or by its value (a URI with a password, ``http://user:pw@host``,
``postgresql://user:pw@host/db``, under any key). Masked values read ``***``.

Used for everything kerastrack writes (the store's params and config artifact,
``state/config.yaml``, the spool, Hydra's ``.hydra/*.yaml`` through ``MaskSecretsCallback``)
and prints (its messages, and every log record once ``mask_log_records`` is on).

This module stays neutral (no MLflow, nothing of kerastrack's tracking or pipeline), so that
any part of kerastrack can use it.
"""

import contextlib
import logging
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.utils.files import write_atomic
from kerastrack.utils.hydra_job import sweep_dir

# Config keys whose values are credentials (one component of a dotted key).
SECRET_KEY = re.compile(
    r"(^|[_.-])(password|passwd|secret|token|api[_-]?key|access[_-]?key|credentials?|private[_-]?key)($|[_.-])",
    re.IGNORECASE,
)
MASK = "***"
# A secret key's value is masked under other keys too (where an interpolation copied it) when
# it is at least this long: a 4-letter password must not mask every "adam" in the record.
MIN_SECRET_ELSEWHERE = 6
# Database URLs that SQLAlchemy parses (MLflow's database stores); other URIs go through urllib.
_DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "sqlite")
# Finding URIs and `key=value` tokens inside free text (messages, log records, Hydra's
# override_dirname) has no library: these two patterns only find the candidates, which
# mask_uri / is_secret_key then judge.
_URI_IN_TEXT = re.compile(r"\b[A-Za-z][\w+.-]*://[^\s'\"<>]+")
_ASSIGNMENT_IN_TEXT = re.compile(r"(?<![\w.+~-])([+~]{0,2}[A-Za-z_][\w.-]*)=('[^']*'|\"[^\"]*\"|\[[^\]]*\]|[^\s,]+)")


def is_secret_key(key):
    """Whether a config key (``db_password``, ``+db.password``, ``a.b.api_key``) names a credential.

    Only the last component counts: ``password_policy.min_length`` is no secret.
    """
    return bool(SECRET_KEY.search(str(key).lstrip("+~").rsplit(".", 1)[-1]))


def mask_uri(uri):
    """``uri`` with its password replaced by ``***``; anything else is returned unchanged.

    ``http(s)://user:pw@host`` (urllib), ``postgresql+psycopg2://user:pw@host/db``,
    ``mysql://...`` (SQLAlchemy's URL). ``sqlite:///...``, plain paths and URIs without a
    password stay as they are.
    """
    parts = _split(uri)
    if parts is None:
        return uri
    if not hasattr(parts, "render_as_string"):  # urllib (a SQLAlchemy URL is a tuple too)
        split, user, host = parts
        return urlunsplit(split._replace(netloc=f"{user}:{MASK}@{host}"))
    return parts.render_as_string(hide_password=True)


def drop_password(uri):
    """``uri`` without its password (the user stays): where the password must come from
    elsewhere (MLFLOW_TRACKING_PASSWORD, PGPASSWORD). A masked password counts as one."""
    parts = _split(uri)
    if parts is None:
        return uri
    if not hasattr(parts, "render_as_string"):
        split, user, host = parts
        return urlunsplit(split._replace(netloc=f"{user}@{host}" if user else host))
    return parts._replace(password=None).render_as_string(hide_password=False)


def has_password(uri):
    return _split(uri) is not None


def _split(uri):
    """The parsed URI when it carries a password: a SQLAlchemy URL for database URLs,
    else (urllib's split, user, host[:port]); None without a password."""
    if not isinstance(uri, str) or "://" not in uri or "@" not in uri:
        return None
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme in _DATABASE_SCHEMES:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(uri)
        except (ArgumentError, ValueError):
            return None
        return url if url.password is not None else None
    try:
        split = urlsplit(uri)
        password = split.password
    except ValueError:  # e.g. a port that is no number
        return None
    if password is None:
        return None
    userinfo, _, host = split.netloc.rpartition("@")
    return split, userinfo.partition(":")[0], host


def mask_value(key, value):
    """The value as kerastrack shows it: ``***`` under a secret key, a URI without its password."""
    if value is not None and key is not None and is_secret_key(key):
        return MASK
    return mask_uri(value) if isinstance(value, str) else value


def mask_secrets(node):
    """A copy of a plain (``OmegaConf.to_container``) config with every secret masked:
    values under credential-like keys, passwords in URIs under any key, and the values of
    secret keys wherever else they appear (copied by an interpolation, ``${db_password}``).
    """
    values = sorted(
        {
            v
            for path, v in _leaves(node)
            if isinstance(v, str) and len(v) >= MIN_SECRET_ELSEWHERE and is_secret_key(path)
        },
        key=len,
        reverse=True,
    )
    return _mask_node(node, values)


def _mask_node(node, values):
    if isinstance(node, dict):
        return {k: MASK if v is not None and is_secret_key(k) else _mask_node(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask_node(v, values) for v in node]
    if not isinstance(node, str):
        return node
    for value in values:  # longest first: a secret that contains a shorter one goes whole
        node = node.replace(value, MASK)
    return mask_uri(node)


def mask_override(override):
    """A Hydra override as kerastrack shows it: ``+db_password=***``,
    ``tracking.tracking_uri=http://user:***@host``."""
    key, sep, value = str(override).partition("=")
    if not sep:
        return override
    return f"{key}{sep}{MASK}" if is_secret_key(key) else f"{key}{sep}{mask_text(value)}"


def mask_text(text):
    """Free text (a message, a log line, Hydra's ``override_dirname``) with the passwords
    of the URIs in it and the values of ``secret_key=value`` tokens masked."""
    if not isinstance(text, str) or ("://" not in text and "=" not in text):
        return text
    text = _URI_IN_TEXT.sub(lambda m: mask_uri(m.group(0)), text)
    return _ASSIGNMENT_IN_TEXT.sub(lambda m: f"{m.group(1)}={MASK}" if is_secret_key(m.group(1)) else m.group(0), text)


def is_masked(value):
    return isinstance(value, str) and MASK in value


def unmask(recorded, current, source):
    """The resumed run's config with its masked values taken from this invocation.

    ``state/config.yaml`` keeps no secret: resuming, the user gives them again (the same
    ``+db_password=...`` override, or the environment variable an ``${oc.env:...}`` reads).

    Args:
        recorded: The run's config as saved (a DictConfig), masked.
        current: This invocation's composed config.
        source: Where the masked config came from, for the message.

    Returns:
        ``recorded``, with every masked value replaced by the current one.

    Raises:
        ConfigError: A masked value this invocation does not give.
    """
    missing = []
    for path, value in _leaves(OmegaConf.to_container(recorded, resolve=False)):
        if not is_masked(value):
            continue
        try:
            now = OmegaConf.select(current, path, default=None)
        except Exception:  # noqa: BLE001 - e.g. ${oc.env:MY_TOKEN} without MY_TOKEN: not given
            now = None
        # A masked URI must be the same URI again (user, host) with its password given.
        if now is None or is_masked(now) or (f":{MASK}@" in value and mask_uri(str(now)) != value):
            missing.append(path)
        else:
            OmegaConf.update(recorded, path, now, merge=False)
    if missing:
        given = ", ".join(f"+{p}=..." for p in missing)
        raise ConfigError(
            f"resume: {', '.join(missing)} {'is a secret' if len(missing) == 1 else 'are secrets'}, "
            f"masked in {source} (kerastrack keeps no credentials on disk): give "
            f"{'it' if len(missing) == 1 else 'them'} again as when the run started ({given} "
            f"on the command line, or the environment variable its ${{oc.env:...}} reads). "
            f"Received: {', '.join(f'{p}={MASK}' for p in missing)}"
        )
    return recorded


def _leaves(node, prefix=""):
    """(dotted path, value) of every leaf of a nested container."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (dict, list)):
            yield from _leaves(value, path)
        else:
            yield path, value


# -- log records and Hydra's files --


def mask_log_records():
    """Masks secrets in every log record made from now on in this process, whichever
    logger or handler (Hydra's "Launching jobs: +db_password=..." lines, MLflow's messages
    with the tracking URI). Installed once, through ``logging.setLogRecordFactory``: the
    one hook that Hydra's reconfiguration of handlers for each job leaves in place."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "masks_secrets", False):
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        with contextlib.suppress(Exception):  # masking must never cost a log record
            message = record.getMessage()
            masked = mask_text(message)
            if masked != message:
                record.msg, record.args = masked, ()
            if record.exc_info and not record.exc_text:
                record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        return record

    factory.masks_secrets = True
    logging.setLogRecordFactory(factory)


class MaskedStream:
    """A text stream (``sys.stderr``) whose writes are masked as free text (``mask_text``).

    Hydra prints what ends a run outside any log record: ``Error executing job with
    overrides: [...]``, the overrides of a config error ("To append to your config use
    +key=postgresql://user:password@..."), the traceback of any exception that is not
    kerastrack's own, and with HYDRA_FULL_ERROR=1 Python prints it. All of them write to
    ``sys.stderr``, one line or message a call, so masking each write masks them all.

    Args:
        stream: The stream written to.
    """

    masks_secrets = True

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        self._stream.write(mask_text(text))
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):  # flush, fileno, isatty, encoding, ...: the stream's own
        return getattr(self._stream, name)


def mask_stderr():
    """Masks every write to ``sys.stderr`` from now on in this process (``MaskedStream``)."""
    if not getattr(sys.stderr, "masks_secrets", False):
        sys.stderr = MaskedStream(sys.stderr)


def mask_yaml_file(path, overrides_keys=("overrides",)):
    """Rewrites a YAML file that Hydra wrote, masked (only if something changes).

    Config values are masked by key and by value (``mask_secrets``); lists of overrides
    (``overrides.yaml``, ``hydra.overrides.task``) and other strings (``override_dirname``)
    as text.
    """
    path = Path(path)
    if not path.is_file():
        return
    original = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    masked = _mask_hydra_node(mask_secrets(original))
    if masked != original:
        write_atomic(path, OmegaConf.to_yaml(OmegaConf.create(masked)))


def _mask_hydra_node(node):
    if isinstance(node, dict):
        return {k: _mask_hydra_node(v) for k, v in node.items()}
    if isinstance(node, list):
        return [mask_override(v) if isinstance(v, str) else _mask_hydra_node(v) for v in node]
    return mask_text(node) if isinstance(node, str) else node


class MaskSecretsCallback(Callback):
    """Masks secrets in what Hydra writes and logs for each job (registered in conf/train.yaml).

    Hydra writes ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` just before
    ``on_job_start`` (hydra/core/utils.py::run_job), and the sweeper ``multirun.yaml`` before
    the first job starts: this callback rewrites them masked at the start of each job (and
    the multirun's again at its end). It also masks every log record of the process from
    the start of the run or multirun on (``mask_log_records``). What stays in plain text:
    docs/team-server.md, "Credentials".
    """

    def on_run_start(self, config, **kwargs):
        mask_log_records()

    def on_multirun_start(self, config, **kwargs):
        mask_log_records()

    def on_job_start(self, config, **kwargs):
        mask_log_records()  # also in a launcher's worker process
        hydra = config.hydra
        if hydra.output_subdir is not None:
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                mask_yaml_file(Path(hydra.runtime.output_dir) / str(hydra.output_subdir) / name)
        if hydra.mode == RunMode.MULTIRUN:
            mask_yaml_file(Path(sweep_dir(hydra)) / "multirun.yaml")

    def on_multirun_end(self, config, **kwargs):
        mask_yaml_file(Path(sweep_dir(config.hydra)) / "multirun.yaml")
