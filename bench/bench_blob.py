"""DataJoint blobs: pg_oas's oas_blob_pack/unpack against DataJoint 2.3.5's own blob.pack/unpack,
and <blob@store> rows of 1 MB float64 arrays inserted and fetched by DataJoint and from SQL.

Part 1, pack and unpack, on values built deterministically:
  array   a 1 MB float64 array (131,072 values); SQL gets it as a float8[] parameter
  dict    a ~100 KB nested dict; SQL gets it as JSON text (oas_blob_pack(text) keeps the keys in
          the order written, so it is blob.pack(json.loads(text)))
  small   10,000 small values (ints, floats, short strings, small lists and dicts) as JSON text:
          one statement over 10,000 rows (unnest of a text[] or bytea[]) against a Python loop
Before anything is timed, the bytes SQL packs are compared with DataJoint's blob.pack of the same
value, and what SQL unpacks with the value itself; a difference is reported (a bug), not hidden.
Methods, each timed per value (the median over repeated runs of --seconds):
  DataJoint        blob.pack(value) / blob.unpack(bytes) in this Python process
  SQL round trip   SELECT oas.oas_blob_pack(%b) and oas_blob_unpack / oas_blob_unpack_array:
                   the value sent, the result received, in the binary protocol (float8[] straight
                   to and from NumPy; jsonb received as text, not parsed)
  SQL no result    SELECT oas.oas_blob_pack(%b) IS NOT NULL: the value sent, no result shipped
  SQL server       the function alone: one statement calls it n times on the one parameter
                   (count(f(CASE WHEN g > 0 THEN $1 END)) over generate_series(1, n), so it is not
                   folded into a constant), minus the same statement without the call, over n.
                   For `small`, the unnest statement without the call is subtracted.
MB/s counts the blob's bytes before compression (what the serializer writes and reads); the
table also gives the bytes stored (compressed when DataJoint's rule compresses).

Part 2, rows of 1 MB float64 arrays (--rows, default 1000) in a DataJoint table
`k : int32 --- arr : <blob@STORE>`, for each store of --stores (default `file`; `file,s3` adds
the S3 store, SeaweedFS):
  dj        DataJoint's Table.insert, --batch rows per call, in database dj_plain (no pg_oas)
  dj+oas    the same in database oas_blob, which has pg_oas: its event trigger gave the table the
            ledger triggers (checked: oas_track_insert), and the ledger rows are counted after
  sql       from SQL into a table declared the same way, one INSERT per row (psycopg pipeline),
            one transaction per batch: --sql-insert (default SQL_INSERT below)
  fetches   DataJoint's to_dicts() of dj's and dj+oas's tables, --batch rows per query; from SQL,
            oas_blob_unpack_array(oas_hash_get(arr)) of dj+oas's table (float8[] to NumPy) and
            oas_blob_get(arr) (jsonb as text) of its first --json-rows rows
Each row holds a distinct array (so no object is deduplicated); every fetched row is checked.
Each round (--rounds, at least 2) inserts --rows rows per method, batch by batch in turns: dj
and dj+oas back to back (which goes first alternates), then sql; then the fetches. The tables
and their objects are cleared between rounds, and the file system is synced and PostgreSQL
checkpointed before each timed batch (not timed). Reported: each round's time, the median over
rounds and the spread, rows/s, MB/s of array data (8 bytes a value, MB = 10^6 bytes), and the
triggers' overhead on DataJoint's insert: (dj+oas - dj) / dj of the medians (the target is < 5 %),
and the median and quartiles of that ratio over the pairs of batches run back to back (on a
noisy machine the steadier figure). DataJoint's INSERT statements (the only part of its insert
the triggers run in) are also timed alone, by wrapping its connection's query().

Run it through scripts/bench_blob.sh (or `make bench-blob`), which prepares a fresh cluster with
both databases and the stores:
  scripts/bench_blob.sh [--quick] [--rows 1000] [--rounds 2] [--stores file,s3] [--record]
--record writes the results, with the machine's description, into BENCHMARKS.md (replacing this
benchmark's section if there is one). Progress goes to stderr, the tables to stdout.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time

import numpy as np
import psycopg
from psycopg import adapt, pq
from psycopg.types.string import TextLoader

from bench_put_get import store_specs
from common import (add_output_args, datajoint_for, extension_build, git_rev, log, machine_line, now_line, num,
                    print_and_record, shared_buffers_mib, table)

SECTION = "## DataJoint blobs: oas_blob_pack/unpack and <blob@> rows, pg_oas vs DataJoint"
ARRAY_VALUES = 131072  # 1 MiB of float64
SMALL_VALUES = 10_000
INSERTS = ("dj", "dj+oas", "sql")  # part 2's insert methods
# How SQL stores one row (psycopg named parameters k, arr (a float64 NumPy array, sent as a binary
# float8[]), store, schema, table): oas.oas_blob's pending value, which the row trigger stores in
# the column's store under the table's schema.
SQL_INSERT = "INSERT INTO {table} (k, arr) VALUES (%(k)s, oas.oas_blob(%(arr)b))"


# ------------------------------------------------------------------ float8[] to and from NumPy
FLOAT8_OID, FLOAT8_ARRAY_OID = 701, 1022
ELEMENTS = np.dtype([("len", ">i4"), ("value", ">f8")])  # a float8[]'s elements, binary format


class Float8ArrayDumper(adapt.Dumper):
    """A float64 NumPy array as a binary one-dimensional float8[] parameter."""

    format = pq.Format.BINARY
    oid = FLOAT8_ARRAY_OID

    def dump(self, obj):
        body = np.empty(obj.size, ELEMENTS)
        body["len"], body["value"] = 8, obj.ravel()
        return struct.pack(">iiIii", 1, 0, FLOAT8_OID, obj.size, 1) + body.tobytes()


class Float8ArrayLoader(adapt.Loader):
    """A binary float8[] result (no NULLs) as a float64 NumPy array of its shape."""

    format = pq.Format.BINARY

    def load(self, data):
        ndim = struct.unpack_from(">i", data)[0]
        if ndim == 0:
            return np.empty(0)
        shape = struct.unpack_from(f">{2 * ndim}i", data, 12)[0::2]
        return np.frombuffer(data, ELEMENTS, offset=12 + 8 * ndim)["value"].astype(np.float64).reshape(shape)


def connect(dsn):
    """An autocommit connection that sends NumPy arrays as float8[], returns float8[] as NumPy
    arrays (binary results) and jsonb as its text (not parsed)."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.adapters.register_dumper(np.ndarray, Float8ArrayDumper)
    conn.adapters.register_loader(FLOAT8_ARRAY_OID, Float8ArrayLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    return conn


# ---------------------------------------------------------------------------------- the values
def nested_dict(target_bytes):
    """A session record with trials, ~target_bytes of JSON; only JSON types, so it survives
    json.dumps/json.loads unchanged."""
    d = {"subject": "m042", "session": 7, "rig": {"name": "rig-3", "fps": 30.0, "lens": [1.2, 3.4]},
         "notes": None, "trials": []}
    while len(json.dumps(d)) < target_bytes:
        i = len(d["trials"])
        d["trials"].append({
            "id": i, "t_start": i * 2.5, "phase": i / 7, "rate": (i * 37 % 100) / 8, "ok": i % 3 != 0,
            "label": f"trial-{i:05d}", "tags": ["go" if i % 2 else "nogo", f"block{i // 50}"],
            "stim": {"contrast": (i % 5) / 4, "freq": [1, 2, 4][i % 3], "pos": [i % 7, -(i % 11)]},
            "reward": None if i % 4 else 0.25})
    return d


def small_value(i):
    kinds = [lambda: i, lambda: i / 4, lambda: f"s{i}", lambda: [i, i + 1, "x"], lambda: {"k": i, "v": "x"},
             lambda: i % 2 == 0, lambda: -i * 1_000_003, lambda: {"a": [i / 3], "b": None}]
    return kinds[i % len(kinds)]()


class Arrays:
    """The rows' 1 MB arrays: one random base array; a row's is a copy with its first value set
    to the row's unique id, so no two rows share an object."""

    def __init__(self, seed):
        self.base = np.random.default_rng(seed).standard_normal(ARRAY_VALUES)

    def array(self, uid):
        a = self.base.copy()
        a[0] = uid
        return a

    def check(self, uid, a):
        if a.shape != self.base.shape or a[0] != uid or not np.array_equal(a[1:], self.base[1:]):
            raise SystemExit(f"row {uid}: the fetched array is not the one inserted")


# ------------------------------------------------------------------------------------- timing
def timed_runs(fn, seconds, min_runs=3):
    """fn() once untimed, then at least min_runs times and until `seconds` have passed."""
    fn()
    samples = []
    while len(samples) < min_runs or sum(samples) < seconds:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def med(xs):
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------------------ part 1: pack, unpack
def part1_values():
    rng = np.random.default_rng(20261129)
    a = rng.standard_normal(ARRAY_VALUES)
    d = nested_dict(100_000)
    small = [small_value(i) for i in range(SMALL_VALUES)]
    return [("array", f"float64[{ARRAY_VALUES:,}] (1 MiB)", a, a, "float8[]"),
            ("dict", f"nested dict ({len(json.dumps(d)) / 1000:.0f} KB of JSON)", d, json.dumps(d), "text"),
            ("small", f"{SMALL_VALUES:,} small values", small, [json.dumps(v) for v in small], "text[]")]


def check_part1(conn, djblob, values):
    """SQL's packed bytes against DataJoint's, SQL's unpacked values against the originals."""
    checks = []
    for name, _, value, sql_value, sqltype in values:
        if name == "small":
            got = [bytes(r[0]) for r in conn.execute(
                "SELECT oas.oas_blob_pack(v) FROM unnest(%b::text[]) WITH ORDINALITY u(v, n) ORDER BY n",
                [sql_value], binary=True)]
            want = [djblob.pack(v) for v in value]
            same = sum(g == w for g, w in zip(got, want))
            unpacked = [r[0] for r in conn.execute(
                "SELECT oas.oas_blob_unpack(b) FROM unnest(%b::bytea[]) WITH ORDINALITY u(b, n) ORDER BY n", [want])]
            back = sum(json.loads(u) == v for u, v in zip(unpacked, value))
            checks.append((name, f"{same:,} of {len(value):,}", f"{back:,} of {len(value):,}", same == back == len(value)))
            continue
        if name == "dict" and json.loads(sql_value) != value:
            raise SystemExit("the dict does not survive json.dumps/json.loads")
        got = bytes(conn.execute(f"SELECT oas.oas_blob_pack(%b::{sqltype})", [sql_value], binary=True).fetchone()[0])
        want = djblob.pack(value)
        as_json = json.loads(conn.execute("SELECT oas.oas_blob_unpack(%b)", [want]).fetchone()[0])
        if name == "array":
            as_array = conn.execute("SELECT oas.oas_blob_unpack_array(%b)", [want], binary=True).fetchone()[0]
            back = np.array_equal(as_array, value) and as_json == value.tolist()
        else:
            back = as_json == value
        checks.append((name, "yes" if got == want else f"NO ({len(got):,} bytes against {len(want):,})",
                       "yes" if back else "NO", got == want and back))
    for name, packed, unpacked, ok in checks:
        log(f"check {name}: SQL's bytes equal DataJoint's: {packed}; SQL unpacks the value: {unpacked}")
        if not ok:
            log(f"MISMATCH for {name}: pg_oas and DataJoint disagree (a bug); the timings go on")
    return checks


def part1(conn, djblob, args):
    values = part1_values()
    checks = check_part1(conn, djblob, values)
    rows = []
    for name, label, value, sql_value, sqltype in values:
        many = value if name == "small" else [value]
        packed = [djblob.pack(v) for v in many]
        nbytes = sum(len(djblob.pack(v, compress=False)) for v in many)  # what the serializer writes
        label += f"; blob {size_text(nbytes)}, stored {size_text(sum(map(len, packed)))}"
        ops = [("pack", "oas_blob_pack", many, sql_value, sqltype, djblob.pack),
               ("unpack", "oas_blob_unpack", packed, packed, "bytea", djblob.unpack)]
        if name == "array":
            ops.append(("unpack_array", "oas_blob_unpack_array", packed, packed, "bytea", djblob.unpack))
        for op, fn, py_args, param, ptype, py_fn in ops:
            log(f"part 1: {name} {op}")
            if name != "small":
                param = param[0] if isinstance(param, list) else param
            times = {"DataJoint": median_time(lambda: [py_fn(v) for v in py_args], args) / len(many)}
            times.update(sql_times(conn, fn, param, ptype, name == "small", len(many), args))
            for method, t in times.items():
                rows.append({"value": label if op == "pack" and method == "DataJoint" else "", "op": op,
                             "method": method, "t": t, "count": len(many), "bytes": nbytes, "dj": times["DataJoint"]})
    return rows, checks


def median_time(fn, args):
    return med(timed_runs(fn, args.seconds))


def sql_times(conn, fn, param, ptype, many, count, args):
    """Time per value of oas.fn from SQL: round trip, no result, server (see the module's doc).
    `many`: param is a list of `count` values, one statement over all of them (unnest)."""
    run = lambda sql, params, binary=False: lambda: conn.execute(sql, params, binary=binary).fetchall()  # noqa: E731
    if many:
        values = f"unnest(%b::{ptype.removesuffix('[]')}[]) v"
        no_result = median_time(run(f"SELECT count(oas.{fn}(v)) FROM {values}", [param]), args)
        floor = median_time(run(f"SELECT count(v) FROM {values}", [param]), args)
        return {"SQL round trip": median_time(run(f"SELECT oas.{fn}(v) FROM {values}", [param], True), args) / count,
                "SQL no result": no_result / count, "SQL server": (no_result - floor) / count}
    no_result = median_time(run(f"SELECT oas.{fn}(%b::{ptype}) IS NOT NULL", [param]), args)
    # The server: n calls in one statement (the CASE keeps the planner from folding the call into a
    # constant, evaluated once), minus the same statement without the call.
    n = max(5, min(10_000, int(args.server_seconds / max(no_result, 1e-6))))
    series = f"FROM generate_series(1, {n}) g"
    call = median_time(run(f"SELECT count(oas.{fn}(CASE WHEN g > 0 THEN %b::{ptype} END)) {series}", [param]), args)
    floor = median_time(run(f"SELECT count(CASE WHEN g > 0 THEN %b::{ptype} END) {series}", [param]), args)
    return {"SQL round trip": median_time(run(f"SELECT oas.{fn}(%b::{ptype})", [param], True), args),
            "SQL no result": no_result, "SQL server": (call - floor) / n}


def report_part1(rows, checks):
    out = [table(["value", "op", "method", "time per value", "values/s", "MB/s", "speed vs DataJoint"], [
        [r["value"], r["op"], r["method"], duration(r["t"]), num(1 / r["t"]) if r["t"] > 0 else "—",
         num(r["bytes"] / r["count"] / r["t"] / 1e6) if r["t"] > 0 else "—",
         num(r["dj"] / r["t"], "×") if r["t"] > 0 else "—"]
        for r in rows], text_cols=3)]
    out.append("\nChecked before timing (SQL against DataJoint 2.3.5 on the same values):\n")
    out.append(table(["value", "SQL's packed bytes equal blob.pack's", "SQL unpacks to the value"],
                     [[n, p, u] for n, p, u, _ in checks], text_cols=3))
    return "\n".join(out)


def size_text(n):
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def duration(t):
    if t is None or t <= 0:
        return "—"
    for unit, f in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if t >= f:
            return num(t / f, f" {unit}")
    return num(t / 1e-9, " ns")


# ------------------------------------------------------------------------------ part 2: rows
def dj_connection(dj, dsn):
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return dj.Connection(info.get("host", "127.0.0.1"), info.get("user", "postgres"), info.get("password", "unused"),
                         int(info.get("port", 5432)), use_tls=False, database_name=info["dbname"])


def dj_table(dj, conn, schema_name, store):
    """DataJoint declares schema_name.arrays, as a DataJoint user would."""
    schema = dj.Schema(schema_name, connection=conn)

    class Arrays(dj.Manual):
        definition = f"""
        k : int32
        ---
        arr : <blob@{store}>
        """

    schema(Arrays)
    return schema, Arrays


def clear_objects(specs, store, schemas):
    """The stores' _hash/{schema} folders of these schemas (not timed)."""
    from datajoint.storage import StorageBackend

    spec = specs[store]
    backend = StorageBackend(spec)
    for schema in schemas:
        path = backend._full_path(f"{spec.get('hash_prefix', '_hash')}/{schema}")
        if spec["protocol"] == "file":
            shutil.rmtree(path, ignore_errors=True)
        elif backend.fs.exists(path):
            backend.fs.rm(path, recursive=True)


def settle(admin):
    """Before a timed step: nothing left to flush from the last one."""
    os.sync()
    admin.execute("CHECKPOINT")


def batches(args):
    return [range(lo, min(args.rows, lo + args.batch)) for lo in range(0, args.rows, args.batch)]


class InsertTimer:
    """Times the INSERT statements a DataJoint connection runs (its `query`, wrapped): the part
    of an insert that pg_oas's triggers can slow down."""

    def __init__(self, conn):
        self.total, query = 0.0, conn.query

        def timed_query(sql, *a, **k):
            if not sql.lstrip().upper().startswith("INSERT"):
                return query(sql, *a, **k)
            t0 = time.perf_counter()
            try:
                return query(sql, *a, **k)
            finally:
                self.total += time.perf_counter() - t0

        conn.query = timed_query


def insert_batch_dj(T, gen, start, ks):
    """DataJoint's insert of rows ks: the time of the call, and of its INSERT statement."""
    rows = [{"k": k, "arr": gen.array(start + k)} for k in ks]
    statements = T.connection.insert_timer
    before = statements.total
    t0 = time.perf_counter()
    T.insert(rows)
    return time.perf_counter() - t0, statements.total - before


def insert_batch_sql(conn, stmt, schema, store, gen, start, ks):
    params = [{"k": k, "arr": gen.array(start + k), "store": store, "schema": schema} for k in ks]
    t0 = time.perf_counter()
    with conn.transaction():
        conn.cursor().executemany(stmt, params)
    return time.perf_counter() - t0


def insert_round(tables, oas_conn, full, names, store, gen, starts, args, admin, rnd):
    """One round of inserts, batch by batch: DataJoint alone and DataJoint with pg_oas back to
    back (which goes first alternates), then SQL; each batch timed alone, after a sync. The times
    of each method's batches, in order."""
    stmt = args.sql_insert.format(table=full["sql"])
    times = {m: [] for m in INSERTS}
    statements = {m: [] for m in ("dj", "dj+oas")}
    for i, ks in enumerate(batches(args)):
        for m in (["dj", "dj+oas"] if (i + rnd) % 2 == 0 else ["dj+oas", "dj"]) + ["sql"]:
            settle(admin)
            if m == "sql":
                times[m].append(insert_batch_sql(oas_conn, stmt, names[m], store, gen, starts[m], ks))
            else:
                t, t_statement = insert_batch_dj(tables[m], gen, starts[m], ks)
                times[m].append(t)
                statements[m].append(t_statement)
    return times, statements


def fetch_dj(T, gen, start, args):
    total = 0.0
    for ks in batches(args):
        t0 = time.perf_counter()
        got = (T & f"k >= {ks.start} AND k < {ks.stop}").to_dicts()
        total += time.perf_counter() - t0
        if len(got) != len(ks):
            raise SystemExit(f"DataJoint fetched {len(got)} rows, not {len(ks)}")
        for r in got:
            gen.check(start + r["k"], r["arr"])
    return total


def fetch_sql_array(conn, table_name, gen, start, args):
    total = 0.0
    sql = (f"SELECT k, oas.oas_blob_unpack_array(oas.oas_hash_get(arr::jsonb)) FROM {table_name}"
           " WHERE k >= %s AND k < %s")
    for ks in batches(args):
        t0 = time.perf_counter()
        got = conn.execute(sql, [ks.start, ks.stop], binary=True).fetchall()
        total += time.perf_counter() - t0
        if len(got) != len(ks):
            raise SystemExit(f"SQL fetched {len(got)} rows, not {len(ks)}")
        for k, a in got:
            gen.check(start + k, a)
    return total


def fetch_sql_json(conn, table_name, gen, start, n):
    sql = f"SELECT k, oas.oas_blob_get(arr::jsonb) FROM {table_name} WHERE k >= %s AND k < %s"
    total = 0.0
    for k in range(n):  # one row per statement: ~2.6 MB of JSON each
        t0 = time.perf_counter()
        got = conn.execute(sql, [k, k + 1]).fetchall()
        total += time.perf_counter() - t0
        if k == 0:
            gen.check(start + got[0][0], np.array(json.loads(got[0][1])))
    return total


def part2_store(dj, specs, store, args, admin, plain_conn, oas_conn, dj_plain, dj_oas):
    names = {"dj": f"djplain_{store}", "dj+oas": f"djoas_{store}", "sql": f"sqloas_{store}"}
    schemas, tables = {}, {}
    for method, conn in (("dj", dj_plain), ("dj+oas", dj_oas), ("sql", dj_oas)):
        schemas[method], tables[method] = dj_table(dj, conn, names[method], store)
    full = {m: f'"{names[m]}"."arrays"' for m in names}
    triggers = {}
    for m in ("dj+oas", "sql"):
        triggers[m] = [r[0] for r in oas_conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY tgname",
            [full[m]])]
        if "oas_track_insert" not in triggers[m]:
            raise SystemExit(f"{full[m]} has no oas_track_insert trigger: pg_oas's event trigger did not run")
    if plain_conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_oas'").fetchone()[0]:
        raise SystemExit("the database for DataJoint alone has pg_oas installed")

    gen = Arrays(args.seed)
    ins = {m: [] for m in INSERTS}  # per method, per round: the times of its batches
    stm = {m: [] for m in ("dj", "dj+oas")}  # the same for DataJoint's INSERT statements alone
    fet = {m: [] for m in ("dj", "dj+oas", "sql array", "sql json")}
    uid = 1
    for rnd in range(args.rounds):
        plain_conn.execute(f"TRUNCATE {full['dj']}")
        oas_conn.execute(f"TRUNCATE {full['dj+oas']}, {full['sql']}")
        clear_objects(specs, store, names.values())
        starts = {}
        for m in INSERTS:
            starts[m], uid = uid, uid + args.rows
        times, statements = insert_round(tables, oas_conn, full, names, store, gen, starts, args, admin, rnd)
        for m in INSERTS:
            ins[m].append(times[m])
            log(f"{store} round {rnd + 1}: insert {m:<7} {sum(times[m]):7.2f} s ({args.rows / sum(times[m]):6.1f} rows/s)")
        for m, ts in statements.items():
            stm[m].append(ts)
        for m, fn in (("dj", lambda: fetch_dj(tables["dj"], gen, starts["dj"], args)),
                      ("dj+oas", lambda: fetch_dj(tables["dj+oas"], gen, starts["dj+oas"], args)),
                      ("sql array", lambda: fetch_sql_array(oas_conn, full["dj+oas"], gen, starts["dj+oas"], args)),
                      ("sql json", lambda: fetch_sql_json(oas_conn, full["dj+oas"], gen, starts["dj+oas"], args.json_rows))):
            settle(admin)
            t = fn()
            fet[m].append(t)
            log(f"{store} round {rnd + 1}: fetch  {m:<9} {t:7.2f} s")
    ledger = {m: oas_conn.execute(
        "SELECT count(*) FROM oas.ref_log WHERE table_oid = %s::regclass AND op = 'INSERT' AND delta > 0",
        [full[m]]).fetchone()[0] for m in ("dj+oas", "sql")}
    plain_conn.execute(f"TRUNCATE {full['dj']}")
    oas_conn.execute(f"TRUNCATE {full['dj+oas']}, {full['sql']}")
    clear_objects(specs, store, names.values())
    for s in schemas.values():
        s.drop(prompt=False)
    return {"store": store, "ins": ins, "stm": stm, "fet": fet, "ledger": ledger, "triggers": triggers, "full": full}


