"""Durability at commit on file stores (#12): objects a transaction writes are synced together
before it commits. The sync is seen from outside by removing an object before COMMIT: a commit
that syncs it fails naming it (and rolls back); one that does not sync it succeeds. A crash
right after COMMIT returns leaves every committed reference intact."""

from __future__ import annotations

import json
import os
import shutil

import psycopg
import pytest

from conftest import RUN_DIR, PrivateCluster, chown_postgres, remove_s3_prefix, s3_spec, unique


def _put(conn, schema, data, store="file"):
    return conn.execute(f"INSERT INTO {schema}.t VALUES (%s, oas.oas_hash_put(%s, %s, %s)) RETURNING v",
                        [os.urandom(4).hex(), data, store, schema]).fetchone()[0]


@pytest.fixture
def table(conn, store_dir):
    """A table in a schema of its own; the test runs in a transaction (the connection autocommits)."""
    schema = unique("dur")
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.t (k text PRIMARY KEY, v jsonb)")
    conn.execute("BEGIN")
    yield schema
    conn.execute("ROLLBACK")
    conn.execute(f"DROP SCHEMA {schema} CASCADE")


def commit(conn):
    conn.execute("COMMIT")
    conn.execute("BEGIN")


def failed_commit(conn):
    with pytest.raises(psycopg.errors.IoError) as e:
        conn.execute("COMMIT")
    conn.execute("BEGIN")
    return str(e.value)


def test_commit_syncs_every_object_the_transaction_wrote(conn, table, store_dir):
    refs = [_put(conn, table, os.urandom(4096)) for _ in range(3)]
    (store_dir / refs[1]["path"]).unlink()
    message = failed_commit(conn)
    assert refs[1]["path"] in message and "fsync" in message
    # The transaction rolled back: no row names the objects.
    assert conn.execute(f"SELECT count(*) FROM {table}.t").fetchone()[0] == 0


def test_commit_syncs_schema_addressed_values_too(conn, table, store_dir):
    """<npy@> values, <object@> files and every file of a folder (its manifest too), written by
    the row trigger, and oas_npy_put's objects are synced at commit like hash-addressed ones."""
    conn.execute(f"CREATE TABLE {table}.s (k int PRIMARY KEY, n jsonb, o jsonb)")
    conn.execute(f"SELECT oas.oas_declare_column('{table}.s', 'n', 'npy@file')")
    conn.execute(f"SELECT oas.oas_declare_column('{table}.s', 'o', 'object@file')")
    commit(conn)
    cases = [
        ("n", "oas.oas_npy(ARRAY[1.5, 2.5]::float8[])", ""),
        ("o", "oas.oas_object('x'::bytea, '.bin')", ""),
        ("o", "oas.oas_object_folder(ARRAY['a.bin', 'sub/b.bin'], ARRAY['a'::bytea, 'b'::bytea])", "/sub/b.bin"),
        ("o", "oas.oas_object_folder(ARRAY['a.bin'], ARRAY['a'::bytea])", ".manifest.json"),
    ]
    for i, (col, value, suffix) in enumerate(cases):
        ref = conn.execute(f"INSERT INTO {table}.s (k, {col}) VALUES (%s, {value}) RETURNING {col}", [i]).fetchone()[0]
        (store_dir / (ref["path"] + suffix)).unlink()
        message = failed_commit(conn)
        assert ref["path"] + suffix in message, (value, message)
    ref = conn.execute(f"SELECT oas.oas_npy_put('{table}.s', 'n', '{{\"k\": 8}}', "
                       "oas.oas_npy_from_array(ARRAY[1]::int4[]))").fetchone()[0]
    (store_dir / ref["path"]).unlink()
    assert ref["path"] in failed_commit(conn)
    # Nothing removed: the commit syncs and succeeds.
    conn.execute(f"INSERT INTO {table}.s (k, n) VALUES (9, oas.oas_npy(ARRAY[1]::int4[]))")
    commit(conn)
    assert conn.execute(f"SELECT count(*) FROM {table}.s").fetchone()[0] == 1


def test_rollback_to_savepoint_keeps_the_list(conn, table, store_dir):
    data = os.urandom(4096)
    conn.execute("SAVEPOINT a")
    ref = _put(conn, table, data)
    conn.execute("ROLLBACK TO SAVEPOINT a")
    # The same content again: found, and its reference commits; it must be synced all the same.
    assert _put(conn, table, data) == ref
    (store_dir / ref["path"]).unlink()
    failed_commit(conn)


def test_released_savepoint_and_dedup_hits_are_synced(conn, table, store_dir):
    data = os.urandom(4096)
    _put(conn, table, data)
    commit(conn)
    conn.execute("SAVEPOINT a")
    ref = _put(conn, table, data)  # a dedup hit
    conn.execute("RELEASE SAVEPOINT a")
    (store_dir / ref["path"]).unlink()
    failed_commit(conn)


