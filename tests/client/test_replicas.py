"""Replicas (#13): a streaming-replication hot standby reads every object the primary's rows
reference, and refuses every write, upload, store change and collection with 25006 before it
touches a store; a read-only transaction on the primary refuses them the same way. Logical
replication: the subscriber's ledger misses replicated rows (triggers do not fire under
session_replication_role = replica), and its collector, which decides by scanning rows, neither
collects the publisher's objects in a shared location nor the objects its replicated rows
reference in a location of its own (README, "Replicas, standbys and the collector").

One primary (wal_level = logical) and one standby made with pg_basebackup -R, private to this
module, on ports OAS_TEST_PORT+300 and +301; logical replication runs between two databases of
the primary (a subscription with create_slot = false and a slot made by hand)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import psycopg
import pytest

from conftest import PGBIN, PORT, ROOT, RUN_DIR, chown_postgres, s3_spec, unique, wait_until

CLUSTER = ROOT / "scripts" / "cluster.sh"
# Bound on every wait for replay or replication (a loaded 2-core machine; never asserted tighter).
WAIT_S = 60.0


def _pg(*args, **kw):
    return subprocess.run(["sudo", "-u", "postgres", f"{PGBIN}/{args[0]}", *args[1:]], **kw)


def _connect(port: int, dbname: str = "postgres", user: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=port, user=user, dbname=dbname,
                           autocommit=True, connect_timeout=10)


def _files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


class Pair:
    """The primary and its standby: ports, the file store's directory, the S3 store's prefix."""

    def __init__(self, primary: int, standby: int, store: pathlib.Path, s3_prefix: str, s3fs):
        self.primary, self.standby, self.store, self.s3_prefix, self.s3fs = (
            primary, standby, store, s3_prefix, s3fs)

    def s3_keys(self) -> set[str]:
        self.s3fs.invalidate_cache()
        return set(self.s3fs.find(self.s3_prefix))

    def stored(self) -> tuple[set[str], set[str]]:
        """Everything in both stores, to show a refused call touched neither."""
        return _files(self.store), self.s3_keys()

    def caught_up(self, dbname: str = "postgres") -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        with _connect(self.primary, dbname) as p:
            lsn = p.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        with _connect(self.standby, dbname) as s:
            assert wait_until(lambda: s.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0], WAIT_S, 0.1), \
                "the standby did not catch up"


@pytest.fixture(scope="module")
def pair(servers, s3fs_client):
    """A primary with pg_oas, a `file` store and an `s3` store, and its hot standby."""
    name = unique("rep")
    primary_port, standby_port = PORT + 300, PORT + 301
    env = dict(os.environ, OAS_RUN_DIR=str(RUN_DIR))
    standby_dir = RUN_DIR / f"{name}-standby"
    store = RUN_DIR / f"{name}-store"
    location = f"pytest-replicas/{name}"
    s3_prefix = f"{servers['OAS_S3_BUCKET']}/{location}"
    try:
        subprocess.run([CLUSTER, "start", name, str(primary_port)], check=True, env=env)
        data = RUN_DIR / name / "data"
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        with _connect(primary_port) as c:
            c.execute("ALTER SYSTEM SET wal_level = logical")
            c.execute("ALTER SYSTEM SET max_wal_senders = 10")
            c.execute("ALTER SYSTEM SET max_replication_slots = 10")
            # WAL archived (to nowhere), as a server with point-in-time recovery does.
            c.execute("ALTER SYSTEM SET archive_mode = on")
            c.execute("ALTER SYSTEM SET archive_command = '/bin/true'")
        _pg("pg_ctl", "-D", str(data), "-w", "-t", "60", "-m", "fast", "restart",
            "-l", str(RUN_DIR / name / "server.log"), check=True, capture_output=True)
        store.mkdir()
        chown_postgres(store)
        with _connect(primary_port) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION pg_oas")
            c.execute("SELECT oas.oas_store_create('file', %s, true)",
                      [json.dumps({"protocol": "file", "location": str(store)})])
            c.execute("SELECT oas.oas_store_create('s3', %s)", [json.dumps(s3_spec(servers, location=location))])
        # The standby: a base backup with primary_conninfo and standby.signal (-R).
        subprocess.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700",
                        str(standby_dir), str(standby_dir / "data")], check=True)
        _pg("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
            "-D", str(standby_dir / "data"), "-R", "-X", "stream", check=True, capture_output=True, timeout=120)
        subprocess.run(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "755",
                        str(standby_dir / "sock")], check=True)
        with open(standby_dir / "data" / "postgresql.conf", "a") as conf:
            conf.write(f"port = {standby_port}\nunix_socket_directories = '{standby_dir / 'sock'}'\n"
                       "hot_standby = on\n")
        _pg("pg_ctl", "-D", str(standby_dir / "data"), "-w", "-t", "60", "-l", str(standby_dir / "server.log"),
            "start", check=True, capture_output=True)
        yield Pair(primary_port, standby_port, store, s3_prefix, s3fs_client)
    finally:
        if (standby_dir / "data" / "PG_VERSION").exists():
            _pg("pg_ctl", "-D", str(standby_dir / "data"), "-w", "-m", "immediate", "stop", capture_output=True)
        shutil.rmtree(standby_dir, ignore_errors=True)
        subprocess.run([CLUSTER, "destroy", name], check=False, env=env)
        shutil.rmtree(store, ignore_errors=True)
        try:
            s3fs_client.rm(s3_prefix, recursive=True)
        except FileNotFoundError:
            pass


@pytest.fixture(scope="module")
def rows(pair):
    """Schema rep on the primary: table t with <hash@file>, <blob@file>, <npy@s3>, <object@file>
    (a folder) and <hash@s3> values; rows 1-3 live, row 4 deleted and collected into trash, row 5
    deleted after that (a candidate). Returns the live rows' references by column."""
    with _connect(pair.primary) as c:
        c.execute("CREATE SCHEMA rep")
        c.execute("CREATE TABLE rep.t (id int PRIMARY KEY, h jsonb, b jsonb, n jsonb, o jsonb, s jsonb)")
        for col, codec in (("h", "hash@file"), ("b", "blob@file"), ("n", "npy@s3"),
                           ("o", "object@file"), ("s", "hash@s3")):
            c.execute(f"COMMENT ON COLUMN rep.t.{col} IS ':<{codec}>:'")
        for i in range(1, 6):
            c.execute("INSERT INTO rep.t VALUES (%s, oas.oas_hash(%s), oas.oas_blob(%s::jsonb),"
                      " oas.oas_npy(ARRAY[[1.5, 2.5], [3.5, 4.5]]::float8[] || ARRAY[[%s, 0]]::float8[]),"
                      " oas.oas_object_folder(ARRAY['a.bin', 'sub/b.bin'], ARRAY[%s, 'b'::bytea]),"
                      " oas.oas_hash(%s))",
                      [i, f"row {i}".encode(), json.dumps([i, 2]), float(i), f"a{i}".encode(),
                       os.urandom(64)])
        c.execute("DELETE FROM rep.t WHERE id = 4")
        # Two real runs with no grace: row 4's objects go to trash (the second run moves them).
        for _ in range(2):
            c.execute("SELECT * FROM oas.oas_gc(dry_run => false, grace => '0')").fetchall()
        assert c.execute("SELECT count(*) FROM oas.gc_trash").fetchone()[0] > 0
        c.execute("DELETE FROM rep.t WHERE id = 5")
        c.execute("SELECT * FROM oas.oas_gc(dry_run => false, grace => '1 day')").fetchall()
        c.execute("CREATE ROLE rep_reader LOGIN")
        c.execute("GRANT USAGE ON SCHEMA rep TO rep_reader")
        c.execute("GRANT SELECT ON rep.t TO rep_reader")
        refs = {}
        for col in ("h", "b", "n", "o", "s"):
            refs[col] = [r[0] for r in c.execute(f"SELECT {col} FROM rep.t ORDER BY id").fetchall()]
    pair.caught_up()
    return refs


