"""Migrating a column (#14): `CALL oas.oas_migrate_column(...)` moves an in-table `bytea` column
(`<blob>`, `<attach>`, plain bytes) into object storage and back, in batches that commit; an
interrupted run (cancel, statement_timeout, kill -9 of the backend) keeps its batches and a new
call resumes; rows other sessions write meanwhile end up migrated; the result is what DataJoint
2.3.5 writes and reads. Also the job catalog's privileges, and what `oas_move` checks before it
needs `oas._copy_to_store`.

Interruptions are made deterministic with a row lock: another connection holds one row, the
migration's batch that reaches it waits, and is then cancelled or killed there."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading

import numpy as np
import psycopg
import pytest

from conftest import RUN_DIR, PrivateCluster, chown_postgres, connect, s3_spec, sql_error, unique, wait_until

WAIT_S = 60.0
# Connections holding a row lock (held_row), closed when the test ends.
HOLDERS: list = []


def blob_rows(conn, n: int, seed: int = 0) -> dict[int, bytes]:
    """n DataJoint blobs packed by pg_oas (float arrays; small ones stay uncompressed, large ones
    are compressed), keyed 1..n."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(1, n + 1):
        size = [3, 50, 400, 2000][k % 4]
        values = np.round(rng.normal(size=size), 3).tolist()
        out[k] = conn.execute("SELECT oas.oas_blob_pack(%s::float8[])", [values], binary=True).fetchone()[0]
    return out


@contextlib.contextmanager
def blob_table(conn, n: int = 30, comment: str = ":<blob>:trace"):
    """Schema s with table s.t (k int PRIMARY KEY, x bytea NOT NULL) holding n blobs; yields
    (schema, table, values)."""
    schema = unique("mig")
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.t (k int PRIMARY KEY, x bytea NOT NULL, note text)")
    conn.execute(f"COMMENT ON COLUMN {schema}.t.x IS '{comment}'")
    values = blob_rows(conn, n)
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {schema}.t (k, x) VALUES (%s, %s)", list(values.items()))
    try:
        yield schema, f"{schema}.t", values
    finally:
        while HOLDERS:
            with contextlib.suppress(Exception):
                HOLDERS.pop().close()
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def migrate(conn, table: str, codec: str, **kw) -> list[str]:
    """CALL oas_migrate_column; the NOTICEs it raised."""
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    args = "".join(f", {k} => %s" for k in kw)
    conn.execute(f"CALL oas.oas_migrate_column(%s, 'x', %s{args})", [table, codec, *kw.values()])
    return notices


def job_of(conn, table: str):
    return conn.execute("SELECT id, state, rows_done, rows_total, position FROM oas.job"
                        " WHERE table_oid = %s::regclass ORDER BY id DESC LIMIT 1", [table]).fetchone()


def migrated_bytes(conn, table: str) -> dict[int, bytes]:
    return {k: v for k, v in conn.execute(f"SELECT k, oas.oas_hash_get(x) FROM {table}", binary=True).fetchall()}


def check_migrated(conn, schema: str, table: str, store: str, values: dict[int, bytes]) -> None:
    """Every row holds the reference oas_hash_put makes of its old bytes (what DataJoint writes),
    reads back byte-identical, the ledger counts each reference once, oas_verify is clean."""
    rows = conn.execute(f"SELECT k, x, _x_premigration FROM {table} ORDER BY k", binary=True).fetchall()
    assert {k for k, _, _ in rows} == set(values)
    for k, ref, old in rows:
        assert old == values[k]
        want = conn.execute("SELECT oas.oas_hash_put(%s, %s, %s)", [values[k], store, schema]).fetchone()[0]
        assert ref == want, k
    assert migrated_bytes(conn, table) == values
    ledger = sorted(conn.execute("SELECT store, path, refs::bigint FROM oas.ledger WHERE table_oid = %s::regclass"
                                 " AND column_name = 'x'", [table]).fetchall())
    counted = sorted(conn.execute(f"SELECT x->>'store', x->>'path', count(*) FROM {table} GROUP BY 1, 2").fetchall())
    assert ledger == counted
    problems = conn.execute("SELECT * FROM oas.oas_verify(true) WHERE schema_name = %s", [schema]).fetchall()
    assert problems == []


