"""Writing <npy@> and <object@> values from plain SQL: INSERT ... VALUES (..., oas.oas_npy(...))
stores the value at the path DataJoint builds from the row's own key, and DataJoint 2.3.5 reads
it as its own. Values over 1 GB go up in parts."""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pytest

from conftest import connect, dj_manual, sql_error, unique

dj = pytest.importorskip("datajoint")


@pytest.fixture
def dj_table(dj_connection, dj_schema, request):
    store = request.param
    schema = dj_schema("djw", dj_connection)
    scan = dj_manual(schema, "Scan", f"""
        subject : int32
        taken : datetime
        ---
        traces : <npy@{store}>
        movie = null : <object@{store}>
        """)
    return scan, f'"{schema.database}"."scan"', store


@pytest.mark.parametrize("dj_table", ["file", "s3"], indirect=True)
def test_insert_values_fills_datajoints_reference_from_the_row_key(conn, dj_table):
    Scan, table, store = dj_table
    expected = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    conn.execute(
        f"INSERT INTO {table} (subject, taken, traces, movie) VALUES "
        f"(7, '2024-01-15 12:30:45', oas.oas_npy(%s::int2[]), oas.oas_object(%b, 'tif'))",
        [expected.tolist(), b"TIFF bytes"])
    traces, movie = conn.execute(f"SELECT traces, movie FROM {table}").fetchone()
    db = table.split(".")[0].strip('"')
    assert re.fullmatch(rf"_schema/{db}/scan/subject=7/taken=2024-01-15T12-30-45/traces_[A-Za-z0-9_-]{{8}}\.npy",
                        traces["path"]), traces
    assert (traces["store"], traces["dtype"], traces["shape"]) == (store, "int16", [2, 3, 4])
    assert set(movie) == {"path", "store", "size", "ext", "is_dir", "item_count", "timestamp"}
    assert (movie["size"], movie["ext"], movie["is_dir"]) == (10, ".tif", False)
    assert movie["path"].endswith(".tif") and "/movie_" in movie["path"]
    # DataJoint reads both as its own.
    row = (Scan & {"subject": 7}).fetch1()
    assert np.array_equal(np.asarray(row["traces"]), expected)
    assert row["movie"].read() == b"TIFF bytes"
    # The stored array is exactly what np.save writes.
    buf = io.BytesIO()
    np.save(buf, expected)
    assert conn.execute("SELECT oas.oas_read(%s, 0, 1000000)", [json.dumps(traces)], binary=True).fetchone()[0] == buf.getvalue()
    # The ledger saw the final references, not the pending values.
    paths = {r[0] for r in conn.execute("SELECT path FROM oas.ledger WHERE table_oid = %s::regclass", [table])}
    assert paths == {traces["path"], movie["path"]}
    # UPDATE writes a new token path; the old object stays for the collector.
    conn.execute(f"UPDATE {table} SET traces = oas.oas_npy(oas.oas_npy_from_array('{{1.0}}'::float4[]))")
    new = conn.execute(f"SELECT traces FROM {table}").fetchone()[0]
    assert new["path"] != traces["path"] and new["shape"] == [1]
    assert conn.execute("SELECT oas.oas_check_reference(%s, false)", [json.dumps(traces)]).fetchone()[0] is None
    assert conn.execute("SELECT count(*) FROM oas.oas_verify() WHERE schema_name = %s", [db]).fetchone()[0] == 0


@pytest.mark.parametrize("dj_table", ["file"], indirect=True)
def test_folder_objects_with_datajoints_manifest(conn, dj_table, store_dir):
    Scan, table, store = dj_table
    files = {"frame0.tif": b"a" * 10, "sub/frame1.tif": b"bb", "notes é.txt": b"x"}
    conn.execute(
        f"INSERT INTO {table} VALUES (1, '2024-01-01', oas.oas_npy('{{1}}'::int4[]), oas.oas_object_folder(%s, %s))",
        [list(files), list(files.values())])
    movie = conn.execute(f"SELECT movie FROM {table}").fetchone()[0]
    assert (movie["is_dir"], movie["item_count"], movie["size"], movie["ext"]) == (True, 3, 13, None)
    manifest = json.loads((store_dir / (movie["path"] + ".manifest.json")).read_text())
    assert sorted((f["path"], f["size"]) for f in manifest["files"]) == sorted((k, len(v)) for k, v in files.items())
    assert (manifest["total_size"], manifest["item_count"]) == (13, 3)
    ref = (Scan & {"subject": 1}).fetch1("movie")
    assert sorted(ref.listdir()) == sorted(["frame0.tif", "sub", "notes é.txt"])
    with ref.open("sub/frame1.tif") as f:
        assert f.read() == b"bb"
    assert conn.execute("SELECT count(*) FROM oas.oas_verify()").fetchone()[0] == 0
    listed = conn.execute("SELECT path, size FROM oas.oas_object_list(%s)", [json.dumps(movie)]).fetchall()
    assert listed == sorted((k, len(v)) for k, v in files.items())


