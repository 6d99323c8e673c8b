"""A real distributed store (#13): a SeaweedFS cluster on this machine (scripts/seaweed_cluster.sh:
a master with replication 001, three volume servers, a filer and the S3 gateway), and one volume
server killed (`kill -9`) during a write-and-read load from several connections, then a second
one (objects with both copies there are out of reach), then both restarted.

Each write either succeeds durably (its reference reads back, with its bytes, after the node
return) or fails cleanly (an error, nothing committed, nothing referenced); reads keep working
through the replicas while one node is down; `oas_verify()` is clean at the end.
The failures are counted by SQLSTATE and printed (pytest -s shows them)."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import socket
import subprocess
import threading
import time

import psycopg
import pytest

from conftest import ROOT, connect, unique

pytestmark = pytest.mark.cluster

SCRIPT = str(ROOT / "scripts/seaweed_cluster.sh")
WRITERS, READERS = 4, 2
# Phases of the load, in seconds: all up; one volume server killed; a second one killed too (every
# object that had both copies there is out of reach: writes and some reads must fail cleanly);
# both back.
PHASES = (("up", 4.0), ("one down", 10.0), ("two down", 8.0), ("back", 6.0))
# With both copies out of reach SeaweedFS keeps a request waiting rather than failing it: a short
# request timeout turns that into a clean failure (58000) within the phase.
REQUEST_TIMEOUT = "5s"
VICTIMS = (1, 2)


def cluster(*args: str, timeout: float = 150) -> str:
    return subprocess.run([SCRIPT, *args], check=True, capture_output=True, text=True, timeout=timeout).stdout


@pytest.fixture(scope="module")
def seaweed(db, servers):
    """The cluster, started for this module and stopped (data removed) after it, whatever happened:
    its OAS_CLUSTER_* variables and the single node's credentials, which it shares."""
    try:
        cluster("start")
        env = dict(servers)  # the credentials are the single node's
        for line in cluster("env").splitlines():
            k, v = line.removeprefix("export ").split("=", 1)
            env[k] = v.strip("'")
        yield env
    finally:
        subprocess.run([SCRIPT, "stop"], capture_output=True, timeout=120)


