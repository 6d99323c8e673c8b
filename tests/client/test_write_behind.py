"""Many objects in one statement (#12): uploads run concurrently, up to `oas.uploads_in_flight`,
and every one has finished before its statement ends. A failed upload fails the statement, a
rolled-back statement's uploads are cancelled (its pending values usable again), and a
statement reads what it wrote. Against the file store, SeaweedFS and a store that never
answers."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import psycopg
import pytest

from conftest import CANCEL_BOUND_S, connect, dj_manual, free_port, s3_spec, sql_error, unique

dj = pytest.importorskip("datajoint")

# Bytes unique per row and per test run, made in SQL: `DATA` for row `i` of run `%(run)s`.
DATA = "decode(repeat(md5(%(run)s || i::text), 64), 'hex')"  # 1 KiB


@pytest.fixture
def schema(conn):
    name = unique("wb")
    conn.execute(f"CREATE SCHEMA {name}")
    conn.execute(f"CREATE TABLE {name}.t (k int PRIMARY KEY, v jsonb)")
    yield name
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    conn.execute(f"DROP SCHEMA {name} CASCADE")


def insert_many(conn, schema, n, store, run, start=1, table="t"):
    data = DATA % {"run": "%s"}
    return conn.execute(
        f"INSERT INTO {schema}.{table} SELECT i, oas.oas_hash_put({data}, %s, %s)"
        f" FROM generate_series(%s::int, %s::int) i", [run, store, schema, start, start + n - 1])


def all_read_back(conn, schema, run, table="t"):
    """Every row's object holds the bytes its statement made (size and MD5 checked)."""
    data = DATA % {"run": "%s"}
    return conn.execute(
        f"SELECT count(*) FILTER (WHERE oas.oas_hash_get(v) = {data}), count(*)"
        f" FROM {schema}.{table} t(i, v)", [run]).fetchone()


@pytest.mark.parametrize("store", ["file", "s3"])
def test_one_statement_stores_every_object(conn, schema, store):
    run = unique("r")
    conn.execute("SET oas.uploads_in_flight = 8")
    insert_many(conn, schema, 300, store, run)
    good, total = all_read_back(conn, schema, run)
    assert (good, total) == (300, 300)
    # The same content again in one statement: each object once, every row names it.
    conn.execute(f"INSERT INTO {schema}.t SELECT 1000 + i, oas.oas_hash_put('same'::bytea, %s, %s)"
                 f" FROM generate_series(1, 50) i", [store, schema])
    paths = conn.execute(f"SELECT DISTINCT v->>'path' FROM {schema}.t WHERE k > 1000").fetchall()
    assert len(paths) == 1
    assert conn.execute(f"SELECT bool_and(oas.oas_hash_get(v) = 'same'::bytea) FROM {schema}.t"
                        " WHERE k > 1000").fetchone()[0]


def test_uploads_finish_with_the_statement_not_the_function(conn, schema, store_dir):
    """Inside one statement (a DO block) an upload may still be in flight after oas_hash_put
    returned; when the statement has ended it is in place. With oas.uploads_in_flight = 1 it is
    in place when the function returns, as before."""
    def do(limit):
        conn.execute(f"SET oas.uploads_in_flight = {limit}")
        run = unique("r")
        conn.execute(f"""
            DO $$
            DECLARE r jsonb; seen int := 0;
            BEGIN
              FOR i IN 1..20 LOOP
                r := oas.oas_hash_put(decode(repeat(md5('{run}' || i), 64), 'hex'), 'file', '{schema}');
                INSERT INTO {schema}.t VALUES (i + {limit} * 100, r);
                IF (pg_stat_file('{store_dir}/' || (r->>'path'), true)).size IS NOT NULL THEN
                  seen := seen + 1;
                END IF;
              END LOOP;
              RAISE NOTICE 'seen %', seen;
            END $$""")
        return run

    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    do(1)
    assert notices[-1] == "seen 20"
    do(16)
    seen = int(notices[-1].split()[1])
    assert seen < 20, "uploads did not wait for the end of the statement"
    # ... and are all in place once the DO statement has ended.
    missing = [p for (p,) in conn.execute(f"SELECT v->>'path' FROM {schema}.t").fetchall()
               if not (store_dir / p).exists()]
    assert missing == []