@pytest.mark.parametrize("store", ["file", "s3"])
def test_full_migration_verified(conn, store):
    with blob_table(conn, 23) as (schema, table, values):
        notices = migrate(conn, table, f"blob@{store}", batch_rows=5)
        assert any("migrated: 23/23 rows (100.0%)" in n and "done" in n for n in notices), notices
        assert sum("migrated:" in n for n in notices) == 6  # five batches and the last step
        col = conn.execute("SELECT format_type(atttypid, NULL), attnotnull, col_description(attrelid, attnum)"
                           " FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'x'", [table]).fetchone()
        assert col == ("jsonb", True, f":<blob@{store}>:trace")
        kept = conn.execute("SELECT format_type(atttypid, NULL), attnotnull FROM pg_attribute"
                            " WHERE attrelid = %s::regclass AND attname = '_x_premigration'", [table]).fetchone()
        assert kept == ("bytea", False)
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'oas_job_%%'",
                            [table]).fetchone()[0] == 0
        _, state, done, total, _ = job_of(conn, table)
        assert (state, done, total) == ("done", 23, 23)
        check_migrated(conn, schema, table, store, values)
        # DataJoint's inserts name only visible columns: the kept column is nullable and hidden.
        conn.execute(f"INSERT INTO {table} (k, x) VALUES (100, oas.oas_blob('[1, 2]'::jsonb))")


def test_drop_old_and_plain_bytes_and_attachments(conn):
    schema = unique("mig")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        conn.execute(f"CREATE TABLE {schema}.h (k int PRIMARY KEY, x bytea)")
        conn.execute(f"CREATE TABLE {schema}.a (k int PRIMARY KEY, x bytea NOT NULL)")
        conn.execute(f"COMMENT ON COLUMN {schema}.a.x IS ':<attach>:files'")
        raw = {1: os.urandom(3000), 2: b"", 3: None}
        att = {1: b"a.txt\0hello", 2: b"b.bin\0" + os.urandom(5000)}
        for k, v in raw.items():
            conn.execute(f"INSERT INTO {schema}.h VALUES (%s, %s)", [k, v])
        for k, v in att.items():
            conn.execute(f"INSERT INTO {schema}.a VALUES (%s, %s)", [k, v])
        migrate(conn, f"{schema}.h", "hash@file", drop_old=True)
        migrate(conn, f"{schema}.a", "attach@s3")
        assert conn.execute(f"SELECT count(*) FROM pg_attribute WHERE attrelid = '{schema}.h'::regclass"
                            " AND attname = '_x_premigration'").fetchone()[0] == 0
        assert conn.execute(f"SELECT col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid ="
                            f" '{schema}.h'::regclass AND attname = 'x'").fetchone()[0] == ":<hash@file>:"
        got = dict(conn.execute(f"SELECT k, oas.oas_hash_get(x) FROM {schema}.h", binary=True).fetchall())
        assert got == raw
        assert conn.execute(f"SELECT col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid ="
                            f" '{schema}.a'::regclass AND attname = 'x'").fetchone()[0] == ":<attach@s3>:files"
        got = dict(conn.execute(f"SELECT k, oas.oas_hash_get(x) FROM {schema}.a", binary=True).fetchall())
        assert got == att
        for k, v in att.items():
            want = conn.execute("SELECT oas.oas_hash_put(%s, 's3', %s)", [v, schema]).fetchone()[0]
            assert conn.execute(f"SELECT x FROM {schema}.a WHERE k = %s", [k]).fetchone()[0] == want
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def started_then_held(conn, table: str, k: int, values: dict, connect=connect, codec="blob@file"):
    """The migration of table.x into blob@file started and stopped before row k (its batch failed
    on an invalid blob there: the new column and the trigger exist, and ALTER TABLE needs no lock
    any more), row k restored and held by another connection; that connection."""
    conn.execute(f"UPDATE {table} SET x = 'not a blob' WHERE k = %s", [k])
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("CALL oas.oas_migrate_column(%s, 'x', %s, batch_rows => 5)", [table, codec])
    conn.execute(f"UPDATE {table} SET x = %s WHERE k = %s", [values[k], k])
    return held_row(table, k, connect)