def test_standby_reads_every_object(pair, rows):
    with _connect(pair.standby) as s:
        assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        h, b, n, o, hs = (rows[k] for k in ("h", "b", "n", "o", "s"))
        assert s.execute("SELECT oas.oas_hash_get(h) FROM rep.t WHERE id = 1").fetchone()[0] == b"row 1"
        assert s.execute("SELECT oas.oas_hash_get(%s::jsonb)", [json.dumps(hs[0])]).fetchone()[0] \
            is not None
        assert s.execute("SELECT oas.oas_blob_get(b) FROM rep.t WHERE id = 2").fetchone()[0] == [2, 2]
        assert s.execute("SELECT oas.oas_blob_unpack(oas.oas_hash_get(b)) FROM rep.t WHERE id = 3"
                         ).fetchone()[0] == [3, 2]
        many = s.execute("SELECT data FROM oas.oas_hash_get_many(ARRAY(SELECT h FROM rep.t ORDER BY id)"
                         " || ARRAY(SELECT s FROM rep.t ORDER BY id)) ORDER BY ordinality").fetchall()
        assert [r[0] for r in many[:3]] == [b"row 1", b"row 2", b"row 3"] and all(r[0] for r in many)
        assert s.execute("SELECT oas.oas_read(h, 4, 1) FROM rep.t WHERE id = 2").fetchone()[0] == b"2"
        assert s.execute("SELECT oas.oas_npy_slice_array(n, '2') FROM rep.t WHERE id = 3").fetchone()[0] \
            == [3.0, 0.0]
        assert s.execute("SELECT oas.oas_npy_shape(n) FROM rep.t WHERE id = 1").fetchone()[0] == [3, 2]
        assert s.execute("SELECT octet_length(oas.oas_npy_slice(n, '0:2')) FROM rep.t WHERE id = 1"
                         ).fetchone()[0] > 0
        assert s.execute("SELECT count(*) FROM rep.t, oas.oas_npy_slice_stats(n, '1')").fetchone()[0] >= 3
        assert s.execute("SELECT oas.oas_object_file_read(o, 'a.bin') FROM rep.t WHERE id = 1"
                         ).fetchone()[0] == b"a1"
        assert s.execute("SELECT oas.oas_object_file_size(o, 'sub/b.bin') FROM rep.t WHERE id = 1"
                         ).fetchone()[0] == 1
        assert s.execute("SELECT count(*) FROM rep.t, oas.oas_object_list(o)").fetchone()[0] >= 6
        assert s.execute("SELECT oas.oas_object_size(h) FROM rep.t WHERE id = 1").fetchone()[0] == 5
        assert s.execute("SELECT bool_and(oas.oas_check_reference(x) IS NULL) FROM rep.t,"
                         " unnest(ARRAY[h, b, n, o, s]) x").fetchone()[0]
        url = s.execute("SELECT oas.oas_presign_url(n) FROM rep.t WHERE id = 1").fetchone()[0]
        assert url.startswith("http") and "X-Amz-Signature" in url
        assert s.execute("SELECT oas.oas_presign_url(h) FROM rep.t WHERE id = 1").fetchone()[0] \
            .startswith("file://")
        # Everything committed resolves; the ledger and the usage views read as on the primary.
        assert s.execute("SELECT * FROM oas.oas_verify()").fetchall() == []
        assert s.execute("SELECT * FROM oas.oas_verify(check_content => false, only_store => 's3')"
                         ).fetchall() == []
        assert s.execute("SELECT count(*) FROM oas.ledger").fetchone()[0] > 0
        usage = s.execute("SELECT * FROM oas.usage").fetchall()
        with _connect(pair.primary) as p:
            assert usage == p.execute("SELECT * FROM oas.usage").fetchall()
        assert s.execute("SELECT count(*) FROM oas.tracked_columns WHERE table_name = 't'").fetchone()[0] == 5
        # A reader that is no administrator: the reference check reads the replayed ledger.
        with _connect(pair.standby, user="rep_reader") as r:
            assert r.execute("SELECT oas.oas_hash_get(h) FROM rep.t WHERE id = 2").fetchone()[0] == b"row 2"