@pytest.mark.parametrize("dj_table", ["file"], indirect=True)
def test_bad_values_are_refused_and_nothing_is_stored(conn, dj_table):
    _, table, _ = dj_table
    # A NumPy value in an <object@> column, and the other way round.
    e = sql_error(conn, f"INSERT INTO {table} VALUES (1, '2024-01-01', oas.oas_object('x'::bytea), NULL)")
    assert e.sqlstate == "22023" and "<npy@>" in str(e)
    e = sql_error(conn, f"INSERT INTO {table} VALUES (1, '2024-01-01', oas.oas_npy('{{1}}'::int4[]), oas.oas_npy('{{1}}'::int4[]))")
    assert e.sqlstate == "22023"
    # Not a .npy file; a truncated one; a folder with a file twice, a NULL file or an escaping name.
    assert sql_error(conn, "SELECT oas.oas_npy('not npy'::bytea)").sqlstate == "22023"
    npy = conn.execute("SELECT oas.oas_npy_from_array('{1,2,3}'::int8[])", binary=True).fetchone()[0]
    assert "truncated" in str(sql_error(conn, "SELECT oas.oas_npy(%b)", [npy[:-3]]))
    assert sql_error(conn, "SELECT oas.oas_object_folder(ARRAY['a','a'], ARRAY['x'::bytea,'y'])").sqlstate == "22023"
    assert sql_error(conn, "SELECT oas.oas_object_folder(ARRAY['a'], ARRAY[NULL::bytea])").sqlstate == "22023"
    assert sql_error(conn, "SELECT oas.oas_object_folder(ARRAY['../a'], ARRAY['x'::bytea])").sqlstate == "22023"
    # A pending value is used once, in its own transaction.
    pending = conn.execute("SELECT oas.oas_npy('{1}'::int4[])").fetchone()[0]
    e = sql_error(conn, f"INSERT INTO {table} VALUES (2, '2024-01-01', %s, NULL)", [json.dumps(pending)])
    assert e.sqlstate == "22023" and "not known" in str(e)
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


@pytest.mark.parametrize("dj_table", ["file"], indirect=True)
def test_numeric_arrays_are_stored_as_numpy_stores_python_floats(conn, dj_table):
    """The README's own example: ARRAY[[1.5, 2.5], [3.5, 4.5]] is numeric[], and becomes float64
    exactly as np.save writes np.array([[1.5, 2.5], [3.5, 4.5]]); 0.1 is the nearest double, as
    a Python float. Values float64 cannot hold, or integers beyond 2^53 it would round, are
    refused with a hint at the cast."""
    Scan, table, _ = dj_table
    conn.execute(f"INSERT INTO {table} (subject, taken, traces) VALUES "
                 "(1, '2024-01-15', oas.oas_npy(ARRAY[[1.5, 2.5], [3.5, 4.5]]))")
    traces = conn.execute(f"SELECT traces FROM {table}").fetchone()[0]
    assert (traces["dtype"], traces["shape"]) == ("float64", [2, 2])
    expected = np.array([[1.5, 2.5], [3.5, 4.5]])
    assert np.array_equal(np.asarray((Scan & {"subject": 1}).fetch1("traces")), expected)
    for literal, values in [
        ("ARRAY[[1.5, 2.5], [3.5, 4.5]]", [[1.5, 2.5], [3.5, 4.5]]),
        ("ARRAY[0.1, -2, 1e-300, 9007199254740992, 'NaN', 'Infinity']::numeric[]",
         [0.1, -2.0, 1e-300, 2.0**53, float("nan"), float("inf")]),
        ("'{}'::numeric[]", []),
    ]:
        buf = io.BytesIO()
        np.save(buf, np.array(values, dtype=np.float64))
        got = conn.execute(f"SELECT oas.oas_npy_from_array({literal})", binary=True).fetchone()[0]
        assert got == buf.getvalue(), literal
    for value in ["9007199254740993", "-9007199254740992.5", "1e400", "1e-400"]:
        e = sql_error(conn, f"SELECT oas.oas_npy(ARRAY[1, {value}::numeric])")
        assert e.sqlstate == "22023" and "::float8[]" in (e.diag.message_hint or ""), (value, e)
    # The cast the hint names keeps every value exactly, or rounds it, as asked.
    got = conn.execute("SELECT oas.oas_npy_from_array(ARRAY[9007199254740993]::bigint[])", binary=True).fetchone()[0]
    assert np.load(io.BytesIO(got)).tolist() == [2**53 + 1]


