"""DataJoint blobs from SQL: `oas_blob_pack`/`oas_blob_unpack` for `<blob>`, `oas_blob_put`/
`oas_blob_get` for `<blob@store>`, byte for byte what DataJoint's own `blob.pack` writes, checked
against the real DataJoint 2.3.5 client both ways."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import dj_manual, sql_error

dj = pytest.importorskip("datajoint")
from datajoint import blob as djblob  # noqa: E402

VALUES = [
    None, True, 7, -2**63, 2**64 - 1, 1.5, "héllo", [1, 2.5, "x", None],
    {"b": 1, "a": [1, 2, {"c": "d"}]}, {"big": list(range(2000))},  # the last compresses
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_pack_is_datajoints_pack_of_the_same_json(conn, value):
    text = json.dumps(value)
    got = conn.execute("SELECT oas.oas_blob_pack(%s::text)", [text]).fetchone()[0]
    assert bytes(got) == djblob.pack(json.loads(text))
    assert conn.execute("SELECT oas.oas_blob_unpack(%s)", [got]).fetchone()[0] == json.loads(text)


def test_unpack_reads_numpy_values_datajoint_packed(conn):
    values = {
        "matrix": np.arange(12, dtype=np.int16).reshape(3, 4),
        "floats": np.array([0.5, np.nan, np.inf]),
        "nested": {"t": np.array([1.0, 2.0]), "label": "trial", "n": 3},
        "complex": np.array([1 + 2j]),
    }
    for name, v in values.items():
        got = conn.execute("SELECT oas.oas_blob_unpack(%s)", [djblob.pack(v)]).fetchone()[0]
        if name == "matrix":
            assert got == v.tolist()
        elif name == "floats":
            assert got == [0.5, "NaN", "Infinity"]
        elif name == "nested":
            assert got == {"t": [1.0, 2.0], "label": "trial", "n": 3}
        else:
            assert got == [{"real": 1.0, "imag": 2.0}]


@pytest.mark.parametrize("bad", [b"", b"not a blob", b"dj0\x00A", b"dj0\x00A\x01\x00\x00\x00", b"ZL123\x00\x10\x00\x00\x00\x00\x00\x00\x00garbage"])
def test_what_is_not_a_blob_is_a_clear_error(conn, bad):
    e = sql_error(conn, "SELECT oas.oas_blob_unpack(%s)", [bad])
    assert e.sqlstate == "22023", e


@pytest.fixture
def blob_table(dj_connection, dj_schema, request):
    store = request.param
    schema = dj_schema("djb", dj_connection)
    t = dj_manual(schema, "Trial", f"""
        trial_id : int32
        ---
        small = null : <blob>
        big = null : <blob@{store}>
        """)
    return t, f'"{schema.database}"."trial"', schema.database, store


@pytest.mark.parametrize("blob_table", ["file", "s3"], indirect=True)
def test_datajoint_and_sql_read_each_others_blobs(conn, blob_table):
    Trial, table, schema, store = blob_table
    value = {"rate": 30.5, "labels": ["a", "b"], "counts": list(range(500))}
    Trial.insert1({"trial_id": 1, "small": value, "big": value})
    small, big = conn.execute(f"SELECT small, big FROM {table} WHERE trial_id = 1").fetchone()
    assert conn.execute("SELECT oas.oas_blob_unpack(%s)", [small]).fetchone()[0] == value
    assert conn.execute("SELECT oas.oas_blob_get(%s)", [json.dumps(big)]).fetchone()[0] == value
    # SQL writes the same value: the same bytes, so the <blob@> object is DataJoint's own.
    text = json.dumps(value)
    conn.execute(f"INSERT INTO {table} VALUES (2, oas.oas_blob_pack(%s::text), oas.oas_blob_put(%s::text, %s, %s))",
                 [text, text, store, schema])
    small2, big2 = conn.execute(f"SELECT small, big FROM {table} WHERE trial_id = 2").fetchone()
    assert bytes(small2) == bytes(small) and big2 == big
    row = (Trial & {"trial_id": 2}).fetch1()
    assert row["small"] == value and row["big"] == value


def test_blob_get_of_something_else_is_refused(conn):
    ref = conn.execute("SELECT oas.oas_hash_put('plain bytes'::bytea, 'file', 'public')").fetchone()[0]
    e = sql_error(conn, "SELECT oas.oas_blob_get(%s)", [json.dumps(ref)])
    assert e.sqlstate == "22023", e


@pytest.mark.parametrize("sql, value", [
    ("ARRAY[[1, 2, 3], [4, 5, 6]]::int2[]", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16)),
    ("ARRAY[0.5, -1.25, 'NaN']::float8[]", np.array([0.5, -1.25, np.nan])),
    ("ARRAY[true, false]", np.array([True, False])),
    ("ARRAY[[1.5, 2.5], [3.5, 4.5]]", np.array([[1.5, 2.5], [3.5, 4.5]])),  # numeric: float64
    ("ARRAY[9007199254740993]::int8[]", np.array([2**53 + 1], dtype=np.int64)),
    ("'{}'::int4[]", np.array([], dtype=np.int32)),
    ("(SELECT array_agg(g::float4) FROM generate_series(1, 600) g)", np.arange(1, 601, dtype=np.float32)),
])
def test_pack_of_an_array_is_datajoints_pack_of_the_numpy_array(conn, sql, value):
    got = conn.execute(f"SELECT oas.oas_blob_pack({sql})").fetchone()[0]
    assert bytes(got) == djblob.pack(value)


def test_unpack_array_gives_doubles_with_dimensions(conn):
    m = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    assert conn.execute("SELECT oas.oas_blob_unpack_array(%s)", [djblob.pack(m)]).fetchone()[0] == m.astype(float).tolist()
    assert conn.execute("SELECT array_dims(oas.oas_blob_unpack_array(%s))", [djblob.pack(m)]).fetchone()[0] == "[1:2][1:3][1:4]"
    for bad in [np.array([2**53 + 1], dtype=np.int64), np.array([1 + 2j]), {"not": "an array"}]:
        e = sql_error(conn, "SELECT oas.oas_blob_unpack_array(%s)", [djblob.pack(bad)])
        assert e.sqlstate == "22023", (bad, e)
    e = sql_error(conn, "SELECT oas.oas_blob_pack(ARRAY[1, NULL])")
    assert e.sqlstate == "22023", e


@pytest.mark.parametrize("sql, value", [
    ("42", 42), ("-7::int2", -7), ("9007199254740993::int8", 2**53 + 1), ("1.5", 1.5), ("0.25::float4", 0.25),
    ("true", True), ("'\\x00ff'::bytea", b"\x00\xff"), ("'2024-01-15'::date", "2024-01-15"),
])
def test_pack_of_a_scalar_is_datajoints_pack_of_the_python_value(conn, sql, value):
    """Numbers, booleans and bytes have their own Python types; other values pack as their
    to_jsonb (a date as its ISO text)."""
    got = conn.execute(f"SELECT oas.oas_blob_pack({sql})").fetchone()[0]
    assert bytes(got) == djblob.pack(value), sql