def _refused(conn, query, params=()):
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value


# What must refuse on a standby: every entry point that writes objects (FUNCTION_MATRIX in
# test_security.py, "write"), changes stores or grants, or moves objects (the collector).
STANDBY_REFUSED = [
    "SELECT oas.oas_hash_put('new'::bytea, 'file', 'rep')",
    "SELECT oas.oas_hash_put('new'::bytea, 's3', 'rep')",
    "SELECT oas.oas_blob_put('[1, 2]', 'file', 'rep')",
    "SELECT oas.oas_attach_put('a.txt', 'new'::bytea, 's3', 'rep')",
    "SELECT oas.oas_npy_put('rep.t', 'n', '{\"id\": 9}', oas.oas_npy_from_array(ARRAY[1, 2]))",
    "SELECT oas.oas_upload_begin('rep.t', 'o', '{\"id\": 9}', '.bin')",
    "SELECT oas.oas_upload_part('u-1', 'x'::bytea)",
    "SELECT oas.oas_upload_finish('u-1')",
    "SELECT oas.oas_filepath('raw/none.bin', 'file')",
    "SELECT oas._copy_to_store((SELECT h FROM rep.t WHERE id = 1), 's3')",
    "SELECT * FROM oas.oas_store_verify('s3')",
    "SELECT * FROM oas.oas_store_verify('file')",
    "SELECT oas.oas_store_create('new', '{\"protocol\": \"file\", \"location\": \"/tmp\"}')",
    "SELECT oas.oas_store_alter('s3', (SELECT spec FROM oas.store WHERE name = 's3'))",
    "SELECT oas.oas_store_drop('s3', force => true)",
    "SELECT oas.oas_store_set_default('s3')",
    "SELECT * FROM oas.oas_store_import('{\"stores\": {\"default\": \"s3\"}}')",
    "SELECT oas.oas_store_grant('s3', 'read', 'rep_reader')",
    "SELECT oas.oas_store_revoke('s3', 'read', 'rep_reader')",
    "SELECT oas.oas_store_require_references('s3', false)",
    "SELECT * FROM oas.oas_gc()",  # a dry run too: the collector's report is the primary's
    "SELECT * FROM oas.oas_gc(dry_run => false, grace => '0')",
    "SELECT * FROM oas.oas_gc(dry_run => false, grace => '0', store => 's3')",
    "SELECT * FROM oas.oas_gc_restore((SELECT max(run_id) FROM oas.gc_trash))",
    "SELECT * FROM oas.oas_gc_purge(older_than => '0')",
]


