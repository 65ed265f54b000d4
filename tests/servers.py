"""Throwaway servers for end-to-end tests: a real PostgreSQL and real ``mlflow server``s on it.

Import the fixtures into a test module (``from tests.servers import postgres``). They skip,
naming what is missing, when PostgreSQL's binaries are absent (CI installs Debian's
``postgresql`` package, see ``.ci/run``). A session fixture imported into two modules is two
fixtures: move ``postgres`` into conftest.py once a second module needs the same cluster.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from kerastrack.tracking.server import LOOPBACK, MlflowServer, free_port

PG_GLOB = "/usr/lib/postgresql/*/bin"  # Debian keeps the server binaries off PATH


def postgres_bin():
    """The directory of ``initdb``/``pg_ctl``: Debian's newest, else PATH's; None if absent."""
    found = sorted(glob.glob(f"{PG_GLOB}/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """A PostgreSQL cluster in a temporary directory, listening on ``127.0.0.1:port`` only.

    PostgreSQL refuses to run as root, so as root (here and in CI) the cluster belongs to
    the ``postgres`` user that Debian's package creates, and its directory lies outside
    pytest's tmp_path (which only root may enter). Durability is off (``fsync=off``): the
    data is thrown away.

    Args:
        bin_dir: Where ``initdb`` and ``pg_ctl`` are.
        user: The database superuser to create.
        password: Its password (host connections use scram-sha-256, as a real server would).
    """

    def __init__(self, bin_dir, user="kerastrack", password="pg-secret"):
        self.bin_dir = Path(bin_dir)
        self.user = user
        self.password = password
        self.port = free_port()
        self.dir = None
        self.owner = "postgres" if os.geteuid() == 0 else None

    def _as_owner(self, *cmd):
        prefix = []
        if self.owner:
            uid, gid = pwd.getpwnam(self.owner)[2:4]
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        result = subprocess.run(
            [*prefix, str(self.bin_dir / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=120
        )
        if result.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def start(self):
        self.dir = Path(tempfile.mkdtemp(prefix="kerastrack-pg-"))
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.owner:
            shutil.chown(self.dir, self.owner, self.owner)
            shutil.chown(pwfile, self.owner, self.owner)
        self._as_owner(
            "initdb",
            "-D",
            str(self.dir / "data"),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        options = f"-h {LOOPBACK} -p {self.port} -k {self.dir} -c fsync=off -c full_page_writes=off"
        self._as_owner(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "postgres.log"),
            "-o",
            options,
        )
        return self

    def create_database(self, name):
        """Creates database ``name``; returns its SQLAlchemy URI for MLflow."""
        subprocess.run(
            [str(self.bin_dir / "createdb"), "-h", LOOPBACK, "-p", str(self.port), "-U", self.user, name],
            env={**os.environ, "PGPASSWORD": self.password},
            check=True,
            capture_output=True,
            timeout=60,
        )
        return f"postgresql+psycopg2://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{name}"

    def stop(self):
        if self.dir is None:
            return
        try:
            self._as_owner("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.dir / "data"))
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL for the session; tests create their own databases in it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL is not installed (no initdb in {PG_GLOB} or on PATH); apt-get install postgresql")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip(
                "running as root and no 'postgres' user to run PostgreSQL as (Debian's postgresql package creates it)"
            )
    server = Postgres(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


def mlflow_server(postgres, tmp_dir, database, **kwargs):
    """An ``MlflowServer`` (not started) on a new PostgreSQL database, artifacts in ``tmp_dir``.

    Args:
        postgres: The ``Postgres`` to create the database in.
        tmp_dir: Where the file artifact store and the server's log go.
        database: The database to create for the tracking store.
        **kwargs: More ``MlflowServer`` arguments (``app_name``, ``env``).
    """
    tmp_dir = Path(tmp_dir)
    return MlflowServer(
        postgres.create_database(database),
        artifacts_destination=tmp_dir / "artifacts",
        cwd=tmp_dir,
        log_file=tmp_dir / "server.log",
        **kwargs,
    )
