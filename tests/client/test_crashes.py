"""Crashes (#13): a backend killed with SIGKILL in the middle of a put, an upload in parts, a row
trigger's write or a collector run (listing, moves, purge), and the server stopped with
`pg_ctl -m immediate` during a stress run. After the restart (the postmaster's crash recovery)
every committed reference resolves with its size and hash (`oas_verify()` clean), and what the
killed work left (staging files, objects no row references, half-moved trash, incomplete
multipart uploads) is kept through grace, then collected, leaving exactly the referenced set.

The cluster is this module's own (`PrivateCluster`): these tests crash it. Each test has its
stores: a directory, a SeaweedFS location, and another location reached through a proxy that
can hold chosen requests, so a backend is killed while it is surely inside the operation."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import threading
import time

import psycopg
import pytest

from conftest import (RUN_DIR, CuttableProxy, PrivateCluster, chown_postgres, remove_s3_prefix, s3_keys, s3_spec,
                      s3_uploads, unique, wait_until)

# Longest wait for a backend to reach the point where it is killed, or for anything to settle.
WAIT_S = 60.0
OWNER = "_oas/owner.json"


@pytest.fixture(scope="module")
def cluster(servers):
    c = PrivateCluster("crashes")
    yield c
    c.destroy()


class Stores:
    """One test's stores: `file` (a directory), `s3` and `held` (SeaweedFS locations, `held`
    through `proxy`), named uniquely."""

    def __init__(self, cluster, servers, s3fs_client):
        self.cluster, self.servers, self.s3 = cluster, servers, s3fs_client
        self.schemas: list[str] = []
        tag = unique("cr")
        self.dir = RUN_DIR / f"{cluster.name}-{tag}"
        self.dir.mkdir()
        chown_postgres(self.dir)
        self.proxy = CuttableProxy(servers["OAS_S3_ENDPOINT"])
        self.file, self.s3_name, self.held = f"f_{tag}", f"s_{tag}", f"h_{tag}"
        self.loc = {self.s3_name: f"pytest-crash/{tag}/s", self.held: f"pytest-crash/{tag}/h"}
        specs = {
            self.file: {"protocol": "file", "location": str(self.dir)},
            self.s3_name: s3_spec(servers, location=self.loc[self.s3_name]),
            self.held: s3_spec(servers, location=self.loc[self.held], endpoint=f"127.0.0.1:{self.proxy.port}"),
        }
        with cluster.session() as c:
            for name, spec in specs.items():
                c.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])

    def keys(self, store: str) -> set[str]:
        """Every object in `store`, by its path relative to the store's location."""
        if store == self.file:
            return {str(p.relative_to(self.dir)) for p in self.dir.rglob("*") if p.is_file()}
        return s3_keys(self.s3, self.servers, self.loc[store])

    def uploads(self, store: str) -> list[tuple[str, str]]:
        return [] if store == self.file else s3_uploads(self.s3, self.servers, self.loc[store])

    def schema(self, conn) -> str:
        """A new schema, dropped with the stores."""
        self.schemas.append(unique("crs"))
        conn.execute(f"CREATE SCHEMA {self.schemas[-1]}")
        return self.schemas[-1]

    def close(self):
        self.proxy.close()
        # The cluster may be down after a failure: the files go in any case.
        with contextlib.suppress(psycopg.Error), self.cluster.session() as c:
            for schema in self.schemas:
                c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            for store in (self.file, self.s3_name, self.held):
                c.execute("SELECT oas.oas_store_drop(%s, true)", [store])
        shutil.rmtree(self.dir, ignore_errors=True)
        for loc in self.loc.values():
            remove_s3_prefix(self.s3, self.servers, loc)


@pytest.fixture
def stores(cluster, servers, s3fs_client):
    s = Stores(cluster, servers, s3fs_client)
    yield s
    s.close()