def test_standby_refuses_writes_before_touching_a_store(pair, rows):
    before = pair.stored()
    assert any(p.startswith("_oas/trash/") for p in before[0])  # row 4's objects, in trash
    with _connect(pair.standby) as s:
        for q in STANDBY_REFUSED:
            e = _refused(s, q)
            assert e.sqlstate == "25006", (q, e.sqlstate, str(e))
            assert "hot standby" in str(e) and "run it on the primary" in (e.diag.message_hint or ""), (q, str(e))
        # A pending value is only memory; the row that would store it is refused by PostgreSQL.
        assert "oas_pending" in s.execute("SELECT oas.oas_npy(ARRAY[1, 2])").fetchone()[0]
        e = _refused(s, "INSERT INTO rep.t (id, n) VALUES (9, oas.oas_npy(ARRAY[1, 2]))")
        assert e.sqlstate == "25006"
        # Refused for a role that may not write the store either: the standby says so first.
        with _connect(pair.standby, user="rep_reader") as r:
            assert _refused(r, STANDBY_REFUSED[1]).sqlstate == "25006"
    # Nothing was written, moved or deleted in either store.
    assert pair.stored() == before
    # The primary still collects, restores and purges (the same calls, there).
    with _connect(pair.primary) as p:
        run = p.execute("SELECT max(run_id) FROM oas.gc_trash").fetchone()[0]
        assert p.execute("SELECT count(*) FROM oas.oas_gc_restore(%s)", [run]).fetchone()[0] > 0
    pair.caught_up()