def held_row(table: str, k: int, connect=connect):
    """A connection holding row k of table locked (FOR UPDATE) until it is closed (at the latest
    when the test ends: fixture `release_holders`)."""
    holder = connect()
    holder.execute("BEGIN")
    holder.execute(f"SELECT 1 FROM {table} WHERE k = %s FOR UPDATE", [k])
    HOLDERS.append(holder)
    return holder


@pytest.fixture(autouse=True)
def release_holders():
    yield
    while HOLDERS:
        with contextlib.suppress(Exception):
            HOLDERS.pop().close()


def run_in_thread(fn):
    box: dict = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def blocked_on_lock(conn, pid: int) -> bool:
    return conn.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                        [pid]).fetchone()[0] is True


@pytest.mark.parametrize("how", ["cancel", "statement_timeout"])
def test_cancelled_half_way_then_resumed(conn, how):
    with blob_table(conn, 30) as (schema, table, values):
        holder = started_then_held(conn, table, 23, values)
        worker = connect()
        pid = worker.info.backend_pid
        if how == "statement_timeout":
            worker.execute("SET statement_timeout = '3s'")
        t, box = run_in_thread(lambda: migrate(worker, table, "blob@file", batch_rows=5))
        assert wait_until(lambda: blocked_on_lock(conn, pid), WAIT_S)
        if how == "cancel":
            conn.execute("SELECT pg_cancel_backend(%s)", [pid])
        t.join(WAIT_S)
        assert isinstance(box.get("error"), psycopg.errors.QueryCanceled), box
        worker.close()
        # The batches before the held row are kept; the one that waited is not.
        _, state, done, total, position = job_of(conn, table)
        assert (state, done, total, position) == ("running", 20, 30, ["20"])
        assert conn.execute(f"SELECT count(_x_migrating) FROM {table}").fetchone()[0] == 20
        holder.close()
        notices = migrate(conn, table, "blob@file", batch_rows=5)
        assert any("migrated: 30/30 rows" in n for n in notices), notices
        check_migrated(conn, schema, table, "file", values)
        assert conn.execute("SELECT count(*) FROM oas.job WHERE table_oid = %s::regclass",
                            [table]).fetchone()[0] == 1


