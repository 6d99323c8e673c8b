"""Put/get throughput of pg_oas against the ways PostgreSQL and DataJoint store the same bytes.

For each object size (default 4 KiB, 1 MiB, 64 MiB) and each method it measures, from an outside
client (psycopg 3, bytea sent and received in the BINARY protocol, one autocommit transaction per
object), the median time of one put and of one get, as objects/s and MB/s (MB = 10^6 bytes):

  oas-file          INSERT INTO bench_ref VALUES (id, oas.oas_hash_put(data, 'file', 'bench'))
  oas-file-nofsync  the same with SET oas.file_fsync = off (put only; DataJoint does not fsync)
  oas-s3            the same into the S3 store 's3'
  bytea             INSERT INTO bench_bytea VALUES (id, data)   (column storage: --bytea-storage)
  lo                INSERT INTO bench_lo VALUES (id, lo_from_bytea(0, data))
  dj-file, dj-s3    DataJoint 2.3's own client: hash_registry.put_hash / get_hash into the same
                    stores and layout, no database involved (DataJoint's path for <hash@store>)

Gets read back the objects just put (warm caches) with SELECT oas.oas_hash_get(ref) / data /
lo_get(oid); pg_oas and DataJoint verify the MD5 of every read. Every payload is fresh random
bytes, so compression and deduplication never help. Puts also report the WAL written per object
(pg_current_wal_lsn() around the batch; run on a cluster with no other traffic and autovacuum off)
and the backend's peak RSS (VmHWM, a fresh connection per cell; includes shared buffers touched).
Physical limits of the same run: sequential write speed of the store's filesystem (4 MiB writes,
fsync at the end) and single-core MD5 speed; ratios relate pg_oas puts to them and to the others.

Then the batch cases of bench_batch.py (many objects in one statement against one round trip per
row; `--batch` runs only them, `--no-batch` skips them), and last one line per target of issue #12,
met or not met, judged from the cells of this run (targets.py).

Run it through scripts/bench.sh (or `make bench`), which prepares a fresh cluster and the stores:
  scripts/bench.sh [--quick] [--sizes 4K,1M,64M] [--methods oas-file,bytea] [--batch | --no-batch]
                   [--uploads-in-flight N] [--record]
--record writes the results, with the machine's description, into BENCHMARKS.md (replacing each
of this benchmark's sections that ran, if there is one). Progress goes to stderr, the tables to stdout.
"""

import argparse
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import psycopg

import bench_batch
import ceilings
import common
import targets
from common import (HAVE_S3FS, add_output_args, print_and_record, MiB, backend_peak_rss_mib, extension_build, log, machine_line,
                    now_line, num, remove_hash_folder, store_specs, table)

SCHEMA = "bench"  # the DataJoint schema, i.e. the folder under _hash/ in each store
SECTION = "## Put/get: pg_oas, bytea, large objects, DataJoint"
ALL_METHODS = ["oas-file", "oas-file-nofsync", "oas-s3", "bytea", "lo", "dj-file", "dj-s3"]


class Timer(common.Timer):
    def more(self, size, args):
        """Another iteration? At least --min-iters, then until --seconds, --max-iters or --max-bytes."""
        n = len(self.samples)
        return n < args.min_iters or (n < args.max_iters and sum(self.samples) < args.seconds
                                      and n * size < args.max_bytes)


# ------------------------------------------------------------------------------------ methods
class SqlMethod:
    """A put and a get statement, run one object per autocommit transaction."""

    def __init__(self, name, put_sql, get_sql, setup=()):
        self.name, self.put_sql, self.get_sql, self.setup = name, put_sql, get_sql, setup
        self.uses_db, self.has_get = True, get_sql is not None

    def connect(self, dsn):  # a fresh connection (backend) for every cell
        conn = psycopg.connect(dsn, autocommit=True)
        for stmt in self.setup:
            conn.execute(stmt)
        return conn

    def put(self, conn, key, data):  # data travels as binary bytea (%b)
        conn.execute(self.put_sql, (key, data))

    def get(self, conn, key):  # binary=True: the bytea result comes back raw, not hex
        return conn.execute(self.get_sql, (key,), binary=True).fetchone()[0]


class DataJointMethod:
    """DataJoint's client-side hash-addressed put/get into a store (no database insert)."""

    def __init__(self, name, store, cfg):
        from datajoint import hash_registry

        self.name, self.store, self.cfg, self.hr = name, store, cfg, hash_registry
        self.uses_db, self.has_get, self.meta = False, True, {}

    def connect(self, dsn):
        return None

    def put(self, conn, key, data):
        self.meta[key] = self.hr.put_hash(data, SCHEMA, self.store, config=self.cfg)

    def get(self, conn, key):
        return self.hr.get_hash(self.meta[key], config=self.cfg)


