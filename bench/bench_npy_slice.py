"""Slices of a large <npy@> array: pg_oas's ranged reads in SQL against DataJoint's NpyRef.

DataJoint 2.3.5's own client inserts ONE row holding a float32 array (default 1 GiB, shape
(65536, 4096), C order, random values) into a table with an `<npy@s3>` column; the array becomes
one .npy object in the S3 store `s3` (SeaweedFS). Then three slices of it are read both ways:

  row      '1234'           one row: 16 KiB, one contiguous range
  column   ':, 17'          one column: 4 bytes in every row, one small range per row
  block    'a:a+rows/10'    10 % of the rows: one contiguous range of ~100 MiB

  pg_oas     SELECT oas.oas_npy_slice(arr, %s) FROM <table> WHERE array_id = 1  (psycopg 3, binary
             result). Each slice gets a new connection (backend); the library is loaded first with
             a call that does no store I/O (oas_npy_ndim), then the first slice is timed on its own
             as "cold" (it also reads the array's header, which the backend then caches), then up to
             --runs more ("warm", median). Bytes needed / fetched / ranges / header size come from
             SELECT * FROM oas.oas_npy_slice_stats(arr, %s).
  DataJoint  (Table & key).fetch1('arr') gives a fresh NpyRef every run (so its cache never
             helps), then ref[1234], ref[:, 17], ref[a:b]: NpyRef.load() downloads the whole
             object and indexes it in memory. The first run is reported on its own, then up to
             --dj-runs more (median). Bytes downloaded are counted in StorageBackend.get_buffer.

Every result (both ways, every run) is checked to equal the NumPy slice of the original array
(pg_oas's with np.load). Besides the payload bytes, the bytes each client actually received from
the S3 server (HTTP headers included) are read from the kernel's TCP counters (`ss -ti`,
bytes_received of the process's sockets to the S3 port; a lower bound if a connection closes
during a read). Ratios: DataJoint latency / pg_oas latency per slice (#12: at least 1x for
every slice, 1,000x for the row) and bytes fetched / bytes needed (older target <= 1.1x, plus the
header on a cold read). Memory: how far a new backend's memory rises at its peak while it builds
one slice without sending it (common.PeakGrowth; #12: under 64 MiB beyond the result).

Run it through scripts/bench_npy.sh (or `make bench-npy`), which prepares a fresh cluster and
the store:
  scripts/bench_npy.sh [--size-mib 64] [--runs 20] [--dj-runs 3] [--record] [--keep | --reuse]
or directly against a database with pg_oas and the store (`--store file` for a file store).
--record writes the results, with the machine's description, into BENCHMARKS.md (replacing this
benchmark's section if there is one). Progress goes to stderr, the tables to stdout.
"""

import argparse
import io
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import psycopg
import psycopg.sql

import common
from common import add_output_args, print_and_record, MiB, datajoint_for, shared_buffers_mib, weed_version, backend_peak_rss_mib, extension_build, log, machine_line, now_line, num, table, PeakGrowth

SCHEMA = "npybench"  # the DataJoint schema (a PostgreSQL schema; also the folder under _schema/)
SECTION = "## NumPy slices: pg_oas vs DataJoint NpyRef"
DTYPE = np.dtype("float32")


class Timer(common.Timer):
    def more(self, runs, seconds, min_runs=3):
        """Another run? At least min_runs, then until `runs` runs or `seconds` of them."""
        n = len(self.samples)
        return n < min_runs or (n < runs and sum(self.samples) < seconds)