@pytest.fixture(scope="module")
def crash_cluster(servers):
    c = PrivateCluster("migcrash")
    yield c
    c.destroy()


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_kill_9_half_way_then_resumed(crash_cluster, servers, s3fs_client, kind):
    """The backend is killed (SIGKILL) while its batch waits: the postmaster restarts every
    backend; a new call resumes, every row migrated once, values identical, oas_verify clean."""
    c = crash_cluster
    store, loc = unique("mk"), RUN_DIR / unique("mkdir")
    if kind == "file":
        loc.mkdir()
        chown_postgres(loc)
        spec = {"protocol": "file", "location": str(loc)}
    else:
        spec = s3_spec(servers, location=f"pytest-mig/{store}")
    with c.session() as conn:
        conn.execute("SELECT oas.oas_store_create(%s, %s)", [store, json.dumps(spec)])
        conn.execute("CREATE SCHEMA IF NOT EXISTS k9")
        table = f"k9.{store}"
        conn.execute(f"CREATE TABLE {table} (k int PRIMARY KEY, x bytea NOT NULL)")
        conn.execute(f"COMMENT ON COLUMN {table}.x IS ':<blob>:'")
        values = blob_rows(conn, 30, seed=9)
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", list(values.items()))
    with c.session() as conn:
        holder = started_then_held(conn, table, 23, values, connect=c.connect, codec=f"blob@{store}")
    worker = c.connect()
    pid = worker.info.backend_pid
    before = c.checkpointer()
    t, box = run_in_thread(lambda: migrate(worker, table, f"blob@{store}", batch_rows=5))
    with c.session() as watch:
        assert wait_until(lambda: blocked_on_lock(watch, pid), WAIT_S)
    os.kill(pid, signal.SIGKILL)
    t.join(WAIT_S)
    assert "error" in box
    for x in (holder, worker):
        with contextlib.suppress(Exception):
            x.close()
    assert c.wait_ready(restarted_from=before)
    with c.session() as conn:
        _, state, done, _, position = job_of(conn, table)
        assert (state, done, position) == ("running", 20, ["20"])
        migrate(conn, table, f"blob@{store}", batch_rows=5)
        rows = dict(conn.execute(f"SELECT k, _x_premigration FROM {table}", binary=True).fetchall())
        assert rows == values
        assert migrated_bytes(conn, table) == values
        ledger = sorted(conn.execute("SELECT store, path, refs::bigint FROM oas.ledger"
                                     " WHERE table_oid = %s::regclass", [table]).fetchall())
        counted = sorted(conn.execute(f"SELECT x->>'store', x->>'path', count(*) FROM {table} GROUP BY 1, 2").fetchall())
        assert ledger == counted
        assert conn.execute("SELECT * FROM oas.oas_verify(true, %s)", [store]).fetchall() == []
        conn.execute(f"DROP TABLE {table}")
    if kind == "file":
        shutil.rmtree(loc, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            s3fs_client.rm(f"{servers['OAS_S3_BUCKET']}/pytest-mig/{store}", recursive=True)


def test_rows_written_meanwhile_are_migrated(conn):
    """While the migration waits on a held row, another session updates rows already migrated,
    inserts new ones and updates one not reached yet: all end up migrated with their new bytes."""
    with blob_table(conn, 30) as (schema, table, values):
        holder = started_then_held(conn, table, 23, values)
        worker = connect()
        pid = worker.info.backend_pid
        t, box = run_in_thread(lambda: migrate(worker, table, "blob@file", batch_rows=5))
        assert wait_until(lambda: blocked_on_lock(conn, pid), WAIT_S)
        extra = blob_rows(conn, 12, seed=5)
        with connect() as writer:
            for i, k in enumerate((1, 2, 3, 30), start=1):
                writer.execute(f"UPDATE {table} SET x = %s WHERE k = %s", [extra[i], k])
                values[k] = extra[i]
            for k in (101, 102, 103):
                writer.execute(f"INSERT INTO {table} (k, x) VALUES (%s, %s)", [k, extra[k - 100 + 4]])
                values[k] = extra[k - 100 + 4]
        holder.close()
        t.join(WAIT_S)
        assert "error" not in box, box
        worker.close()
        check_migrated(conn, schema, table, "file", values)


def test_two_calls_for_one_column_share_the_job(conn):
    """Two sessions call the same migration at once: the second resumes the first one's job and
    takes the batches in turn (each waits for the job's row); every row is migrated once."""
    with blob_table(conn, 40) as (schema, table, values):
        workers = [connect(), connect()]
        runs = [run_in_thread(lambda w=w: migrate(w, table, "blob@file", batch_rows=2)) for w in workers]
        for t, box in runs:
            t.join(WAIT_S * 2)
            assert "error" not in box, box
            assert any("done" in n for n in box["result"]), box["result"]
        for w in workers:
            w.close()
        rows = conn.execute("SELECT state, rows_done, rows_total FROM oas.job WHERE table_oid = %s::regclass",
                            [table]).fetchall()
        assert rows == [("done", 40, 40)]
        check_migrated(conn, schema, table, "file", values)


def test_read_only_destination_refuses_before_writing(conn):
    store = unique("mro")
    loc = RUN_DIR / f"{store}-dir"
    loc.mkdir()
    chown_postgres(loc)
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [store, json.dumps({"protocol": "file", "location": str(loc)})])
    conn.execute("SELECT oas.oas_store_read_only(%s, true)", [store])
    try:
        with blob_table(conn, 3) as (schema, table, values):
            e = sql_error(conn, "CALL oas.oas_migrate_column(%s, 'x', %s)", [table, f"blob@{store}"])
            assert e.sqlstate == "25006", e
            assert job_of(conn, table) is None
            assert conn.execute(f"SELECT count(*) FROM pg_attribute WHERE attrelid = '{table}'::regclass"
                                " AND attname LIKE '%%migrating'").fetchone()[0] == 0
            assert list(loc.rglob("*")) == []
    finally:
        conn.execute("SELECT oas.oas_store_read_only(%s, false)", [store])
        conn.execute("SELECT oas.oas_store_drop(%s)", [store])
        shutil.rmtree(loc, ignore_errors=True)


