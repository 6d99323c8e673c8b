"""Primary-key values in schema-addressed paths: pg_oas renders each PostgreSQL value exactly as
DataJoint 2.3.5's encode_pk_value renders the Python value psycopg2 (DataJoint's driver) gives
it for the same PostgreSQL value."""

from __future__ import annotations

import re

import pytest

from conftest import DB, PORT, sql_error, unique

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


# Values a JSON number cannot carry exactly: jsonb has no -0, and serde_json reads numbers as f64
# (numeric 1.50 would become 1.5). The row trigger reads the key from the row itself, so these
# render right there; a key given as JSON (oas_npy_put) carries them as strings.
LOSSY_AS_JSON = [("-0", "float8"), ("1.7976931348623157e308", "float8"), ("1.50", "numeric"), ("0.00", "numeric")]
# Its rendered segment (50 'ü' quoted, plus the hash) is over the 255 bytes a local file name may have.
TOO_LONG_FOR_A_FILE_NAME = [("ü" * 101, "text")]


def written_path_mismatches(conn, values, key_as_text=False) -> list:
    """Write a row per value (row trigger) and put one by key (oas_npy_put; the key's value as a
    JSON string with `key_as_text`, else as the JSON of the typed value); the key's segment of
    each path differs from oas_encode_pk_value for the values returned."""
    schema = unique("pkw")
    conn.execute(f"CREATE SCHEMA {schema}; CREATE TYPE {schema}.mood AS ENUM ('happy', 'sad')")
    mismatches = []
    try:
        by_type: dict[str, list[str]] = {}
        for text, ty in values:
            by_type.setdefault(ty, []).append(text)
        for i, (ty, texts) in enumerate(by_type.items()):
            sql_ty = f"{schema}.mood" if ty == "mood" else ty
            table = f"{schema}.t{i}"
            conn.execute(f"CREATE TABLE {table} (k {sql_ty} PRIMARY KEY, a jsonb)")
            conn.execute("SELECT oas.oas_declare_column(%s, 'a', 'npy@file')", [table])
            for text in texts:
                try:
                    filled, expected = conn.execute(
                        f"INSERT INTO {table} VALUES (%s::{sql_ty}, oas.oas_npy('{{1}}'::int4[])) "
                        "RETURNING a->>'path', oas.oas_encode_pk_value(k)", [text]).fetchone()
                    put = conn.execute(
                        f"SELECT oas.oas_npy_put(%s, 'a', jsonb_build_object('k', %s::{sql_ty}{'::text' if key_as_text else ''}), "
                        "oas.oas_npy_from_array('{1}'::int4[]))->>'path'", [table, text]).fetchone()[0]
                except Exception as e:  # noqa: BLE001 (reported with the value)
                    mismatches.append((ty, text, "error", str(e)[:200]))
                    continue
                for how, path in (("row trigger", filled), ("oas_npy_put", put)):
                    got = re.search(r"/k=([^/]*)/a_", path)
                    if got is None or got.group(1) != expected:
                        mismatches.append((ty, text, how, path, expected))
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return mismatches


def test_written_paths_render_keys_as_oas_encode_pk_value(conn):
    """Writes render the row's key in one pass (no SQL call per column): every value above gets
    the same path segment from the row trigger (the row as jsonb), from oas_npy_put (a key given
    as JSON) and from oas_encode_pk_value."""
    values = [v for v in VALUES if v not in LOSSY_AS_JSON + TOO_LONG_FOR_A_FILE_NAME]
    mismatches = written_path_mismatches(conn, values)
    assert not mismatches, mismatches
    print(f"{len(values)} primary-key values rendered in written paths as oas_encode_pk_value renders them")


def test_written_paths_of_keys_json_cannot_carry(conn):
    """The row trigger renders keys from the row (-0, 1.50, 0.00, the largest float stay as
    written); oas_npy_put gets them as JSON strings."""
    mismatches = written_path_mismatches(conn, LOSSY_AS_JSON, key_as_text=True)
    print(*mismatches, sep="\n")
    assert not mismatches, mismatches

def test_written_paths_cast_the_key_to_the_column_type(conn):
    """A key given as JSON is read as its column's type, typmod included (as a cast would)."""
    schema = unique("pkc")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        table = f"{schema}.t"
        conn.execute(f"CREATE TABLE {table} (c char(4), n numeric(6, 2), ts timestamp(0), a jsonb, "
                     "PRIMARY KEY (c, n, ts))")
        conn.execute("SELECT oas.oas_declare_column(%s, 'a', 'npy@file')", [table])
        path = conn.execute(
            "SELECT oas.oas_npy_put(%s, 'a', '{\"c\": \"ab\", \"n\": 1.5, \"ts\": \"2024-01-15 12:30:45.7\"}', "
            "oas.oas_npy_from_array('{1}'::int4[]))->>'path'", [table]).fetchone()[0]
        assert re.search(r"/c=ab  /n=1\.50/ts=2024-01-15T12-30-46/a_", path), path
        missing = sql_error(conn, "SELECT oas.oas_npy_put(%s, 'a', '{\"c\": \"ab\", \"n\": 1}', "
                                  "oas.oas_npy_from_array('{1}'::int4[]))", [table])
        assert missing.sqlstate == "22023" and 'primary-key column "ts"' in str(missing)
        bad = sql_error(conn, "SELECT oas.oas_npy_put(%s, 'a', '{\"c\": \"ab\", \"n\": \"x\", \"ts\": \"2024-01-15\"}', "
                              "oas.oas_npy_from_array('{1}'::int4[]))", [table])
        assert bad.sqlstate == "22P02"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
