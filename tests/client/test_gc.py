"""Referential integrity and the collector (issue 3), from outside clients with several
connections, against the file store and SeaweedFS: commit and abort are real here.

The tests run in a database of their own (the collector refuses to delete anything while some
table references a store it does not know, and other test modules leave such tables behind), and
every test gets its own store (its own directory or S3 location), so a run with zero grace
collects only what the test made."""

from __future__ import annotations

import json
import os
import random
import threading
import time

import psycopg
import pytest

from conftest import RUN_DIR, CuttableProxy, chown_postgres, dj_connect, dj_manual, new_database, s3_spec, unique
from conftest import connect as connect_db

GC_DB = "oas_gc_pytest"


def connect(**kw) -> psycopg.Connection:
    return connect_db(GC_DB, **kw)


@pytest.fixture(scope="module")
def gc_db(db):
    new_database(GC_DB)
    return GC_DB


@pytest.fixture
def conn(gc_db):
    with connect() as c:
        yield c

GC_COLS = ("referenced, stored, orphaned, waiting, trashed, restored, purged, errors")


@pytest.fixture(params=["file", "s3"])
def gc_store(request, gc_db, servers):
    """A store of its own: a directory under .run, or a fresh location in the SeaweedFS bucket."""
    name = unique(f"gc{request.param}")
    if request.param == "file":
        loc = RUN_DIR / "pytest-store" / name
        loc.mkdir(parents=True)
        chown_postgres(loc)
        spec = {"protocol": "file", "location": str(loc)}
    else:
        spec = s3_spec(servers, location=f"pytest-gc/{name}")
    with connect() as c:
        c.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
    yield name


def make_table(conn, store: str, schema: str | None = None, table: str = "t") -> str:
    schema = schema or unique("gcs")
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute(f"CREATE TABLE {schema}.{table} (id int PRIMARY KEY, payload jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'payload', %s)", [f"{schema}.{table}", f"hash@{store}"])
    return f"{schema}.{table}"


def put(conn, data: bytes, store: str, schema: str) -> dict:
    return conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, store, schema]).fetchone()[0]


def present(conn, ref: dict) -> bool:
    problem = conn.execute("SELECT oas.oas_check_reference(%s, false)", [json.dumps(ref)]).fetchone()[0]
    assert problem in (None, "missing"), problem
    return problem is None


def gc(conn, store: str, dry_run=False, grace="0") -> dict:
    cur = conn.execute(f"SELECT {GC_COLS}, run_id FROM oas.oas_gc(%s, %s, %s::interval)",
                       [dry_run, store, grace])
    names = [d.name for d in cur.description]
    rows = cur.fetchall()
    assert len(rows) == 1
    return dict(zip(names, rows[0]))


def schema_of(table: str) -> str:
    return table.split(".")[0]


GRACE_S = 6


def test_rollback_leaves_an_orphan_that_grace_protects(conn, gc_store):
    t = make_table(conn, gc_store)
    with connect() as w:
        w.autocommit = False
        w.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash_put(%b, %s, %s))", [b"never committed", gc_store, schema_of(t)])
        ref = w.execute(f"SELECT payload FROM {t}").fetchone()[0]
        w.rollback()
    assert present(conn, ref)
    # The dry run is a report only: it records nothing.
    r = gc(conn, gc_store, dry_run=True)
    assert (r["orphaned"], r["trashed"], r["waiting"]) == (1, 0, 1)
    assert conn.execute("SELECT count(*) FROM oas.gc_candidate WHERE store = %s", [gc_store]).fetchone()[0] == 0
    # A real run records when it first saw the object unreferenced ...
    # (GRACE_S leaves a loaded machine time for the second run to come within the grace period.)
    grace = f"{GRACE_S} seconds"
    started = time.monotonic()
    r = gc(conn, gc_store, grace=grace)
    first_done = time.monotonic()
    assert (r["orphaned"], r["trashed"], r["errors"]) == (1, 0, [])
    # ... and does not move it while the grace period lasts ...
    r = gc(conn, gc_store, grace=grace)
    print(f"second run ended {time.monotonic() - started:.2f} s after the first began (grace {GRACE_S} s)")
    assert (r["trashed"], r["waiting"]) == (0, 1)
    assert present(conn, ref)
    # ... nor while a transaction older than that first sighting is open (here: a new one is fine).
    time.sleep(max(0.0, first_done + GRACE_S + 0.2 - time.monotonic()))
    r = gc(conn, gc_store, grace=grace)
    assert (r["trashed"], r["waiting"]) == (1, 0)
    assert not present(conn, ref)
    # Recoverable: the run put it in trash, and one call puts it back.
    run = r["run_id"]
    restored = conn.execute("SELECT path FROM oas.oas_gc_restore(%s)", [run]).fetchall()
    assert restored == [(ref["path"],)]
    assert present(conn, ref)