def report_part2(res, args):
    mb_row = ARRAY_VALUES * 8 / 1e6
    labels = {"dj": "DataJoint alone (database without pg_oas)", "dj+oas": "DataJoint, database with pg_oas (triggers on)",
              "sql": "pg_oas from SQL", "sql array": "SQL oas_blob_unpack_array(oas_hash_get(arr)) of dj+oas's table",
              "sql json": f"SQL oas_blob_get(arr) (jsonb as text), first {args.json_rows} rows of dj+oas's table"}

    def rows_of(times, n_of):
        out = []
        for m, ts in times.items():
            n, t = n_of(m), med(ts)
            out.append([labels[m], " / ".join(f"{x:.2f}" for x in ts), f"{t:.2f}", num(n / t), num(n * mb_row / t),
                        num(100 * (max(ts) - min(ts)) / t, " %")])
        return out

    head = ["method", "seconds per round", "median s", "rows/s", "MB/s", "spread (max−min)/median"]
    fet, full = res["fet"], res["full"]
    ins = {m: [sum(batch_times) for batch_times in rounds] for m, rounds in res["ins"].items()}
    over = [(w - wo) / wo * 100 for w, wo in zip(ins["dj+oas"], ins["dj"])]
    overhead = (med(ins["dj+oas"]) - med(ins["dj"])) / med(ins["dj"]) * 100
    pairs = [(w - wo) / wo * 100 for rw, rwo in zip(res["ins"]["dj+oas"], res["ins"]["dj"]) for w, wo in zip(rw, rwo)]
    quart = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else pairs * 3
    st = {m: [sum(batch_times) for batch_times in rounds] for m, rounds in res["stm"].items()}
    trig = med(st["dj+oas"]) - med(st["dj"])
    return "\n".join([
        f"### Store `{res['store']}`: {args.rows:,} rows of 1 MiB float64 arrays, {args.rounds} rounds\n",
        f"**Insert** ({args.batch} rows per DataJoint insert call / per SQL transaction; in each round the "
        "methods take turns batch by batch)\n",
        table(head, rows_of(ins, lambda m: args.rows), text_cols=1),
        f"\n**pg_oas's triggers on DataJoint's insert: {overhead:+.1f} %** (median with against median without; "
        f"round by round {', '.join(f'{o:+.1f} %' for o in over)}; target < 5 %). Batch by batch, each with "
        f"against the one without run next to it: median {med(pairs):+.1f} %, middle half {quart[0]:+.1f} % to "
        f"{quart[2]:+.1f} % ({len(pairs)} pairs).\n",
        f"DataJoint's INSERT statements alone (the only part the triggers run in), per round: "
        f"{' / '.join(f'{x:.3f}' for x in st['dj'])} s without pg_oas, {' / '.join(f'{x:.3f}' for x in st['dj+oas'])} s "
        f"with: the triggers add {trig * 1000 / len(batches(args)):.1f} ms to a statement of {args.batch} rows, "
        f"{trig / med(ins['dj']) * 100:+.2f} % of DataJoint's insert (medians).\n",
        f"Ledger: {res['ledger']['dj+oas']:,} INSERT rows for {full['dj+oas']} and {res['ledger']['sql']:,} for "
        f"{full['sql']} ({args.rounds * args.rows:,} rows inserted into each); triggers on them: "
        f"{', '.join(res['triggers']['dj+oas'])}.\n",
        f"**Fetch** ({args.batch} rows per query; the objects were just written, so caches are warm)\n",
        table(head, rows_of(fet, lambda m: args.json_rows if m == "sql json" else args.rows), text_cols=1),
    ])


