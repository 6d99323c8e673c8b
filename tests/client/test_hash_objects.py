"""Hash-addressed objects through SQL from an outside client, on every store kind we can run here."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import psycopg
import pytest

from conftest import connect, sql_error, unique

STORES = ["file", "s3", "az"]


def dj_hash(data: bytes) -> str:
    """DataJoint's compute_hash, written out independently of the code under test."""
    return base64.b32encode(hashlib.md5(data).digest()).decode().rstrip("=").lower()


def put(conn, data: bytes, store: str, schema: str) -> dict:
    return conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, store, schema], binary=True).fetchone()[0]


def get(conn, ref: dict) -> bytes:
    return conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)], binary=True).fetchone()[0]


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("size", [0, 1, 4096, 1 << 20, 9 * (1 << 20) + 7])
def test_round_trip_returns_datajoint_json_and_exact_bytes(conn, store, size):
    schema = unique("lab")
    data = os.urandom(size)
    ref = put(conn, data, store, schema)
    h = dj_hash(data)
    assert ref == {"hash": h, "path": f"_hash/{schema}/{h}", "schema": schema, "store": store, "size": size}
    assert get(conn, ref) == data


def test_objects_land_at_datajoint_paths_in_each_store(conn, store_dir, s3fs_client, servers):
    schema = unique("lab")
    data = os.urandom(1000)
    h = dj_hash(data)
    put(conn, data, "file", schema)
    assert (store_dir / "_hash" / schema / h).read_bytes() == data
    put(conn, data, "s3", schema)
    key = f"{servers['OAS_S3_BUCKET']}/pytest/_hash/{schema}/{h}"
    assert s3fs_client.cat_file(key) == data


@pytest.mark.parametrize("store", ["file", "s3"])
def test_identical_content_is_stored_once_across_connections(db, store, store_dir, s3fs_client, servers):
    schema = unique("dedup")
    data = os.urandom(50_000)
    refs = []
    for _ in range(3):
        with connect() as c:
            refs.append(put(c, data, store, schema))
    assert refs[0] == refs[1] == refs[2]
    if store == "file":
        assert [p.name for p in (store_dir / "_hash" / schema).iterdir()] == [dj_hash(data)]
    else:
        listing = s3fs_client.ls(f"{servers['OAS_S3_BUCKET']}/pytest/_hash/{schema}", refresh=True)
        assert [p.rsplit("/", 1)[1] for p in listing] == [dj_hash(data)]


def test_concurrent_puts_of_one_payload_from_many_connections(db, s3fs_client, servers):
    """Conditional create: racing writers of the same content all succeed and share one object."""
    import concurrent.futures

    schema = unique("race")
    data = os.urandom(3 << 20)

    def one(_):
        with connect() as c:
            return put(c, data, "s3", schema)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(one, range(8)))
    assert all(r == refs[0] for r in refs)
    assert s3fs_client.cat_file(f"{servers['OAS_S3_BUCKET']}/pytest/{refs[0]['path']}") == data


def test_rows_keep_references_transactionally(conn):
    """The reference is ordinary row data: a rolled-back insert leaves no row (the object stays for GC)."""
    conn.execute("CREATE TABLE IF NOT EXISTS refs (id int PRIMARY KEY, payload jsonb)")
    conn.execute("COMMENT ON COLUMN refs.payload IS ':<hash@file>:payload'")
    with connect() as c:
        c.autocommit = False
        c.execute("INSERT INTO refs VALUES (1001, oas.oas_hash_put('rolled back'::bytea, 'file'))")
        c.rollback()
    assert conn.execute("SELECT count(*) FROM refs WHERE id = 1001").fetchone()[0] == 0
    conn.execute("INSERT INTO refs VALUES (1002, oas.oas_hash_put('kept'::bytea, 'file'))")
    ref = conn.execute("SELECT payload FROM refs WHERE id = 1002").fetchone()[0]
    assert get(conn, ref) == b"kept"


@pytest.mark.parametrize("store", ["file", "s3"])
def test_corrupted_object_is_detected(conn, store, store_dir, s3fs_client, servers):
    schema = unique("corrupt")
    data = b"a" * 1000
    ref = put(conn, data, store, schema)
    bad = b"b" * 1000
    if store == "file":
        (store_dir / ref["path"]).write_bytes(bad)
    else:
        s3fs_client.pipe_file(f"{servers['OAS_S3_BUCKET']}/pytest/{ref['path']}", bad)
    err = sql_error(conn, "SELECT oas.oas_hash_get(%s)", [json.dumps(ref)])
    assert err.sqlstate == "XX001"
    assert ref["path"] in str(err) and f'"{store}"' in str(err)
    assert "content hash" in str(err)
    assert err.diag.message_hint and "backup" in err.diag.message_hint


@pytest.mark.parametrize("store", ["file", "s3"])
def test_a_get_cancelled_while_it_reads_leaves_the_session_usable(conn, store):
    """statement_timeout lands at different points of a large verified get (a local file is read
    into the result by a helper thread while MD5 runs, a stream is hashed beside it): each one
    cancelled raises 57014, and the next get of the same object is whole and right."""
    schema = unique("cancelget")
    data = os.urandom(48 << 20)
    ref = put(conn, data, store, schema)
    cancelled = 0
    for ms in (1, 5, 20, 60, 150):
        conn.execute(f"SET statement_timeout = {ms}")
        try:
            got = get(conn, ref)
        except psycopg.errors.QueryCanceled as e:
            assert e.sqlstate == "57014"
            cancelled += 1
        else:
            assert got == data  # finished before the timeout
        conn.execute("SET statement_timeout = 0")
        assert get(conn, ref) == data
    assert cancelled >= 1


@pytest.mark.parametrize("store", ["file", "s3"])
def test_deleted_object_is_a_clear_error_and_heals_on_reput(conn, store, store_dir, s3fs_client, servers):
    schema = unique("gone")
    data = os.urandom(2000)
    ref = put(conn, data, store, schema)
    if store == "file":
        (store_dir / ref["path"]).unlink()
    else:
        s3fs_client.rm_file(f"{servers['OAS_S3_BUCKET']}/pytest/{ref['path']}")
    err = sql_error(conn, "SELECT oas.oas_hash_get(%s)", [json.dumps(ref)])
    assert err.sqlstate == "58P01"
    assert str(err).startswith(f'object "{ref["path"]}" is missing from store "{store}"')
    assert put(conn, data, store, schema) == ref
    assert get(conn, ref) == data


def test_unknown_store_and_default_store(conn):
    err = sql_error(conn, "SELECT oas.oas_hash_put('x'::bytea, 'nosuchstore')")
    assert err.sqlstate == "42704"
    assert "oas_store_create('nosuchstore'" in err.diag.message_hint
    # No store named: the default store; DataJoint's null/"" store in a reference means the same.
    ref = conn.execute("SELECT oas.oas_hash_put('dflt'::bytea)").fetchone()[0]
    assert ref["store"] == "file"
    for dj_store in (None, ""):
        ref2 = dict(ref, store=dj_store)
        assert get(conn, ref2) == b"dflt"


def test_no_default_store_is_a_clear_error(db):
    with connect() as c:
        c.autocommit = False
        c.execute("UPDATE oas.store SET is_default = false")
        err = sql_error(c, "SELECT oas.oas_hash_put('x'::bytea)")
        assert err.sqlstate == "55000"
        assert "oas_store_set_default" in err.diag.message_hint
        c.rollback()