def test_thousands_move_restore_and_adopt_in_batches(conn, gc_store):
    """More objects than one batch (1,000): a run moves them all, one call restores the whole run
    in order, and trash that no run recorded (a run that aborted after moving) is adopted, dated
    when found, and purged only after the retention."""
    t = make_table(conn, gc_store)
    n = 1205
    refs = [r[0] for r in conn.execute(
        "SELECT oas.oas_hash_put(convert_to('batch object ' || g, 'UTF8'), %s, %s)"
        " FROM generate_series(1, %s) g", [gc_store, schema_of(t), n]).fetchall()]
    for i, ref in enumerate(refs[:5]):
        conn.execute(f"INSERT INTO {t} VALUES (%s, %s)", [i, json.dumps(ref)])
    orphans = sorted(ref["path"] for ref in refs[5:])

    def missing() -> int:
        return conn.execute("SELECT count(*) FROM unnest(%s::jsonb[]) r"
                            " WHERE oas.oas_check_reference(r, false) IS NOT NULL",
                            [[json.dumps(r) for r in refs]]).fetchone()[0]

    gc(conn, gc_store)
    r = gc(conn, gc_store)
    assert (r["trashed"], r["errors"]) == (n - 5, [])
    assert missing() == n - 5
    restored = conn.execute("SELECT store, path FROM oas.oas_gc_restore(%s)", [r["run_id"]]).fetchall()
    assert restored == [(gc_store, p) for p in orphans]
    assert missing() == 0
    assert conn.execute("SELECT count(*) FROM oas.gc_trash WHERE store = %s", [gc_store]).fetchone()[0] == 0

    gc(conn, gc_store)
    assert gc(conn, gc_store)["trashed"] == n - 5
    # A run that moved them and aborted leaves trash without records.
    conn.execute("DELETE FROM oas.gc_trash WHERE store = %s", [gc_store])
    r = conn.execute(f"SELECT {GC_COLS} FROM oas.oas_gc(false, %s, '0', '0')", [gc_store]).fetchone()
    assert r[GC_COLS.split(", ").index("purged")] == 0
    recorded = conn.execute("SELECT path FROM oas.gc_trash WHERE store = %s ORDER BY path", [gc_store]).fetchall()
    assert [p for (p,) in recorded] == orphans
    r = conn.execute(f"SELECT {GC_COLS} FROM oas.oas_gc(false, %s, '0', '0')", [gc_store]).fetchone()
    assert r[GC_COLS.split(", ").index("purged")] == n - 5
    assert missing() == n - 5
    assert conn.execute("SELECT count(*) FROM oas.gc_trash WHERE store = %s", [gc_store]).fetchone()[0] == 0


@pytest.mark.parametrize("call", ["restore", "purge"])
def test_restore_and_purge_wait_for_a_running_collector(conn, gc_store, call):
    """Restore and purge must not act on trash while a collector run is changing it: they wait
    for the store's run lock, then act on what that run left."""
    t = make_table(conn, gc_store)
    ref = put(conn, b"wait for the collector", gc_store, schema_of(t))
    gc(conn, gc_store)
    run = gc(conn, gc_store)["run_id"]
    sql, params, fn = {
        "restore": ("SELECT path FROM oas.oas_gc_restore(%s)", [run], "oas_gc_restore"),
        "purge": ("SELECT purged FROM oas.oas_gc_purge('0', %s)", [gc_store], "oas_gc_purge"),
    }[call]
    out = {}

    def act():
        try:
            with connect() as c:
                out["rows"] = c.execute(sql, params).fetchall()
        except Exception as e:  # reported below, not lost in the thread
            out["error"] = e

    with connect() as collector:
        collector.autocommit = False
        collector.execute("SELECT pg_advisory_xact_lock(1869705985, hashtext(%s))", [gc_store])
        th = threading.Thread(target=act)
        th.start()
        waiting, deadline = 0, time.time() + 10
        while not waiting and time.time() < deadline:
            time.sleep(0.05)
            waiting = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
                                   f" AND query LIKE '%{fn}%'").fetchone()[0]
        assert waiting == 1 and "rows" not in out, out
        assert not present(conn, ref)
        collector.rollback()
    th.join(10)
    assert not th.is_alive() and "error" not in out, out
    if call == "restore":
        assert out["rows"] == [(ref["path"],)]
        assert present(conn, ref)
    else:
        assert out["rows"] == [(1,)]
        assert conn.execute("SELECT count(*) FROM oas.gc_trash WHERE store = %s", [gc_store]).fetchone()[0] == 0