def datajoint_config(specs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No datajoint.json found": it is configured right here
        from datajoint.settings import Config

        cfg = Config()
    cfg.stores = dict(specs)
    return cfg


def make_methods(args, specs):
    put_oas = "INSERT INTO bench_ref (id, ref) VALUES (%s, oas.oas_hash_put(%b, '{}', '" + SCHEMA + "'))"
    get_oas = "SELECT oas.oas_hash_get(ref) FROM bench_ref WHERE id = %s"
    cfg = datajoint_config(specs)
    methods = {
        "oas-file": SqlMethod("pg_oas → file", put_oas.format(args.file_store), get_oas),
        "oas-file-nofsync": SqlMethod("pg_oas → file, no fsync", put_oas.format(args.file_store),
                                      None, setup=["SET oas.file_fsync = off"]),
        "oas-s3": SqlMethod("pg_oas → S3", put_oas.format(args.s3_store), get_oas),
        "bytea": SqlMethod(f"bytea ({args.bytea_storage.lower()})",
                           "INSERT INTO bench_bytea (id, data) VALUES (%s, %b)",
                           "SELECT data FROM bench_bytea WHERE id = %s"),
        "lo": SqlMethod("large object", "INSERT INTO bench_lo (id, loid) VALUES (%s, lo_from_bytea(0, %b))",
                        "SELECT lo_get(loid) FROM bench_lo WHERE id = %s"),
        "dj-file": DataJointMethod("DataJoint → file", args.file_store, cfg),
        "dj-s3": DataJointMethod("DataJoint → S3", args.s3_store, cfg),
    }
    chosen = []
    for key in args.methods.split(","):
        if key not in methods:
            raise SystemExit(f"unknown method {key!r}; known: {', '.join(ALL_METHODS)}")
        if key.endswith("s3") and args.s3_store not in specs:
            log(f"skipping {key}: no store {args.s3_store!r}")
        elif key == "dj-s3" and not HAVE_S3FS:
            log("skipping dj-s3: DataJoint needs s3fs for S3 and it is not installed")
        else:
            chosen.append((key, methods[key]))
    return chosen


# ---------------------------------------------------------------------------------- database
def setup_tables(admin, args):
    admin.execute("SET client_min_messages = warning")
    admin.execute("DROP TABLE IF EXISTS bench_ref, bench_bytea, bench_lo")
    opts = "WITH (autovacuum_enabled = off, toast.autovacuum_enabled = off)"
    admin.execute(f"CREATE TABLE bench_ref (id int PRIMARY KEY, ref jsonb NOT NULL) {opts}")
    admin.execute(f"CREATE TABLE bench_bytea (id int PRIMARY KEY, data bytea NOT NULL) {opts}")
    admin.execute(f"ALTER TABLE bench_bytea ALTER COLUMN data SET STORAGE {args.bytea_storage}")
    admin.execute(f"CREATE TABLE bench_lo (id int PRIMARY KEY, loid oid NOT NULL) {opts}")


def clear_objects(admin, specs, args):
    """Between sizes: empty the tables and the stores' _hash/bench folders (not timed)."""
    admin.execute("SELECT lo_unlink(loid) FROM bench_lo")
    admin.execute("TRUNCATE bench_ref, bench_bytea, bench_lo")
    admin.execute("VACUUM pg_largeobject")
    for name in (args.file_store, args.s3_store):
        if name in specs:
            remove_hash_folder(specs[name], SCHEMA)


# ---------------------------------------------------------------------------------- measuring
def measure(key_name, method, size, args, admin, next_id):
    """One put cell and one get cell. Returns (put_row, get_row) dicts; get_row may be None."""
    admin.execute("CHECKPOINT")  # start every put batch with nothing left to flush from the last
    os.sync()
    conn = method.connect(args.dsn)
    timer, keys, digests = Timer(), [], {}
    lsn0 = admin.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # no other traffic: WAL is ours
    while timer.more(size, args):
        data, key = os.urandom(size), next_id()
        with timer:
            method.put(conn, key, data)
        keys.append(key)
        if len(digests) < 3:
            digests[key] = hashlib.md5(data).digest()
    wal = admin.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn0,)).fetchone()[0]
    put = row(key_name, method, size, timer, float(wal) / len(keys) if method.uses_db else None, conn)
    if not method.has_get:
        return put, None
    conn, timer = method.connect(args.dsn), Timer()
    while timer.more(size, args):
        key = keys[len(timer.samples) % len(keys)]
        with timer:
            got = method.get(conn, key)
        if len(got) != size or (key in digests and hashlib.md5(got).digest() != digests.pop(key)):
            raise SystemExit(f"{method.name}: object {key} read back wrong")
    return put, row(key_name, method, size, timer, None, conn)