@pytest.mark.parametrize("store", ["file", "s3"])
def test_reverse_within_a_size_limit(conn, store):
    schema = unique("rev")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        table = f"{schema}.t"
        conn.execute(f"CREATE TABLE {table} (k int PRIMARY KEY, x jsonb NOT NULL)")
        conn.execute(f"COMMENT ON COLUMN {table}.x IS ':<blob@{store}>:trace'")
        for k in range(1, 13):
            conn.execute(f"INSERT INTO {table} VALUES (%s, oas.oas_blob(%s::float8[]))",
                         [k, [float(i) for i in range(k * 40)]])
        sizes = [r[0] for r in conn.execute(f"SELECT (x->>'size')::bigint FROM {table}").fetchall()]
        refs = dict(conn.execute(f"SELECT k, x FROM {table}").fetchall())
        packed = migrated_bytes(conn, table)
        limit = sorted(sizes)[-3]
        over = sum(s > limit for s in sizes)
        e = sql_error(conn, "CALL oas.oas_migrate_column(%s, 'x', 'blob', max_bytes => %s)", [table, limit])
        assert e.sqlstate == "54000"
        assert f"{over} value(s)" in str(e) and str(max(sizes)) in str(e)
        assert job_of(conn, table) is None
        notices = migrate(conn, table, "blob", max_bytes=max(sizes), batch_rows=4)
        assert any("migrated: 12/12 rows" in n for n in notices)
        col = conn.execute("SELECT format_type(atttypid, NULL), attnotnull, col_description(attrelid, attnum)"
                           " FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'x'", [table]).fetchone()
        assert col == ("bytea", True, ":<blob>:trace")
        back = dict(conn.execute(f"SELECT k, x FROM {table}", binary=True).fetchall())
        assert back == packed
        kept = dict(conn.execute(f"SELECT k, _x_premigration FROM {table}").fetchall())
        assert kept == refs
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_invalid_blob_stops_with_its_key(conn):
    with blob_table(conn, 12) as (schema, table, values):
        conn.execute(f"UPDATE {table} SET x = 'not a blob' WHERE k = 7")
        e = sql_error(conn, "CALL oas.oas_migrate_column(%s, 'x', 'blob@file', batch_rows => 5)", [table])
        assert e.sqlstate == "22023"
        assert "k=7" in str(e) and "not a DataJoint blob" in str(e)
        _, state, done, _, position = job_of(conn, table)
        assert (state, done, position) == ("running", 5, ["5"])
        assert conn.execute(f"SELECT count(_x_migrating) FROM {table}").fetchone()[0] == 5
        # Fixed, the same call resumes and finishes.
        conn.execute(f"UPDATE {table} SET x = %s WHERE k = 7", [values[7]])
        migrate(conn, table, "blob@file", batch_rows=5)
        check_migrated(conn, schema, table, "file", values)


def test_composite_key_resumed_from_another_session_style(conn):
    """A key of two columns (date, float8): the position is kept in one text style whatever the
    session's DateStyle and extra_float_digits, so a resume from another session goes on."""
    schema = unique("ck")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        table = f"{schema}.t"
        conn.execute(f"CREATE TABLE {table} (d date, f float8, x bytea NOT NULL, PRIMARY KEY (d, f))")
        conn.execute(f"COMMENT ON COLUMN {table}.x IS ':<blob>:'")
        packed = blob_rows(conn, 12)
        keys = {}
        for k, v in packed.items():
            d, f = f"2024-01-{(k + 1) // 2:02d}", k / 3
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", [d, f, v])
            keys[k] = (d, f)
        conn.execute(f"UPDATE {table} SET x = 'bad' WHERE d = %s AND f = %s", keys[7])
        with connect() as other:
            other.execute("SET DateStyle = 'SQL, DMY'")
            other.execute("SET extra_float_digits = 0")
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                other.execute("CALL oas.oas_migrate_column(%s, 'x', 'blob@file', batch_rows => 3)", [table])
        _, state, done, _, position = job_of(conn, table)
        assert (state, done) == ("running", 6)
        assert position == ["2024-01-03", "2"]
        conn.execute(f"UPDATE {table} SET x = %s WHERE d = %s AND f = %s", [packed[7], *keys[7]])
        migrate(conn, table, "blob@file", batch_rows=3)
        _, state, done, total, _ = job_of(conn, table)
        assert (state, done, total) == ("done", 12, 12)
        got = dict(conn.execute(f"SELECT f, oas.oas_hash_get(x) FROM {table}", binary=True).fetchall())
        assert got == {keys[k][1]: v for k, v in packed.items()}
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_refusals_before_anything_is_done(conn):
    with blob_table(conn, 2) as (schema, table, _):
        conn.execute("BEGIN")
        e = sql_error(conn, "CALL oas.oas_migrate_column(%s, 'x', 'blob@file')", [table])
        assert e.sqlstate == "25001" and "transaction block" in str(e)
        conn.execute("ROLLBACK")
        # From a function (an atomic context) it cannot commit: refused, and nothing is left.
        conn.execute(f"CREATE FUNCTION {schema}.f() RETURNS void LANGUAGE plpgsql AS"
                     f" $$ BEGIN CALL oas.oas_migrate_column('{table}', 'x', 'blob@file'); END $$")
        e = sql_error(conn, f"SELECT {schema}.f()")
        assert e.sqlstate == "2D000"
        assert conn.execute(f"SELECT count(*) FROM pg_attribute WHERE attrelid = '{table}'::regclass"
                            " AND attname LIKE '%%migrating'").fetchone()[0] == 0
        assert job_of(conn, table) is None
        e = sql_error(conn, "CALL oas.oas_migrate_column(%s, 'x', 'hash@file')", [table])
        assert e.sqlstate == "22023" and "<blob@store>" in str(e)
        e = sql_error(conn, "CALL oas.oas_migrate_column(%s, 'x', 'blob@file', batch_rows => 0)", [table])
        assert e.sqlstate == "22023"
        conn.execute(f"CREATE TABLE {schema}.nokey (k int, x bytea)")
        e = sql_error(conn, "CALL oas.oas_migrate_column(%s, 'x', 'blob@file')", [f"{schema}.nokey"])
        assert e.sqlstate == "55000" and e.diag.message_hint
        assert job_of(conn, table) is None