def test_an_old_open_transaction_holds_back_collection(conn, gc_store):
    t = make_table(conn, gc_store)
    conn.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash_put(%b, %s, %s))", [b"held", gc_store, schema_of(t)])
    ref = conn.execute(f"SELECT payload FROM {t}").fetchone()[0]
    with connect() as old:
        old.autocommit = False
        # An open REPEATABLE READ transaction that still sees the row ...
        old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert old.execute(f"SELECT payload FROM {t}").fetchone()[0] == ref
        conn.execute(f"DELETE FROM {t}")
        gc(conn, gc_store)
        r = gc(conn, gc_store)
        # ... keeps the object: it could still copy the reference into a new row.
        assert (r["orphaned"], r["trashed"], r["waiting"]) == (1, 0, 1)
        old.execute(f"INSERT INTO {t} SELECT 2, payload FROM {t} WHERE id = 1")
        old.commit()
    r = gc(conn, gc_store)
    assert (r["referenced"], r["orphaned"], r["trashed"]) == (1, 0, 0)
    assert present(conn, ref)
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [gc_store]).fetchone()[0] == 0


@pytest.mark.parametrize("where", ["this", "other"])
def test_only_this_databases_open_transactions_hold_back_collection(conn, gc_store, db, where):
    """An idle transaction holding a snapshot holds the horizon back in this database; in
    another database of the cluster it cannot write this database's rows, and does not."""
    t = make_table(conn, gc_store)
    ref = put(conn, b"orphan", gc_store, schema_of(t))
    with connect_db(GC_DB if where == "this" else db) as idle:
        idle.autocommit = False
        idle.execute("SELECT 1")  # BEGIN; SELECT 1; then idle in transaction
        gc(conn, gc_store)
        r = gc(conn, gc_store)
        if where == "this":
            assert (r["orphaned"], r["trashed"], r["waiting"]) == (1, 0, 1)
            assert present(conn, ref)
        else:
            assert (r["orphaned"], r["trashed"], r["waiting"]) == (1, 1, 0)
            assert not present(conn, ref)
        idle.rollback()


def test_delete_then_rollback_keeps_the_object(conn, gc_store):
    t = make_table(conn, gc_store)
    conn.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash_put(%b, %s, %s))", [b"kept", gc_store, schema_of(t)])
    ref = conn.execute(f"SELECT payload FROM {t}").fetchone()[0]
    with connect() as w:
        w.autocommit = False
        w.execute(f"DELETE FROM {t}")
        w.rollback()
    for _ in range(3):
        r = gc(conn, gc_store)
        assert (r["referenced"], r["orphaned"], r["trashed"]) == (1, 0, 0)
    assert present(conn, ref)
    # The ledger counts the reference once: the rolled-back delete left no trace.
    assert conn.execute("SELECT sum(refs) FROM oas.ledger WHERE store = %s", [gc_store]).fetchone()[0] == 1


def test_dedup_across_rows_and_tables_survives_deleting_all_but_one(conn, gc_store):
    schema = unique("gcs")
    t1 = make_table(conn, gc_store, schema, "a")
    t2 = make_table(conn, gc_store, schema, "b")
    data = os.urandom(5000)
    for i in range(3):
        conn.execute(f"INSERT INTO {t1} VALUES (%s, oas.oas_hash_put(%b, %s, %s))", [i, data, gc_store, schema])
    conn.execute(f"INSERT INTO {t2} VALUES (1, oas.oas_hash_put(%b, %s, %s))", [data, gc_store, schema])
    ref = conn.execute(f"SELECT payload FROM {t2}").fetchone()[0]
    assert conn.execute("SELECT refs FROM oas.ledger WHERE store = %s AND table_oid = %s::regclass",
                        [gc_store, t1]).fetchone()[0] == 3
    conn.execute(f"DELETE FROM {t1}")
    for _ in range(2):
        r = gc(conn, gc_store)
        assert (r["referenced"], r["stored"], r["orphaned"], r["trashed"]) == (1, 1, 0, 0)
    assert conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)]).fetchone()[0] == data
    # The last reference goes: now it is collected.
    conn.execute(f"DELETE FROM {t2}")
    gc(conn, gc_store)
    r = gc(conn, gc_store)
    assert (r["referenced"], r["trashed"]) == (0, 1)
    assert not present(conn, ref)


@pytest.mark.parametrize("how", ["truncate", "drop table", "drop column", "drop schema"])
def test_truncate_and_drop_release_references(conn, gc_store, how):
    t = make_table(conn, gc_store)
    schema = schema_of(t)
    for i in range(4):
        conn.execute(f"INSERT INTO {t} VALUES (%s, oas.oas_hash_put(%b, %s, %s))", [i, os.urandom(100), gc_store, schema])
    refs = [r[0] for r in conn.execute(f"SELECT payload FROM {t}").fetchall()]
    ledger = "SELECT coalesce(sum(refs), 0) FROM oas.ledger WHERE store = %s"
    assert conn.execute(ledger, [gc_store]).fetchone()[0] == 4
    conn.execute({"truncate": f"TRUNCATE {t}", "drop table": f"DROP TABLE {t}",
                  "drop column": f"ALTER TABLE {t} DROP COLUMN payload",
                  "drop schema": f"DROP SCHEMA {schema} CASCADE"}[how])
    assert conn.execute(ledger, [gc_store]).fetchone()[0] == 0
    op = {"truncate": "TRUNCATE"}.get(how, "DROP")
    assert conn.execute("SELECT sum(delta) FROM oas.ref_log WHERE store = %s AND op = %s",
                        [gc_store, op]).fetchone()[0] == -4
    gc(conn, gc_store)
    r = gc(conn, gc_store)
    assert (r["referenced"], r["orphaned"], r["trashed"], r["errors"]) == (0, 4, 4, [])
    assert not any(present(conn, ref) for ref in refs)


