"""NumPy arrays DataJoint writes (<npy@>), read through SQL: metadata with no store I/O, slices
that fetch only their bytes and equal NumPy's, ranged reads of any object, and clear errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from conftest import connect, dj_manual, sql_error, unique

dj = pytest.importorskip("datajoint")

ARRAYS = {
    1: np.arange(2000 * 500, dtype=np.float32).reshape(2000, 500),
    2: np.asfortranarray(np.arange(4 * 5 * 6, dtype=">i8").reshape(4, 5, 6)),
    3: np.array([True, False, True]),
    4: (np.arange(12) * (1 + 2j)).astype(np.complex64).reshape(3, 4),
    5: np.array(3.5),
}
SLICES = ["", "7", "-1", "1:3", "::-2", "..., 1", "0, ::2", ":, 3", "::10, 10:20", "...", "1:1"]


@pytest.fixture
def npy_table(dj_connection, dj_schema, request):
    schema = dj_schema("djnpy", dj_connection)
    arrays = dj_manual(schema, "Arrays", f"""
        array_id : int32
        ---
        arr : <npy@{request.param}>
        """)
    arrays.insert([{"array_id": k, "arr": v} for k, v in ARRAYS.items()])
    return f'"{schema.database}".arrays'


def load(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b))


@pytest.mark.parametrize("npy_table", ["file", "s3"], indirect=True)
def test_slices_of_datajoint_arrays_equal_numpy(conn, npy_table):
    checked = 0
    for array_id, a in ARRAYS.items():
        ref = conn.execute(f"SELECT arr FROM {npy_table} WHERE array_id = %s", [array_id]).fetchone()[0]
        # Metadata from the JSON alone.
        shape, dtype, ndim, size, nbytes = conn.execute(
            "SELECT oas.oas_npy_shape(%s), oas.oas_npy_dtype(%s), oas.oas_npy_ndim(%s), oas.oas_npy_size(%s), oas.oas_npy_nbytes(%s)",
            [json.dumps(ref)] * 5).fetchone()
        assert (tuple(shape), dtype, ndim, size, nbytes) == (a.shape, str(a.dtype), a.ndim, a.size, a.nbytes)
        for expr in SLICES:
            try:
                expected = a[eval(f"np.s_[{expr}]")] if expr else a[...]
            except IndexError:
                err = sql_error(conn, "SELECT oas.oas_npy_slice(%s, %s)", [json.dumps(ref), expr])
                assert err.sqlstate == "22023", (array_id, expr, str(err))
                continue
            got = load(conn.execute("SELECT oas.oas_npy_slice(%s, %s)", [json.dumps(ref), expr], binary=True).fetchone()[0])
            expected = np.asarray(expected)
            assert got.dtype == expected.dtype and got.shape == expected.shape, (array_id, expr)
            assert np.array_equal(got, expected), (array_id, expr)
            # The companion: a PostgreSQL array with the slice's dimensions (numeric dtypes).
            if expected.dtype.kind in "biuf":
                arr = conn.execute("SELECT oas.oas_npy_slice_array(%s, %s)", [json.dumps(ref), expr]).fetchone()[0]
                if expected.size == 0:
                    assert arr == [], (array_id, expr)
                else:
                    assert np.array_equal(np.array(arr, dtype=float).reshape(expected.shape or (1,)),
                                          expected.astype(float).reshape(expected.shape or (1,))), (array_id, expr)
            else:
                assert sql_error(conn, "SELECT oas.oas_npy_slice_array(%s, %s)", [json.dumps(ref), expr]).sqlstate == "22023"
            checked += 1
    print(f"{checked} slices through SQL equal NumPy's")
    assert checked > 30


@pytest.mark.parametrize("npy_table", ["s3"], indirect=True)
def test_a_slice_fetches_only_its_bytes(conn, npy_table):
    ref = json.dumps(conn.execute(f"SELECT arr FROM {npy_table} WHERE array_id = 1").fetchone()[0])
    stats = lambda expr: conn.execute("SELECT bytes_needed, bytes_fetched, ranges, shape FROM oas.oas_npy_slice_stats(%s, %s)",
                                      [ref, expr]).fetchone()
    plan = lambda expr: conn.execute("SELECT plan, requests, merge_gap FROM oas.oas_npy_slice_stats(%s, %s)",
                                     [ref, expr]).fetchone()
    # 0: exactly the bytes needed, whatever the cost model would choose.
    conn.execute("SET oas.npy_merge_gap = 0")
    assert stats("7") == (2000, 2000, 1, [500])              # one row: one range, its own bytes
    assert stats("100:300") == (400_000, 400_000, 1, [200, 500])
    assert stats(":, 3") == (8000, 8000, 2000, [2000])      # a column: one 4-byte range per row
    assert stats("") == (4_000_000, 4_000_000, 1, [2000, 500])
    assert plan(":, 3") == ("exact", 2000, 0)
    # Trading bytes for requests: rows are 2,000 bytes apart, so a 4 KiB gap fetches the column
    # as one range from its first element to its last.
    conn.execute("SET oas.npy_merge_gap = 4096")
    assert stats(":, 3") == (8000, 1999 * 2000 + 4, 1, [2000])
    assert plan(":, 3") == ("sequential", 1, 4096)
    got = load(conn.execute("SELECT oas.oas_npy_slice(%s, ':, 3')", [ref], binary=True).fetchone()[0])
    assert np.array_equal(got, ARRAYS[1][:, 3])
    conn.execute("RESET oas.npy_merge_gap")
    # By default the cost model chooses: over HTTP, 2,000 requests of 4 bytes cost far more than
    # reading the 4 MB between them; rows and blocks are one range of their own bytes either way.
    assert conn.execute("SHOW oas.npy_merge_gap").fetchone()[0] == "-1"
    assert stats(":, 3") == (8000, 1999 * 2000 + 4, 1, [2000])
    assert plan(":, 3")[0] == "sequential"
    assert stats("7") == (2000, 2000, 1, [500])
    assert stats("100:300") == (400_000, 400_000, 1, [200, 500])
    assert plan("1:1") == ("nothing", 0, plan("7")[2])


# Arrays for the fetch plans: C order, large enough that whole ranges are read in several parts
# (8 MiB) and a column is hundreds of small ranges; and a Fortran-order one.
PLAN_ARRAYS = {
    1: np.arange(300 * 200 * 100, dtype="<f4").reshape(300, 200, 100),
    2: np.asfortranarray(np.arange(40 * 30 * 20, dtype=">i2").reshape(40, 30, 20)),
}
PLAN_SLICES = [":, 5, 7", "::70, ::-30, 1::9", "4, 5, 6", "3:3", "::30, ..., 50", "", "1:299", "::-1, 0", "2, ::8, ::2"]


@pytest.mark.parametrize("store", ["file", "s3"])
def test_slices_are_the_same_bytes_whichever_fetch_plan(conn, dj_connection, dj_schema, store):
    """Exact ranges, coalesced ranges, one sequential read in parts, and the cost model's own
    choice: every slice comes back byte for byte the same and equal to NumPy's."""
    schema = dj_schema("djnpyplan", dj_connection)
    table = dj_manual(schema, "Arrays", f"""
        array_id : int32
        ---
        arr : <npy@{store}>
        """)
    table.insert([{"array_id": k, "arr": v} for k, v in PLAN_ARRAYS.items()])
    kinds = set()
    for array_id, a in PLAN_ARRAYS.items():
        ref = json.dumps(conn.execute(f'SELECT arr FROM "{schema.database}".arrays WHERE array_id = %s',
                                      [array_id]).fetchone()[0])
        for expr in PLAN_SLICES:
            try:
                # (a NumPy scalar of one element comes in native byte order: back to the array's)
                expected = np.asarray(a[eval(f"np.s_[{expr}]")] if expr else a[...], dtype=a.dtype)
            except IndexError:
                assert sql_error(conn, "SELECT oas.oas_npy_slice(%s, %s)", [ref, expr]).sqlstate == "22023"
                continue
            results = {}
            for gap in ["-1", "0", "100", "5000", "1000000000"]:
                conn.execute(f"SET oas.npy_merge_gap = {gap}")
                needed, fetched, ranges, requests, kind, merge_gap = conn.execute(
                    "SELECT bytes_needed, bytes_fetched, ranges, requests, plan, merge_gap"
                    " FROM oas.oas_npy_slice_stats(%s, %s)", [ref, expr]).fetchone()
                kinds.add(kind)
                assert needed == expected.nbytes, (array_id, expr, gap)
                assert requests >= ranges and (ranges == 0) == (needed == 0), (array_id, expr, gap)
                if gap != "-1":
                    assert merge_gap == int(gap)
                if gap == "0":
                    assert (kind, fetched) == ("exact" if needed else "nothing", needed), (array_id, expr)
                if gap == "1000000000" and needed:
                    assert ranges == 1 and kind in ("exact", "sequential"), (array_id, expr)
                data = conn.execute("SELECT oas.oas_npy_slice(%s, %s)", [ref, expr], binary=True).fetchone()[0]
                got = load(data)
                assert got.dtype == expected.dtype and got.shape == expected.shape, (array_id, expr, gap)
                assert np.array_equal(got, expected), (array_id, expr, gap)
                results[gap] = bytes(data)
                if expected.dtype.kind in "iuf" and 0 < expected.size <= 100_000:
                    arr = conn.execute("SELECT oas.oas_npy_slice_array(%s, %s)", [ref, expr]).fetchone()[0]
                    assert np.array_equal(np.array(arr, dtype=float).reshape(expected.shape or (1,)),
                                          expected.astype(float).reshape(expected.shape or (1,))), (array_id, expr, gap)
            assert len(set(results.values())) == 1, (array_id, expr)
    conn.execute("RESET oas.npy_merge_gap")
    assert kinds == {"exact", "coalesced", "sequential", "nothing"}, kinds