def test_another_role_can_neither_see_nor_drive_a_job(conn, db):
    """Role a's unfinished job: role b sees no row of it, cannot write oas.job, cannot run a's
    job's batches, nor start a migration of a's table; a resumes its own job."""
    a, b = unique("ja"), unique("jb")
    for r in (a, b):
        conn.execute(f"CREATE ROLE {r} LOGIN")
        conn.execute(f"GRANT CREATE ON DATABASE {db} TO {r}")
    schema = unique("jsch")
    try:
        with connect(user=a) as ca:
            ca.execute(f"CREATE SCHEMA {schema}")
            ca.execute(f"GRANT USAGE ON SCHEMA {schema} TO {b}")
            ca.execute(f"CREATE TABLE {schema}.t (k int PRIMARY KEY, x bytea NOT NULL)")
            ca.execute(f"GRANT ALL ON {schema}.t TO {b}")
            ca.execute(f"COMMENT ON COLUMN {schema}.t.x IS ':<blob>:'")
            values = blob_rows(ca, 8)
            for k, v in values.items():
                ca.execute(f"INSERT INTO {schema}.t VALUES (%s, %s)", [k, v])
            ca.execute(f"UPDATE {schema}.t SET x = 'bad' WHERE k = 6")
            sql_error(ca, "CALL oas.oas_migrate_column(%s, 'x', 'blob@file', batch_rows => 3)", [f"{schema}.t"])
            job = ca.execute("SELECT id, rows_done FROM oas.job").fetchone()
            assert job[1] == 3
        with connect(user=b) as cb:
            assert cb.execute("SELECT count(*) FROM oas.job").fetchone()[0] == 0
            for q in ("UPDATE oas.job SET role = current_user", "DELETE FROM oas.job",
                      "INSERT INTO oas.job (kind, table_oid, column_name, work_column, args, batch_rows, role)"
                      " VALUES ('migrate', 1, 'x', 'x', '{}', 1, current_user)"):
                assert sql_error(cb, q).sqlstate == "42501", q
            e = sql_error(cb, "SELECT oas._job_step(%s)", [job[0]])
            assert e.sqlstate == "42501"
            e = sql_error(cb, "CALL oas.oas_migrate_column(%s, 'x', 'blob@file', batch_rows => 3)", [f"{schema}.t"])
            assert e.sqlstate == "42501"
            e = sql_error(cb, "SELECT oas._migrate_start(%s::regclass, 'x', 'hash@file', 3, false, NULL)",
                          [f"{schema}.t"])
            assert e.sqlstate == "42501"
        with connect(user=a) as ca:
            assert ca.execute("SELECT rows_done, state FROM oas.job").fetchone() == (3, "running")
            ca.execute(f"UPDATE {schema}.t SET x = %s WHERE k = 6", [values[6]])
            migrate(ca, f"{schema}.t", "blob@file", batch_rows=3)
            assert ca.execute("SELECT rows_done, state FROM oas.job").fetchone() == (8, "done")
            assert migrated_bytes(ca, f"{schema}.t") == values
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute("DELETE FROM oas.job WHERE role IN (%s, %s)", [a, b])
        for r in (a, b):
            conn.execute(f"REVOKE CREATE ON DATABASE {db} FROM {r}")
            conn.execute(f"DROP OWNED BY {r}")
            conn.execute(f"DROP ROLE {r}")


