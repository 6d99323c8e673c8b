"""Attachments (`<attach>`, `<attach@store>`): DataJoint's `filename\\0contents`, written from SQL
as a file name and bytes and read back as both; DataJoint and SQL each read what the other wrote."""

from __future__ import annotations

import json
import pathlib

import psycopg
import pytest

from conftest import dj_manual, sql_error

dj = pytest.importorskip("datajoint")


def test_pack_and_unpack_in_sql(conn):
    packed = conn.execute("SELECT oas.oas_attach_pack('résumé.pdf', '\\x2550444600'::bytea)").fetchone()[0]
    assert bytes(packed) == "résumé.pdf".encode() + b"\x00" + b"%PDF\x00"
    row = conn.execute("SELECT * FROM oas.oas_attach_unpack(%s)", [packed]).fetchone()
    assert (row[0], bytes(row[1])) == ("résumé.pdf", b"%PDF\x00")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b.txt", "../escape.txt", "/etc/passwd"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(conn, name):
    e = sql_error(conn, "SELECT oas.oas_attach_pack(%s, 'x'::bytea)", [name])
    assert e.sqlstate == "22023" and "file name" in e.diag.message_primary, e
    assert "Path(file).name" in e.diag.message_hint


def test_unpack_refuses_what_datajoint_could_not_have_written(conn):
    # No separator; a name that would make DataJoint's fetch write outside its download folder.
    for value in [b"no separator", b"../../outside\x00data"]:
        e = sql_error(conn, "SELECT * FROM oas.oas_attach_unpack(%s)", [value])
        assert e.sqlstate == "22023", e


@pytest.fixture
def attach_table(dj_connection, dj_schema, request):
    store = request.param
    schema = dj_schema("dja", dj_connection)
    docs = dj_manual(schema, "Docs", f"""
        doc_id : int32
        ---
        small = null : <attach>
        big = null : <attach@{store}>
        """)
    return docs, f'"{schema.database}"."docs"', schema.database, store


@pytest.mark.parametrize("attach_table", ["file", "s3"], indirect=True)
def test_datajoint_and_sql_read_each_others_attachments(conn, attach_table, tmp_path, dj_config, monkeypatch):
    Docs, table, schema, store = attach_table
    monkeypatch.setitem(dj_config, "download_path", str(tmp_path / "downloads"))
    # DataJoint writes from files ...
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_bytes(b"small notes\n")
    (src / "scan.bin").write_bytes(bytes(range(256)) * 40)
    Docs.insert1({"doc_id": 1, "small": str(src / "notes.txt"), "big": str(src / "scan.bin")})
    # ... and SQL reads name and bytes of both.
    small, big = conn.execute(f"SELECT small, big FROM {table} WHERE doc_id = 1").fetchone()
    name, contents = conn.execute("SELECT * FROM oas.oas_attach_unpack(%s)", [small]).fetchone()
    assert (name, bytes(contents)) == ("notes.txt", b"small notes\n")
    name, contents = conn.execute("SELECT * FROM oas.oas_attach_get(%s)", [json.dumps(big)]).fetchone()
    assert (name, bytes(contents)) == ("scan.bin", bytes(range(256)) * 40)

    # SQL writes both from a name and bytes ...
    conn.execute(
        f"INSERT INTO {table} (doc_id, small, big) VALUES "
        f"(2, oas.oas_attach_pack('plan.md', %s), oas.oas_attach_put('data.raw', %s, %s, %s))",
        [b"# plan\n", b"\x00raw\xff" * 1000, store, schema])
    # ... the stored object is DataJoint's own: the same bytes put by DataJoint dedupe to it ...
    ref = conn.execute(f"SELECT big FROM {table} WHERE doc_id = 2").fetchone()[0]
    assert ref["path"].startswith(f"_hash/{schema}/") and ref["store"] == store
    assert ref["size"] == len(b"data.raw\x00" + b"\x00raw\xff" * 1000)
    (src / "data.raw").write_bytes(b"\x00raw\xff" * 1000)
    Docs.insert1({"doc_id": 3, "big": str(src / "data.raw")})
    assert conn.execute(f"SELECT big FROM {table} WHERE doc_id = 3").fetchone()[0] == ref
    # ... an in-table value is the very bytes DataJoint writes for the same file ...
    same = conn.execute("SELECT oas.oas_attach_pack('notes.txt', %s) = %s", [b"small notes\n", small]).fetchone()[0]
    assert same
    # ... and DataJoint fetches the <attach@> file with the name and contents SQL gave. (DataJoint
    # 2.3.5 cannot fetch an in-table <attach> on PostgreSQL at all, its own values included: its
    # decoder calls .index on the memoryview psycopg returns. README: "How pg_oas differs".)
    got = pathlib.Path((Docs & {"doc_id": 2}).fetch1("big"))
    assert (got.name, got.read_bytes()) == ("data.raw", b"\x00raw\xff" * 1000)
    # The ledger tracks the <attach@> references (rows 1 to 3; 2 and 3 share one object).
    refs = conn.execute("SELECT path, refs FROM oas.ledger WHERE table_oid = %s::regclass ORDER BY path",
                        [table]).fetchall()
    assert sorted(r for _, r in refs) == [1, 2]


def test_attach_put_of_null_is_null(conn):
    assert conn.execute("SELECT oas.oas_attach_put('a.txt', NULL)").fetchone()[0] is None


def test_attach_get_checks_the_stored_bytes(conn, store_dir):
    ref = conn.execute("SELECT oas.oas_attach_put('a.txt', 'hello attach'::bytea, 'file', 'public')").fetchone()[0]
    (store_dir / ref["path"]).write_bytes(b"a.txt\x00hellO attach")  # same size, other bytes
    e = sql_error(conn, "SELECT * FROM oas.oas_attach_get(%s)", [json.dumps(ref)])
    assert e.sqlstate == "XX001", e