@pytest.mark.parametrize("store", ["file", "s3"])
def test_the_cost_model_starts_per_kind_of_store_and_learns(conn, dj_connection, dj_schema, store):
    schema = dj_schema("djnpycost", dj_connection)
    table = dj_manual(schema, "Arrays", f"""
        array_id : int32
        ---
        arr : <npy@{store}>
        """)
    table.insert1({"array_id": 1, "arr": PLAN_ARRAYS[1]})
    ref = json.dumps(conn.execute(f'SELECT arr FROM "{schema.database}".arrays').fetchone()[0])
    gap = lambda: conn.execute("SELECT merge_gap FROM oas.oas_npy_slice_stats(%s, ':, 5, 7')", [ref]).fetchone()[0]
    # A new session starts from the defaults of its kind of store: a file read costs a system
    # call, an HTTP request far more, so the break-even gap is much larger over HTTP.
    start = gap()
    assert start == {"file": 10_000, "s3": 500_000}[store]
    for expr in [":, 5, 7", "1:299", "::70, ::-30, 1::9", ":, 5, 7"]:
        conn.execute("SELECT oas.oas_npy_slice(%s, %s)", [ref, expr]).fetchone()
    # What the reads took moved the estimates (this session's only).
    assert gap() != start
    with connect() as other:
        assert other.execute("SELECT merge_gap FROM oas.oas_npy_slice_stats(%s, '')", [ref]).fetchone()[0] == start