def peak_rss_mib():
    """This process's peak RSS so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------ bytes on the wire
class WireCounter:
    """Bytes a process received from the S3 server, from the kernel's TCP counters (`ss -ti`).

    snapshot() maps each of the process's sockets to the S3 port to its bytes_received; the
    difference of two snapshots counts sockets opened in between from zero. A socket that closes
    between the snapshots takes its count with it, so the difference is a lower bound (the
    clients here keep their connections open)."""

    def __init__(self, port):
        self.port = port
        self.ok = port is not None and subprocess.run(["ss", "-V"], capture_output=True).returncode == 0

    def snapshot(self, pid):
        if not self.ok:
            return None
        out = subprocess.run(["ss", "-H", "-t", "-i", "-p", "-n", "state", "established",
                              f"( dport = :{self.port} )"], capture_output=True, text=True).stdout
        counts, local = {}, None
        for line in out.splitlines():
            if not line.startswith((" ", "\t")):  # a socket: "Recv-Q Send-Q local peer users:(...)"
                local = line.split()[2] if f"pid={pid}," in line else None
            elif local is not None:  # its info line
                m = re.search(r"bytes_received:(\d+)", line)
                counts[local] = int(m.group(1)) if m else 0
                local = None
        return counts

    @staticmethod
    def delta(before, after):
        if before is None or after is None:
            return None
        return sum(n - before.get(sock, 0) for sock, n in after.items())


# --------------------------------------------------------------------------------- DataJoint
def datajoint_setup(args, spec):
    """Configure the DataJoint client for this database and store; returns the module."""
    return datajoint_for(args.dsn, {"default": args.store, args.store: dict(spec)})


def count_downloads():
    """Wrap DataJoint's StorageBackend.get_buffer to count the bytes it returns; returns the counter."""
    from datajoint.storage import StorageBackend

    counter = [0]
    original = StorageBackend.get_buffer

    def get_buffer(self, remote_path):
        data = original(self, remote_path)
        counter[0] += len(data)
        return data

    StorageBackend.get_buffer = get_buffer
    return counter


def remove_objects(dj, spec):
    """Delete the schema's folder (_schema/npybench) from the store: DataJoint's schema.drop leaves it."""
    from datajoint.storage import StorageBackend

    backend = StorageBackend(spec)
    path = backend._full_path(f"{spec.get('schema_prefix', '_schema')}/{SCHEMA}")
    if backend.fs.exists(path):
        backend.fs.rm(path, recursive=True)


def make_table(dj, conn, store):
    schema = dj.Schema(SCHEMA, connection=conn)

    @schema
    class NpyBench(dj.Manual):
        definition = f"""
        array_id : int32
        ---
        arr : <npy@{store}>
        """

    return schema, NpyBench


def kept_array(admin):
    """What the table an earlier run kept holds (its comment), or None."""
    row = admin.execute("SELECT obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n"
                        " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'npy_bench'",
                        (SCHEMA,)).fetchone()
    return row and row[0]