def table(conn, stores: Stores, store: str, codec: str = "hash") -> tuple[str, str]:
    """A table `schema.t (k int, v jsonb)` in a new schema, `v` declared `codec@store`."""
    schema = stores.schema(conn)
    conn.execute(f"CREATE TABLE {schema}.t (k int PRIMARY KEY, v jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'v', %s)", [f"{schema}.t", f"{codec}@{store}"])
    return schema, f"{schema}.t"


def referenced(conn, *columns: str) -> set[str]:
    """The paths the committed rows reference, from `table.column`s."""
    out = set()
    for tc in columns:
        t, col = tc.rsplit(".", 1)
        out |= {r[0] for r in conn.execute(f"SELECT {col}->>'path' FROM {t} WHERE {col} IS NOT NULL")}
    return out


def verify(conn):
    assert conn.execute("SELECT * FROM oas.oas_verify()").fetchall() == []


GC_COLS = "orphaned, waiting, trashed, restored, purged, staging_removed, errors"


def gc(conn, store: str, grace: str = "0", retention: str | None = None) -> dict:
    cur = conn.execute(f"SELECT {GC_COLS} FROM oas.oas_gc(false, %s, %s::interval, %s::interval)",
                       [store, grace, retention])
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


def settle(conn, stores: Stores, store: str, refs: set[str]) -> None:
    """Collect with zero grace and retention until the store holds exactly `refs` (and the
    location's owner record): record, move, purge. A bounded number of runs."""
    for _ in range(4):
        r = gc(conn, store, "0", "0")
        assert r["errors"] == [], r
    keys = stores.keys(store)
    assert {k for k in keys if not k.startswith("_oas/")} == refs
    assert keys - refs <= {OWNER}, keys - refs
    assert stores.uploads(store) == []


def leftovers(conn, stores: Stores, store: str, refs: set[str]) -> set[str]:
    """What is in `store` that no row references (and is not the owner record)."""
    return stores.keys(store) - refs - {OWNER}


def kept_through_grace(conn, stores: Stores, store: str, refs: set[str]) -> None:
    """A run with a grace of an hour touches nothing the crash left (nor anything referenced)."""
    before, ups = leftovers(conn, stores, store, refs), stores.uploads(store)
    r = gc(conn, store, "1 hour")
    assert (r["trashed"], r["purged"], r["staging_removed"], r["errors"]) == (0, 0, 0, []), r
    assert leftovers(conn, stores, store, refs) == before
    assert stores.uploads(store) == ups
    assert refs <= stores.keys(store)


class Killed:
    """Runs `statements` on a connection of its own in a thread; `kill()` sends SIGKILL to its
    backend once `ready()` holds (bounded), then waits for the server to recover."""

    def __init__(self, cluster, *statements: tuple[str, list]):
        self.cluster, self.error, self.done = cluster, None, threading.Event()
        self.checkpointer = cluster.checkpointer()
        self.conn = cluster.connect()
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.thread = threading.Thread(target=self._run, args=(statements,), daemon=True)
        self.thread.start()

    def _run(self, statements):
        try:
            for sql, params in statements:
                self.conn.execute(sql, params)
        except psycopg.Error as e:
            self.error = e
        finally:
            self.done.set()

    def kill(self, ready) -> None:
        assert wait_until(lambda: ready() or self.done.is_set(), WAIT_S, every=0.01), "never got there"
        assert not self.done.is_set(), f"the statement ended before the kill: {self.error}"
        os.kill(self.pid, signal.SIGKILL)
        self.thread.join(WAIT_S)
        assert isinstance(self.error, psycopg.OperationalError), self.error
        self.conn.close()
        assert self.cluster.wait_ready(restarted_from=self.checkpointer)


def cut(proxy: CuttableProxy) -> None:
    """After a kill: the requests the proxy held never reach the store (a request the store
    completes after its client died would only be one more orphan, later); once every connection
    has ended, the proxy passes everything again."""
    proxy.release(forward=False)
    assert wait_until(lambda: proxy.active == 0, WAIT_S)
    proxy.hold_if = lambda head: False
    proxy.released.clear()
    proxy.dropping, proxy.held = False, 0


