"""Hash-addressed values written from SQL through the row trigger (`oas_blob`, `oas_attach`,
`oas_hash`), and `<blob@>` columns that refuse references to bytes that are not a DataJoint
blob. Checked against the real DataJoint 2.3.5 client on the file store and SeaweedFS."""

from __future__ import annotations

import json
import os

import numpy as np
import psycopg
import pytest

from conftest import dj_manual, sql_error, unique

dj = pytest.importorskip("datajoint")
from datajoint import blob as djblob  # noqa: E402


@pytest.fixture
def lab(dj_connection, dj_schema, request):
    """A DataJoint table with one column of each hash-addressed codec in store `request.param`."""
    store = request.param
    schema = dj_schema("pv", dj_connection)
    t = dj_manual(schema, "Rec", f"""
        rec_id : int32
        ---
        data = null : <blob@{store}>
        doc = null : <attach@{store}>
        raw = null : <hash@{store}>
        """)
    return t, f'"{schema.database}"."rec"', schema.database, store


@pytest.mark.parametrize("lab", ["file", "s3"], indirect=True)
def test_blob_from_sql_is_datajoints_object_and_reads_back(conn, lab, tmp_path):
    Rec, table, schema, store = lab
    value = {"rate": 30.5, "labels": ["a", "b"], "counts": list(range(500))}
    Rec.insert1({"rec_id": 1, "data": value})
    theirs = conn.execute(f"SELECT data FROM {table} WHERE rec_id = 1").fetchone()[0]
    # The same value from SQL, with no store or schema named: the column and the table say them.
    conn.execute("SET search_path = public")
    conn.execute(f"INSERT INTO {table} (rec_id, data) VALUES (2, oas.oas_blob(%s::text))", [json.dumps(value)])
    ours = conn.execute(f"SELECT data FROM {table} WHERE rec_id = 2").fetchone()[0]
    assert ours["hash"] == theirs["hash"] and ours["path"] == theirs["path"]
    assert ours["path"].startswith(f"_hash/{schema}/") and ours["store"] == store
    assert conn.execute("SELECT oas.oas_blob_get(%s)", [json.dumps(ours)]).fetchone()[0] == value
    # An array and jsonb: DataJoint fetches what was packed.
    conn.execute(f"INSERT INTO {table} (rec_id, data) VALUES (3, oas.oas_blob(ARRAY[[1, 2], [3, 4]]::int2[])),"
                 f" (4, oas.oas_blob('{{\"k\": [1, 2]}}'::jsonb)), (5, oas.oas_blob(NULL::jsonb)),"
                 f" (6, oas.oas_blob(2.5)), (7, oas.oas_blob('\\x0102'::bytea))")
    assert np.array_equal((Rec & {"rec_id": 3}).fetch1("data"), np.array([[1, 2], [3, 4]], dtype=np.int16))
    assert (Rec & {"rec_id": 4}).fetch1("data") == {"k": [1, 2]}
    assert (Rec & {"rec_id": 5}).fetch1("data") is None
    assert (Rec & {"rec_id": 6}).fetch1("data") == 2.5
    assert (Rec & {"rec_id": 7}).fetch1("data") == b"\x01\x02"
    assert (Rec & {"rec_id": 2}).fetch1("data") == value
    # An UPDATE stores too.
    conn.execute(f"UPDATE {table} SET data = oas.oas_blob('[7]'::text) WHERE rec_id = 5")
    assert (Rec & {"rec_id": 5}).fetch1("data") == [7]


@pytest.mark.parametrize("lab", ["file"], indirect=True)
def test_attach_and_hash_from_sql_read_back_in_datajoint(conn, lab, tmp_path):
    Rec, table, schema, store = lab
    conn.execute(f"INSERT INTO {table} (rec_id, doc, raw) VALUES "
                 "(1, oas.oas_attach('notes.txt', 'hello'::bytea), oas.oas_hash('\\x00ff'::bytea))")
    doc, raw = conn.execute(f"SELECT doc, raw FROM {table} WHERE rec_id = 1").fetchone()
    assert doc["path"].startswith(f"_hash/{schema}/") and raw["size"] == 2
    got = conn.execute("SELECT filename, contents FROM oas.oas_attach_get(%s)", [json.dumps(doc)]).fetchone()
    assert got == ("notes.txt", b"hello")
    with dj.config.override(download_path=str(tmp_path)):
        path = (Rec & {"rec_id": 1}).fetch1("doc")
    assert os.path.basename(path) == "notes.txt" and open(path, "rb").read() == b"hello"
    assert (Rec & {"rec_id": 1}).fetch1("raw") == b"\x00\xff"


