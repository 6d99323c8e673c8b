"""Read-only stores (archives, #14): every write into one is refused before it touches the store
(25006, with a hint naming the store and how to make it writable), reads, verification and
`<filepath@>` references to its files work, and the collector moves and deletes nothing in it."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import psycopg
import pytest

from conftest import RUN_DIR, chown_postgres, connect, drop_test_store, s3_spec, unique


def files(loc: pathlib.Path) -> set[str]:
    return {str(p.relative_to(loc)) for p in loc.rglob("*") if p.is_file()}


@pytest.fixture(params=["file", "s3"])
def archive(request, db, servers, s3fs_client):
    """A store with a table of every kind of column and a few rows written while it was writable,
    then marked read-only. Yields (conn, store, schema, listing, place): listing() lists the store,
    place(path, bytes) puts a file there as a user would (not through pg_oas)."""
    kind = request.param
    store, schema = unique("ro"), unique("rosch")
    loc = RUN_DIR / f"{store}-store"
    if kind == "file":
        loc.mkdir()
        chown_postgres(loc)
        spec = {"protocol": "file", "location": str(loc)}

        def listing():
            return files(loc)

        def place(rel, data):
            (loc / rel).parent.mkdir(parents=True, exist_ok=True)
            (loc / rel).write_bytes(data)
    else:
        spec = s3_spec(servers, location=f"pytest-ro/{store}")
        prefix = f"{servers['OAS_S3_BUCKET']}/pytest-ro/{store}"

        def listing():
            s3fs_client.invalidate_cache()
            return set(s3fs_client.find(prefix))

        def place(rel, data):
            s3fs_client.pipe(f"{prefix}/{rel}", data)
    with connect() as conn:
        conn.execute("SELECT oas.oas_store_create(%s, %s)", [store, json.dumps(spec)])
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.t (k int PRIMARY KEY, h jsonb, b jsonb, n jsonb, o jsonb)")
        for col, codec in (("h", "hash"), ("b", "blob"), ("n", "npy"), ("o", "object")):
            conn.execute("SELECT oas.oas_declare_column(%s, %s, %s)", [f"{schema}.t", col, f"{codec}@{store}"])
        conn.execute(f"INSERT INTO {schema}.t VALUES (1, oas.oas_hash(%s), oas.oas_blob(%s::float8[]),"
                     " oas.oas_npy(%s::float8[]), oas.oas_object(%s, '.bin'))",
                     [b"kept" * 100, [1.0, 2.0], [3.0, 4.0], b"object bytes"])
        conn.execute(f"INSERT INTO {schema}.t (k, h) VALUES (2, oas.oas_hash(%s))", [b"to be unreferenced" * 50])
        assert conn.execute("SELECT oas.oas_store_read_only(%s, true)", [store]).fetchone()[0] is True
        try:
            yield conn, store, schema, listing, place
        finally:
            if kind == "file":
                drop_test_store(conn, store, schema, loc=loc)
            else:
                drop_test_store(conn, store, schema, s3fs_client=s3fs_client, prefix=prefix)


def refused(conn, store: str, query: str, params=()) -> psycopg.Error:
    conn.execute("BEGIN")
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as info:
            conn.execute(query, params)
    finally:
        conn.execute("ROLLBACK")
    err = info.value
    assert f'store "{store}" is read-only' in str(err), str(err)
    assert f"oas_store_read_only('{store}', false)" in (err.diag.message_hint or ""), err.diag.message_hint
    return err


def test_every_write_into_a_read_only_store_is_refused_before_it_touches_it(archive):
    conn, store, schema, listing, _ = archive
    t = f"{schema}.t"
    before = listing()
    data = os.urandom(64 * 1024)
    arr = np.arange(1000, dtype=np.float64).tolist()
    cases = {
        "oas_hash_put": (f"INSERT INTO {t} (k, h) VALUES (10, oas.oas_hash_put(%s, %s, %s))", [data, store, schema]),
        "oas_blob_put": ("SELECT oas.oas_blob_put(%s::text, %s, %s)", ['"a value"', store, schema]),
        "oas_attach_put": ("SELECT oas.oas_attach_put('a.bin', %s, %s, %s)", [data, store, schema]),
        "oas_hash, pending": (f"INSERT INTO {t} (k, h) VALUES (11, oas.oas_hash(%s))", [data]),
        "oas_blob, pending": (f"INSERT INTO {t} (k, b) VALUES (12, oas.oas_blob(%s::float8[]))", [arr]),
        "oas_npy, pending": (f"INSERT INTO {t} (k, n) VALUES (13, oas.oas_npy(%s::float8[]))", [arr]),
        "oas_object, pending": (f"INSERT INTO {t} (k, o) VALUES (14, oas.oas_object(%s, '.bin'))", [data]),
        "an update's new value": (f"UPDATE {t} SET h = oas.oas_hash(%s) WHERE k = 1", [data]),
        "oas_npy_put": ("SELECT oas.oas_npy_put(%s, 'n', '{\"k\": 15}', oas.oas_npy_from_array(%s::float8[]))",
                        [t, arr]),
        "oas_upload_begin": (f"SELECT oas.oas_upload_begin('{t}', 'o', '{{\"k\": 16}}', '.bin')", []),
        "many objects in one statement": (
            f"INSERT INTO {t} (k, h) SELECT i, oas.oas_hash(convert_to(repeat(i::text, 2000), 'UTF8'))"
            " FROM generate_series(100, 140) i", []),
    }
    for what, (query, params) in cases.items():
        err = refused(conn, store, query, params)
        print(f"{what}: {err.sqlstate} {str(err).splitlines()[0]}")
    assert listing() == before, "a refused write touched the store"
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 2


def test_reads_and_verification_work(archive):
    conn, store, schema, _, _ = archive
    t = f"{schema}.t"
    assert conn.execute(f"SELECT oas.oas_hash_get(h) FROM {t} WHERE k = 1").fetchone()[0] == b"kept" * 100
    assert conn.execute(f"SELECT oas.oas_blob_get(b) FROM {t} WHERE k = 1").fetchone()[0] == [1.0, 2.0]
    assert conn.execute(f"SELECT oas.oas_npy_shape(n) FROM {t} WHERE k = 1").fetchone()[0] == [2]
    assert conn.execute(f"SELECT oas.oas_object_size(o) FROM {t} WHERE k = 1").fetchone()[0] == len(b"object bytes")
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0
    assert conn.execute("SELECT read_only FROM oas.stores WHERE name = %s", [store]).fetchone()[0] is True


def test_filepath_references_to_its_files_work(archive):
    """Registering a file that is already there writes nothing: an archive allows it."""
    conn, store, schema, _, place = archive
    place("raw/session1.bin", b"recorded long ago")
    got = conn.execute("SELECT oas.oas_filepath('raw/session1.bin', %s)", [store]).fetchone()[0]
    assert got["path"] == "raw/session1.bin" and got["size"] == len(b"recorded long ago")


def test_the_collector_moves_and_deletes_nothing_in_it(archive):
    conn, store, schema, listing, _ = archive
    conn.execute(f"DELETE FROM {schema}.t WHERE k = 2")  # a row write, no store write
    before = listing()
    for _ in range(2):  # the first run would note the candidate, the second move it
        report = conn.execute("SELECT trashed, errors FROM oas.oas_gc(false, store => %s, grace => '0')",
                              [store]).fetchone()
        assert report[0] == 0 and any("read-only" in e for e in report[1]), report
    assert listing() == before
    assert conn.execute("SELECT count(*) FROM oas.gc_candidate WHERE store = %s", [store]).fetchone()[0] == 0
    assert conn.execute("SELECT * FROM oas.oas_gc_purge(older_than => '0', store => %s)", [store]).fetchall() == []
    assert listing() == before

    # Writable again: the next run collects what nothing references.
    conn.execute("SELECT oas.oas_store_read_only(%s, false)", [store])
    for _ in range(2):
        report = conn.execute("SELECT trashed FROM oas.oas_gc(false, store => %s, grace => '0')", [store]).fetchone()
    assert report[0] == 1
    assert conn.execute(f"INSERT INTO {schema}.t (k, h) VALUES (20, oas.oas_hash(%s)) RETURNING k",
                        [b"writable again"]).fetchone()[0] == 20