@pytest.mark.parametrize("npy_table", ["file"], indirect=True)
def test_damaged_arrays_and_bad_slices_are_clear_errors(conn, npy_table, store_dir):
    ref = conn.execute(f"SELECT arr FROM {npy_table} WHERE array_id = 3").fetchone()[0]
    for expr, message in [("::0", "slice step cannot be zero"), ("5", "out of bounds"), ("1, 2", "too many indices"), ("x", "not an integer")]:
        err = sql_error(conn, "SELECT oas.oas_npy_slice(%s, %s)", [json.dumps(ref), expr])
        assert err.sqlstate == "22023" and message in str(err), (expr, str(err))
    # Truncate the file behind the database's back (a new reference avoids the cached header).
    big = conn.execute(f"SELECT arr FROM {npy_table} WHERE array_id = 1").fetchone()[0]
    path = store_dir / big["path"]
    path.write_bytes(path.read_bytes()[:1000])
    err = sql_error(conn, "SELECT oas.oas_npy_slice(%s, '0')", [json.dumps(big)])
    assert err.sqlstate == "XX001" and "truncated" in str(err)
    path.write_bytes(b"not an npy file at all")
    with_new_path = dict(ref, path=big["path"])
    with psycopg_conn() as fresh:
        err = sql_error(fresh, "SELECT oas.oas_npy_slice(%s, '0')", [json.dumps(with_new_path)])
        assert err.sqlstate == "XX001" and "magic" in str(err)
    path.unlink()
    with psycopg_conn() as fresh:
        assert sql_error(fresh, "SELECT oas.oas_npy_slice(%s)", [json.dumps(with_new_path)]).sqlstate == "58P01"


def psycopg_conn():
    from conftest import connect

    return connect()


