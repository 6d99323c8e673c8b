"""Fixtures for tests from outside clients: a PostgreSQL cluster with pg_oas, and real stores.

The cluster is the one scripts/test.sh starts (127.0.0.1:$OAS_TEST_PORT). SeaweedFS and Azurite
are started through scripts/servers.sh when they are not running. Every test gets fresh
connections; stores are created once per session in database `oas_pytest`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN_DIR = pathlib.Path(os.environ.get("OAS_RUN_DIR", ROOT / ".run"))
PORT = int(os.environ.get("OAS_TEST_PORT", "25433"))
DB = "oas_pytest"
# The PostgreSQL 15 installation under test (OAS_PG_CONFIG: another, such as a relocated copy).
PG_CONFIG = os.environ.get("OAS_PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
PGBIN = subprocess.run([PG_CONFIG, "--bindir"], check=True, capture_output=True, text=True).stdout.strip()
# README promises a cancel within 1 s; tests allow twice that, as a loaded 2-core machine may take,
# and add it to any other promised time (a timeout) as the margin. The measured figure is printed
# (pytest -rA or -s shows it) and benchmarked, never asserted tighter.
CANCEL_BOUND_S = 2.0


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: starts a SeaweedFS cluster of its own (scripts/seaweed_cluster.sh); `make faults` runs these")
    config.addinivalue_line("markers", "faults: heavier fault cases, run by `make faults` (-m faults)")


def pytest_collection_modifyitems(config, items):
    """Tests marked `faults` run only when asked for (`-m faults`): they take minutes."""
    if "faults" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a heavier fault case: make faults")
    for item in items:
        if "faults" in item.keywords:
            item.add_marker(skip)


def server_env() -> dict[str, str]:
    """Start SeaweedFS and Azurite if needed and return their client settings (OAS_* variables).
    Servers that already answer as ours do (started by another checkout, say) are used as they are."""
    servers = str(ROOT / "scripts/servers.sh")
    if subprocess.run([servers, "check", "all"], stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run([servers, "start", "all"], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([servers, "env"], check=True, capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        line = line.removeprefix("export ").strip()
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v.strip("'\"")
    return env


def connect(dbname: str = DB, port: int = PORT, user: str = "postgres", **kw) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=port, user=user, dbname=dbname, autocommit=True, **kw)


def sql_error(conn: psycopg.Connection, query: str, params=()) -> psycopg.Error:
    """Run a statement that must fail; return the error (with .sqlstate, .diag)."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value


def chown_postgres(path: pathlib.Path) -> None:
    shutil.chown(path, "postgres", "postgres")


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    return server_env()


def new_database(name: str) -> None:
    """A new database `name` with pg_oas (an old one of that name is dropped first)."""
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    with connect(name) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION pg_oas")


@pytest.fixture(scope="session")
def db(servers) -> str:
    """Database with pg_oas and three stores: `file` (default), `s3` (SeaweedFS), `az` (Azurite)."""
    new_database(DB)
    store_dir = RUN_DIR / "pytest-store"
    shutil.rmtree(store_dir, ignore_errors=True)
    store_dir.mkdir(parents=True)
    chown_postgres(store_dir)
    # The file store is shared by the server (OS user postgres) and the DataJoint client in this
    # process (root), set up as the README says: group-writable, setgid, and a umask of 002.
    store_dir.chmod(0o2775)
    os.umask(0o002)
    with connect() as c:
        c.execute("SELECT oas.oas_store_create('file', %s, true)",
                  [json.dumps({"protocol": "file", "location": str(store_dir)})])
        c.execute("SELECT oas.oas_store_create('s3', %s)", [json.dumps(s3_spec(servers))])
        c.execute("SELECT oas.oas_store_create('az', %s)", [json.dumps(azure_spec(servers))])
    return DB