@pytest.mark.parametrize("bypass", ["disable trigger", "replica"])
def test_gc_with_triggers_bypassed_deletes_nothing_referenced(conn, gc_store, bypass):
    t = make_table(conn, gc_store)
    schema = schema_of(t)
    # Orphans that have waited out their grace period: candidates from an earlier run.
    orphan_refs = [put(conn, os.urandom(64), gc_store, schema) for _ in range(5)]
    gc(conn, gc_store)
    assert conn.execute("SELECT count(*) FROM oas.gc_candidate WHERE store = %s", [gc_store]).fetchone()[0] == 5
    # Three of them get references behind the triggers' back: the ledger never hears of them.
    if bypass == "disable trigger":
        conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
        for i, ref in enumerate(orphan_refs[:3]):
            conn.execute(f"INSERT INTO {t} VALUES (%s, %s)", [i, json.dumps(ref)])
        conn.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")
    else:
        with connect() as w:
            w.execute("SET session_replication_role = replica")
            for i, ref in enumerate(orphan_refs[:3]):
                w.execute(f"INSERT INTO {t} VALUES (%s, %s)", [i, json.dumps(ref)])
    if bypass == "replica":
        assert conn.execute("SELECT count(*) FROM oas.ledger WHERE store = %s", [gc_store]).fetchone()[0] == 0
    r = gc(conn, gc_store)
    assert (r["referenced"], r["orphaned"], r["trashed"]) == (3, 2, 2)
    assert [present(conn, ref) for ref in orphan_refs] == [True] * 3 + [False] * 2
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [gc_store]).fetchone()[0] == 0


def test_a_reference_attached_to_a_trashed_object_brings_it_back(conn, gc_store):
    """A client that checked an object exists (DataJoint's dedup) and then inserts its row after a
    collector moved the object to trash: the trigger puts the object back before the row commits."""
    t = make_table(conn, gc_store)
    ref = put(conn, b"resurrected", gc_store, schema_of(t))
    gc(conn, gc_store)
    assert gc(conn, gc_store)["trashed"] == 1
    assert not present(conn, ref)
    conn.execute(f"INSERT INTO {t} VALUES (1, %s)", [json.dumps(ref)])
    assert present(conn, ref)
    assert conn.execute("SELECT count(*) FROM oas.gc_trash WHERE store = %s", [gc_store]).fetchone()[0] == 0
    # And with triggers bypassed, the next run finds the reference and puts the object back itself.
    ref2 = put(conn, b"resurrected later", gc_store, schema_of(t))
    gc(conn, gc_store)
    assert gc(conn, gc_store)["trashed"] == 1
    conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
    conn.execute(f"INSERT INTO {t} VALUES (2, %s)", [json.dumps(ref2)])
    conn.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")
    assert not present(conn, ref2)
    r = gc(conn, gc_store)
    assert (r["restored"], r["trashed"]) == (1, 0)
    assert present(conn, ref2)


def test_a_put_waits_for_a_collector_holding_its_object(conn, gc_store):
    """The collector holds an object's lock stripe while it moves it; a put of the same bytes
    waits, then finds the object gone and uploads it again."""
    t = make_table(conn, gc_store)
    schema = schema_of(t)
    ref = put(conn, b"contended", gc_store, schema)
    gc(conn, gc_store)
    stripe = conn.execute("SELECT oas.lock_stripe(%s)", [ref["path"]]).fetchone()[0]
    with connect() as holder:
        holder.execute("SELECT pg_advisory_lock(1869705984, %s)", [stripe])  # as the collector does
        done = threading.Event()

        def writer():
            with connect() as w:
                w.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash_put(%b, %s, %s))", [b"contended", gc_store, schema])
            done.set()

        th = threading.Thread(target=writer)
        th.start()
        assert not done.wait(0.5), "the put must wait for the stripe"
        # Meanwhile the collector could not take the stripe from a writer either: it is ours.
        holder.execute("SELECT pg_advisory_unlock(1869705984, %s)", [stripe])
        th.join(10)
        assert done.is_set()
    assert present(conn, ref)