# ---------------------------------------------------------------------------------------- main
def machine_info(admin, args, load_start, specs):
    pg, build = extension_build(admin, args.pg_config)
    import datajoint

    store_dir = specs[args.file_store]["location"]
    df = subprocess.run(["df", "-h", "--output=source,fstype", store_dir], capture_output=True,
                        text=True).stdout.splitlines()[-1].split()
    return "\n".join([
        f"- {now_line()}",
        f"- {machine_line()}; load average (1 min) {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
        f"- file store on {df[0]} ({df[1]}); S3 store: SeaweedFS on the same machine",
        f"- {pg} (shared_buffers {shared_buffers_mib(admin)} MiB); {build}; source {git_rev()}",
        f"- clients: psycopg {psycopg.__version__}, DataJoint {datajoint.__version__} (psycopg2), "
        f"NumPy {np.__version__}, Python {platform.python_version()}",
        f"- command: bench_blob.py {' '.join(sys.argv[1:])}",
    ])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", default="host=127.0.0.1 port=25434 user=postgres dbname=oas_blob",
                   help="the database with pg_oas and its stores")
    p.add_argument("--plain-dsn", default="host=127.0.0.1 port=25434 user=postgres dbname=dj_plain",
                   help="a database without pg_oas, for DataJoint alone")
    p.add_argument("--parts", default="1,2", help="1 (pack/unpack), 2 (rows), or both (default)")
    p.add_argument("--quick", action="store_true",
                   help="check the harness: shorter timings, 60 rows, batches of 20, 3 JSON rows")
    p.add_argument("--seconds", type=float, help="part 1: time per measurement (default 1, quick 0.2)")
    p.add_argument("--server-seconds", type=float, help="part 1: target time of one 'SQL server' statement "
                   "(default 0.2, quick 0.05)")
    p.add_argument("--rows", type=int, help="part 2: rows per method and round (default 1000, quick 60)")
    p.add_argument("--rounds", type=int, default=2, help="part 2: rounds, at least 2 (default 2)")
    p.add_argument("--batch", type=int, help="part 2: rows per insert call and per fetch query (default 100, quick 20)")
    p.add_argument("--json-rows", type=int, help="part 2: rows fetched as JSON with oas_blob_get (default 20, quick 3)")
    p.add_argument("--stores", default="file", help="part 2: the stores, in order (default file; file,s3 adds "
                   "SeaweedFS, about 6 more minutes)")
    p.add_argument("--file-store", default="file", help="the file store (its disk is reported)")
    p.add_argument("--sql-insert", default=SQL_INSERT, help="part 2: how SQL stores a row (default: SQL_INSERT)")
    p.add_argument("--seed", type=int, default=20261129)
    add_output_args(p)
    args = p.parse_args()
    q = args.quick
    args.seconds = args.seconds or (0.2 if q else 1.0)
    args.server_seconds = args.server_seconds or (0.05 if q else 0.2)
    args.rows = args.rows or (60 if q else 1000)
    args.batch = args.batch or (20 if q else 100)
    args.json_rows = min(args.rows, args.json_rows or (3 if q else 20))
    if args.rounds < 2:
        raise SystemExit("--rounds must be at least 2 (the rounds alternate and the spread is reported)")
    parts = set(args.parts.split(","))
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]

    admin = psycopg.connect(args.dsn, autocommit=True)
    specs = store_specs(admin)
    stores = [s for s in args.stores.split(",") if s]
    for s in stores:
        if s not in specs:
            raise SystemExit(f"no store {s!r} in oas.store")
    dj = datajoint_for(args.dsn, {"default": args.file_store, **specs})
    from datajoint import blob as djblob

    text = [SECTION, "", machine_info(admin, args, load_start, specs), ""]
    if "1" in parts:
        conn = connect(args.dsn)
        rows, checks = part1(conn, djblob, args)
        conn.close()
        text += ["### Pack and unpack: SQL against DataJoint's blob.pack / blob.unpack\n",
                 "Per value, median of repeated runs; MB/s of the blob's bytes before compression; speed vs DataJoint = "
                 "DataJoint's time / this method's. *SQL round trip*: the value sent and the result received "
                 "(binary; jsonb as text, not parsed); *SQL no result*: the value sent, nothing shipped back; "
                 "*SQL server*: the function alone, inside one statement.\n",
                 report_part1(rows, checks), ""]
    if "2" in parts:
        plain_conn, oas_conn = connect(args.plain_dsn), connect(args.dsn)
        dj_plain, dj_oas = dj_connection(dj, args.plain_dsn), dj_connection(dj, args.dsn)
        for c in (dj_plain, dj_oas):
            c.insert_timer = InsertTimer(c)
        for store in stores:
            res = part2_store(dj, specs, store, args, admin, plain_conn, oas_conn, dj_plain, dj_oas)
            text += [report_part2(res, args), ""]
    text[2] = machine_info(admin, args, load_start, specs)  # the load average at the end
    print_and_record(args, SECTION, "\n".join(text))
    log(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