def test_ranged_reads_of_any_object(conn):
    data = bytes(range(256)) * 40
    ref = json.dumps(conn.execute("SELECT oas.oas_hash_put(%b, 's3', 'ranged')", [data], binary=True).fetchone()[0])
    read = lambda off, n: conn.execute("SELECT oas.oas_read(%s, %s, %s)", [ref, off, n], binary=True).fetchone()[0]
    assert read(0, 10) == data[:10]
    assert read(1000, 500) == data[1000:1500]
    assert read(10_000, 1000) == data[10_000:]       # clamped at the end
    assert read(len(data), 5) == b""
    assert conn.execute("SELECT oas.oas_object_size(%s)", [ref]).fetchone()[0] == len(data)
    assert sql_error(conn, "SELECT oas.oas_read(%s, %s, 1)", [ref, len(data) + 1]).sqlstate == "22023"
    assert sql_error(conn, "SELECT oas.oas_read(%s, -1, 1)", [ref]).sqlstate == "22023"


@pytest.mark.parametrize("literal,dtype", [
    ("'{{1,2,3},{4,5,6}}'::int4[]", "<i4"),
    ("'{1.5,-2.25,1e300}'::float8[]", "<f8"),
    ("'{{{1},{2}},{{3},{4}}}'::int8[]", "<i8"),
    ("'{0.1,2}'::float4[]", "<f4"),
    ("'{-32768,32767}'::int2[]", "<i2"),
    ("'{t,f,t}'::bool[]", "|b1"),
    ("'[2:3]={7,8}'::int4[]", "<i4"),
    ("'{}'::float8[]", "<f8"),
])
def test_arrays_become_npy_exactly_as_np_save_writes_them(conn, literal, dtype):
    got = conn.execute(f"SELECT oas.oas_npy_from_array({literal})", binary=True).fetchone()[0]
    py = conn.execute(f"SELECT {literal}").fetchone()[0]
    expected = np.array(py, dtype=dtype) if py else np.zeros((0,), dtype=dtype)
    buf = io.BytesIO()
    np.save(buf, expected)
    assert got == buf.getvalue()
    # End to end in SQL: store the array, then slice it without reading it whole.
    if expected.ndim >= 1 and expected.shape[0] > 1:
        sliced = conn.execute(f"SELECT oas.oas_npy_slice(oas.oas_hash_put(oas.oas_npy_from_array({literal}), 'file', 'arrays'), '1:')",
                              binary=True).fetchone()[0]
        assert np.array_equal(load(sliced), expected[1:])


def test_arrays_that_cannot_become_npy(conn):
    assert sql_error(conn, "SELECT oas.oas_npy_from_array('{1,NULL}'::int4[])").sqlstate == "22023"
    err = sql_error(conn, "SELECT oas.oas_npy_from_array('{a,b}'::text[])")
    assert err.sqlstate == "22023" and "arrays of type text cannot become NumPy arrays" in str(err)


@pytest.mark.parametrize("store", ["file", "s3"])
def test_arrays_written_from_sql_are_datajoints_own(conn, dj_connection, store):
    """An <npy@> value written with oas_npy_put lands where DataJoint itself would put it (but
    for the random token) and DataJoint reads it as its own."""
    import re

    schema = dj.Schema(unique("djput"), connection=dj_connection)

    @schema
    class Session(dj.Manual):
        definition = f"""
        subject : int32
        session_date : date
        ---
        traces : <npy@{store}>
        """

    table = f'"{schema.database}".session'
    expected = np.array([[1.5, 2.5], [3.5, 4.5]])
    conn.execute(
        f"INSERT INTO {table} (subject, session_date, traces) VALUES (7, '2024-01-15', "
        f"oas.oas_npy_put(%s, 'traces', %s, oas.oas_npy_from_array('{{{{1.5,2.5}},{{3.5,4.5}}}}'::float8[])))",
        [table, json.dumps({"subject": 7, "session_date": "2024-01-15"})])
    ref = conn.execute(f"SELECT traces FROM {table}").fetchone()[0]
    assert (ref["dtype"], ref["shape"], ref["store"]) == ("float64", [2, 2], store)
    # DataJoint writes the same key's array, and both paths differ only in the token.
    Session.insert1({"subject": 8, "session_date": "2024-01-15", "traces": expected})
    dj_path = conn.execute(f"SELECT traces->>'path' FROM {table} WHERE subject = 8").fetchone()[0]
    untokened = lambda p: re.sub(r"_[A-Za-z0-9_-]{8}\.npy$", "_TOKEN.npy", p)
    assert untokened(ref["path"]) == untokened(dj_path).replace("subject=8", "subject=7")
    assert re.fullmatch(rf"_schema/{schema.database}/session/subject=7/session_date=2024-01-15/traces_[A-Za-z0-9_-]{{8}}\.npy",
                        ref["path"]), ref["path"]
    # DataJoint reads what SQL wrote; pg_oas slices it; oas_verify finds nothing wrong.
    fetched = (Session & {"subject": 7}).fetch1("traces")
    assert np.array_equal(np.asarray(fetched), expected)
    assert np.array_equal(load(conn.execute("SELECT oas.oas_npy_slice(traces, '1') FROM " + table + " WHERE subject = 7",
                                            binary=True).fetchone()[0]), expected[1])
    assert conn.execute("SELECT count(*) FROM oas.oas_verify() WHERE schema_name = %s", [schema.database]).fetchone()[0] == 0
    # Misuse: a key without every primary-key column, a column that is not <npy@>, bytes that are not .npy.
    one = "oas.oas_npy_from_array('{1}'::int4[])"
    assert sql_error(conn, f"SELECT oas.oas_npy_put(%s, 'traces', '{{\"subject\": 1}}', {one})", [table]).sqlstate == "22023"
    assert "not an <npy@> column" in str(sql_error(conn, f"SELECT oas.oas_npy_put(%s, 'subject', '{{}}', {one})", [table]))
    assert sql_error(conn, "SELECT oas.oas_npy_put(%s, 'traces', '{\"subject\": 1, \"session_date\": \"2024-01-01\"}', 'nope'::bytea)",
                     [table]).sqlstate == "22023"
    schema.drop(prompt=False)