def test_a_statement_reads_what_it_wrote(conn, schema):
    run = unique("r")
    data = DATA % {"run": "%s"}
    got = conn.execute(
        f"WITH w AS (INSERT INTO {schema}.t SELECT i, oas.oas_hash_put({data}, 'file', %s)"
        f"           FROM generate_series(1, 40) i RETURNING k, v)"
        f" SELECT count(*) FILTER (WHERE oas.oas_hash_get(v) = {data}) FROM w AS x(i, v)",
        [run, schema, run]).fetchone()[0]
    assert got == 40


def test_a_failed_upload_fails_its_statement(conn, schema, servers):
    down = unique("down")
    conn.execute("SELECT oas.oas_store_create(%s, %s)",
                 [down, json.dumps(s3_spec(servers, endpoint=f"127.0.0.1:{free_port()}"))])
    conn.execute("SET oas.max_retries = 0")
    run = unique("r")
    conn.execute("BEGIN")
    insert_many(conn, schema, 20, "file", run)
    conn.execute("SAVEPOINT s")
    err = sql_error(conn, f"INSERT INTO {schema}.t SELECT i, oas.oas_hash_put({DATA % {'run': '%s'}}, %s, %s)"
                    f" FROM generate_series(100, 150) i", [run, down, schema])
    assert err.sqlstate == "58030" and down in str(err), err
    conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.execute("COMMIT")
    assert all_read_back(conn, schema, run) == (20, 20)
    assert conn.execute(f"SELECT count(*) FROM {schema}.t WHERE k >= 100").fetchone()[0] == 0


def test_a_rolled_back_statement_cancels_its_uploads(conn, schema):
    """A statement that fails after its uploads started (a duplicate key at its 31st row) leaves
    nothing behind for a later COMMIT to trip on; the statements before it are kept."""
    run = unique("r")
    conn.execute("BEGIN")
    insert_many(conn, schema, 30, "s3", run)
    conn.execute("SAVEPOINT s")
    err = sql_error(conn, f"INSERT INTO {schema}.t SELECT i %% 31 + 1, oas.oas_hash_put("
                    f"{DATA % {'run': '%s'}}, 's3', %s) FROM generate_series(31, 200) i",
                    [run + "x", schema])
    assert err.sqlstate == "23505"
    conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.execute("COMMIT")
    assert all_read_back(conn, schema, run) == (30, 30)


@pytest.fixture
def lab(dj_connection, dj_schema):
    schema = dj_schema("wbv", dj_connection)
    t = dj_manual(schema, "Rec", """
        rec_id : int32
        ---
        data = null : <blob@s3>
        raw = null : <hash@file>
        """)
    return t, f'"{schema.database}"."rec"'


def test_pending_values_of_many_rows_and_copy(conn, lab):
    """Multi-row VALUES and COPY of pending values: one statement, every value stored as
    DataJoint stores it, the <blob@> check of the ledger's trigger included."""
    Rec, table = lab
    rows = 60
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} (rec_id, data, raw) SELECT i, oas.oas_blob(ARRAY[i, i * 2]::int4[]),"
                     f" oas.oas_hash(convert_to('row ' || i, 'UTF8')) FROM generate_series(1, {rows}) i")
    with conn.transaction():
        pending = conn.execute(f"SELECT i, oas.oas_blob(ARRAY[i]::float8[]), oas.oas_hash(convert_to('copy ' || i, 'UTF8'))"
                               f" FROM generate_series(1001, {1000 + rows}) i").fetchall()
        with conn.cursor().copy(f"COPY {table} (rec_id, data, raw) FROM STDIN") as copy:
            for i, data, raw in pending:
                copy.write_row([i, json.dumps(data), json.dumps(raw)])
    for i in (1, rows):
        got = (Rec & {"rec_id": i}).fetch1()
        assert np.array_equal(got["data"], np.array([i, i * 2], dtype=np.int32))
        assert got["raw"] == f"row {i}".encode()
    for i in (1001, 1000 + rows):
        got = (Rec & {"rec_id": i}).fetch1()
        assert np.array_equal(got["data"], np.array([float(i)]))
        assert got["raw"] == f"copy {i}".encode()
    assert len(Rec()) == 2 * rows


def test_pending_values_of_a_failed_statement_stay_usable(conn, lab):
    """Row 3's duplicate key fails the statement after every row's upload started (rows 1 and 2
    share one object): after ROLLBACK TO SAVEPOINT all three pending values go in."""
    Rec, table = lab
    with conn.transaction():
        values = [json.dumps(v) for v in conn.execute(
            "SELECT oas.oas_blob('[1]'::text), oas.oas_blob('[1]'::text), oas.oas_blob('[2]'::text)").fetchone()]
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute(f"INSERT INTO {table} (rec_id, data) VALUES (1, %s), (2, %s), (1, %s)", values)
        conn.execute(f"INSERT INTO {table} (rec_id, data) VALUES (1, %s), (2, %s), (3, %s)", values)
    assert [(Rec & {"rec_id": i}).fetch1("data") for i in (1, 2, 3)] == [[1], [1], [2]]