def s3_spec(env: dict[str, str], **over) -> dict:
    spec = {"protocol": "s3", "endpoint": env["OAS_S3_ENDPOINT"], "bucket": env["OAS_S3_BUCKET"],
            "location": "pytest", "secure": False,
            "access_key": env["OAS_S3_ACCESS_KEY"], "secret_key": env["OAS_S3_SECRET_KEY"]}
    spec.update(over)
    return {k: v for k, v in spec.items() if v is not None}


def azure_spec(env: dict[str, str], **over) -> dict:
    spec = {"protocol": "azure", "container": env["OAS_AZURE_CONTAINER"], "location": "pytest",
            "connection_string": env["OAS_AZURE_CONNECTION_STRING"]}
    spec.update(over)
    return spec


@pytest.fixture
def conn(db):
    with connect() as c:
        yield c


@pytest.fixture(scope="session")
def store_dir(db) -> pathlib.Path:
    return RUN_DIR / "pytest-store"


@pytest.fixture(scope="session")
def s3fs_client(servers):
    """A raw S3 client for the SeaweedFS bucket (s3fs, the library DataJoint itself uses)."""
    import s3fs

    return s3fs.S3FileSystem(key=servers["OAS_S3_ACCESS_KEY"], secret=servers["OAS_S3_SECRET_KEY"],
                             client_kwargs={"endpoint_url": "http://" + servers["OAS_S3_ENDPOINT"],
                                            "region_name": "us-east-1"})


def s3_keys(s3fs_client, env: dict[str, str], prefix: str) -> set[str]:
    """The keys under `prefix/` of the SeaweedFS bucket, relative to it (fresh: no cached listing)."""
    s3fs_client.invalidate_cache()
    root = f"{env['OAS_S3_BUCKET']}/{prefix}/"
    return {k.removeprefix(root) for k in s3fs_client.find(root)}


def s3_uploads(s3fs_client, env: dict[str, str], prefix: str) -> list[tuple[str, str]]:
    """The incomplete multipart uploads (key relative to `prefix/`, upload id) under `prefix/`."""
    ups = s3fs_client.list_multipart_uploads(env["OAS_S3_BUCKET"])
    return [(u["Key"].removeprefix(prefix + "/"), u["UploadId"]) for u in ups if u["Key"].startswith(prefix + "/")]