def test_read_only_transaction_writes_no_object(pair, rows):
    """On the primary, a read-only transaction (SET TRANSACTION READ ONLY, or
    default_transaction_read_only) refuses the same calls: its rows could not reference what they
    would write. A temporary table is writable there, and its row trigger would otherwise store a
    pending value."""
    with _connect(pair.primary) as c:
        c.execute("CREATE TEMP TABLE tmp (id int PRIMARY KEY, n jsonb)")
        c.execute("COMMENT ON COLUMN tmp.n IS ':<npy@file>:'")
        before = pair.stored()
        c.execute("BEGIN READ ONLY")
        for q in ("SELECT oas.oas_hash_put('ro'::bytea, 'file', 'rep')",
                  "INSERT INTO tmp VALUES (1, oas.oas_npy(ARRAY[7, 8]))"):
            e = _refused(c, q)
            assert e.sqlstate == "25006", (q, str(e))
            assert "read-only transaction" in str(e) and "READ WRITE" in (e.diag.message_hint or "")
            c.execute("ROLLBACK")
            c.execute("BEGIN READ ONLY")
        c.execute("ROLLBACK")
        c.execute("SET default_transaction_read_only = on")
        for q in STANDBY_REFUSED:
            if "oas_gc_restore" in q or q == "SELECT * FROM oas.oas_gc()":
                continue  # restored already (above); a dry run writes nothing and may run here
            assert _refused(c, q).sqlstate == "25006", q
        c.execute("RESET default_transaction_read_only")
        assert pair.stored() == before
        # Reads work in a read-only transaction, and so does a dry run (it writes nothing).
        c.execute("BEGIN READ ONLY")
        assert c.execute("SELECT oas.oas_hash_get(h) FROM rep.t WHERE id = 1").fetchone()[0] == b"row 1"
        assert len(c.execute("SELECT * FROM oas.oas_gc()").fetchall()) == 2
        c.execute("COMMIT")


def test_standby_reading_an_object_collected_on_the_primary(pair, rows):
    """What a long query on a standby meets when the primary collected an object its snapshot
    still sees (README: grace and trash retention must outlast such queries): 58P01."""
    with _connect(pair.primary) as p:
        ref = p.execute("INSERT INTO rep.t (id, h) VALUES (20, oas.oas_hash('soon gone'::bytea)) RETURNING h"
                        ).fetchone()[0]
    pair.caught_up()
    with _connect(pair.standby) as s:
        s.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert s.execute("SELECT oas.oas_hash_get(h) FROM rep.t WHERE id = 20").fetchone()[0] == b"soon gone"
        with _connect(pair.primary) as p:
            p.execute("DELETE FROM rep.t WHERE id = 20")
            for _ in range(2):
                p.execute("SELECT * FROM oas.oas_gc(dry_run => false, grace => '0', store => 'file')").fetchall()
            p.execute("SELECT * FROM oas.oas_gc_purge(older_than => '0', store => 'file')").fetchall()
        assert not (pair.store / ref["path"]).exists()
        # The standby's snapshot still has the row; its object is gone. (Replay may also cancel
        # this query, 40001, when it conflicts with the snapshot: either way the read fails.)
        e = _refused(s, "SELECT oas.oas_hash_get(h) FROM rep.t WHERE id = 20")
        assert e.sqlstate in ("58P01", "40001"), str(e)
        if e.sqlstate == "58P01":
            assert ref["path"] in str(e) and "missing" in str(e)
        s.execute("ROLLBACK")


# Logical replication between two databases of the primary cluster.


def _database(port: int, name: str) -> None:
    with _connect(port) as c:
        c.execute(f"CREATE DATABASE {name}")
    with _connect(port, name) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION pg_oas")


def _lsub_rows(sub, n):
    return wait_until(lambda: sub.execute("SELECT count(*) FROM lab.t").fetchone()[0] == n, WAIT_S, 0.1)