def test_store_failing_in_the_middle_of_a_run_deletes_nothing(conn, servers):
    proxy = CuttableProxy(servers["OAS_S3_ENDPOINT"])
    try:
        name = unique("gcproxy")
        spec = s3_spec(servers, location=f"pytest-gc/{name}", endpoint=f"127.0.0.1:{proxy.port}")
        conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
        schema_a, schema_z = "gca_" + name[-10:], "gcz_" + name[-10:]
        ta = make_table(conn, name, schema_a)
        tz = make_table(conn, name, schema_z)
        live = []
        for i in range(3):
            conn.execute(f"INSERT INTO {ta} VALUES (%s, oas.oas_hash_put(%b, %s, %s))", [i, os.urandom(50), name, schema_a])
            conn.execute(f"INSERT INTO {tz} VALUES (%s, oas.oas_hash_put(%b, %s, %s))", [i, os.urandom(50), name, schema_z])
        live = [r[0] for t in (ta, tz) for r in conn.execute(f"SELECT payload FROM {t}").fetchall()]
        orphans = [put(conn, os.urandom(70), name, s) for s in (schema_a, schema_z) for _ in range(4)]
        conn.execute("SET oas.max_retries = 0")
        assert gc(conn, name)["orphaned"] == 8
        # The listing of the second schema fails: the first one was listed fine, but nothing is moved.
        proxy.fail_if = lambda head: b"list-type=2" in head and schema_z.encode() in head
        r = gc(conn, name)
        proxy.fail_if = lambda head: False
        conn.execute("RESET oas.max_retries")
        assert proxy.failed > 0
        assert r["trashed"] == 0 and any("listing" in e for e in r["errors"]), r
        assert all(present(conn, ref) for ref in live + orphans)
        # The store goes away while objects are being moved: those not moved stay, the run says
        # why, and every referenced object is untouched.
        proxy.fail_if = lambda head: b"x-amz-copy-source" in head.lower() and schema_z.encode() in head
        conn.execute("SET oas.max_retries = 0")
        r = gc(conn, name)
        proxy.fail_if = lambda head: False
        conn.execute("RESET oas.max_retries")
        assert r["trashed"] == 4 and r["errors"], r
        assert all(present(conn, ref) for ref in live)
        assert [present(conn, ref) for ref in orphans] == [False] * 4 + [True] * 4
        # Back up: the next run finishes the job.
        r = gc(conn, name)
        assert (r["trashed"], r["errors"]) == (4, [])
    finally:
        proxy.close()


