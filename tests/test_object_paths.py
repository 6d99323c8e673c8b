"""Primary-key values in schema-addressed paths: pg_oas renders each PostgreSQL value exactly as
DataJoint 2.3.5's encode_pk_value renders the Python value psycopg2 (DataJoint's driver) gives
it for the same PostgreSQL value."""

from __future__ import annotations

import pytest

from conftest import DB, PORT

dj_storage = pytest.importorskip("datajoint.storage")
psycopg2 = pytest.importorskip("psycopg2")

VALUES = [
    ("-5", "int2"), ("2147483647", "int4"), ("-9223372036854775808", "int8"),
    ("2.5", "float8"), ("0.1", "float8"), ("1e16", "float8"), ("1e15", "float8"), ("1e-5", "float8"),
    ("0.0001", "float8"), ("-0", "float8"), ("Infinity", "float8"), ("-Infinity", "float8"), ("NaN", "float8"),
    ("123456789.125", "float8"), ("3.141592653589793", "float8"), ("1.7976931348623157e308", "float8"),
    ("0.1", "float4"), ("3.4e38", "float4"), ("1e-7", "float4"), ("16777217", "float4"),
    ("1.50", "numeric"), ("0.0000001", "numeric"), ("100", "numeric"), ("0.00", "numeric"), ("-12.345", "numeric"),
    ("1e20", "numeric"), ("0.000001", "numeric"), ("NaN", "numeric"),
    ("true", "bool"), ("false", "bool"),
    ("2024-01-15", "date"), ("0001-01-01", "date"),
    ("2024-01-15 12:30:45.123456", "timestamp"), ("2024-01-15 00:00:00", "timestamp"),
    ("2024-01-15 12:30:45+05", "timestamptz"),
    ("12:30:45", "time"), ("12:30:45.5", "time"), ("00:00:00.000001", "time"),
    ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid"),
    ("plain", "text"), ("with space = and %", "text"), ("a/b", "text"), ("a:b", "text"), ("x" * 120, "text"),
    ("é/ü", "text"), ("q?", "text"), ("star*", "text"), ("pipe|", "text"), ("back\\slash", "text"),
    ('quote"', "text"), ("<>", "text"), ("ü" * 101, "text"), ("mouse-7", "varchar(20)"), ("ab", "char(5)"),
    ("sess", "name"), ("happy", "mood"),
]


def test_pk_values_render_like_datajoint(db):
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=DB)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("DROP TYPE IF EXISTS mood; CREATE TYPE mood AS ENUM ('happy', 'sad')")
    mismatches = []
    for text, ty in VALUES:
        cur.execute(f"SELECT v, oas.oas_encode_pk_value(v) FROM (SELECT %s::{ty} AS v) t", [text])
        py_value, ours = cur.fetchone()
        theirs = dj_storage.encode_pk_value(py_value)
        if ours != theirs:
            mismatches.append((ty, text, py_value, theirs, ours))
    conn.close()
    assert not mismatches, mismatches
    print(f"{len(VALUES)} primary-key values rendered as DataJoint renders them")


def test_unsupported_pk_types_are_clear_errors(conn):
    with pytest.raises(Exception) as e:
        conn.execute("SELECT oas.oas_encode_pk_value('1 day'::interval)")
    assert e.value.sqlstate == "22023" and "interval" in str(e.value)