@pytest.mark.parametrize("lab", ["file"], indirect=True)
def test_a_pending_value_goes_only_into_its_codecs_column(conn, lab):
    Rec, table, schema, store = lab
    for col, value, hint in [("raw", "oas.oas_blob('[1]'::text)", "oas_hash()"),
                             ("data", "oas.oas_hash('x'::bytea)", "oas_blob()"),
                             ("data", "oas.oas_attach('a.txt', 'x'::bytea)", "oas_blob()"),
                             ("doc", "oas.oas_npy('{1}'::int4[])", "oas_attach()")]:
        e = sql_error(conn, f"INSERT INTO {table} (rec_id, {col}) VALUES (9, {value})")
        assert e.sqlstate == "22023" and hint in (e.diag.message_hint or ""), (col, value, e, e.diag.message_hint)
    # Copied into another table without the trigger, a pending value is refused, never lost.
    other = unique("pvx")
    conn.execute(f"CREATE TABLE {schema}.{other} (id int PRIMARY KEY, v jsonb)")
    conn.execute(f"COMMENT ON COLUMN {schema}.{other}.v IS ':<filepath@{store}>:'")
    e = sql_error(conn, f"INSERT INTO {schema}.{other} VALUES (1, oas.oas_blob('[1]'::text))")
    assert e.sqlstate == "22023" and "never stored" in str(e), e
    assert conn.execute(f"SELECT count(*) FROM {table} WHERE rec_id = 9").fetchone()[0] == 0


@pytest.mark.parametrize("lab", ["file"], indirect=True)
def test_a_pending_value_that_was_not_stored_stays_usable(conn, lab):
    """Refused by a column of another codec, a pending value is not used up: after ROLLBACK TO
    SAVEPOINT it still goes into the right column."""
    Rec, table, schema, store = lab
    with conn.transaction():
        pending = conn.execute("SELECT oas.oas_blob('[1]'::text)").fetchone()[0]
        for col in ("raw", "doc"):
            with pytest.raises(psycopg.Error) as info, conn.transaction():
                conn.execute(f"INSERT INTO {table} (rec_id, {col}) VALUES (1, %s)", [json.dumps(pending)])
            assert info.value.sqlstate == "22023", info.value
        conn.execute(f"INSERT INTO {table} (rec_id, data) VALUES (1, %s)", [json.dumps(pending)])
    assert (Rec & {"rec_id": 1}).fetch1("data") == [1]


def test_partitions_get_their_roots_row_trigger(conn):
    """A partition made or attached after its root's column took pending values gets the root's
    row trigger (CREATE TABLE ... PARTITION OF used to fail, trying to drop the clone): values
    written through the root, straight into a partition, or moved to another partition by an
    UPDATE are stored under the root's schema."""
    s = unique("pvpart")
    conn.execute(f"CREATE SCHEMA {s}")
    try:
        conn.execute(f"CREATE TABLE {s}.t (id int PRIMARY KEY, b jsonb) PARTITION BY RANGE (id)")
        conn.execute(f"COMMENT ON COLUMN {s}.t.b IS ':<blob@file>:'")
        conn.execute(f"CREATE TABLE {s}.p1 PARTITION OF {s}.t FOR VALUES FROM (0) TO (100)")
        conn.execute(f"CREATE TABLE {s}.p2 (id int PRIMARY KEY, b jsonb)")
        conn.execute(f"ALTER TABLE {s}.t ATTACH PARTITION {s}.p2 FOR VALUES FROM (100) TO (200)")
        conn.execute(f"INSERT INTO {s}.t VALUES (1, oas.oas_blob('[1]'::text)), (2, oas.oas_blob('[2]'::text))")
        conn.execute(f"INSERT INTO {s}.p2 VALUES (101, oas.oas_blob('[101]'::text))")
        conn.execute(f"UPDATE {s}.t SET id = 150, b = oas.oas_blob('[150]'::text) WHERE id = 1")
        rows = conn.execute(f"SELECT id, b->>'path', oas.oas_blob_get(b) FROM {s}.t ORDER BY id").fetchall()
        assert [(r[0], r[2]) for r in rows] == [(2, [2]), (101, [101]), (150, [150])], rows
        assert all(r[1].startswith(f"_hash/{s}/") for r in rows), rows
    finally:
        conn.execute(f"DROP SCHEMA {s} CASCADE")