@pytest.mark.parametrize("store", ["file", "s3"])
def test_values_over_one_gigabyte_go_up_in_parts(conn, store, store_dir, s3fs_client, servers):
    """A 1.1 GB float32 array uploaded in 64 MiB parts: the backend's memory stays at a few parts,
    and the array is sliceable like any other."""
    schema = unique("big")
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, arr jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'arr', %s)", [f"{schema}.t", f"npy@{store}"])
    n = 290 * (1 << 20)  # float32 elements: 1.16 GB of data
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    part_elems = 16 << 20  # 64 MiB
    with connect() as up:
        pid = up.execute("SELECT pg_backend_pid()").fetchone()[0]
        uid = up.execute("SELECT oas.oas_upload_begin(%s, 'arr', '{\"id\": 1}')", [f"{schema}.t"]).fetchone()[0]
        total = up.execute("SELECT oas.oas_upload_part(%s, %b)", [uid, header.getvalue()]).fetchone()[0]
        digest = hashlib.md5(header.getvalue())
        for start in range(0, n, part_elems):
            chunk = np.arange(start, min(n, start + part_elems), dtype=np.int64).astype(np.float32).tobytes()
            digest.update(chunk)
            total = up.execute("SELECT oas.oas_upload_part(%s, %b)", [uid, chunk]).fetchone()[0]
        assert total == len(header.getvalue()) + 4 * n > (1 << 30)
        ref = up.execute("SELECT oas.oas_upload_finish(%s)", [uid]).fetchone()[0]
        hwm_kib = int(next(ln.split()[1] for ln in open(f"/proc/{pid}/status") if ln.startswith("VmHWM")))
        up.execute(f"INSERT INTO {schema}.t VALUES (1, %s)", [json.dumps(ref)])
    print(f"\n{store}: 1.16 GB in 64 MiB parts, backend peak RSS {hwm_kib / 1024:.0f} MiB")
    assert hwm_kib < 600 * 1024, hwm_kib
    assert (ref["dtype"], ref["shape"]) == ("float32", [n])
    assert conn.execute("SELECT oas.oas_object_size(%s)", [json.dumps(ref)]).fetchone()[0] == total
    got = conn.execute(f"SELECT oas.oas_npy_slice(arr, '-3:') FROM {schema}.t", binary=True).fetchone()[0]
    assert np.array_equal(np.load(io.BytesIO(got)), np.arange(n - 3, n, dtype=np.int64).astype(np.float32))
    # An upload that does not add up to its header is refused; an unknown id is an error.
    uid = conn.execute("SELECT oas.oas_upload_begin(%s, 'arr', '{\"id\": 2}')", [f"{schema}.t"]).fetchone()[0]
    conn.execute("SELECT oas.oas_upload_part(%s, %b)", [uid, header.getvalue()])
    assert "header describes" in str(sql_error(conn, "SELECT oas.oas_upload_finish(%s)", [uid]))
    assert sql_error(conn, "SELECT oas.oas_upload_part('nope', 'x'::bytea)").sqlstate == "22023"
    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    # Give the disk back.
    if store == "file":
        (store_dir / ref["path"]).unlink()
    else:
        s3fs_client.rm_file(f"{servers['OAS_S3_BUCKET']}/pytest/{ref['path']}")