def make_array(rows, cols, seed):
    """Random float32 values, filled in blocks of rows so no float64 temporary of the whole size exists."""
    a = np.empty((rows, cols), dtype=DTYPE)
    rng = np.random.default_rng(seed)
    step = max(1, (16 * MiB) // (cols * DTYPE.itemsize))
    for i in range(0, rows, step):
        rng.random(dtype=DTYPE, out=a[i:i + step])
    return a


def check(got, expected, what):
    expected = np.asarray(expected)
    if got.dtype != expected.dtype or got.shape != expected.shape or not np.array_equal(got, expected):
        raise SystemExit(f"{what}: result differs from NumPy's slice (got {got.dtype} {got.shape}, "
                         f"expected {expected.dtype} {expected.shape})")


# --------------------------------------------------------------------------------- measuring
def wait_for_server(dsn, timeout=120):
    """After a backend crash the postmaster recovers and restarts: wait until it accepts connections."""
    end = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(dsn, autocommit=True, connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > end:
                raise
            time.sleep(1)


def measure_oas(args, table, name, expr, expected, wire):
    """pg_oas: cold run and warm runs on a new backend, plus the slice's stats."""
    conn = psycopg.connect(args.dsn, autocommit=True)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    where = f"FROM {table} WHERE array_id = 1"
    conn.execute(f"SELECT oas.oas_npy_ndim(arr) {where}")  # load the library: no store I/O
    sql = f"SELECT oas.oas_npy_slice(arr, %s) {where}"
    cold, warm, wire_cold, wire_warm = Timer(), Timer(), None, []
    while True:
        timer = cold if not cold.samples else warm
        if timer is warm and not warm.more(args.runs, args.seconds):
            break
        w0 = wire.snapshot(pid)
        with timer:
            data = conn.execute(sql, (expr,), binary=True).fetchone()[0]
        got = wire.delta(w0, wire.snapshot(pid))
        if timer is cold:
            wire_cold = got
        else:
            wire_warm.append(got)
        check(np.load(io.BytesIO(data)), expected, f"pg_oas {name} {expr!r}")
        result_bytes = len(data)
        del data
    st = conn.execute(f"SELECT s.bytes_needed, s.bytes_fetched, s.ranges, s.header_bytes, s.shape FROM {table} t,"
                      " oas.oas_npy_slice_stats(t.arr, %s) s WHERE t.array_id = 1", (expr,)).fetchone()
    rss = backend_peak_rss_mib(conn)
    conn.close()
    growth = slice_memory(args, table, expr)
    wire_warm = [w for w in wire_warm if w is not None]
    return {"cold": cold.samples[0], "warm": statistics.median(warm.samples) if warm.samples else None,
            "n": len(warm.samples), "needed": st[0], "fetched": st[1], "ranges": st[2], "header": st[3],
            "shape": tuple(st[4]), "result_bytes": result_bytes, "rss": rss, "growth": growth, "wire_cold": wire_cold,
            "wire_warm": statistics.median(wire_warm) if wire_warm else None}


def slice_memory(args, table, expr):
    """The slice's own memory: how far a new backend's memory rises at its peak (PeakGrowth)
    during `SELECT octet_length(oas_npy_slice(...))`, which builds the whole result but does not
    send it (sending a bytea makes PostgreSQL's own copy of it). MiB, or None."""
    conn = psycopg.connect(args.dsn, autocommit=True)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    where = f"FROM {table} WHERE array_id = 1"
    conn.execute(f"SELECT oas.oas_npy_ndim(arr) {where}")  # load the library: no store I/O
    with PeakGrowth(pid) as g:
        conn.execute(f"SELECT octet_length(oas.oas_npy_slice(arr, %s)) {where}", (expr,)).fetchone()
    conn.close()
    return g.mib


def measure_dj(args, Table, name, index, expected, downloaded, wire):
    """DataJoint: a fresh NpyRef each run, indexed the way NumPy is."""
    first, rest, dl, wire_bytes = Timer(), Timer(), [], []
    pid = os.getpid()
    while True:
        timer = first if not first.samples else rest
        if timer is rest and not rest.more(args.dj_runs, args.dj_seconds, min_runs=1):
            break
        d0, w0 = downloaded[0], wire.snapshot(pid)
        with timer:
            ref = (Table & {"array_id": 1}).fetch1("arr")
            view = ref[index]
        wire_bytes.append(wire.delta(w0, wire.snapshot(pid)))
        dl.append(downloaded[0] - d0)
        got = np.array(view, copy=True)  # outside the timing; lets the whole array go
        del view, ref
        check(got, expected, f"DataJoint {name} {index!r}")
        del got
    wire_bytes = [w for w in wire_bytes if w is not None]
    return {"first": first.samples[0], "median": statistics.median(rest.samples) if rest.samples else None,
            "n": len(rest.samples), "downloaded": max(dl), "wire": max(wire_bytes) if wire_bytes else None}


# --------------------------------------------------------------------------------- reporting
def human_bytes(n):
    if n is None:
        return "—"
    for unit, f in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= f:
            v = n / f
            return f"{v:.0f} {unit}" if v == int(v) or v >= 100 else f"{v:.{2 if v < 10 else 1}f} {unit}"
    return f"{n} B"


def ms(seconds):
    return num(None if seconds is None else seconds * 1000)


def report(results, meta):
    ratio = lambda a, b: None if a is None or not b else a / b  # noqa: E731
    lat = []
    for r in results:
        o, d = r["oas"], r["dj"]
        lat.append([r["name"], f"`{r['expr']}`", "×".join(map(str, o["shape"])) or "()",
                    ms(o["cold"]), ms(o["warm"]) + f" ({o['n']})",
                    ms(d["first"]), ms(d["median"]) + f" ({d['n']})",
                    num(ratio(d["median"], o["warm"]), "×"), num(ratio(d["first"], o["cold"]), "×")])
    parts = ["**Latency** (ms; pg_oas: a new backend per slice, cold = first call, which also reads "
             "the header, warm = median of n after it; DataJoint: a fresh NpyRef per run, first run "
             "alone, then median of n)\n", table(
        ["slice", "expression", "result shape", "pg_oas cold", "pg_oas warm (n)", "DataJoint first",
         "DataJoint median (n)", "DataJoint / pg_oas, warm", "DataJoint / pg_oas, cold"], lat)]
    by = []
    for r in results:
        o, d = r["oas"], r["dj"]
        by.append([r["name"], human_bytes(o["needed"]), human_bytes(o["fetched"]), f"{o['ranges']:,}",
                   num(ratio(o["fetched"], o["needed"]), "×"),
                   "yes" if o["fetched"] <= 1.1 * o["needed"] else "**no**",
                   human_bytes(o["wire_warm"]), human_bytes(o["wire_cold"]),
                   human_bytes(d["downloaded"]), human_bytes(d["wire"]),
                   num(ratio(d["downloaded"], o["needed"]), "×"), num(o["rss"]), num(o["growth"]),
                   num(None if o["growth"] is None else o["growth"] - o["result_bytes"] / MiB)])
    parts += ["\n**Bytes** (needed = the slice's data; fetched = the ranges pg_oas reads, from "
              "`oas_npy_slice_stats`; target fetched ≤ 1.1 × needed, plus the header on a cold read; "
              "received = TCP payload from the S3 server, HTTP headers included, from `ss -ti`; backend peak "
              "RSS = VmHWM after the timed runs, shared buffers included; slice memory = how far a new "
              "backend's memory rose at its peak during `SELECT octet_length(oas_npy_slice(…))`, "
              "which builds the result without sending it; beyond the result = that minus the "
              "result's size, target < 64 MiB)\n", table(
        ["slice", "needed", "pg_oas fetched", "ranges", "fetched / needed", "≤ 1.1×", "pg_oas received, warm",
         "pg_oas received, cold", "DataJoint downloaded", "DataJoint received", "DataJoint / needed",
         "backend peak RSS MiB", "slice memory MiB", "beyond the result MiB"], by, text_cols=1)]
    row = next((r for r in results if r["name"] == "row"), None)
    notes = [f"- array: {meta['shape_txt']} float32, C order, random values; .npy object "
             f"{human_bytes(meta['object_size'])} ({meta['object_size']:,} bytes, header "
             f"{results[0]['oas']['header']} bytes); the cold read also fetches a "
             f"{human_bytes(meta['probe'])} header probe after a HEAD request",
             f"- DataJoint insert1 of the row (np.save + upload): {meta['insert_s']:.1f} s "
             f"({meta['object_size'] / meta['insert_s'] / 1e6:.0f} MB/s)" if meta["insert_s"] else
             "- the array was inserted by an earlier run (--reuse)"]
    retried = [r["name"] for r in results if r["oas"].get("attempts", 1) > 1]
    if retried:
        notes.append(f"- measured again after the backend failed (pg_oas.so replaced during the run?): "
                     f"{', '.join(retried)}")
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    if row:
        x = ratio(row["dj"]["median"], row["oas"]["warm"])
        notes.append(f"- one-row slice, DataJoint / pg_oas (warm): {num(x, '×')} — target ≥ 1,000×: "
                     f"{met(x is not None and x >= 1000)}")
    for r in results:
        w, c = ratio(r["dj"]["median"], r["oas"]["warm"]), ratio(r["dj"]["first"], r["oas"]["cold"])
        notes.append(f"- {r['name']} slice, DataJoint / pg_oas: {num(w, '×')} warm, {num(c, '×')} cold — "
                     f"target ≥ 1.0×: {met(w is not None and c is not None and min(w, c) >= 1.0)}")
    beyond = [(r["name"], r["oas"]["growth"] - r["oas"]["result_bytes"] / MiB) for r in results
              if r["oas"]["growth"] is not None]
    if beyond:
        worst = max(beyond, key=lambda b: b[1])
        notes.append(f"- memory beyond the result, largest: {worst[1]:.1f} MiB ({worst[0]}) — target < 64 MiB: "
                     f"{met(worst[1] < 64)}")
    notes.append(f"- Python client peak RSS: {meta['rss_gen']:.0f} MiB after making the array, "
                 f"{meta['rss_insert']:.0f} MiB after DataJoint's insert, {meta['rss_oas']:.0f} MiB after "
                 f"the pg_oas reads, {meta['rss_dj']:.0f} MiB after DataJoint's reads")
    notes.append(f"- wall time: {meta['total_s']:.0f} s (array {meta['gen_s']:.1f} s, insert "
                 f"{meta['insert_s'] or 0:.1f} s, pg_oas reads {meta['oas_s']:.1f} s, DataJoint reads {meta['dj_s']:.1f} s)")
    parts += ["\n" + "\n".join(notes)]
    return "\n".join(parts) + "\n"


def machine_info(admin, args, load_start):
    pg, build = extension_build(admin, args.pg_config)
    import datajoint

    return "\n".join([
        f"- {now_line()}",
        f"- {machine_line()}; load average (1 min) {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
        f"- store: SeaweedFS ({weed_version()}) S3 on {args.s3_port_host}, same machine" if args.protocol != "file"
        else f"- store: file store at {args.s3_port_host}",
        f"- {pg} (shared_buffers {shared_buffers_mib(admin)} MiB); {build}",
        f"- clients: psycopg {psycopg.__version__} (binary results), DataJoint {datajoint.__version__} "
        f"(NpyRef over s3fs), NumPy {np.__version__}, Python {platform.python_version()}",
        f"- command: bench_npy_slice.py {' '.join(sys.argv[1:])}",
    ])


# -------------------------------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default="host=127.0.0.1 port=25435 user=postgres dbname=npybench")
    p.add_argument("--store", default="s3", help="the pg_oas store (DataJoint gets the same spec)")
    p.add_argument("--size-mib", type=int, default=1024, help="array size; 4096 float32 columns (default 1024)")
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--runs", type=int, default=20, help="most warm pg_oas runs per slice (at least 3)")
    p.add_argument("--seconds", type=float, default=30.0, help="time budget of the warm pg_oas runs per slice")
    p.add_argument("--dj-runs", type=int, default=3, help="most DataJoint runs per slice after the first")
    p.add_argument("--dj-seconds", type=float, default=60.0, help="time budget of those runs per slice")
    p.add_argument("--seed", type=int, default=20261124)
    p.add_argument("--keep", action="store_true", help="leave the table and the object in place at the end")
    p.add_argument("--reuse", action="store_true",
                   help="use the table and object a --keep run left when they hold the same array "
                        "(same size, columns, seed and store), instead of inserting it again; implies --keep")
    add_output_args(p)
    args = p.parse_args()

    row_bytes = args.cols * DTYPE.itemsize
    rows, rem = divmod(args.size_mib * MiB, row_bytes)
    if rem or rows <= 1234 or args.cols <= 17:
        raise SystemExit(f"--size-mib {args.size_mib} × --cols {args.cols}: need a whole number of rows, "
                         f"more than 1234 of them, and more than 17 columns")
    start = rows // 4
    slices = [("row", "1234", np.s_[1234]), ("column", ":, 17", np.s_[:, 17]),
              ("block", f"{start}:{start + rows // 10}", np.s_[start:start + rows // 10])]

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    admin = psycopg.connect(args.dsn, autocommit=True)
    spec = admin.execute("SELECT s.spec || coalesce(sec.secrets, '{}') FROM oas.store s"
                         " LEFT JOIN oas.store_secret sec ON sec.store = s.name WHERE s.name = %s",
                         (args.store,)).fetchone()
    if spec is None:
        raise SystemExit(f"no store {args.store!r} in oas.store")
    spec = spec[0]
    args.protocol = spec.get("protocol")
    args.s3_port_host = spec.get("endpoint") or spec.get("location", "?")
    port = int(spec.get("endpoint", "x:443").rsplit(":", 1)[1]) if ":" in spec.get("endpoint", "") else 443
    wire = WireCounter(port if args.protocol != "file" else None)

    dj = datajoint_setup(args, spec)
    conn = dj.conn(reset=True)
    admin.execute("SET client_min_messages = warning")
    label = f"bench array {rows}x{args.cols} seed {args.seed} store {args.store}"
    reuse = args.reuse and kept_array(admin) == label
    if not reuse:
        admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')  # leftovers of an earlier run
        remove_objects(dj, spec)
    schema, Table = make_table(dj, conn, args.store)
    table_sql = Table.full_table_name
    meta = {"shape_txt": f"({rows:,}, {args.cols:,})", "probe": 4096}

    log(f"making a {args.size_mib} MiB float32 array {meta['shape_txt']}")
    t0 = time.perf_counter()
    arr = make_array(rows, args.cols, args.seed)
    meta["gen_s"], meta["rss_gen"] = time.perf_counter() - t0, peak_rss_mib()

    if reuse:
        log("reusing the array a --keep run inserted")
        meta["insert_s"], meta["rss_insert"] = None, peak_rss_mib()
    else:
        log("DataJoint insert1")
        t0 = time.perf_counter()
        Table.insert1({"array_id": 1, "arr": arr})
        meta["insert_s"], meta["rss_insert"] = time.perf_counter() - t0, peak_rss_mib()
        # What --reuse looks for (COMMENT takes no parameters: the label is quoted as a literal).
        admin.execute(psycopg.sql.SQL(f"COMMENT ON TABLE {table_sql} IS {{}}").format(psycopg.sql.Literal(label)))
    meta["object_size"] = admin.execute(f"SELECT oas.oas_object_size(arr) FROM {table_sql} WHERE array_id = 1").fetchone()[0]
    log(f"  object {meta['object_size']:,} bytes, peak RSS {meta['rss_insert']:.0f} MiB")

    results = []
    t0 = time.perf_counter()
    for name, expr, index in slices:
        t1 = time.perf_counter()
        for attempt in range(1, 4):
            try:
                o = measure_oas(args, table_sql, name, expr, arr[index], wire)
                break
            except psycopg.OperationalError as e:  # the backend died: most likely pg_oas.so was reinstalled
                if attempt == 3:
                    raise
                log(f"pg_oas    {name}: the connection failed ({str(e).splitlines()[0]}); pg_oas.so may have "
                    "been replaced under the backend. Measuring this slice again on a new backend.")
                wait_for_server(args.dsn)
        o["attempts"] = attempt
        results.append({"name": name, "expr": expr, "index": index, "oas": o})
        log(f"pg_oas    {name:<7} {expr!r:<16} cold {o['cold'] * 1000:9.1f} ms  warm {ms(o['warm']):>9} ms "
            f"(n={o['n']})  fetched {o['fetched']:,} of {o['needed']:,} in {o['ranges']:,} ranges  "
            f"({time.perf_counter() - t1:.1f} s)")
    meta["oas_s"], meta["rss_oas"] = time.perf_counter() - t0, peak_rss_mib()

    downloaded = count_downloads()
    t0 = time.perf_counter()
    for r in results:
        t1 = time.perf_counter()
        d = measure_dj(args, Table, r["name"], r["index"], arr[r["index"]], downloaded, wire)
        r["dj"] = d
        log(f"DataJoint {r['name']:<7} {r['expr']!r:<16} first {d['first'] * 1000:9.1f} ms  median "
            f"{ms(d['median']):>9} ms (n={d['n']})  downloaded {d['downloaded']:,}  "
            f"({time.perf_counter() - t1:.1f} s)")
    meta["dj_s"], meta["rss_dj"] = time.perf_counter() - t0, peak_rss_mib()

    del arr
    if not args.keep and not args.reuse:
        schema.drop(prompt=False)
        remove_objects(dj, spec)
    meta["total_s"] = time.perf_counter() - t_start

    admin = psycopg.connect(args.dsn, autocommit=True)  # the first one may have gone with a crashed server
    section = SECTION + (" (file store)" if args.protocol == "file" else "")
    text = f"{section}\n\n{machine_info(admin, args, load_start)}\n\n{report(results, meta)}"
    print_and_record(args, section, text)
    log(f"total {meta['total_s']:.0f} s, client peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
