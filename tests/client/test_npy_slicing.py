"""pg_oas's .npy slicing (oas_core::npy) against NumPy's own results.

Every case writes an array with np.save, slices it with the core's planner (through the
npy_slice example, which reads only the planned byte ranges) and compares the result with
NumPy's `a[...]` of the same expression: values, dtype, shape. Malformed input must fail with a
message, never crash.
"""

from __future__ import annotations

import io
import pathlib
import random
import subprocess

import numpy as np
import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def slicer() -> str:
    subprocess.run(["cargo", "build", "-q", "-p", "oas_core", "--example", "npy_slice"], cwd=ROOT, check=True)
    return str(ROOT / "target/debug/examples/npy_slice")


def run(slicer: str, path: pathlib.Path, expr: str) -> subprocess.CompletedProcess:
    return subprocess.run([slicer, str(path), expr], capture_output=True)


def random_expr(rng: random.Random, shape: tuple[int, ...]) -> str:
    items = []
    for dim in shape[: rng.randint(0, len(shape))]:
        kind = rng.random()
        if kind < 0.25 and dim > 0:
            items.append(str(rng.randint(-dim, dim - 1)))
        else:
            part = lambda: "" if rng.random() < 0.3 else str(rng.randint(-dim - 2, dim + 2))
            step = "" if rng.random() < 0.4 else str(rng.choice([1, 2, 3, -1, -2, -3]))
            items.append(f"{part()}:{part()}" + (f":{step}" if step else ""))
    if items and rng.random() < 0.2:
        items.insert(rng.randint(0, len(items)), "...")
    return ", ".join(items)


DTYPES = ["<f4", ">f8", "<i2", ">i4", "|u1", "|b1", "<c8", "<u8", "<U3", "|S2", "<M8[ms]"]


def test_random_slices_equal_numpy(slicer, tmp_path):
    rng = random.Random(20261124)
    checked = refused = 0
    for case in range(300):
        ndim = rng.randint(0, 4)
        shape = tuple(rng.randint(0, 6) for _ in range(ndim))
        dtype = np.dtype(rng.choice(DTYPES))
        a = np.arange(int(np.prod(shape)) or 0).reshape(shape)
        a = (a % 100).astype(dtype) if dtype.kind not in "US" else a.astype(str).astype(dtype)
        if rng.random() < 0.5:
            a = np.asfortranarray(a)
        path = tmp_path / f"a{case}.npy"
        np.save(path, a)
        for _ in range(5):
            expr = random_expr(rng, shape)
            out = run(slicer, path, expr)
            try:
                expected = eval(f"a[{expr}]", {"a": a}) if expr else a[...]
            except IndexError:
                # NumPy refuses it: so must we, with a message.
                assert out.returncode == 1 and out.stderr.startswith(b"error: "), (shape, expr, out.stderr)
                refused += 1
                continue
            if np.ndim(expected) == 0:  # every axis indexed: NumPy gives a scalar, we a 0-d array
                expected = np.array(expected, dtype=a.dtype)
            assert out.returncode == 0, (shape, dtype, expr, out.stderr)
            got = np.load(io.BytesIO(out.stdout))
            assert got.dtype == expected.dtype and got.shape == np.shape(expected), (shape, dtype, expr)
            assert np.array_equal(got, expected), (shape, dtype, expr)
            checked += 1
    print(f"{checked} slices equal NumPy's; {refused} that NumPy refuses refused too")
    assert checked > 1000


def test_slices_read_only_their_bytes(slicer, tmp_path):
    a = np.random.default_rng(1).random((2000, 500), dtype=np.float32)
    path = tmp_path / "big.npy"
    np.save(path, a)
    for expr, needed in [("7", 500 * 4), ("100:300", 200 * 500 * 4), (":, 3", 2000 * 4), ("::10, 10:20", 200 * 10 * 4)]:
        out = run(slicer, path, expr)
        assert out.returncode == 0, out.stderr
        read = int(out.stderr.split()[1])
        assert read == needed, (expr, out.stderr)
        assert np.array_equal(np.load(io.BytesIO(out.stdout)), eval(f"a[{expr}]"))


@pytest.mark.parametrize("expr,message", [
    ("::0", "slice step cannot be zero"),
    ("5, 0", "out of bounds"),
    ("1, 2, 3", "too many indices"),
    ("..., ...", "single ellipsis"),
    ("x", "not an integer"),
    ("1:2:3:4", "at most"),
])
def test_bad_slices_are_errors(slicer, tmp_path, expr, message):
    path = tmp_path / "small.npy"
    np.save(path, np.zeros((4, 5)))
    out = run(slicer, path, expr)
    assert out.returncode == 1 and message in out.stderr.decode(), out.stderr


def test_malformed_files_are_errors_not_crashes(slicer, tmp_path):
    good = io.BytesIO()
    np.save(good, np.arange(10, dtype="<i4"))
    raw = good.getvalue()
    cases = {
        "truncated_header": raw[:40],
        "truncated_data": raw[:-8],
        "bad_magic": b"\x93NUMPZ" + raw[6:],
        "object_dtype": raw.replace(b"'<i4'", b"'|O' "),
        "garbage": bytes(random.Random(3).randrange(256) for _ in range(500)),
        "empty": b"",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.npy"
        path.write_bytes(data)
        out = run(slicer, path, ":")
        assert out.returncode == 1 and out.stderr.startswith(b"error: "), (name, out.returncode, out.stderr)


def test_slice_arrays_refuse_every_integer_beyond_two_to_the_53(conn):
    """oas_npy_slice_array through SQL, on real .npy files in a store: an int64 or uint64 element
    whose magnitude exceeds 2^53 would be rounded as a double, so it is refused (compared as an
    integer, before converting); 2^53 itself is exact and kept. Only the sliced elements count."""
    from conftest import sql_error, unique

    schema = unique("big")
    table = f"{schema}.t"
    conn.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {table} (id int PRIMARY KEY, a jsonb)")
    try:
        conn.execute("SELECT oas.oas_declare_column(%s, 'a', 'npy@file')", [table])
        arrays = [
            np.array([2**53, -(2**53), 0], dtype="<i8"),
            np.array([2**53], dtype=">u8"),
            np.array([1, 2**53 + 1], dtype="<i8"),
            np.array([1, -(2**53) - 1], dtype=">i8"),
            np.array([1, 2**53 + 1], dtype="<u8"),
            np.array([1, 2**64 - 1], dtype="<u8"),
            np.array([1, -(2**63)], dtype="<i8"),
        ]
        for i, a in enumerate(arrays):
            buf = io.BytesIO()
            np.save(buf, a)
            conn.execute(f"INSERT INTO {table} VALUES (%s, oas.oas_npy(%s::bytea))", [i, buf.getvalue()])

        def as_array(i, expr=""):
            return conn.execute(f"SELECT oas.oas_npy_slice_array(a, %s) FROM {table} WHERE id = %s",
                                [expr, i]).fetchone()[0]

        assert as_array(0) == [2.0**53, -(2.0**53), 0.0]
        assert as_array(1) == [2.0**53]
        for i, a in enumerate(arrays[2:], start=2):
            err = sql_error(conn, f"SELECT oas.oas_npy_slice_array(a) FROM {table} WHERE id = %s", [i])
            assert err.sqlstate == "22023" and str(int(a[1])) in str(err), (a.dtype, err)
            assert as_array(i, ":1") == [1.0]  # the element beyond 2^53 is not in the slice
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