def big(n_mib: int) -> str:
    """SQL for a distinct payload of `n_mib` MiB per row `i` and seed `%s`."""
    return f"decode(repeat(md5(%s || i), {n_mib * 32768}), 'hex')"


def test_kill_during_hash_puts_on_a_file_store(cluster, stores):
    """Large puts (staged, then linked) killed in the middle of a statement that makes many."""
    with cluster.session() as c:
        schema, t = table(c, stores, stores.file)
        c.execute(f"INSERT INTO {t} SELECT i, oas.oas_hash_put({big(2)}, %s, %s) FROM generate_series(1, 3) i",
                  ["committed", stores.file, schema])
        refs = referenced(c, f"{t}.v")
        staging = stores.dir / "_oas" / "staging"
        k = Killed(cluster, (f"INSERT INTO {t} SELECT i, oas.oas_hash_put({big(4)}, %s, %s)"
                             " FROM generate_series(10, 400) i", ["killed", stores.file, schema]))
        k.kill(lambda: staging.is_dir() and any(staging.iterdir()) and len(leftovers(c, stores, stores.file, refs)) > 2)
    with cluster.session() as c:
        verify(c)
        assert leftovers(c, stores, stores.file, refs)
        kept_through_grace(c, stores, stores.file, refs)
        settle(c, stores, stores.file, refs)
        verify(c)


def test_kill_during_a_hash_put_in_parts_on_s3(cluster, stores):
    """A put over oas.upload_part_size goes to S3 as a multipart upload: killed while its second
    part is on its way, it leaves an incomplete upload that only the collector can find."""
    with cluster.session() as c:
        schema, t = table(c, stores, stores.held)
        c.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash_put(%s, %s, %s))", [os.urandom(1000), stores.held, schema])
        refs = referenced(c, f"{t}.v")
        stores.proxy.hold_if = lambda head: b"partNumber=2" in head
        k = Killed(cluster, ("SET oas.upload_part_size = '5MB'", []),
                   (f"INSERT INTO {t} VALUES (2, oas.oas_hash_put(%s, %s, %s))", [os.urandom(11 << 20), stores.held, schema]))
        k.kill(lambda: stores.proxy.held > 0)
        cut(stores.proxy)
    one_upload_left_then_collected(cluster, stores, refs)


def one_upload_left_then_collected(cluster, stores: Stores, refs: set[str]) -> None:
    """After a kill: one incomplete upload in parts in `held`, kept through grace, then aborted."""
    with cluster.session() as c:
        verify(c)
        assert len(stores.uploads(stores.held)) == 1
        kept_through_grace(c, stores, stores.held, refs)
        settle(c, stores, stores.held, refs)
        verify(c)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_kill_during_an_upload_in_parts(cluster, stores, kind):
    """oas_upload_begin/part, then the session's backend killed before oas_upload_finish."""
    store = stores.file if kind == "file" else stores.s3_name
    with cluster.session() as c:
        c.execute("SELECT oas.oas_content_hash('')")
        schema, t = table(c, stores, store, "object")
        c.execute(f"INSERT INTO {t} VALUES (1, oas.oas_object(%s::bytea, '.bin'))", [b"committed"])
        refs = referenced(c, f"{t}.v")
        # A client streaming a large value: one part sent, then the backend is killed between two
        # oas_upload_part calls (here: while the session sleeps).
        k = Killed(cluster, ("SET oas.upload_part_size = '5MB'", []),
                   ("SELECT oas.oas_upload_part(oas.oas_upload_begin(%s, 'v', '{\"k\": 2}', '.bin'), %s)",
                    [t, os.urandom(6 << 20)]),
                   ("SELECT pg_sleep(%s)", [WAIT_S]))

        def sleeping():
            row = c.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [k.pid]).fetchone()
            return row is not None and "pg_sleep" in row[0]

        k.kill(sleeping)
    with cluster.session() as c:
        verify(c)
        kept_through_grace(c, stores, store, refs)
        settle(c, stores, store, refs)
        verify(c)