class Load:
    """Writers insert rows whose objects they put; readers read back committed rows. Every
    outcome is recorded; each loop is bounded by `stop` and by a count."""

    def __init__(self, store: str, table: str, schema: str):
        self.store, self.table, self.schema = store, table, schema
        self.stop = threading.Event()
        self.phase = "up"
        self.lock = threading.Lock()
        self.committed: dict[int, str] = {}  # id -> md5 of the bytes
        self.failed: dict[int, tuple[str, int, str]] = {}  # id -> (phase, oas.max_retries, SQLSTATE)
        self.phase_of: dict[int, str] = {}  # committed id -> phase
        self.reads = collections.Counter()  # (phase, outcome) -> count
        self.read_errors: list[str] = []
        self.next_id = 0

    def _id(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id

    def _session(self):
        c = connect()
        c.execute(f"SET oas.request_timeout = '{REQUEST_TIMEOUT}'")
        c.execute("SET statement_timeout = '60s'")
        return c

    def writer(self, retries: int):
        with self._session() as c:
            c.execute(f"SET oas.max_retries = {retries}")
            for _ in range(100_000):
                if self.stop.is_set():
                    return
                i, phase = self._id(), self.phase
                data = os.urandom(random.randint(4 << 10, 96 << 10))
                try:
                    c.execute(f"INSERT INTO {self.table} VALUES (%s, oas.oas_hash_put(%b, %s, %s))",
                              [i, data, self.store, self.schema])
                except psycopg.Error as e:
                    with self.lock:
                        self.failed[i] = (phase, retries, e.sqlstate or "?")
                    continue
                with self.lock:
                    self.committed[i] = hashlib.md5(data).hexdigest()
                    self.phase_of[i] = phase

    def reader(self):
        with self._session() as c:
            for _ in range(100_000):
                if self.stop.is_set():
                    return
                with self.lock:
                    ids = list(self.committed)
                if not ids:
                    time.sleep(0.05)
                    continue
                i = random.choice(ids)
                phase = self.phase
                try:
                    got = c.execute(f"SELECT oas.oas_hash_get(v) FROM {self.table} WHERE id = %s", [i],
                                    binary=True).fetchone()[0]
                    ok = hashlib.md5(got).hexdigest() == self.committed[i]
                    self.reads[(phase, "ok" if ok else "wrong bytes")] += 1
                except psycopg.Error as e:
                    self.reads[(phase, e.sqlstate or "?")] += 1
                    if len(self.read_errors) < 5:
                        self.read_errors.append(str(e).splitlines()[0])


def test_a_volume_server_killed_during_a_write_and_read_load(seaweed):
    store, schema = unique("clu"), unique("clu")
    spec = {"protocol": "s3", "endpoint": seaweed["OAS_CLUSTER_S3_ENDPOINT"], "bucket": seaweed["OAS_CLUSTER_S3_BUCKET"],
            "location": f"pytest/{store}", "secure": False,
            "access_key": seaweed["OAS_S3_ACCESS_KEY"], "secret_key": seaweed["OAS_S3_SECRET_KEY"]}
    with connect() as c:
        c.execute("SELECT oas.oas_store_create(%s, %s)", [store, json.dumps(spec)])
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, v jsonb)")
        c.execute("SELECT oas.oas_declare_column(%s, 'v', %s)", [f"{schema}.t", f"hash@{store}"])
    load = Load(store, f"{schema}.t", schema)
    # Half the writers retry as configured by default, half not at all: what the retries cover.
    threads = [threading.Thread(target=load.writer, args=(3 if w % 2 else 0,)) for w in range(WRITERS)]
    threads += [threading.Thread(target=load.reader) for _ in range(READERS)]
    try:
        for t in threads:
            t.start()
        for phase, seconds in PHASES:
            # What a kill may disturb counts in the phase after it; a restart, in the one before.
            if phase == "back":
                for victim in VICTIMS:
                    cluster("start-volume", str(victim))
            load.phase = phase
            if phase in ("one down", "two down"):
                victim = VICTIMS[0 if phase == "one down" else 1]
                cluster("kill-volume", str(victim))
                port = int(seaweed["OAS_CLUSTER_VOLUME_PORTS"].split()[victim])
                with pytest.raises(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
            time.sleep(seconds)
    finally:
        load.stop.set()
        for t in threads:
            t.join(90)
        for victim in VICTIMS:
            subprocess.run([SCRIPT, "start-volume", str(victim)], capture_output=True, timeout=120)
    assert not any(t.is_alive() for t in threads)
    committed = collections.Counter(load.phase_of.values())
    failures = collections.Counter(load.failed.values())
    print(f"\nwrites committed by phase {dict(committed)}; failed {len(load.failed)} by (phase, oas.max_retries,"
          f" SQLSTATE) {dict(failures)}")
    print(f"reads by phase and outcome {dict(load.reads)}; first read errors {load.read_errors}")

    assert committed["up"] > 0 and committed["one down"] > 0
    # Writes fail cleanly: with an error class of a store failure, and without a row.
    assert {state for _, _, state in failures} <= {"58030", "58000"}, failures
    with connect() as c:
        c.execute("SET oas.request_timeout = '20s'")
        ids = {r[0] for r in c.execute(f"SELECT id FROM {schema}.t")}
        assert ids == set(load.committed), (ids ^ set(load.committed))
        # Every committed write is durable: its bytes read back once the node is back.
        for i, md5 in load.committed.items():
            got = c.execute(f"SELECT oas.oas_hash_get(v) FROM {schema}.t WHERE id = %s", [i], binary=True).fetchone()[0]
            assert hashlib.md5(got).hexdigest() == md5, i
        assert c.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0
        c.execute(f"DROP SCHEMA {schema} CASCADE")
    # Reads of committed objects never returned wrong bytes; with one node down they all worked
    # (through the replicas); with two down, a read that failed failed as a store failure, never
    # as a missing or corrupt object.
    assert not any(outcome == "wrong bytes" for _, outcome in load.reads), load.reads
    assert load.reads[("one down", "ok")] > 0, load.reads
    assert {outcome for phase, outcome in load.reads if phase != "two down"} == {"ok"}, load.reads
    assert {outcome for _, outcome in load.reads} <= {"ok", "58030", "58000"}, load.reads