def test_cancel_while_a_statement_waits_for_its_uploads(db, servers, black_hole):
    with connect() as c:
        hang = unique("hang")
        c.execute("SELECT oas.oas_store_create(%s, %s)",
                  [hang, json.dumps(s3_spec(servers, endpoint=f"127.0.0.1:{black_hole.port}"))])
        c.execute("SET statement_timeout = '500ms'")
        t = time.monotonic()
        err = sql_error(c, "SELECT count(oas.oas_hash_put(convert_to(i::text, 'UTF8'), %s, 'wbhang'))"
                        " FROM generate_series(1, 50) i", [hang])
        elapsed = time.monotonic() - t
        print(f"50 uploads to a store that never answers, cancelled by statement_timeout after {elapsed * 1e3:.0f} ms")
        assert err.sqlstate == "57014", err
        assert elapsed < 0.5 + CANCEL_BOUND_S, elapsed
        c.execute("SET statement_timeout = 0")
        # The session goes on: nothing of the cancelled statement is waited for again.
        ref = c.execute("SELECT oas.oas_hash_put('after'::bytea, 's3', 'wbhang')").fetchone()[0]
        assert c.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)], binary=True).fetchone()[0] == b"after"


def test_a_cursor_uploads_what_each_fetch_returned(conn, schema, store_dir):
    run = unique("r")
    with conn.transaction():
        conn.execute(f"DECLARE c CURSOR FOR SELECT oas.oas_hash_put({DATA % {'run': '%s'}}, 'file', %s)"
                     f" FROM generate_series(1, 30) i", [run, schema])
        refs = [r for (r,) in conn.execute("FETCH 10 FROM c").fetchall()]
        assert all((store_dir / r["path"]).exists() for r in refs)


@pytest.mark.parametrize("store", ["file", "s3"])
def test_many_references_read_at_once_in_order(conn, schema, store):
    run = unique("r")
    insert_many(conn, schema, 120, store, run)
    conn.execute("SET oas.reads_in_flight = 16")
    data = DATA % {"run": "%s"}
    got = conn.execute(
        f"SELECT i, data = {data} FROM oas.oas_hash_get_many(ARRAY(SELECT v FROM {schema}.t ORDER BY k))"
        f" AS g(i, data)", [run]).fetchall()
    assert got == [(i, True) for i in range(1, 121)]
    # NULL references give NULL rows in their places; a damaged object fails the call.
    rows = conn.execute("SELECT ordinality, data FROM oas.oas_hash_get_many(ARRAY[NULL, %s::jsonb, NULL])",
                        [json.dumps(conn.execute(f"SELECT v FROM {schema}.t WHERE k = 1").fetchone()[0])]).fetchall()
    assert [r[0] for r in rows] == [1, 2, 3] and rows[0][1] is None and rows[2][1] is None and rows[1][1]
    ref = conn.execute(f"SELECT v FROM {schema}.t WHERE k = 2").fetchone()[0]
    ref["size"] += 1
    err = sql_error(conn, "SELECT count(*) FROM oas.oas_hash_get_many(ARRAY[NULL, %s::jsonb])", [json.dumps(ref)])
    assert err.sqlstate == "XX001", err


def test_many_references_read_within_the_memory_budget(conn, schema):
    """oas.upload_memory bounds what oas_hash_get_many holds ahead: objects larger than the whole
    budget are still read, one at a time, in order."""
    run = unique("r")
    conn.execute(f"INSERT INTO {schema}.t SELECT i, oas.oas_hash_put(decode(repeat(md5(%s || i), 98304), 'hex'),"
                 f" 's3', %s) FROM generate_series(1, 6) i", [run, schema])  # 1.5 MiB each
    conn.execute("SET oas.upload_memory = '1MB'")
    conn.execute("SET oas.reads_in_flight = 4")
    got = conn.execute(
        f"SELECT i, length(data), data = decode(repeat(md5(%s || i), 98304), 'hex')"
        f" FROM oas.oas_hash_get_many(ARRAY(SELECT v FROM {schema}.t ORDER BY k)) AS g(i, data)", [run]).fetchall()
    assert got == [(i, 1536 << 10, True) for i in range(1, 7)]