def test_move_checks_its_arguments(conn):
    """oas_move runs on the engine with oas._copy_to_store (another change): without it, a clear
    error before anything is done; in a transaction block, refused up front."""
    conn.execute("BEGIN")
    e = sql_error(conn, "CALL oas.oas_move('file')")
    assert e.sqlstate == "25001"
    conn.execute("ROLLBACK")
    has_copy = conn.execute("SELECT to_regprocedure('oas._copy_to_store(jsonb, text)') IS NOT NULL").fetchone()[0]
    e = sql_error(conn, "CALL oas.oas_move(NULL)")
    assert e.sqlstate == "22004"
    if not has_copy:
        e = sql_error(conn, "CALL oas.oas_move('file')")
        assert e.sqlstate == "55000" and "_copy_to_store" in str(e)
        return
    e = sql_error(conn, "CALL oas.oas_move('no_such_store')")
    assert e.sqlstate == "42704"


@pytest.fixture
def copy_to_store(conn):
    """oas._copy_to_store(ref, store), as the engine calls it: the real one when this build has
    it, else a stand-in for hash-addressed references (read, put into `store` for the same
    schema), dropped afterwards."""
    if conn.execute("SELECT to_regprocedure('oas._copy_to_store(jsonb, text)') IS NOT NULL").fetchone()[0]:
        yield
        return
    conn.execute("""CREATE FUNCTION oas._copy_to_store(ref jsonb, store text) RETURNS jsonb LANGUAGE sql AS
                    $$ SELECT oas.oas_hash_put(oas.oas_hash_get(ref), store, split_part(ref->>'path', '/', 2)) $$""")
    try:
        yield
    finally:
        conn.execute("DROP FUNCTION oas._copy_to_store(jsonb, text)")


def test_move_a_column_between_stores(conn, copy_to_store):
    """oas_move on the engine: the references of the column now name the new store and read
    back the same, the comment names it, one job per column; a <filepath@> column is skipped
    with a NOTICE."""
    schema = unique("mv")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        table = f"{schema}.t"
        conn.execute(f"CREATE TABLE {table} (k int PRIMARY KEY, b jsonb, f jsonb)")
        conn.execute(f"COMMENT ON COLUMN {table}.b IS ':<blob@file>:trace'")
        conn.execute(f"COMMENT ON COLUMN {table}.f IS ':<filepath@file>:'")
        for k in range(1, 8):
            conn.execute(f"INSERT INTO {table} (k, b) VALUES (%s, oas.oas_blob(%s::float8[]))",
                         [k, [float(i) for i in range(k * 30)]])
        before = migrated_bytes_of(conn, table, "b")
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("CALL oas.oas_move('s3', 'file', %s, batch_rows => 3)", [table])
        assert any("filepath" in n for n in notices), notices
        assert any("moved: 7/7 rows" in n and "done" in n for n in notices), notices
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE b->>'store' <> 's3'").fetchone()[0] == 0
        assert migrated_bytes_of(conn, table, "b") == before
        assert conn.execute(f"SELECT col_description('{table}'::regclass, 2)").fetchone()[0] == ":<blob@s3>:trace"
        jobs = conn.execute("SELECT kind, column_name, state, rows_done FROM oas.job WHERE table_oid = %s::regclass",
                            [table]).fetchall()
        assert jobs == [("move", "b", "done", 7)]
        assert conn.execute("SELECT * FROM oas.oas_verify(true) WHERE schema_name = %s", [schema]).fetchall() == []
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def migrated_bytes_of(conn, table: str, col: str) -> dict[int, bytes]:
    return dict(conn.execute(f"SELECT k, oas.oas_hash_get({col}) FROM {table}", binary=True).fetchall())