@pytest.fixture
def logical(pair):
    """Databases pub and sub: lab.t (id, h <hash@file>, n <npy@file>) in both, published from
    pub, subscribed in sub. Both databases' store `file` is the same location."""
    pub, sub = unique("lpub"), unique("lsub")
    slot = unique("slot")
    loc = pair.store.parent / f"{pair.store.name}-{pub}"
    loc.mkdir()
    chown_postgres(loc)
    spec = json.dumps({"protocol": "file", "location": str(loc)})
    try:
        for db in (pub, sub):
            _database(pair.primary, db)
            with _connect(pair.primary, db) as c:
                c.execute("SELECT oas.oas_store_create('file', %s, true)", [spec])
                c.execute("CREATE SCHEMA lab")
                c.execute("CREATE TABLE lab.t (id int PRIMARY KEY, h jsonb, n jsonb)")
                c.execute("COMMENT ON COLUMN lab.t.h IS ':<hash@file>:'")
                c.execute("COMMENT ON COLUMN lab.t.n IS ':<npy@file>:'")
        with _connect(pair.primary, pub) as c:
            c.execute("CREATE PUBLICATION lp FOR TABLE lab.t")
            c.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
        with _connect(pair.primary, sub) as c:
            c.execute(f"CREATE SUBSCRIPTION ls CONNECTION 'host=127.0.0.1 port={pair.primary} user=postgres "
                      f"dbname={pub}' PUBLICATION lp"
                      f" WITH (create_slot = false, slot_name = '{slot}', copy_data = false)")
        yield pub, sub, loc
    finally:
        # Each step on its own: a test that failed half-way leaves some of them undone.
        with _connect(pair.primary) as c:
            for step in ("ALTER SUBSCRIPTION ls DISABLE", "ALTER SUBSCRIPTION ls SET (slot_name = NONE)",
                         "DROP SUBSCRIPTION IF EXISTS ls"):
                try:
                    with _connect(pair.primary, sub) as s:
                        s.execute(step)
                except psycopg.Error:
                    pass
            wait_until(lambda: not c.execute("SELECT coalesce(bool_or(active), false) FROM pg_replication_slots"
                                             " WHERE slot_name = %s", [slot]).fetchone()[0], WAIT_S, 0.1)
            c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                      [slot])
            for db in (pub, sub):
                c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        shutil.rmtree(loc, ignore_errors=True)


def test_subscriber_in_a_shared_location(pair, logical):
    """The subscriber reads the replicated rows' objects; its ledger misses them (chosen: the
    ledger triggers keep their default, ENABLE, and do not fire for replicated changes); its
    collector, in the location the publisher's collector claimed, deletes nothing."""
    pub, sub, loc = logical
    with _connect(pair.primary, pub) as p, _connect(pair.primary, sub) as s:
        for i in range(4):
            p.execute("INSERT INTO lab.t VALUES (%s, oas.oas_hash(%s), oas.oas_npy(ARRAY[%s::int4, 1]))",
                      [i, f"pub {i}".encode(), i])
        assert _lsub_rows(s, 4), "the subscriber did not receive the rows"
        assert s.execute("SELECT oas.oas_hash_get(h) FROM lab.t WHERE id = 2").fetchone()[0] == b"pub 2"
        assert s.execute("SELECT oas.oas_npy_slice_array(n, ':') FROM lab.t WHERE id = 3").fetchone()[0] == [3, 1]
        assert s.execute("SELECT * FROM oas.oas_verify()").fetchall() == []
        # The subscriber's ledger: nothing for the replicated rows (the publisher's has them).
        assert s.execute("SELECT count(*) FROM oas.ref_log WHERE table_name = 't'").fetchone()[0] == 0
        assert p.execute("SELECT count(*) FROM oas.ref_log WHERE table_name = 't'").fetchone()[0] > 0
        # The publisher collects first and so claims the location.
        p.execute("DELETE FROM lab.t WHERE id = 0")
        p.execute("SELECT * FROM oas.oas_gc(dry_run => false, grace => '1 day')").fetchall()
        assert _lsub_rows(s, 3)
        # The subscriber's own rows: one it wrote itself (its ledger has that one).
        s.execute("INSERT INTO lab.t VALUES (100, oas.oas_hash('sub 100'::bytea), NULL)")
        before = _files(loc)
        for _ in range(2):
            report = s.execute("SELECT errors, trashed FROM oas.oas_gc(dry_run => false, grace => '0')"
                               ).fetchone()
            assert report[1] == 0 and any("another database" in e for e in report[0]), report
        assert _files(loc) == before
        assert s.execute("SELECT count(*) FROM oas.ref_log WHERE table_name = 't'").fetchone()[0] > 0
        # The read check of a role that administers no store rests on the ledger: a replicated
        # row's object is refused there, the subscriber's own row's is not.
        s.execute("GRANT USAGE ON SCHEMA lab TO rep_reader")
        s.execute("GRANT SELECT ON lab.t TO rep_reader")
        with _connect(pair.primary, sub, user="rep_reader") as r:
            assert _refused(r, "SELECT oas.oas_hash_get(h) FROM lab.t WHERE id = 2").sqlstate == "42501"
            assert r.execute("SELECT oas.oas_hash_get(h) FROM lab.t WHERE id = 100").fetchone()[0] == b"sub 100"
        assert s.execute("SELECT * FROM oas.oas_verify()").fetchall() == []
        assert p.execute("SELECT * FROM oas.oas_verify()").fetchall() == []


