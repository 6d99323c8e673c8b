"""One file of an `<object@>` folder, by its path below the folder: read (ranges too) and sized
from SQL, never outside the folder, for folders written from SQL and by the real DataJoint client."""

from __future__ import annotations

import json

import pytest

from conftest import dj_manual, sql_error, unique


@pytest.fixture
def folder_table(conn):
    t = f"public.{unique('fold')}"
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, o jsonb)")
    conn.execute(f"COMMENT ON COLUMN {t}.o IS ':<object@file>:'")
    conn.execute(f"INSERT INTO {t} VALUES (1, oas.oas_object_folder(ARRAY['a.bin', 'sub/b.tif'], %s))",
                 [[b"alpha", b"TIFF" + bytes(range(256))]])
    conn.execute(f"INSERT INTO {t} VALUES (2, oas.oas_object('just a file'::bytea, '.txt'))")
    yield t
    conn.execute(f"DROP TABLE {t}")


def test_a_file_of_a_folder_reads_and_sizes_by_subpath(conn, folder_table):
    ref = json.dumps(conn.execute(f"SELECT o FROM {folder_table} WHERE id = 1").fetchone()[0])
    read = "SELECT oas.oas_object_file_read(%s, %s)"
    assert conn.execute(read, [ref, "a.bin"]).fetchone()[0] == b"alpha"
    assert conn.execute(read, [ref, "sub/b.tif"]).fetchone()[0] == b"TIFF" + bytes(range(256))
    assert conn.execute("SELECT oas.oas_object_file_read(%s, 'sub/b.tif', 4, 3)", [ref]).fetchone()[0] == b"\x00\x01\x02"
    assert conn.execute("SELECT oas.oas_object_file_read(%s, 'sub/b.tif', 258)", [ref]).fetchone()[0] == b"\xfe\xff"
    assert conn.execute("SELECT oas.oas_object_file_size(%s, 'sub/b.tif')", [ref]).fetchone()[0] == 260
    assert conn.execute("SELECT oas.oas_object_file_read(NULL, 'a.bin')").fetchone()[0] is None


@pytest.mark.parametrize("subpath", ["", "../x", "sub/../../../etc/passwd", "/etc/passwd", "sub//b.tif", "./a.bin"])
def test_a_subpath_never_leaves_the_folder(conn, folder_table, subpath):
    ref = json.dumps(conn.execute(f"SELECT o FROM {folder_table} WHERE id = 1").fetchone()[0])
    e = sql_error(conn, "SELECT oas.oas_object_file_read(%s, %s)", [ref, subpath])
    assert e.sqlstate == "22023" and "inside folder" in e.diag.message_primary, e


def test_errors_name_what_went_wrong(conn, folder_table):
    folder, file = (json.dumps(r[0]) for r in conn.execute(f"SELECT o FROM {folder_table} ORDER BY id"))
    e = sql_error(conn, "SELECT oas.oas_object_file_size(%s, 'a.bin')", [file])
    assert e.sqlstate == "22023" and "not a folder object" in e.diag.message_primary, e
    e = sql_error(conn, "SELECT oas.oas_object_file_read(%s, 'missing.bin')", [folder])
    assert e.sqlstate == "58P01", e
    e = sql_error(conn, "SELECT oas.oas_object_file_read(%s, 'a.bin', 99)", [folder])
    assert e.sqlstate == "22023" and "beyond the end" in e.diag.message_primary, e
    e = sql_error(conn, "SELECT oas.oas_object_file_read(%s, NULL)", [folder])
    assert e.sqlstate == "22004", e


@pytest.mark.parametrize("store", ["file", "s3"])
def test_sql_reads_the_files_of_a_folder_datajoint_wrote(conn, dj_connection, dj_schema, tmp_path, store):
    schema = dj_schema("djf", dj_connection)
    Run = dj_manual(schema, "Run", f"""
        run_id : int32
        ---
        results : <object@{store}>
        """)
    src = tmp_path / "results"
    (src / "plots").mkdir(parents=True)
    (src / "summary.csv").write_bytes(b"a,b\n1,2\n")
    (src / "plots" / "fig 1.png").write_bytes(b"\x89PNG" + bytes(1000))
    Run.insert1({"run_id": 1, "results": str(src)})
    ref = conn.execute(f'SELECT results FROM "{schema.database}"."run"').fetchone()[0]
    assert ref["is_dir"] is True
    ref = json.dumps(ref)
    assert conn.execute("SELECT oas.oas_object_file_read(%s, 'summary.csv')", [ref]).fetchone()[0] == b"a,b\n1,2\n"
    assert conn.execute("SELECT oas.oas_object_file_size(%s, 'plots/fig 1.png')", [ref]).fetchone()[0] == 1004