def test_stress_concurrent_writers_and_a_zero_grace_collector(gc_db, gc_store):
    """Writers insert, update, copy and delete references at random (shared payloads, random
    rollbacks) while the collector loops with zero grace. At the end every committed reference
    resolves and matches its hash, and a last collection leaves exactly the referenced objects."""
    seconds = float(os.environ.get("OAS_STRESS_SECONDS", "20"))
    schema = unique("stress")
    with connect() as c:
        t1 = make_table(c, gc_store, schema, "a")
        t2 = make_table(c, gc_store, schema, "b")
    pool = [os.urandom(random.randint(10, 3000)) for _ in range(150)]
    stop = threading.Event()
    counts = {"statements": 0, "commits": 0, "rollbacks": 0, "gc_runs": 0, "trashed": 0,
              "restored_by_trigger": 0, "errors": []}
    lock = threading.Lock()

    def writer(seed: int):
        rnd = random.Random(seed)
        with connect() as w:
            w.autocommit = False
            w.add_notice_handler(lambda d: d.message_primary and "put back" in d.message_primary
                                 and _bump(counts, lock, "restored_by_trigger"))
            next_id = seed * 1_000_000
            while not stop.is_set():
                try:
                    for _ in range(rnd.randint(1, 4)):
                        t = rnd.choice((t1, t2))
                        op = rnd.random()
                        if op < 0.35:
                            next_id += 1
                            w.execute(f"INSERT INTO {t} VALUES (%s, oas.oas_hash_put(%b, %s, %s))",
                                      [next_id, rnd.choice(pool), gc_store, schema])
                        elif op < 0.5:
                            w.execute(f"UPDATE {t} SET payload = oas.oas_hash_put(%b, %s, %s) WHERE id = "
                                      f"(SELECT id FROM {t} ORDER BY random() LIMIT 1)",
                                      [rnd.choice(pool), gc_store, schema])
                        elif op < 0.6:
                            # A reference copied from another row: only the trigger guards it.
                            next_id += 1
                            src = rnd.choice((t1, t2))
                            w.execute(f"INSERT INTO {t} SELECT %s, payload FROM {src} ORDER BY random() LIMIT 1",
                                      [next_id])
                        else:
                            w.execute(f"DELETE FROM {t} WHERE id = (SELECT id FROM {t} ORDER BY random() LIMIT 1)")
                        _bump(counts, lock, "statements")
                    if rnd.random() < 0.3:
                        w.rollback()
                        _bump(counts, lock, "rollbacks")
                    else:
                        w.commit()
                        _bump(counts, lock, "commits")
                except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                    w.rollback()
                except psycopg.Error as e:  # noqa: PERF203
                    w.rollback()
                    with lock:
                        counts["errors"].append(repr(e))

    def collector():
        with connect() as g:
            while not stop.is_set():
                r = gc(g, gc_store)
                with lock:
                    counts["gc_runs"] += 1
                    counts["trashed"] += r["trashed"]
                    if r["errors"]:
                        counts["errors"].extend(r["errors"])

    threads = [threading.Thread(target=writer, args=(i + 1,)) for i in range(4)]
    threads.append(threading.Thread(target=collector))
    for th in threads:
        th.start()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads)

    with connect() as c:
        broken = c.execute("SELECT schema_name, table_name, row_key, problem FROM oas.oas_verify(true, %s)",
                           [gc_store]).fetchall()
        rows = c.execute(f"SELECT count(*) FROM (SELECT payload FROM {t1} UNION ALL SELECT payload FROM {t2}) x").fetchone()[0]
        referenced = {r[0] for r in c.execute(
            f"SELECT payload->>'path' FROM {t1} UNION SELECT payload->>'path' FROM {t2}").fetchall()}
        gc(c, gc_store)
        final = gc(c, gc_store)
        after = gc(c, gc_store, dry_run=True)
        ledger = {r[0]: r[1] for r in c.execute(
            "SELECT path, sum(refs) FROM oas.ledger WHERE store = %s GROUP BY path", [gc_store]).fetchall()}
        truth = dict(c.execute(
            f"SELECT p, count(*) FROM (SELECT payload->>'path' p FROM {t1} UNION ALL SELECT payload->>'path' FROM {t2}) x GROUP BY p").fetchall())
    print(f"\nstress: {seconds:.0f} s, {counts['statements']} statements, {counts['commits']} commits, "
          f"{counts['rollbacks']} rollbacks, {counts['gc_runs']} collector runs moved {counts['trashed']} objects, "
          f"{counts['restored_by_trigger']} put back by triggers; end: {rows} rows, {len(referenced)} objects "
          f"referenced, final run moved {final['trashed']}, {after['stored']} objects stored")
    assert counts["errors"] == [], counts["errors"][:5]
    assert counts["commits"] > 50 and counts["gc_runs"] > 5 and counts["trashed"] > 0, counts
    assert broken == []
    assert (after["stored"], after["referenced"], after["orphaned"]) == (len(referenced), len(referenced), 0)
    # The ledger agrees with the rows (no trigger was bypassed here).
    assert ledger == truth


def _bump(counts, lock, key):
    with lock:
        counts[key] += 1
    return None


def test_references_to_an_unknown_store_stop_all_deletion(conn, gc_store):
    """A reference naming a store this database does not know may point anywhere (DataJoint's
    config may call the same bucket by another name): nothing is deleted until it is resolved."""
    t = make_table(conn, gc_store)
    orphan = put(conn, b"would be collected", gc_store, schema_of(t))
    gc(conn, gc_store)
    conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
    conn.execute(f"INSERT INTO {t} VALUES (1, %s)", [json.dumps(dict(orphan, store="external"))])
    conn.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")
    r = gc(conn, gc_store)
    assert r["trashed"] == 0 and any("external" in e for e in r["errors"]), r
    assert present(conn, orphan)
    conn.execute(f"DELETE FROM {t}")
    assert gc(conn, gc_store)["trashed"] == 1


def test_a_location_is_collected_by_one_database_only(conn, gc_store, db):
    """Another database with the same store location (a staging copy, say) cannot see this one's
    rows: its collector must not delete here."""
    t = make_table(conn, gc_store)
    ref = put(conn, b"kept", gc_store, schema_of(t))
    conn.execute(f"INSERT INTO {t} VALUES (1, %s)", [json.dumps(ref)])
    gc(conn, gc_store)  # claims the location for this database
    spec = conn.execute("SELECT spec FROM oas.stores WHERE name = %s", [gc_store]).fetchone()[0]
    secrets = conn.execute("SELECT secrets FROM oas.store_secret WHERE store = %s", [gc_store]).fetchone()
    with connect_db(db) as other:
        other.execute("SELECT oas.oas_store_create(%s, %s)", [gc_store, json.dumps({**spec, **(secrets[0] if secrets else {})})])
        try:
            other.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_of(t)}")
            for _ in range(2):
                r = gc(other, gc_store)
            assert r["trashed"] == 0 and any("another database" in e for e in r["errors"]), r
        finally:
            other.execute("SELECT oas.oas_store_drop(%s, force => true)", [gc_store])
            other.execute(f"DROP SCHEMA IF EXISTS {schema_of(t)} CASCADE")
    assert present(conn, ref)