def row(key, method, size, timer, wal, conn):
    """A result (median time per object); reads the backend's peak RSS and closes conn."""
    med, rss = statistics.median(timer.samples), None
    if conn:
        rss = backend_peak_rss_mib(conn)
        conn.close()
    return {"size": size, "key": key, "method": method.name, "ops": 1 / med, "mbps": size / med / 1e6,
            "wal": wal, "rss": rss, "n": len(timer.samples)}


def disk_write_mbps(directory, total, chunk=4 * MiB):
    """Sequential write of `total` bytes in `chunk` writes to a new file, fsync at the end."""
    buf = os.urandom(chunk)
    fd, path = tempfile.mkstemp(prefix=".bench-disk-", dir=directory)
    try:
        with (t := Timer()):
            for _ in range(total // chunk):
                os.write(fd, buf)
            os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(path)
    return total / t.samples[0] / 1e6


def md5_mbps(total, chunk=4 * MiB):
    buf, h = os.urandom(chunk), hashlib.md5()
    with (t := Timer()):
        for _ in range(total // chunk):
            h.update(buf)
    return total / t.samples[0] / 1e6


def limits(directory, reps):
    med = lambda f, *a: statistics.median(f(*a) for _ in range(reps))  # noqa: E731
    return {"disk_64": med(disk_write_mbps, directory, 64 * MiB),
            "disk_256": med(disk_write_mbps, directory, 256 * MiB), "md5": med(md5_mbps, 256 * MiB)}


# ---------------------------------------------------------------------------------- reporting
def human_size(n):
    for unit, f in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= f and n % f == 0:
            return f"{n // f} {unit}"
    return f"{n} B"


def report(puts, gets, lim, sizes):
    parts = ["**Put** (one object per autocommit transaction; median over n; RSS includes the shared "
             "buffers the backend touched)\n", table(
        ["size", "method", "objects/s", "MB/s", "WAL bytes/object", "backend peak RSS MiB", "n"],
        [[human_size(r["size"]), r["method"], num(r["ops"]), num(r["mbps"]), num(r["wal"]), num(r["rss"]), str(r["n"])]
         for r in puts])]
    parts += ["\n**Get** (objects just put, warm caches)\n", table(
        ["size", "method", "objects/s", "MB/s", "backend peak RSS MiB", "n"],
        [[human_size(r["size"]), r["method"], num(r["ops"]), num(r["mbps"]), num(r["rss"]), str(r["n"])]
         for r in gets])]
    limit = min(lim["disk_256"], lim["md5"])
    parts += ["\n**Physical limits**\n", table(["what", "MB/s"], text_cols=1, rows=[
        ["sequential write, 64 MiB in 4 MiB writes + fsync, store filesystem", num(lim["disk_64"])],
        ["sequential write, 256 MiB in 4 MiB writes + fsync, store filesystem", num(lim["disk_256"])],
        ["MD5, one core (hashlib)", num(lim["md5"])],
        ["limit = slower of 256 MiB write and MD5", num(limit)]])]
    by = {(r["size"], r["key"]): r["mbps"] for r in puts}
    ratio = lambda a, b: None if a is None or not b else a / b  # noqa: E731
    rows = []
    for size in sizes:
        for store, label in (("file", "pg_oas → file"), ("s3", "pg_oas → S3")):
            mine = by.get((size, f"oas-{store}"))
            if mine is None:
                continue
            rows.append([human_size(size), label,
                         num(100 * mine / limit, " %") if size >= MiB else "—",
                         num(ratio(mine, by.get((size, "bytea"))), "×"), num(ratio(mine, by.get((size, "lo"))), "×"),
                         num(ratio(mine, by.get((size, f"dj-{store}"))), "×")])
    parts += ["\n**pg_oas put throughput (MB/s) relative to** (the limit is the local one; SeaweedFS "
              "writes to the same disk)\n", table(
        ["size", "method", "% of physical limit", "bytea put", "large object put", "DataJoint put, same store"], rows)]
    return "\n".join(parts) + "\n"


def machine_info(admin, store_dir, args):
    df = subprocess.run(["df", "-h", "--output=source,fstype,size,avail", store_dir],
                        capture_output=True, text=True).stdout.splitlines()[-1].split()
    settings = dict(admin.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                                  (["shared_buffers", "synchronous_commit", "wal_compression"],)).fetchall())
    pg, build = extension_build(admin, args.pg_config)
    import datajoint

    return "\n".join([
        f"- {now_line()}",
        f"- {machine_line()}",
        f"- store disk: {df[0]} ({df[1]}), {df[2]} total, {df[3]} free",
        f"- {pg} (shared_buffers {int(settings['shared_buffers']) * 8 // 1024} MiB, synchronous_commit "
        f"{settings['synchronous_commit']}, wal_compression {settings['wal_compression']}); {build}",
        f"- clients: psycopg {psycopg.__version__} (binary bytea), DataJoint {datajoint.__version__}, "
        f"Python {platform.python_version()}; bytea column storage {args.bytea_storage}",
        f"- command: bench_put_get.py {' '.join(sys.argv[1:])}",
    ])


# ---------------------------------------------------------------------------------------- main
def parse_size(s):
    s = s.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1024, "M": MiB, "G": 1 << 30}.get(s[-1:], 1)
    return int(s.rstrip("KMG")) * mult