def test_kill_during_a_part_of_an_upload_on_s3(cluster, stores):
    """oas_upload_part killed while it sends a part: an incomplete upload with parts."""
    with cluster.session() as c:
        c.execute("SELECT oas.oas_content_hash('')")
        schema, t = table(c, stores, stores.held, "object")
        refs: set[str] = set()
        # One part in flight: the third part waits for the second, which the proxy holds.
        stores.proxy.hold_if = lambda head: b"partNumber=2" in head
        k = Killed(cluster, ("SET oas.upload_part_size = '5MB'", []), ("SET oas.upload_parts_in_flight = 1", []),
                   ("SELECT oas.oas_upload_part(oas.oas_upload_begin(%s, 'v', '{\"k\": 2}', '.bin'), %s)",
                    [t, os.urandom(16 << 20)]))
        k.kill(lambda: stores.proxy.held > 0)
        cut(stores.proxy)
    one_upload_left_then_collected(cluster, stores, refs)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_kill_during_schema_addressed_writes_from_the_row_trigger(cluster, stores, kind):
    """Pending `oas_npy` values stored by the row trigger `oas._fill_values`, many rows in one
    statement, killed after some of them are in the store."""
    store = stores.file if kind == "file" else stores.held
    with cluster.session() as c:
        schema, t = table(c, stores, store, "npy")
        c.execute(f"INSERT INTO {t} SELECT i, oas.oas_npy(array_fill(i::float8, ARRAY[1000])) FROM generate_series(1, 3) i")
        refs = referenced(c, f"{t}.v")
        puts = []
        if kind == "s3":  # hold the third object's upload
            stores.proxy.hold_if = lambda head: head.startswith(b"PUT ") and (puts.append(1) or len(puts) >= 3)
        k = Killed(cluster, (f"INSERT INTO {t} SELECT i, oas.oas_npy(array_fill(i::float8, ARRAY[131072]))"
                             " FROM generate_series(10, 5000) i", []))
        if kind == "s3":
            k.kill(lambda: stores.proxy.held > 0)
            cut(stores.proxy)
        else:
            k.kill(lambda: len(leftovers(c, stores, store, refs)) >= 3)
    with cluster.session() as c:
        verify(c)
        assert leftovers(c, stores, store, refs)
        kept_through_grace(c, stores, store, refs)
        settle(c, stores, store, refs)
        verify(c)


def orphans_and_live(c, stores: Stores, store: str, n_orphans: int) -> tuple[str, set[str], set[str]]:
    """A table with live references and `n_orphans` objects no row references (puts whose
    transaction rolled back), all recorded as candidates by a first run."""
    schema, t = table(c, stores, store)
    c.execute(f"INSERT INTO {t} SELECT i, oas.oas_hash_put(decode(md5(%s || i), 'hex'), %s, %s)"
              " FROM generate_series(1, 5) i", [os.urandom(4).hex(), store, schema])
    with c.transaction(force_rollback=True):
        c.execute(f"INSERT INTO {t} SELECT i, oas.oas_hash_put(decode(md5(%s || i), 'hex'), %s, %s)"
                  " FROM generate_series(100, %s) i", [os.urandom(4).hex(), store, schema, 99 + n_orphans])
        orphans = referenced(c, f"{t}.v")
    live = referenced(c, f"{t}.v")
    orphans -= live
    r = gc(c, store)
    assert r["orphaned"] == n_orphans and r["trashed"] == 0, r
    return t, live, orphans


def pause_collector(cluster, stores, hold, store: str, retention: str | None = None):
    """Run the collector on `store` and kill it once the proxy holds a request `hold` matches."""
    stores.proxy.hold_if = hold
    k = Killed(cluster, ("SELECT * FROM oas.oas_gc(false, %s, '0', %s::interval)", [store, retention]))
    k.kill(lambda: stores.proxy.held > 0)
    cut(stores.proxy)