def test_an_oas_admin_collector_writes_the_collectors_tables_only_through_it(conn, gc_store):
    """Security issue, finding 4: oas_admin reads the collector's tables and the ledger, and its
    oas_gc()/oas_gc_purge() write them (as the extension's owner); it cannot write them itself
    (a forged ledger row or known schema would steer what is collected)."""
    role = unique("collector")
    conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE oas_admin, pg_read_all_stats")
    try:
        with connect(user=role) as c:
            for q in [
                "INSERT INTO oas.gc_trash (store, path, ref_path, size, run_id) VALUES ('x', 'y', 'y', 0, 0)",
                "INSERT INTO oas.gc_known_schema VALUES ('x', 'otherdb')",
                "UPDATE oas.gc_candidate SET size = 0",
                "DELETE FROM oas.gc_run",
                "DELETE FROM oas.ref_log",
                "INSERT INTO oas.ref_log (op, table_oid, schema_name, table_name, column_name, store, path, delta)"
                " VALUES ('INSERT', 0, 's', 't', 'c', 'x', 'y', 1)",
            ]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(q)
            assert c.execute("SELECT count(*) >= 0 FROM oas.ledger").fetchone()[0] is True
            runs = conn.execute("SELECT count(*) FROM oas.gc_run WHERE store = %s", [gc_store]).fetchone()[0]
            assert gc(c, gc_store)["run_id"] is not None
            c.execute("SELECT * FROM oas.oas_gc_purge(store => %s)", [gc_store]).fetchall()
        assert conn.execute("SELECT count(*) FROM oas.gc_run WHERE store = %s", [gc_store]).fetchone()[0] == runs + 1
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_a_cancelled_run_leaves_no_lock_behind(conn, servers):
    """Cancelled (here: statement_timeout) in the middle of a run, the collector releases the
    lock stripes it held, so writers are not blocked afterwards."""
    name = unique("gccancel")
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(s3_spec(servers, location=f"pytest-gc/{name}"))])
    t = make_table(conn, name)
    conn.execute("SELECT oas.oas_hash_put(convert_to(g::text, 'UTF8'), %s, %s) FROM generate_series(1, 3000) g",
                 [name, schema_of(t)])
    gc(conn, name)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    timeouts = 0
    for ms in (150, 400, 1000):
        conn.execute(f"SET statement_timeout = {ms}")
        try:
            gc(conn, name)
        except psycopg.errors.QueryCanceled:
            timeouts += 1
        conn.execute("RESET statement_timeout")
        held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1869705984 AND pid = %s",
                            [pid]).fetchone()[0]
        assert held == 0
    assert timeouts > 0
    # A writer gets through at once.
    with connect() as w:
        w.execute("SET lock_timeout = '2s'")
        w.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash_put(convert_to('1', 'UTF8'), %s, %s))", [name, schema_of(t)])


@pytest.fixture
def dj_gc(gc_db, gc_store, dj_config, servers):
    """The DataJoint 2.3.5 client on the collector's database, with the test's store configured."""
    dj = pytest.importorskip("datajoint")
    with connect() as c:
        spec = c.execute("SELECT spec FROM oas.stores WHERE name = %s", [gc_store]).fetchone()[0]
        secrets = c.execute("SELECT secrets FROM oas.store_secret WHERE store = %s", [gc_store]).fetchone()
    dj_config.stores[gc_store] = {**spec, **(secrets[0] if secrets else {})}
    with dj_connect(dj_config, gc_db) as conn:
        yield dj, conn, gc_store


def test_datajoint_tables_are_kept_and_collected(conn, dj_gc, dj_schema):
    """Tables DataJoint declares get the ledger's triggers with no call from the client; what its
    rows reference survives collection, what it deleted is collected, and DataJoint reads the rest."""
    import numpy as np

    _, dj_conn, store = dj_gc
    schema = dj_schema("djgc", dj_conn)
    Trace = dj_manual(schema, "Trace", f"""
        trace_id : int32
        ---
        samples : <blob@{store}>
        raw : <hash@{store}>
        """)

    table = f'"{schema.database}"."trace"'
    triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", [table])}
    assert {"oas_track_insert", "oas_track_update", "oas_track_delete", "oas_track_truncate"} <= triggers
    Trace.insert([{"trace_id": i, "samples": np.arange(i + 10.0), "raw": b"shared raw"} for i in range(6)])
    assert conn.execute("SELECT sum(refs) FROM oas.ledger WHERE table_oid = %s::regclass", [table]).fetchone()[0] == 12
    (Trace & "trace_id >= 3").delete(prompt=False)
    gc(conn, store)
    r = gc(conn, store)
    # Three blobs went with their rows; the shared raw object and three blobs stay.
    assert (r["referenced"], r["trashed"], r["errors"]) == (4, 3, []), r
    rows = sorted(Trace.to_dicts(), key=lambda x: x["trace_id"])
    assert [len(x["samples"]) for x in rows] == [10, 11, 12] and all(x["raw"] == b"shared raw" for x in rows)