def test_slice_arrays_keep_dimensions_and_exact_values(conn):
    """oas_npy_slice_array builds the float8[] directly: dimensions, bounds and every value as
    the array holds it (NaN, infinities, -0, the smallest subnormal), 0-d and empty results,
    Fortran order, and PostgreSQL's limit of 6 dimensions."""
    schema = unique("sla")
    table = f"{schema}.t"
    conn.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {table} (id int PRIMARY KEY, a jsonb)")
    try:
        conn.execute("SELECT oas.oas_declare_column(%s, 'a', 'npy@file')", [table])
        arrays = {
            1: np.array([[0.1, -0.0, np.inf], [-np.inf, np.nan, 5e-324]]),
            2: np.array(2.5),
            3: np.zeros((0, 3), dtype=np.float32),
            4: np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
            5: np.zeros((1,) * 7),
            6: np.array([2**53, -(2**53)], dtype=np.int64),
            7: np.array([2**53 + 1], dtype=np.int64),
        }
        for i, a in arrays.items():
            buf = io.BytesIO()
            np.save(buf, a)
            conn.execute(f"INSERT INTO {table} VALUES (%s, oas.oas_npy(%s::bytea))", [i, buf.getvalue()])

        def dims_and_text(i, expr=""):
            return conn.execute(f"SELECT array_dims(s), s::text FROM {table}, oas.oas_npy_slice_array(a, %s) s "
                                "WHERE id = %s", [expr, i]).fetchone()

        assert dims_and_text(1) == ("[1:2][1:3]", "{{0.1,-0,Infinity},{-Infinity,NaN,5e-324}}")
        assert dims_and_text(1, "1, ::-1") == ("[1:3]", "{5e-324,NaN,-Infinity}")
        assert dims_and_text(1, "0, 2") == ("[1:1]", "{Infinity}")  # 0-d: one element
        assert dims_and_text(1, "0:0") == (None, "{}")
        assert dims_and_text(2) == ("[1:1]", "{2.5}")
        assert dims_and_text(3) == (None, "{}")
        assert dims_and_text(4) == ("[1:2][1:3]", "{{0,1,2},{3,4,5}}")
        assert dims_and_text(4, ":, 1") == ("[1:2]", "{1,4}")
        assert dims_and_text(5, "0") == ("[1:1]" * 6, "{{{{{{0}}}}}}")
        assert sql_error(conn, f"SELECT oas.oas_npy_slice_array(a) FROM {table} WHERE id = 5").sqlstate == "54000"
        assert dims_and_text(6) == ("[1:2]", "{9.007199254740992e+15,-9.007199254740992e+15}")
        err = sql_error(conn, f"SELECT oas.oas_npy_slice_array(a) FROM {table} WHERE id = 7")
        assert err.sqlstate == "22023" and "9007199254740993" in str(err)
        assert conn.execute("SELECT oas.oas_npy_slice_array(NULL)").fetchone()[0] is None
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