def deleting(head: bytes) -> bool:
    """An S3 delete: object_store deletes in bulk (`POST /bucket?delete`), or one `DELETE`."""
    line = head.split(b"\r\n", 1)[0]
    return line.startswith(b"DELETE ") or (line.startswith(b"POST ") and b"?delete" in line)


def test_kill_the_collector_while_it_lists_moves_and_purges_on_s3(cluster, stores):
    store = stores.held
    with cluster.session() as c:
        t, live, orphans = orphans_and_live(c, stores, store, 30)
    # Listing: killed while it waits for a page of the hash section.
    pause_collector(cluster, stores, lambda head: b"list-type=2" in head and b"_hash" in head, store)
    with cluster.session() as c:
        verify(c)
        assert stores.keys(store) >= live | orphans
    # Moves (S3: copy to trash, then delete the original): killed while a delete is held, after
    # some copies, so an object may be in both places and the run's trash records never commit.
    pause_collector(cluster, stores, deleting, store)
    with cluster.session() as c:
        verify(c)
        keys = stores.keys(store)
        assert any(k.startswith("_oas/trash/") and k.removeprefix("_oas/trash/") in keys for k in keys), \
            "no object half moved"
        assert c.execute("SELECT count(*) FROM oas.gc_trash WHERE store = %s", [store]).fetchone()[0] == 0
        # The next run finishes the moves: every orphan in trash, recorded, once.
        r = gc(c, store)
        assert r["errors"] == [], r
        keys = stores.keys(store)
        assert not keys & orphans and live <= keys
        verify(c)
    # Purge: killed while deleting trash.
    pause_collector(cluster, stores, deleting, store, "0")
    with cluster.session() as c:
        verify(c)
        assert live <= stores.keys(store)
        settle(c, stores, store, live)
        verify(c)


def test_kill_the_collector_while_it_moves_on_a_file_store(cluster, stores):
    store = stores.file
    with cluster.session() as c:
        t, live, orphans = orphans_and_live(c, stores, store, 3000)
    trash = stores.dir / "_oas" / "trash"
    k = Killed(cluster, ("SELECT * FROM oas.oas_gc(false, %s, '0')", [store]))
    k.kill(lambda: trash.is_dir() and any(trash.iterdir()))
    with cluster.session() as c:
        verify(c)
        assert live <= stores.keys(store)
        settle(c, stores, store, live)
        verify(c)


# Immediate shutdown during a stress run.

# Seconds of writing before the stop (the `faults` runs: at least 30 s).
STRESS_S = float(os.environ.get("OAS_CRASH_STRESS_S", "6"))
WRITERS = 3


def stress_tables(c, stores: Stores) -> list[tuple[str, str]]:
    """Per store (file, s3): a table with a `<hash@>`, a `<blob@>` and an `<npy@>` column."""
    out = []
    for store in (stores.file, stores.s3_name):
        schema = stores.schema(c)
        c.execute(f"CREATE TABLE {schema}.t (k int PRIMARY KEY, h jsonb, b jsonb, n jsonb)")
        for col, codec in (("h", "hash"), ("b", "blob"), ("n", "npy")):
            c.execute("SELECT oas.oas_declare_column(%s, %s, %s)", [f"{schema}.t", col, f"{codec}@{store}"])
        out.append((store, f"{schema}.t"))
    return out


def count(counts: dict, what: str) -> None:
    counts[what] = counts.get(what, 0) + 1