@pytest.mark.parametrize("lab", ["file", "s3"], indirect=True)
def test_blob_column_refuses_references_to_other_bytes(conn, lab):
    Rec, table, schema, store = lab
    # What DataJoint would fetch as None, without an error: plain bytes, small and large.
    for data in [b"hello", os.urandom(10_000), b""]:
        ref = conn.execute("SELECT oas.oas_hash_put(%s, %s, %s)", [data, store, schema]).fetchone()[0]
        e = sql_error(conn, f"INSERT INTO {table} (rec_id, data) VALUES (1, %s)", [json.dumps(ref)])
        assert e.sqlstate == "22023" and "not a DataJoint blob" in str(e), e
        assert "oas_blob" in (e.diag.message_hint or "")
        assert "hello" not in str(e)  # never the object's bytes: the role may not be able to read them
    Rec.insert1({"rec_id": 2, "data": np.arange(100_000.0)})  # 800 kB, zlib-compressed by DataJoint
    good = conn.execute(f"SELECT data FROM {table} WHERE rec_id = 2").fetchone()[0]
    bad = conn.execute("SELECT oas.oas_hash_put(%s, %s, %s)", [os.urandom(5000), store, schema]).fetchone()[0]
    e = sql_error(conn, f"UPDATE {table} SET data = %s WHERE rec_id = 2", [json.dumps(bad)])
    assert e.sqlstate == "22023", e
    # A reference DataJoint wrote, copied by hand into another row: accepted (it is a blob).
    conn.execute(f"INSERT INTO {table} (rec_id, data) VALUES (3, %s)", [json.dumps(good)])
    assert np.array_equal((Rec & {"rec_id": 3}).fetch1("data"), np.arange(100_000.0))
    # A missing object is refused too.
    missing = dict(good, path=good["path"][:-4] + "aaaa", hash=good["hash"][:-4] + "aaaa")
    e = sql_error(conn, f"INSERT INTO {table} (rec_id, data) VALUES (4, %s)", [json.dumps(missing)])
    assert e.sqlstate == "58P01", e


def test_blob_check_reads_only_the_tables_own_schema(conn, dj_connection, dj_schema, tmp_path):
    """A role probing another schema's objects through a <blob@> column of its own learns
    nothing: references outside the table's schema's part of the hash section are not read."""
    mine = dj_schema("pvo", dj_connection)
    other = dj_schema("pvp", dj_connection)
    T = dj_manual(mine, "T", "id : int32\n---\nb = null : <blob@file>")
    secret = conn.execute("SELECT oas.oas_hash_put('secret'::bytea, 'file', %s)", [other.database]).fetchone()[0]
    absent = dict(secret, path=secret["path"][:-4] + "zzzz")
    for i, ref in enumerate([secret, absent]):
        conn.execute(f'INSERT INTO "{mine.database}"."t" VALUES (%s, %s)', [i, json.dumps(ref)])
    assert len(T()) == 2


def test_an_ordinary_role_cannot_probe_objects_through_the_blob_check(conn, db):
    """oas._check_blobs reads any store with the server's credentials (it answers whether an
    object exists and is a blob): only the ledger's trigger, as the extension's owner, calls it."""
    from conftest import connect

    role = unique("prober")
    conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        with connect(db, user=role) as c:
            e = sql_error(c, "SELECT oas._check_blobs(ARRAY['file'], ARRAY['_hash/x/y'], 'x')")
            assert e.sqlstate == "42501", e
    finally:
        conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("lab", ["file"], indirect=True)
def test_a_column_changed_in_the_transaction_is_seen_by_its_next_statement(conn, lab):
    """The row trigger looks a column up once per statement, not once per transaction: a codec
    changed by COMMENT ON COLUMN holds for the next statement of the same transaction."""
    Rec, table, schema, store = lab
    with conn.transaction(force_rollback=True):
        conn.execute(f"INSERT INTO {table} (rec_id, raw) VALUES (1, oas.oas_hash('x'::bytea)), (2, oas.oas_hash('y'::bytea))")
        conn.execute(f"COMMENT ON COLUMN {table}.raw IS ':<blob@{store}>:'")
        with pytest.raises(psycopg.Error) as info, conn.transaction():
            conn.execute(f"INSERT INTO {table} (rec_id, raw) VALUES (3, oas.oas_hash('z'::bytea))")
        assert info.value.sqlstate == "22023" and "oas_blob()" in (info.value.diag.message_hint or ""), info.value
        conn.execute(f"INSERT INTO {table} (rec_id, raw) VALUES (3, oas.oas_blob('[3]'::text))")