def drop_test_store(conn, store: str, schema: str, loc=None, s3fs_client=None, prefix=None) -> None:
    """Undo a test's store: roll back what is open, make it writable, drop `schema`, the
    collector's rows and the store, and remove its objects (a file store's directory `loc`, or
    `prefix` (bucket/...) through s3fs)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    conn.execute("SELECT oas.oas_store_read_only(%s, false)", [store])
    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.execute("DELETE FROM oas.gc_candidate WHERE store = %s", [store])
    conn.execute("DELETE FROM oas.gc_trash WHERE store = %s", [store])
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT oas.oas_store_drop(%s)", [store])
    if loc is not None:
        shutil.rmtree(loc, ignore_errors=True)
    if prefix is not None:
        with contextlib.suppress(FileNotFoundError):
            s3fs_client.rm(prefix, recursive=True)


def remove_s3_prefix(s3fs_client, env: dict[str, str], prefix: str) -> None:
    """Delete every object and incomplete multipart upload under `prefix/` of the bucket."""
    bucket = env["OAS_S3_BUCKET"]
    for key, upload_id in s3_uploads(s3fs_client, env, prefix):
        s3fs_client.call_s3("abort_multipart_upload", Bucket=bucket, Key=f"{prefix}/{key}", UploadId=upload_id)
    if s3_keys(s3fs_client, env, prefix):
        s3fs_client.rm(f"{bucket}/{prefix}/", recursive=True)


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a store that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                continue

    def close(self):
        self._stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


class CuttableProxy:
    """A TCP proxy to the S3 server that can fail chosen requests by closing the connection, as a
    store that goes away would (`fail_if(first bytes of what the client sends)`), and can pass what
    clients send at most `rate` bytes/s a connection. `sent` counts the bytes passed on. `port`: listen
    there (a store that comes back on its old port), else on a free one.
    Requests that `hold_if(first bytes)` are held (counted in `held`) until `release()` or
    `HOLD_S`, as a store that stalls in the middle of a request would; `release(forward=False)`
    drops them instead, as requests that never reached the store. `active` counts connections."""

    HOLD_S = 60.0

    def __init__(self, target: str, rate: float | None = None, listen_port: int = 0):
        host, port = target.split(":")
        self.target = (host, int(port))
        self.fail_if = lambda head: False
        self.failed = 0
        self.hold_if = lambda head: False
        self.held = 0
        self.released = threading.Event()
        self.dropping = False
        self.active, self._count = 0, threading.Lock()
        self.rate, self.sent = rate, 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen_port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, client):
        with self._count:
            self.active += 1
        try:
            self._pass(client)
        finally:
            with self._count:
                self.active -= 1

    def _pass(self, client):
        upstream = socket.create_connection(self.target)

        def back():
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            finally:
                client.close()

        threading.Thread(target=back, daemon=True).start()
        try:
            while data := client.recv(65536):
                if self.fail_if(data[:4096]):
                    self.failed += 1
                    break
                if not self.released.is_set() and self.hold_if(data[:4096]):
                    self.held += 1
                    self.released.wait(self.HOLD_S)
                    if self.dropping:
                        break
                if self.rate:
                    time.sleep(len(data) / self.rate)
                upstream.sendall(data)
                self.sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def release(self, forward: bool = True):
        """Let held requests go on (or drop them), and hold no more."""
        self.dropping = not forward
        self.released.set()

    def close(self):
        self.release()
        self._stop = True
        self.sock.close()


@pytest.fixture
def black_hole():
    bh = BlackHole()
    yield bh
    bh.close()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout=10.0, every=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return False


@pytest.fixture
def dj_config(servers, store_dir):
    """DataJoint 2.3.5's config with the same stores as the database: `file` (default) and `s3`."""
    dj = pytest.importorskip("datajoint")
    cfg = dj.config
    saved = dict(cfg.stores)
    cfg.stores.clear()
    cfg.stores.update({
        "default": "file",
        "file": {"protocol": "file", "location": str(store_dir)},
        "s3": s3_spec(servers),
    })
    yield cfg
    cfg.stores.clear()
    cfg.stores.update(saved)


@contextlib.contextmanager
def dj_connect(dj_config, dbname: str):
    """The DataJoint client connected to database `dbname` (DataJoint 2.x speaks PostgreSQL); its
    connection settings are restored afterwards."""
    import datajoint as dj

    settings = {"database.backend": "postgresql", "database.host": "127.0.0.1", "database.port": PORT,
                "database.user": "postgres", "database.password": "unused", "database.name": dbname,
                "database.use_tls": False}
    saved = {k: dj_config[k] for k in settings}
    for k, v in settings.items():
        dj_config[k] = v
    conn = dj.conn(reset=True)
    try:
        yield conn
    finally:
        conn.close()
        for k, v in saved.items():
            dj_config[k] = v


@pytest.fixture
def dj_connection(dj_config, db):
    """The DataJoint client connected to the test database."""
    with dj_connect(dj_config, db) as conn:
        yield conn


@pytest.fixture
def dj_schema():
    """Makes DataJoint schemas with unique names and drops them after the test:
    dj_schema("prefix", connection)."""
    import datajoint as dj

    made = []

    def make(prefix: str, connection):
        made.append(dj.Schema(unique(prefix), connection=connection))
        return made[-1]

    yield make
    for schema in reversed(made):
        schema.drop(prompt=False)


def dj_manual(schema, name: str, definition: str):
    """Declares the dj.Manual table class `name` in `schema`, as `@schema class name(dj.Manual)`
    with that definition does."""
    import datajoint as dj

    return schema(type(name, (dj.Manual,), {"definition": definition}))