# DataJoint identity: the real client reads the migrated tables and writes the same JSON.

@pytest.mark.parametrize("store", ["file", "s3"])
def test_datajoint_reads_migrated_tables_and_writes_the_same_json(conn, dj_connection, dj_schema, store):
    dj = pytest.importorskip("datajoint")
    from conftest import dj_manual

    schema = dj_schema("djmig", dj_connection)
    Trace = dj_manual(schema, "Trace", "k : int32\n---\ntrace : <blob>\n")
    Doc = dj_manual(schema, "Doc", "k : int32\n---\ndoc : <attach>\n")
    Same = dj_manual(schema, "Same", f"k : int32\n---\ntrace : <blob@{store}>\n")
    SameDoc = dj_manual(schema, "SameDoc", f"k : int32\n---\ndoc : <attach@{store}>\n")
    rng = np.random.default_rng(3)
    traces = {1: np.arange(5.0), 2: (rng.normal(size=3000) * 100).astype(np.int16),
              3: {"a": 1, "b": "text"}, 4: np.zeros((30, 40))}
    Trace.insert([{"k": k, "trace": v} for k, v in traces.items()])
    Same.insert([{"k": k, "trace": v} for k, v in traces.items()])
    tmp = RUN_DIR / unique("djatt")
    tmp.mkdir()
    files = {}
    for k, data in {1: b"small", 2: os.urandom(4000)}.items():
        path = tmp / f"f{k}.bin"
        path.write_bytes(data)
        files[k] = (path, data)
    Doc.insert([{"k": k, "doc": str(p)} for k, (p, _) in files.items()])
    SameDoc.insert([{"k": k, "doc": str(p)} for k, (p, _) in files.items()])
    db = schema.database
    sizes = [r[0] for r in conn.execute(f'SELECT octet_length(trace) FROM "{db}"."trace"').fetchall()]
    assert min(sizes) < 1000 < max(sizes)
    migrate_col = "CALL oas.oas_migrate_column(%s, %s, %s, batch_rows => 2)"
    conn.execute(migrate_col, [f'"{db}"."trace"', "trace", f"blob@{store}"])
    conn.execute(migrate_col, [f'"{db}"."doc"', "doc", f"attach@{store}"])
    for table, col in (("trace", "trace"), ("doc", "doc")):
        ours = dict(conn.execute(f'SELECT k, {col} FROM "{db}"."{table}"').fetchall())
        theirs = dict(conn.execute(f'SELECT k, {col} FROM "{db}"."same{"" if col == "trace" else "_doc"}"')
                      .fetchall())
        assert ours == theirs, table
        comments = conn.execute(f"SELECT col_description('\"{db}\".\"{table}\"'::regclass, attnum) FROM pg_attribute"
                                f" WHERE attrelid = '\"{db}\".\"{table}\"'::regclass AND attname = %s", [col]).fetchone()
        assert comments[0] == f":<{'blob' if col == 'trace' else 'attach'}@{store}>:"
    vm = dj.VirtualModule("vm", db, connection=dj_connection)
    got = {r["k"]: r["trace"] for r in vm.Trace.to_dicts()}
    for k, v in traces.items():
        if isinstance(v, dict):
            assert dict(got[k]) == v
        else:
            np.testing.assert_array_equal(got[k], v)
    down = RUN_DIR / unique("djdown")
    down.mkdir()
    with dj.config.override(download_path=str(down)):
        for r in vm.Doc.to_dicts():
            assert pathlib_read(r["doc"]) == files[r["k"]][1]
    # And back: DataJoint reads the reverse migration as <blob> again.
    conn.execute("CALL oas.oas_migrate_column(%s, 'trace', 'blob', max_bytes => 1000000, drop_old => true)", [f'"{db}"."trace"'])
    vm = dj.VirtualModule("vm2", db, connection=dj_connection)
    got = {r["k"]: r["trace"] for r in vm.Trace.to_dicts()}
    np.testing.assert_array_equal(got[2], traces[2])
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(down, ignore_errors=True)


def pathlib_read(p) -> bytes:
    import pathlib

    return pathlib.Path(p).read_bytes()
