"""A tracking server for a team: `python -m zoo.tracking.server --dir /srv/zoo-mlflow`.

One command brings up what MLflow's docs describe as the team setup, all of it MLflow's and
PostgreSQL's own programs:

- a PostgreSQL cluster in `<dir>/postgres` (created on first start with `initdb`, Debian's
  `postgresql` package), listening on 127.0.0.1 only, password (scram-sha-256) logins, with
  one database for runs (`mlflow`) and one for users and permissions (`mlflow_auth`);
- `mlflow server --app-name basic-auth` on it, artifacts stored in `<dir>/artifacts` and
  served by the server itself (`--serve-artifacts`: clients need no shared disk);
- the admin account from `<dir>/basic_auth.ini` (MLflow's auth config, written on first
  start; the password from `--admin-password-file`, else generated and printed once).

PostgreSQL refuses to run as root: started by root, the cluster belongs to (and runs as)
the `postgres` user the Debian package creates. Ctrl-C or SIGTERM stops the server, then
the database. Clients: `tracking.uri=http://<host>:<port>` with `MLFLOW_TRACKING_USERNAME`
and `MLFLOW_TRACKING_PASSWORD` (README "Many runs, many machines, many people").
"""

from __future__ import annotations

import argparse
import configparser
import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DB_USER = "zoo"
DATABASES = ("mlflow", "mlflow_auth")


def postgres_bin(program: str) -> str:
    """The path of a PostgreSQL server program (`initdb`, `pg_ctl`), on PATH or Debian's."""
    found = shutil.which(program) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), reverse=True)), None
    )
    if found is None:
        raise FileNotFoundError(
            f"PostgreSQL's {program} was not found: install the server (Debian/Ubuntu: "
            "apt-get install postgresql) or put its bin/ folder on PATH"
        )
    return found