def run_put_get(args, admin, specs, store_dir):
    """The put and get cells and the physical limits: (puts, gets, section text)."""
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    setup_tables(admin, args)
    methods = make_methods(args, specs)
    log("physical limits")
    lim = limits(store_dir, 1 if args.quick else 3)
    ids = iter(range(1, 1 << 31))
    puts, gets = [], []
    for size in sizes:
        clear_objects(admin, specs, args)
        for key, method in methods:
            t0 = time.perf_counter()
            put, get = measure(key, method, size, args, admin, lambda: next(ids))
            puts.append(put)
            gets += [get] if get else []
            log(f"{human_size(size):>7} {key:<17} put {put['mbps']:8.1f} MB/s"
                + (f"  get {get['mbps']:8.1f} MB/s" if get else "") + f"  ({time.perf_counter() - t0:.1f} s)")
    clear_objects(admin, specs, args)
    return puts, gets, f"{SECTION}\n\n{machine_info(admin, store_dir, args)}\n\n{report(puts, gets, lim, sizes)}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default="host=127.0.0.1 port=25434 user=postgres dbname=oas_bench")
    p.add_argument("--sizes", default="4K,1M,64M")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=", ".join(ALL_METHODS))
    p.add_argument("--quick", action="store_true", help="~0.5 s per cell instead of ~3 s, smaller batches")
    p.add_argument("--seconds", type=float, help="target time per cell")
    p.add_argument("--min-iters", type=int, default=3)
    p.add_argument("--max-iters", type=int, default=5000)
    p.add_argument("--max-bytes", type=parse_size, default=None, help="cap on bytes per cell (default 1G, quick 256M)")
    p.add_argument("--file-store", default="file")
    p.add_argument("--s3-store", default="s3")
    p.add_argument("--bytea-storage", default="EXTENDED", type=str.upper, choices=["EXTENDED", "EXTERNAL"])
    bench_batch.add_arguments(p)
    add_output_args(p)
    args = p.parse_args()
    args.seconds = args.seconds or (0.5 if args.quick else 3.0)
    args.max_bytes = args.max_bytes or (256 * MiB if args.quick else 1 << 30)
    t_start = time.perf_counter()
    admin = psycopg.connect(args.dsn, autocommit=True)
    specs = store_specs(admin)
    if args.file_store not in specs or specs[args.file_store]["protocol"] != "file":
        raise SystemExit(f"no file store {args.file_store!r} in oas.store")
    store_dir = specs[args.file_store]["location"]

    puts, gets, batches = [], [], []
    if not args.batch:
        puts, gets, text = run_put_get(args, admin, specs, store_dir)
        print_and_record(args, SECTION, text)
    if not args.no_batch:
        batches, gen, in_flight = bench_batch.run(args, admin, specs)
        print_and_record(args, bench_batch.SECTION, bench_batch.report(args, admin, batches, gen, in_flight),
                         after=SECTION)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    bounds = ceilings.run(args, admin, specs, store_dir, sizes, puts) if not args.batch else {}
    build = extension_build(admin, args.pg_config)[1]
    header = f"- {now_line()}; {build}\n- command: bench_put_get.py {' '.join(sys.argv[1:])}"
    print_and_record(args, targets.SECTION, targets.report(puts, gets, batches, bounds, header), after=bench_batch.SECTION)
    log(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
