"""Writes the DataJoint blob fixtures that core/tests/blob_parity.rs checks oas_core::blob against.

For each value below, DataJoint's own `datajoint.blob.pack` gives `<name>.blob`, and
`<name>.json` describes it:

    {"type":  Python type of blob.unpack(<name>.blob), "ndarray[<dtype>]" for plain arrays,
     "value": that value in the JSON mapping documented in core/src/blob/mod.rs,
     "repack": false when packing the decoded value does not give the same bytes (char arrays),
     "json_text": (JSON-native values only) text t with blob.pack(json.loads(t)) == the blob}

Regenerate (DataJoint 2.3.5, NumPy and CPython's zlib from the project venv), from the repo root:

    /work/main/.tools/venv/bin/python core/tests/data/blob/make_fixtures.py

Everything is deterministic: no clock, no unseeded randomness. The script removes stale
fixtures first.
"""

import base64
import datetime
import json
import math
import pathlib
import uuid
from decimal import Decimal

import numpy as np
from datajoint import blob as djblob

OUT = pathlib.Path(__file__).resolve().parent
INT64 = (-(2**63), 2**64 - 1)


def scalar(v):
    if v is None or isinstance(v, (bool, np.bool_)):
        return None if v is None else bool(v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return v if INT64[0] <= v <= INT64[1] else str(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, (complex, np.complexfloating)):
        return {"real": scalar(v.real), "imag": scalar(v.imag)}
    if isinstance(v, np.datetime64):
        return "NaT" if np.isnat(v) else int(v.astype("int64"))
    if isinstance(v, (str, Decimal)):
        return str(v)
    if isinstance(v, bytes):
        return {"bytes": base64.b64encode(v).decode()}
    if isinstance(v, (datetime.date, datetime.time)):  # datetime is a date
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    raise TypeError(type(v))


def to_json(v):
    """The documented BlobValue -> JSON mapping, written independently of the Rust one."""
    if isinstance(v, np.ndarray):
        return array(v)
    if isinstance(v, np.void) and v.dtype.names:
        return {n: to_json(v[n]) for n in v.dtype.names}
    if isinstance(v, (list, tuple, set)):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {(k if isinstance(k, str) else json.dumps(to_json(k), separators=(",", ":"))): to_json(x) for k, x in v.items()}
    return scalar(v)


def array(a):
    if a.ndim == 0:
        return to_json(a[()])
    return [to_json(a[i]) if a.ndim == 1 else array(a[i]) for i in range(a.shape[0])]


def type_name(v):
    if isinstance(v, djblob.MatCell):
        return "MatCell"
    if isinstance(v, djblob.MatStruct):
        return "MatStruct"
    if isinstance(v, np.recarray):
        return "recarray"
    if isinstance(v, np.generic) and not isinstance(v, np.void):  # a 0-d array in Rust
        return f"ndarray[{v.dtype}]"
    if isinstance(v, np.ndarray):
        return f"ndarray[{'object' if v.dtype.char in 'OU' else v.dtype}]"
    return {"UUID": "UUID"}.get(type(v).__name__, type(v).__name__)


def json_native(v):
    if v is None or isinstance(v, (bool, str)):
        return True
    if type(v) is int:  # serde_json reads integers beyond uint64 as floats
        return INT64[0] <= v <= INT64[1]
    if type(v) is float:
        return math.isfinite(v)
    if type(v) is list:
        return all(map(json_native, v))
    if type(v) is dict:
        return all(isinstance(k, str) and json_native(x) for k, x in v.items())
    return False


def cell(shape, items):
    c = np.empty(len(items), dtype=object)
    c[:] = items
    return c.reshape(shape).view(djblob.MatCell)


def struct(shape, names, records):
    s = np.empty(len(records), dtype=[(n, object) for n in names])
    for i, r in enumerate(records):
        for n, x in zip(names, r):
            s[i][n] = x
    return s.reshape(shape).view(djblob.MatStruct)


def values():
    v = {}
    v["none"] = None
    v["bool_true"], v["bool_false"] = True, False
    for name, i in [("0", 0), ("1", 1), ("neg1", -1), ("127", 127), ("128", 128), ("neg128", -128),
                    ("neg129", -129), ("255", 255), ("int64_max", 2**63 - 1), ("int64_min", -(2**63)),
                    ("uint64_max", 2**64 - 1), ("big", 2**200 + 12345), ("neg_big", -(2**200))]:
        v[f"int_{name}"] = i
    for name, f in [("1_5", 1.5), ("neg0", -0.0), ("tiny", 5e-324), ("big", 1.7976931348623157e308),
                    ("nan", float("nan")), ("inf", float("inf")), ("neg_inf", float("-inf")), ("third", 1 / 3)]:
        v[f"float_{name}"] = f
    v["complex"] = complex(1.5, -2.25)
    v["complex_nan"] = complex(float("nan"), float("inf"))
    v["str_empty"], v["str_ascii"] = "", "hello"
    v["str_unicode"] = "héllo ✓ 🧪 \u0000 end"
    v["bytes_empty"], v["bytes"] = b"", bytes(range(256))
    v["decimal"], v["decimal_exp"], v["decimal_neg"] = Decimal("1.50"), Decimal("1E+5"), Decimal("-0.000123")
    v["uuid"] = uuid.UUID("12345678-1234-5678-9abc-def012345678")
    v["datetime"] = datetime.datetime(2024, 1, 15, 10, 20, 30, 123456)
    v["datetime_whole"] = datetime.datetime(1999, 12, 31, 23, 59, 59)
    v["date"], v["date_min"] = datetime.date(2024, 2, 29), datetime.date(1, 1, 1)
    v["time"], v["time_midnight"] = datetime.time(10, 20, 30, 5), datetime.time(0, 0)
    v["list"] = [1, "a", 2.5, None, True]
    v["list_empty"], v["tuple_empty"], v["dict_empty"] = [], (), {}
    v["tuple"] = (1, (2, 3), "x")
    v["set"] = {1, 2, 3}
    v["dict_nested"] = {"a": 1, "b": [1, 2, {"c": None, "d": [[]]}], "e": {"f": "g", "h": -0.5}}
    v["dict_keys"] = {3: "int key", None: 1, True: 2, (1, 2): 3, "s": 4}
    v["dict_json"] = {"zeta": 1, "alpha": [1, 2.0, "three", None, False], "mid": {"x": {"y": {}}}}
    v["list_floats"] = [0.1, 1 / 3, 2 / 3, 1e-310, 1.7976931348623157e308, 123456.789e-20, 0.14112000167369845]
    v["str_big"] = "".join(f"Zeile {i}: grüße ✓ {i * i % 97}\n" for i in range(150))
    v["bytes_big"] = bytes(i * i % 251 for i in range(5000))
    v["dict_big"] = {f"key{i}": [i, i / 7, str(i)] for i in range(100)}
    v["list_big"] = list(range(400))  # > 1000 bytes: compressed
    v["dict_with_arrays"] = {"x": np.arange(4.0), "y": [np.int16(3), np.bool_(True)]}
    # NumPy arrays of every dtype, Fortran order on the wire
    for dt in ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]:
        v[f"array_{dt}"] = np.arange(6, dtype=dt).reshape(2, 3)
    v["array_bool"] = np.array([[True, False, True], [False, False, True]])
    v["array_complex64"] = (np.arange(6) + 1j * np.arange(6, 12)).astype("complex64").reshape(3, 2)
    v["array_complex128"] = np.array([1 + 2j, -3.5j, np.nan + 0j])
    v["array_3d"] = np.arange(24, dtype="int32").reshape(2, 3, 4)
    v["array_1d"] = np.array([1.0, 2.0, 3.0])
    v["array_empty"] = np.zeros((0, 3))
    v["array_empty_1d"] = np.array([], dtype="int64")
    v["array_0d_float"] = np.float64(3.5)
    v["array_0d_int32"] = np.int32(-7)
    v["array_0d_bool"] = np.bool_(False)
    v["array_0d_complex"] = np.complex64(1 - 1j)
    v["array_int64_extremes"] = np.array([np.iinfo("int64").min, -1, 0, np.iinfo("int64").max])
    v["array_uint64_max"] = np.array([0, np.iinfo("uint64").max], dtype="uint64")
    v["array_float_special"] = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-310])
    v["array_big_compressible"] = np.arange(2000, dtype="float64").reshape(40, 50)
    v["array_big_incompressible"] = np.random.default_rng(12345).integers(0, 256, 1500, dtype="uint8")
    v["array_big_int16"] = (np.sin(np.arange(3000) / 10) * 1000).astype("int16")
    v["array_big_3d"] = np.sin(np.arange(600, dtype="float32")).reshape(10, 6, 10)
    for unit in ["Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as"]:
        v[f"datetime64_{unit}"] = np.array([0, 1, -5, 1000], dtype=f"datetime64[{unit}]")
    v["datetime64_nat"] = np.array(["2024-01-15T10:20", "NaT"], dtype="datetime64[m]")
    v["datetime64_0d"] = np.datetime64("2024-01-15", "D")
    v["array_object"] = np.array(["a", 1, None, [1, 2]], dtype=object)
    v["array_unicode"] = np.array([["ab", "c"], ["déf", ""]])
    v["cell"] = cell((2, 2), [np.array([1.0, 2.0]), "text", np.arange(3, dtype="uint8"), cell((1,), [4.5])])
    v["cell_empty"] = cell((0,), [])
    v["struct"] = struct((1, 2), ["a", "b"], [(np.array([1.0]), "x"), (np.eye(2), {"k": 1})])
    v["struct_0d"] = struct((), ["only"], [(np.int8(5),)])
    v["recarray"] = np.rec.fromarrays([np.arange(3), np.array([1.5, 2.5, 3.5]), np.array([True, False, True])],
                                      names="a,b,c")
    nested = np.zeros((2, 2), dtype=[("x", [("p", "i4"), ("q", "f8")]), ("y", "i2")])
    nested["x"]["p"], nested["y"] = [[1, 2], [3, 4]], [[5, 6], [7, 8]]
    v["recarray_nested"] = nested
    v["char_row"] = np.frombuffer(b"hello", dtype="c")  # MATLAB char (type 4); repacks as text
    v["char_single"] = np.array([b"z"], dtype="c")
    v["char_matrix"] = np.array([[b"a", b"b"], [b"c", b"d"]], dtype="c")
    return v


def main():
    for old in list(OUT.glob("*.blob")) + list(OUT.glob("*.json")):
        old.unlink()
    total = 0
    for name, value in values().items():
        blob = djblob.pack(value)
        decoded = djblob.unpack(blob)
        desc = {"type": type_name(decoded), "value": to_json(decoded)}
        if djblob.pack(decoded) != blob:
            desc["repack"] = False
        if json_native(value):
            text = json.dumps(value, ensure_ascii=False)
            assert djblob.pack(json.loads(text)) == blob, name
            desc["json_text"] = text
        (OUT / f"{name}.blob").write_bytes(blob)
        (OUT / f"{name}.json").write_text(json.dumps(desc, ensure_ascii=False, allow_nan=False) + "\n")
        total += len(blob)
    print(f"{len(values())} fixtures, {total} blob bytes, in {OUT}")


if __name__ == "__main__":
    main()