def test_subscriber_with_a_location_of_its_own(pair, logical):
    """A subscriber whose store `file` is a location of its own (a copy of the publisher's, kept
    by some other means): its collector keeps every object a replicated row references although
    its ledger has none of them, and collects those no row references any more."""
    pub, sub, loc = logical
    own = loc.parent / f"{loc.name}-own"
    try:
        with _connect(pair.primary, pub) as p, _connect(pair.primary, sub) as s:
            for i in range(4):
                p.execute("INSERT INTO lab.t VALUES (%s, oas.oas_hash(%s), oas.oas_npy(ARRAY[%s::int4, 2]))",
                          [i, f"own {i}".encode(), i])
            assert _lsub_rows(s, 4)
            shutil.copytree(loc, own)
            subprocess.run(["chown", "-R", "postgres:postgres", str(own)], check=True)
            s.execute("SELECT oas.oas_store_alter('file', %s)",
                      [json.dumps({"protocol": "file", "location": str(own)})])
            assert s.execute("SELECT count(*) FROM oas.ref_log WHERE table_name = 't'").fetchone()[0] == 0
            p.execute("DELETE FROM lab.t WHERE id = 1")
            assert _lsub_rows(s, 3)
            for _ in range(2):
                report = s.execute("SELECT errors, trashed FROM oas.oas_gc(dry_run => false, grace => '0')"
                                   ).fetchone()
                assert report[0] == [], report
            # Row 1's two objects went to trash; every replicated row still resolves.
            assert s.execute("SELECT count(*) FROM oas.gc_trash").fetchone()[0] == 2
            assert s.execute("SELECT * FROM oas.oas_verify()").fetchall() == []
            assert [r[0] for r in s.execute("SELECT oas.oas_hash_get(h) FROM lab.t ORDER BY id").fetchall()] \
                == [b"own 0", b"own 2", b"own 3"]
            # The publisher's location is untouched by the subscriber's runs.
            assert p.execute("SELECT * FROM oas.oas_verify()").fetchall() == []
    finally:
        shutil.rmtree(own, ignore_errors=True)



def test_gc_warns_when_wal_is_archived_and_trash_retention_is_short(pair):
    """With archive_mode on (this primary archives, and pg_basebackup made the standby from it, so
    its backup history file is in pg_wal, minutes old), oas_gc() warns when trash retention is
    under the documented floor of 7 days, and not at or above it."""
    with _connect(pair.primary, "postgres") as c:
        assert c.execute("SHOW archive_mode").fetchone()[0] == "on"
        assert c.execute("SELECT count(*) FROM pg_ls_waldir() WHERE name LIKE '%.backup'").fetchone()[0] >= 1
        warnings: list[str] = []
        c.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity == "WARNING" else None)
        c.execute("SELECT * FROM oas.oas_gc(dry_run => true, store => 'file', trash_retention => '1 day')").fetchall()
        assert any("WAL is archived" in w and "oas.gc_trash_retention" in w for w in warnings), warnings
        warnings.clear()
        c.execute("SELECT * FROM oas.oas_gc(dry_run => true, store => 'file', trash_retention => '7 days')").fetchall()
        assert not any("WAL is archived" in w or "base backup" in w for w in warnings), warnings