def writer(cluster, tables, stop: threading.Event, seed: int, counts: dict) -> None:
    """Inserts, updates, deletes and rolled-back writes at random until `stop` or the server goes."""
    rnd = random.Random(seed)
    with cluster.connect() as w:
        while not stop.is_set():
            try:
                store, t = rnd.choice(tables)
                schema = t.split(".")[0]
                k = rnd.randrange(40)
                # Shared payloads (a few per writer) so objects are deduplicated across rows.
                payload = bytes([rnd.randrange(8)]) * rnd.choice((10, 5000, 300_000))
                upsert = (f"INSERT INTO {t} VALUES (%s, oas.oas_hash_put(%s, %s, %s), oas.oas_blob(%s::bytea),"
                          " oas.oas_npy(array_fill(%s::float8, ARRAY[%s]))) ON CONFLICT (k) DO UPDATE"
                          " SET h = excluded.h, b = excluded.b, n = excluded.n")
                params = [k, payload, store, schema, payload, float(k), rnd.choice((4, 20_000))]
                op = rnd.choice(("upsert", "upsert", "delete", "rollback"))
                if op == "delete":
                    w.execute(f"DELETE FROM {t} WHERE k = %s", [k])
                elif op == "rollback":
                    with w.transaction(force_rollback=True):
                        w.execute(upsert, params)
                else:
                    w.execute(upsert, params)
                count(counts, op)
            except psycopg.OperationalError:
                return  # the server went away
            except psycopg.Error as e:
                count(counts, f"error {e.sqlstate}: {e}")


def collector(cluster, store_names, stop: threading.Event, counts: dict) -> None:
    """The collector with zero grace, in a loop over the test's stores."""
    with cluster.connect() as g:
        while not stop.is_set():
            try:
                for store in store_names:
                    r = gc(g, store)
                    count(counts, "gc")
                    for e in r["errors"]:
                        count(counts, f"gc error: {e}")
            except psycopg.OperationalError:
                return


def stress_and_stop(cluster, stores: Stores, seconds: float, writers: int) -> dict:
    """Writers and a zero-grace collector for `seconds`, then `pg_ctl -m immediate stop` while
    they are busy and a start: every committed reference resolves, and a final collection leaves
    exactly the referenced set in each store. Returns what was done."""
    with cluster.session() as c:
        tables = stress_tables(c, stores)
    stop, counts = threading.Event(), {}
    threads = [threading.Thread(target=writer, args=(cluster, tables, stop, random.randrange(1 << 30), counts),
                                daemon=True) for _ in range(writers)]
    threads.append(threading.Thread(target=collector, args=(cluster, [s for s, _ in tables], stop, counts),
                                    daemon=True))
    for th in threads:
        th.start()
    time.sleep(seconds)
    # Stopped at once while everyone is busy: no shutdown checkpoint, every backend gone.
    cluster.pg_ctl("-m", "immediate", "stop")
    stop.set()
    for th in threads:
        th.join(WAIT_S)
    assert not any(th.is_alive() for th in threads)
    print("stress counts", counts)
    assert counts.get("upsert", 0) > 0 and counts.get("gc", 0) > 0, counts
    assert not [k for k in counts if "error" in k], counts
    cluster.pg_ctl("start")
    assert cluster.wait_ready()
    with cluster.session() as c:
        verify(c)
        for store, t in tables:
            refs = referenced(c, f"{t}.h", f"{t}.b", f"{t}.n")
            assert refs <= stores.keys(store)
            settle(c, stores, store, refs)
        verify(c)
    return counts


def test_immediate_shutdown_during_a_stress_run(cluster, stores):
    stress_and_stop(cluster, stores, STRESS_S, WRITERS)


@pytest.mark.faults
def test_immediate_shutdowns_during_longer_stress_runs(cluster, servers, s3fs_client):
    """`make faults`: three rounds of a longer run with more writers (OAS_CRASH_STRESS_S each),
    each with stores of its own."""
    for _ in range(3):
        stores = Stores(cluster, servers, s3fs_client)
        try:
            stress_and_stop(cluster, stores, max(STRESS_S, 30.0), 8)
        finally:
            stores.close()


@pytest.mark.faults
@pytest.mark.parametrize("round_", range(5))
def test_kill_during_hash_puts_repeatedly(cluster, stores, round_):
    """`make faults`: the file store's kill -9 case again, killed at a random moment."""
    time.sleep(random.random())
    test_kill_during_hash_puts_on_a_file_store(cluster, stores)