H1 = "lvauakv4jmvhnolrtwiraf6fsi"  # named like a content hash (MD5 of "hello")
H2 = "aaaaaaaaaaaaaaaaaaaaaaaaaa"


def section_store(conn, hash_prefix: str, schema_prefix: str):
    """A file store with the given prefixes, and a writer of files into it by path."""
    name = unique("gcsec")
    loc = RUN_DIR / "pytest-store" / name
    loc.mkdir(parents=True)
    chown_postgres(loc)
    spec = {"protocol": "file", "location": str(loc), "hash_prefix": hash_prefix, "schema_prefix": schema_prefix}
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])

    def write(path: str, data: bytes = b"x") -> None:
        f = loc / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        for p in [f, *f.relative_to(loc).parents]:
            chown_postgres(loc / p)

    return name, loc, write


def test_an_empty_hash_prefix_never_lists_schema_objects_as_hash_objects(conn):
    # hash_prefix "" and schema_prefix "<pfx>", with a schema of this database named "<pfx>": the
    # hash section of that schema is "<pfx>/", where every schema's schema-addressed objects are.
    # Only this database's schemas' schema-addressed objects may be collected; the listing of
    # the hash section must not count them (it once counted and collected another database's
    # file named like a hash there).
    pfx = unique("pfx")
    store, loc, write = section_store(conn, "", pfx)
    conn.execute(f"CREATE SCHEMA {pfx}")
    other = f"{pfx}/otherdb_{pfx}/t/id=1/f_tok/{H1}"
    write(other)
    write(f"{pfx}/otherdb_{pfx}/t/id=1/g_tok.npy")
    r = gc(conn, store, dry_run=True)
    assert (r["stored"], r["orphaned"], r["errors"]) == (0, 0, [])
    assert conn.execute("SELECT skipped FROM oas.oas_gc(true, %s)", [store]).fetchone()[0] == 0
    gc(conn, store)
    r = gc(conn, store)
    assert (r["stored"], r["trashed"], r["errors"]) == (0, 0, [])
    assert (loc / other).exists()


def test_with_both_prefixes_empty_each_object_is_listed_once_and_a_folder_owns_its_files(conn):
    # Both prefixes empty: the hash and schema sections of a schema are the same folder. Each
    # object is counted once, in the section its name says, and a file of a folder object is
    # trashed as the folder's (so a reference to the folder brings it back at once).
    store, loc, write = section_store(conn, "", "")
    t = make_table(conn, store)
    s = schema_of(t)
    folder = f"{s}/t/id=1/f_tok"
    write(f"{s}/{H1}")
    write(f"{folder}/{H2}")
    write(f"{folder}/x.bin")
    r = gc(conn, store, dry_run=True)
    assert (r["stored"], r["orphaned"], r["errors"]) == (3, 3, [])
    assert conn.execute("SELECT skipped FROM oas.oas_gc(true, %s)", [store]).fetchone()[0] == 0
    gc(conn, store)
    r = gc(conn, store)
    assert (r["stored"], r["trashed"], r["errors"]) == (3, 3, [])
    owners = dict(conn.execute("SELECT path, ref_path FROM oas.gc_trash WHERE store = %s", [store]).fetchall())
    assert owners[f"{folder}/x.bin"] == folder
    # A new reference to the folder puts its files back (the trigger finds them by their owner).
    ref = {"path": folder, "store": store, "is_dir": True}
    conn.execute(f"INSERT INTO {t} VALUES (1, %s)", [json.dumps(ref)])
    assert (loc / folder / "x.bin").exists()


def test_interval_arguments_count_as_extract_epoch_does(conn, gc_store):
    # Intervals are read from their fields, with no query: a negative one is refused, one with
    # parts of both signs counts as a whole, months count 30 days.
    for arg in ("grace", "trash_retention"):
        with pytest.raises(psycopg.Error) as info:
            conn.execute(f"SELECT * FROM oas.oas_gc(true, %s, {arg} => '-1 second')", [gc_store])
        assert info.value.sqlstate == "22023" and f"{arg} must not be negative" in str(info.value)
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT * FROM oas.oas_gc_purge('-1 month -1 day', %s)", [gc_store])
    assert info.value.sqlstate == "22023" and "older_than must not be negative" in str(info.value)
    r = conn.execute("SELECT errors FROM oas.oas_gc(true, %s, grace => '1 day -1 hour', trash_retention => '1 mon')",
                     [gc_store]).fetchone()
    assert r == ([],)
    run = conn.execute("SELECT run_id FROM oas.oas_gc(false, %s, '1 day -1 hour')", [gc_store]).fetchone()[0]
    grace = conn.execute("SELECT grace FROM oas.gc_run WHERE run_id = %s", [run]).fetchone()[0]
    assert grace.total_seconds() == 23 * 3600
