"""Load (#13): many clients at once for a fixed time on SeaweedFS, the collector looping, then an
integrity check; the same load against plain bytea for comparison.

Run by `make load` (scripts/load.sh: its own cluster and a fresh location in the bucket). Each of
--clients connections (32) loops for --seconds over a mix of operations on two tables of its
target, picking rows at random among those inserted so far:

  insert    an object of a mixed size (4 KiB 50 %, 64 KiB 30 %, 1 MiB 18 %, 8 MiB 2 %)
  read      one object back (pg_oas: oas_hash_get; bytea: SELECT data)
  slice     rows 10–19 of column 5 of a 256 × 256 float32 array (pg_oas: oas_npy_slice of an <npy@>
            value; bytea: the same bytes with substring(), as a careful bytea user would)
  update    a row's object replaced by a new one
  delete    a row
  rollback  an insert, then ROLLBACK

pg_oas's tables are declared as DataJoint declares them (`jsonb`, `:<hash@s3>:` and `:<npy@s3>:`
comments), so the ledger's triggers and the row trigger for pending values (oas_hash, oas_npy) run
as in a pipeline. With pg_oas one more connection loops the collector (oas_gc(false, grace 0)),
pausing a second between runs.

Reported per target and operation: count, operations/s, latency p50/p95/p99 and errors by SQLSTATE.
At the end (pg_oas): oas_verify() finds nothing; the ledger (oas.ledger) equals the references in
the rows; a final collection (two runs with grace 0) leaves exactly the referenced
objects in the location (listed with s3fs, DataJoint's S3 client, not by pg_oas). Any failure of
these makes the run exit non-zero.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import random
import statistics
import sys
import threading
import time

import numpy as np
import psycopg

from common import add_output_args, extension_build, log, machine_line, now_line, num, print_and_record, store_specs, table

SECTION = "## Load: many clients on SeaweedFS, collector looping (#13)"
SIZES = [(4096, 50), (64 << 10, 30), (1 << 20, 18), (8 << 20, 2)]
MIX = [("insert", 30), ("read", 30), ("slice", 15), ("update", 10), ("delete", 10), ("rollback", 5)]
ARRAY = np.random.default_rng(7).standard_normal((256, 256)).astype(np.float32)
ROW_BYTES = ARRAY.shape[1] * 4


def npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


NPY = npy_bytes(ARRAY)
NPY_HEADER = len(NPY) - ARRAY.nbytes


class Target:
    """How one storage method does each operation."""

    def __init__(self, name, schema, oas):
        self.name, self.schema, self.oas = name, schema, oas

    def setup(self, conn, s3_store):
        s = self.schema
        conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        conn.execute(f"CREATE SCHEMA {s}")
        kind = "jsonb" if self.oas else "bytea"
        conn.execute(f"CREATE TABLE {s}.obj (id bigint PRIMARY KEY, size int NOT NULL, data {kind} NOT NULL)")
        conn.execute(f"CREATE TABLE {s}.arr (id bigint PRIMARY KEY, traces {kind} NOT NULL)")
        if self.oas:
            conn.execute(f"COMMENT ON COLUMN {s}.obj.data IS ':<hash@{s3_store}>: an object'")
            conn.execute(f"COMMENT ON COLUMN {s}.arr.traces IS ':<npy@{s3_store}>: traces'")
        else:  # stored out of line, uncompressed: what large bytea values become
            conn.execute(f"ALTER TABLE {s}.obj ALTER COLUMN data SET STORAGE EXTERNAL")
            conn.execute(f"ALTER TABLE {s}.arr ALTER COLUMN traces SET STORAGE EXTERNAL")

    def value(self, data):
        return ("oas.oas_hash(%b)", "oas.oas_npy(%b)") if self.oas else ("%b", "%b")

    def insert(self, conn, table, rid, data):
        obj, arr = self.value(data)
        if table == "obj":
            conn.execute(f"INSERT INTO {self.schema}.obj VALUES (%s, %s, {obj})", (rid, len(data), data))
        else:
            conn.execute(f"INSERT INTO {self.schema}.arr VALUES (%s, {arr})", (rid, data))

    def update(self, conn, rid, data):
        obj, _ = self.value(data)
        conn.execute(f"UPDATE {self.schema}.obj SET data = {obj}, size = %s WHERE id = %s", (data, len(data), rid))

    def read(self, conn, rid):
        sql = "oas.oas_hash_get(data)" if self.oas else "data"
        row = conn.execute(f"SELECT {sql}, size FROM {self.schema}.obj WHERE id = %s", (rid,), binary=True).fetchone()
        if row is not None and len(row[0]) != row[1]:
            raise AssertionError(f"{self.name}: object {rid} read back {len(row[0])} bytes, not {row[1]}")

    def slice(self, conn, rid):
        if self.oas:
            sql = "oas.oas_npy_slice(traces, '10:20, 5')"
        else:  # column 5 of rows 10–19: ten 4-byte values, one per row, each read with substring
            sql = "(SELECT string_agg(substring(traces from %d + r * %d + 21 for 4), ''::bytea ORDER BY r) " \
                  "FROM generate_series(10, 19) r)" % (NPY_HEADER, ROW_BYTES)
        conn.execute(f"SELECT {sql} FROM {self.schema}.arr WHERE id = %s", (rid,), binary=True).fetchone()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.times = collections.defaultdict(list)
        self.errors = collections.defaultdict(collections.Counter)

    def ok(self, op, seconds):
        with self.lock:
            self.times[op].append(seconds)

    def error(self, op, code):
        with self.lock:
            self.errors[op][code] += 1


def pick(choices, rng):
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def client(dsn, target, seconds, ids, stats, seed, stop_at):
    rng = random.Random(seed)
    conn = psycopg.connect(dsn, autocommit=True)
    try:
        while time.monotonic() < stop_at:
            op = pick(MIX, rng)
            t0 = time.perf_counter()
            try:
                if op in ("insert", "rollback"):
                    table = "arr" if rng.random() < 0.25 else "obj"
                    data = NPY if table == "arr" else os.urandom(pick(SIZES, rng))
                    rid = next(ids["next"])
                    if op == "insert":
                        target.insert(conn, table, rid, data)
                        ids[table].append(rid)
                    else:
                        with conn.transaction(force_rollback=True):
                            target.insert(conn, table, rid, data)
                elif op == "slice":
                    if not ids["arr"]:
                        continue
                    target.slice(conn, rng.choice(ids["arr"]))
                elif not ids["obj"]:
                    continue
                elif op == "read":
                    target.read(conn, rng.choice(ids["obj"]))
                elif op == "update":
                    target.update(conn, rng.choice(ids["obj"]), os.urandom(pick(SIZES, rng)))
                else:
                    conn.execute(f"DELETE FROM {target.schema}.obj WHERE id = %s", (rng.choice(ids["obj"]),))
            except psycopg.Error as e:
                stats.error(op, e.sqlstate or "connection")
                if conn.closed or conn.broken:
                    conn = psycopg.connect(dsn, autocommit=True)
                continue
            stats.ok(op, time.perf_counter() - t0)
    finally:
        conn.close()


def collector(dsn, store, stats, stop_at):
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SET client_min_messages = warning")
    try:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.execute("SELECT * FROM oas.oas_gc(false, store => %s, grace => '0')", (store,)).fetchall()
                stats.ok("collect", time.perf_counter() - t0)
            except psycopg.Error as e:
                stats.error("collect", e.sqlstate or "connection")
            time.sleep(1)
    finally:
        conn.close()


def run_target(args, target, s3_store):
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute("SET client_min_messages = warning")
    target.setup(admin, s3_store)
    counter = iter(range(1, 1 << 62))
    ids = {"next": counter, "obj": [], "arr": []}
    # A few rows to read before the first inserts land (not timed)
    for _ in range(20):
        rid = next(counter)
        target.insert(admin, "obj", rid, os.urandom(64 << 10))
        ids["obj"].append(rid)
    for _ in range(5):
        rid = next(counter)
        target.insert(admin, "arr", rid, NPY)
        ids["arr"].append(rid)
    stats = Stats()
    stop_at = time.monotonic() + args.seconds
    threads = [threading.Thread(target=client, args=(args.dsn, target, args.seconds, ids, stats, i, stop_at))
               for i in range(args.clients)]
    if target.oas:
        threads.append(threading.Thread(target=collector, args=(args.dsn, s3_store, stats, stop_at)))
    log(f"{target.name}: {args.clients} clients for {args.seconds:.0f} s")
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    admin.close()
    return stats, elapsed


def percentile(xs, q):
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def rows_of(name, stats, elapsed):
    out = []
    for op in [m for m, _ in MIX] + ["collect"]:
        xs, errs = stats.times.get(op, []), stats.errors.get(op, {})
        if not xs and not errs:
            continue
        ms = [x * 1e3 for x in xs]
        out.append([name, op, f"{len(xs):,}", num(len(xs) / elapsed),
                    *(num(percentile(ms, q)) if ms else "—" for q in (50, 95, 99)),
                    ", ".join(f"{c} × {n}" for c, n in sorted(errs.items())) or "none"])
    return out


def check_integrity(args, spec):
    """Problems found after the load (empty when everything agrees)."""
    problems = []
    conn = psycopg.connect(args.dsn, autocommit=True)
    conn.execute("SET client_min_messages = warning")
    broken = conn.execute("SELECT count(*) FROM oas.oas_verify()").fetchone()[0]
    if broken:
        problems.append(f"oas_verify() reports {broken} broken references")
    rows = "SELECT data->>'path' AS path FROM load_oas.obj UNION ALL SELECT traces->>'path' FROM load_oas.arr"
    differ = conn.execute(
        f"""WITH r AS (SELECT path, count(*) AS n FROM ({rows}) x GROUP BY path),
                 l AS (SELECT path, sum(refs) AS n FROM oas.ledger
                       WHERE table_oid IN ('load_oas.obj'::regclass, 'load_oas.arr'::regclass) GROUP BY path)
            SELECT count(*) FROM r FULL JOIN l USING (path) WHERE r.n IS DISTINCT FROM l.n""").fetchone()[0]
    if differ:
        problems.append(f"the ledger differs from the rows for {differ} objects")
    for _ in range(2):  # the first run notes candidates, the second (grace 0) moves them
        conn.execute("SELECT * FROM oas.oas_gc(false, store => 's3', grace => '0')").fetchall()
    referenced = {r[0] for r in conn.execute(rows).fetchall()}
    conn.close()
    from gc_stores import S3Store

    store = S3Store(spec, 16)
    fs = store.fs(fresh=True)
    stored = set()
    for key in fs.find(store.base):
        rel = key[len(store.base) + 1:]
        if not rel.startswith("_oas/"):
            stored.add(rel)
    if stored != referenced:
        problems.append(f"after a final collection the location holds {len(stored)} objects for {len(referenced)} "
                        f"references: {len(stored - referenced)} unreferenced, {len(referenced - stored)} missing")
    return problems, len(referenced)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default="host=127.0.0.1 port=25435 user=postgres dbname=oas_load")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--s3-store", default="s3")
    p.add_argument("--targets", default="oas,bytea")
    add_output_args(p)
    args = p.parse_args()
    admin = psycopg.connect(args.dsn, autocommit=True)
    specs = store_specs(admin)
    machine = [f"- {now_line()}", f"- {machine_line()}", f"- {' '.join(extension_build(admin, args.pg_config))}"]
    admin.close()
    results, problems, objects = [], [], None
    for key in args.targets.split(","):
        target = Target("pg_oas → S3" if key == "oas" else "bytea", f"load_{key}", key == "oas")
        stats, elapsed = run_target(args, target, args.s3_store)
        results += rows_of(target.name, stats, elapsed)
        if target.oas:
            log("integrity check")
            problems, objects = check_integrity(args, specs[args.s3_store])
    verdict = ("**integrity: clean**: oas_verify() found nothing, the ledger equals the rows, and a final "
               f"collection left exactly the {objects:,} referenced objects" if objects is not None and not problems
               else "**integrity: FAILED**: " + "; ".join(problems) if problems else "")
    text = "\n".join([SECTION, "", *machine,
                      f"- command: load.py {' '.join(sys.argv[1:])} ({args.clients} clients, {args.seconds:.0f} s per target)",
                      "", table(["target", "operation", "count", "per s", "p50 ms", "p95 ms", "p99 ms", "errors (SQLSTATE × n)"],
                                results), "", verdict])
    print_and_record(args, SECTION, text + "\n")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