class PrivateCluster:
    """A PostgreSQL cluster of its own under RUN_DIR, on a free port, with pg_oas in database
    `postgres`: for tests that kill or stop the server (never the shared one on PORT). `destroy()`
    stops it and removes its data."""

    def __init__(self, prefix: str = "crash", conf: dict[str, str] | None = None):
        self.name, self.port = unique(prefix), free_port()
        self.data = RUN_DIR / self.name / "data"
        self.log = RUN_DIR / self.name / "server.log"
        self._env = dict(os.environ, OAS_RUN_DIR=str(RUN_DIR))
        subprocess.run([ROOT / "scripts" / "cluster.sh", "start", self.name, str(self.port)], check=True, env=self._env)
        if conf:
            with self.connect() as c:
                for k, v in conf.items():
                    c.execute(f"ALTER SYSTEM SET {k} = {v}")
            self.pg_ctl("-m", "fast", "restart")
        with self.connect() as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION pg_oas")

    def connect(self, **kw) -> psycopg.Connection:
        return connect("postgres", port=self.port, **kw)

    @contextlib.contextmanager
    def session(self):
        """A connection that may be cut by a crash while open: closed afterwards, never committed."""
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    def pg_ctl(self, *args: str) -> None:
        """pg_ctl ARGS for this cluster, as the `postgres` OS user, waiting for it to finish."""
        subprocess.run(["sudo", "-u", "postgres", f"{PGBIN}/pg_ctl", "-D", str(self.data), "-w", "-t", "120",
                        "-l", str(self.log), *args], check=True, capture_output=True)

    def crash(self) -> None:
        """Stop the server at once, as a power cut would (no shutdown checkpoint), and start it:
        crash recovery replays the WAL."""
        self.pg_ctl("-m", "immediate", "stop")
        self.pg_ctl("start")
        assert self.wait_ready()

    def checkpointer(self) -> int:
        """The checkpointer's pid: a new one once the postmaster has restarted after a crash."""
        with self.connect() as c:
            return c.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'").fetchone()[0]

    def wait_ready(self, timeout: float = 120.0, restarted_from: int | None = None) -> bool:
        """Whether the server accepts connections again within `timeout`. After a backend was
        killed, the postmaster ends every backend and recovers from the WAL first: give the
        checkpointer's pid from before (`restarted_from`), so that a connection made before the
        postmaster noticed does not count."""

        def ready():
            try:
                with self.connect(connect_timeout=2) as c:
                    up = c.execute("SELECT NOT pg_is_in_recovery(), (SELECT pid FROM pg_stat_activity"
                                   " WHERE backend_type = 'checkpointer')").fetchone()
                    return up[0] and up[1] is not None and up[1] != restarted_from
            except psycopg.OperationalError:
                return False

        return wait_until(ready, timeout, every=0.2)

    def kill_while_waiting(self, table: str, key: int, call, timeout: float = 60.0) -> dict:
        """Kill a backend half-way, deterministically: another connection holds row `key` of
        `table` (FOR UPDATE), `call(conn)` runs in a thread on a new connection until it waits on
        that row, then its backend is killed (SIGKILL) and the postmaster's restart awaited. What
        the call raised is in the result's "error"."""
        holder = self.connect()
        holder.execute("BEGIN")
        holder.execute(f"SELECT 1 FROM {table} WHERE k = %s FOR UPDATE", [key])
        worker = self.connect()
        pid, checkpointer, box = worker.info.backend_pid, self.checkpointer(), {}

        def run():
            try:
                call(worker)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box["error"] = e

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        with self.session() as watch:
            waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s"
            assert wait_until(lambda: watch.execute(waiting, [pid]).fetchone()[0] is True, timeout)
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout)
        for c in (holder, worker):
            with contextlib.suppress(Exception):
                c.close()
        assert self.wait_ready(restarted_from=checkpointer)
        return box

    def destroy(self) -> None:
        """Stop the server at once (its data is deleted anyway) and delete its data."""
        subprocess.run(["sudo", "-u", "postgres", f"{PGBIN}/pg_ctl", "-D", str(self.data), "-w", "-m", "immediate",
                        "stop"], check=False, capture_output=True)
        subprocess.run([ROOT / "scripts" / "cluster.sh", "destroy", self.name], check=False, env=self._env)