def test_aborted_transactions_and_fsync_off_sync_nothing(conn, table, store_dir):
    ref = _put(conn, table, os.urandom(4096))
    (store_dir / ref["path"]).unlink()
    conn.execute("ROLLBACK")  # no error: an aborted transaction syncs nothing
    conn.execute("BEGIN")
    # The next transaction starts with an empty list.
    _put(conn, table, os.urandom(4096))
    commit(conn)
    conn.execute("SET oas.file_fsync = off")
    ref = _put(conn, table, os.urandom(4096))
    (store_dir / ref["path"]).unlink()
    commit(conn)  # nothing to sync with oas.file_fsync = off
    conn.execute("RESET oas.file_fsync")
    commit(conn)


def test_object_stores_are_not_deferred(conn, table, servers):
    _put(conn, table, os.urandom(4096), store="s3")
    commit(conn)


@pytest.fixture
def crash_cluster(servers, s3fs_client):
    """A cluster of its own (stopped at once here), with two-phase commit enabled, and two stores:
    `file` (the default) and `s3`, a location of its own in the SeaweedFS bucket."""
    cluster = PrivateCluster("crash", {"max_prepared_transactions": "4"})
    store = RUN_DIR / f"{cluster.name}-store"
    store.mkdir()
    chown_postgres(store)
    with cluster.connect() as c:
        c.execute("SELECT oas.oas_store_create('file', %s, true)",
                  [json.dumps({"protocol": "file", "location": str(store)})])
        c.execute("SELECT oas.oas_store_create('s3', %s)",
                  [json.dumps(s3_spec(servers, location=f"pytest-crash/{cluster.name}"))])
    yield cluster
    cluster.destroy()
    shutil.rmtree(store, ignore_errors=True)
    remove_s3_prefix(s3fs_client, servers, f"pytest-crash/{cluster.name}")


def test_committed_references_survive_a_crash(crash_cluster, store_dir):
    with crash_cluster.connect() as c:
        c.execute("CREATE TABLE public.t (k int PRIMARY KEY, v jsonb)")
        c.execute("SELECT oas.oas_declare_column('public.t', 'v', 'hash@file')")
        c.execute("CREATE TABLE public.s (k int PRIMARY KEY, v jsonb)")
        c.execute("SELECT oas.oas_declare_column('public.s', 'v', 'hash@s3')")
        for i in range(50):  # autocommit: each statement durable when it returns
            c.execute("INSERT INTO public.t VALUES (%s, oas.oas_hash_put(%s, 'file', 'public'))",
                      [i, os.urandom(4096)])
        with c.transaction():  # one transaction, many objects
            for i in range(50, 100):
                c.execute("INSERT INTO public.t VALUES (%s, oas.oas_hash_put(%s, 'file', 'public'))",
                          [i, os.urandom(4096)])
        # Many objects in one statement, their uploads in flight together (write_behind).
        c.execute("INSERT INTO public.t SELECT i, oas.oas_hash_put(decode(repeat(md5(%s || i), 256), 'hex'),"
                  " 'file', 'public') FROM generate_series(101, 400) i", [os.urandom(8).hex()])
        # Two-phase commit: synced at PREPARE TRANSACTION.
        c.execute("BEGIN")
        c.execute("INSERT INTO public.t VALUES (100, oas.oas_hash_put(%s, 'file', 'public'))", [os.urandom(4096)])
        c.execute("PREPARE TRANSACTION 'dur'")
        # An object store: small objects, one statement's uploads in flight together, and an
        # object in parts (over oas.upload_part_size), each committed when its statement returns.
        c.execute("INSERT INTO public.s SELECT i, oas.oas_hash_put(decode(repeat(md5(%s || i), 64), 'hex'),"
                  " 's3', 'public') FROM generate_series(1, 40) i", [os.urandom(8).hex()])
        with c.transaction():
            c.execute("SET LOCAL oas.upload_part_size = '5MB'")
            c.execute("INSERT INTO public.s VALUES (0, oas.oas_hash_put(%s, 's3', 'public'))",
                      [os.urandom(11 << 20)])
        # A crash right after COMMIT returned: no shutdown checkpoint, recovery from the WAL.
    crash_cluster.crash()
    with crash_cluster.connect() as c:
        c.execute("COMMIT PREPARED 'dur'")
        assert c.execute("SELECT count(*) FROM public.t").fetchone()[0] == 401
        assert c.execute("SELECT count(*) FROM public.s").fetchone()[0] == 41
        assert c.execute("SELECT * FROM oas.oas_verify()").fetchall() == []