def _as_owner(command: list[str]) -> list[str]:
    """`command` run as the `postgres` user when this process is root (postgres refuses root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@dataclass
class Postgres:
    """A PostgreSQL cluster in `directory`, on 127.0.0.1:`port`, owned by this user (or
    `postgres` when root); its superuser `zoo` logs in with the password in `password`."""

    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "postgres"

    @property
    def password_file(self) -> Path:
        return self.directory / "postgres-password"

    def uri(self, database: str, driver: str = "+psycopg2") -> str:
        """SQLAlchemy's URI of `database` (SQLAlchemy 2.1 picks psycopg 3 for a bare
        `postgresql://`; the `server` extra installs psycopg2); `driver=""`: libpq's."""
        password = self.password_file.read_text().strip()
        return f"postgresql{driver}://{DB_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def initialise(self) -> None:
        """`initdb` on first use: password logins over TCP, no local socket outside the
        cluster's own folder."""
        if (self.data / "PG_VERSION").exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700, exist_ok=True)
        self.password_file.touch(mode=0o600)
        self.password_file.write_text(secrets.token_urlsafe(24))
        _give_to_postgres(self.data)
        _give_to_postgres(self.password_file)
        subprocess.run(
            _as_owner(
                [
                    postgres_bin("initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username",
                    DB_USER,
                    "--pwfile",
                    str(self.password_file),
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        subprocess.run(
            _as_owner(
                [
                    postgres_bin("pg_ctl"),
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.data / "server.log"),
                    "--wait",
                    "-o",
                    options,
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self.create_databases()

    def create_databases(self) -> None:
        import psycopg2

        connection = psycopg2.connect(self.uri("postgres", driver=""))
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT datname FROM pg_database")
                present = {row[0] for row in cursor.fetchall()}
                for name in DATABASES:
                    if name not in present:
                        cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()

    def stop(self) -> None:
        subprocess.run(
            _as_owner(
                [postgres_bin("pg_ctl"), "--pgdata", str(self.data), "--mode", "fast", "stop"]
            ),
            check=False,
            capture_output=True,
        )


def write_auth_config(path: Path, database_uri: str, admin_password: str) -> None:
    """MLflow's basic-auth INI: READ for users by default, the admin account, credential
    checks cached for a minute."""
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {
        "default_permission": "READ",
        "database_uri": database_uri,
        "admin_username": "admin",
        "admin_password": admin_password,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        # Every request checks its password with PBKDF2 (CPU-heavy: a training job logs each
        # epoch); a successful check is cached 60 s per worker, so a changed password may
        # still be accepted for that long by the other workers.
        "auth_cache_ttl_seconds": "60",
    }
    path.touch(mode=0o600)
    with path.open("w") as file:
        config.write(file)


@dataclass
class TrackingServer:
    """`mlflow server` with basic-auth on a `Postgres`, artifacts in `<directory>/artifacts`."""

    directory: Path
    host: str = "127.0.0.1"
    port: int = 5000
    db_port: int = 5432
    workers: int = 2
    admin_password: str | None = None
    allowed_hosts: str | None = None  # Host headers accepted beyond localhost (MLflow's check)
    database: Postgres = field(init=False)
    process: subprocess.Popen | None = field(init=False, default=None)
    log_file: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).resolve()
        self.database = Postgres(self.directory, self.db_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_config(self) -> Path:
        return self.directory / "basic_auth.ini"

    def prepare(self) -> str | None:
        """The database cluster and the auth config on first start; the generated admin
        password when one was generated (else None)."""
        self.database.initialise()
        if self.auth_config.exists():
            return None
        generated = self.admin_password is None
        password = self.admin_password or secrets.token_urlsafe(16)
        write_auth_config(self.auth_config, self.database.uri("mlflow_auth"), password)
        return password if generated else None

    def _secret_key(self) -> str:
        path = self.directory / "flask-secret-key"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def start_mlflow(self, log_file: Path | None = None) -> None:
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.database.uri("mlflow"),
            "--artifacts-destination",
            str(self.directory / "artifacts"),
            "--serve-artifacts",
            "--app-name",
            "basic-auth",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *(["--allowed-hosts", self.allowed_hosts] if self.allowed_hosts else []),
        ]
        env = {
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self._secret_key(),  # CSRF; the same every start
            **os.environ,
            "MLFLOW_AUTH_CONFIG_PATH": str(self.auth_config),
        }
        self.log_file = log_file
        output = log_file.open("ab") if log_file else None
        self.process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until `/health` answers (no credentials needed), or raise with the server's fate."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_file.read_text()[-3000:] if self.log_file else ""
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"mlflow server at {self.url} did not answer in {timeout_s:.0f} s")

    def stop_mlflow(self) -> None:
        """SIGTERM to the server's process group (its workers too), then wait."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def start(self, log_file: Path | None = None) -> str | None:
        """Database, then server; the generated admin password, if one was generated."""
        generated = self.prepare()
        self.database.start()
        self.start_mlflow(log_file)
        self.wait_ready()
        return generated

    def stop(self) -> None:
        self.stop_mlflow()
        self.database.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m zoo.tracking.server",
        description="MLflow tracking server with PostgreSQL, served artifacts and basic-auth.",
    )
    parser.add_argument("--dir", required=True, type=Path, help="database, artifacts, config")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the network")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--db-port", type=int, default=5432, help="PostgreSQL, on 127.0.0.1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--allowed-hosts", help="with --host 0.0.0.0: the names clients use, e.g. mlflow.lab:5000"
    )
    parser.add_argument(
        "--admin-password-file", type=Path, help="first start: the admin's password"
    )
    args = parser.parse_args(argv)
    password = args.admin_password_file.read_text().strip() if args.admin_password_file else None
    server = TrackingServer(
        args.dir,
        args.host,
        args.port,
        args.db_port,
        args.workers,
        admin_password=password,
        allowed_hosts=args.allowed_hosts,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        generated = server.start(log_file=None)
        if generated:
            print(f"admin password (shown once; in {server.auth_config}): {generated}")
        print(f"MLflow tracking server at {server.url}; stop it with Ctrl-C")
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
