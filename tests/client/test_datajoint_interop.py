"""The real DataJoint 2.3.5 client and pg_oas share one store: each reads what the other wrote,
and both produce the same reference JSON for the same bytes."""

from __future__ import annotations

import json
import os

import pytest

from conftest import unique

dj = pytest.importorskip("datajoint")
from datajoint import hash_registry  # noqa: E402


@pytest.mark.parametrize("store", ["file", "s3"])
def test_datajoint_reads_what_pg_oas_wrote(conn, dj_config, store):
    schema = unique("dj")
    data = os.urandom(123_457)
    ref = conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, store, schema], binary=True).fetchone()[0]
    assert hash_registry.get_hash(ref, config=dj_config) == data


@pytest.mark.parametrize("store", ["file", "s3"])
def test_pg_oas_reads_what_datajoint_wrote_and_agrees_on_the_reference(conn, dj_config, store):
    schema = unique("dj")
    data = os.urandom(98_765)
    dj_ref = hash_registry.put_hash(data, schema, store, config=dj_config)
    back = conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(dj_ref)], binary=True).fetchone()[0]
    assert back == data
    ours = conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, store, schema], binary=True).fetchone()[0]
    assert ours == dj_ref


def test_datajoint_default_store_reference_reads_from_our_default(conn, dj_config):
    schema = unique("dj")
    data = b"written by DataJoint to its default store"
    dj_ref = hash_registry.put_hash(data, schema, None, config=dj_config)
    assert dj_ref["store"] is None
    back = conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(dj_ref)], binary=True).fetchone()[0]
    assert back == data


def test_subfolded_paths_agree(conn, dj_config, store_dir):
    name = unique("fold")
    spec = {"protocol": "file", "location": str(store_dir), "subfolding": [2, 3]}
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
    dj_config.stores[name] = spec
    schema = unique("dj")
    data = os.urandom(777)
    dj_ref = hash_registry.put_hash(data, schema, name, config=dj_config)
    ours = conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, name, schema], binary=True).fetchone()[0]
    assert ours == dj_ref


def test_tables_datajoint_creates_are_tracked_and_verified(conn, dj_connection, store_dir):
    """DataJoint declares the table (CREATE TABLE, then COMMENT ON COLUMN); pg_oas sees its
    object columns with no call from the client, and oas_verify checks what its rows reference."""
    import numpy as np

    name = unique("djtrack")
    schema = dj.Schema(name, connection=dj_connection)

    @schema
    class Recording(dj.Manual):
        definition = """
        subject : int32
        session : int32
        ---
        trace : <blob@file>
        raw : <hash@s3>
        note : varchar(32)
        """

    Recording.insert([
        {"subject": 1, "session": 1, "trace": np.arange(100.0), "raw": b"raw one", "note": "a"},
        {"subject": 1, "session": 2, "trace": np.arange(100.0), "raw": b"raw two", "note": "b"},
    ])
    tracked = conn.execute(
        "SELECT column_name, codec, store, addressing FROM oas.tracked_columns WHERE schema_name = %s ORDER BY 1",
        [name]).fetchall()
    assert tracked == [("raw", "hash", "s3", "hash"), ("trace", "blob", "file", "hash")]
    usage = conn.execute("SELECT column_name, store, refs, objects FROM oas.usage WHERE schema_name = %s ORDER BY 1",
                         [name]).fetchall()
    assert usage == [("raw", "s3", 2, 2), ("trace", "file", 2, 1)]
    assert conn.execute("SELECT count(*) FROM oas.oas_verify() WHERE schema_name = %s", [name]).fetchone()[0] == 0

    # Remove the blob both rows share, as an out-of-band cleanup might: both rows are reported,
    # each by its DataJoint primary key.
    path = conn.execute(f'SELECT trace->>\'path\' FROM {name}.recording LIMIT 1').fetchone()[0]
    (store_dir / path).unlink()
    broken = conn.execute(
        "SELECT table_name, column_name, row_key, problem FROM oas.oas_verify() WHERE schema_name = %s ORDER BY row_key::text",
        [name]).fetchall()
    assert broken == [("recording", "trace", {"subject": 1, "session": 1}, "missing"),
                      ("recording", "trace", {"subject": 1, "session": 2}, "missing")]
    schema.drop(prompt=False)
