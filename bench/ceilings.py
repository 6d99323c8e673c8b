"""How far any implementation could go on this machine, measured in the same run as issue #12's
targets: for each target a lower bound of the time its work must take, from what that work cannot
skip, so that a target above it is out of reach here, whatever the extension does.

  get, verified (targets 1–4)  MD5 of the object (one core, hashlib, as fast as MD5 runs here: it
                               is sequential and must finish before the function returns its
                               value) + sending a *computed* value of that size to the client
                               (a function's result, as a get's is), taken as `SELECT data || ''`
                               minus `SELECT length(data || '')` (the detoasting and the copy
                               that make the computed value, which a get does not need). Sending
                               a computed value costs more than sending a stored one: PostgreSQL
                               copies it into fresh memory on the way (BENCHMARKS.md, "Gets:
                               where the time goes")
  put 4 KiB, autocommit (5)    an autocommit INSERT of a 150-byte jsonb reference (round trip, row,
                               WAL flush at commit) + creating a 4 KiB file, writing it, fsync of the
                               file and of its folder, in Python on the store's filesystem: a
                               committed reference must name a durable file, so these end before
                               the commit's WAL flush
  1 MiB × 1,000 on S3 (7)      the S3 server's own ingest: the same count of 1 MiB objects put by
                               DataJoint's S3 client (s3fs `pipe`, 16 PUTs in flight, no hashing)
  put 64 MiB on S3 (8)         receiving a 64 MiB bytea parameter (`SELECT length(%b)`: PostgreSQL
                               reads the whole message before any function runs) + DataJoint's
                               own put of the same size (MD5, then its upload in parts)

Each bound is a median over a few repetitions, as objects/s or MB/s; the put/get table of the same
run gives what it is compared with.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
import uuid

from common import MiB, log

REF = '{"hash": "%s", "path": "_hash/bench/%s", "size": 4096, "store": "file"}' % ("a" * 26, "a" * 26)


def _median_time(f, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _md5_seconds(size, reps):
    buf = os.urandom(size)
    return _median_time(lambda: hashlib.md5(buf).digest(), reps)


def get_floor(conn, size, reps):
    """MB/s a verified get of `size` bytes cannot exceed: MD5 + sending a computed value of that size."""
    conn.execute("DROP TABLE IF EXISTS bench_ceiling")
    conn.execute("CREATE TABLE bench_ceiling (id int PRIMARY KEY, data bytea)")
    conn.execute("INSERT INTO bench_ceiling VALUES (1, %b)", (os.urandom(size),))
    send = _median_time(lambda: conn.execute("SELECT data || ''::bytea FROM bench_ceiling WHERE id = 1",
                                             binary=True).fetchone(), reps)
    copy = _median_time(lambda: conn.execute("SELECT length(data || ''::bytea) FROM bench_ceiling WHERE id = 1").fetchone(),
                        reps)
    md5 = _md5_seconds(size, reps)
    conn.execute("DROP TABLE bench_ceiling")
    floor = md5 + max(send - copy, 0.0)
    return {"mbps": size / floor / 1e6, "md5 ms": md5 * 1e3, "send ms": send * 1e3, "copy ms": copy * 1e3}


def small_put_floor(conn, store_dir, n):
    """Objects/s a durable 4 KiB put in autocommit cannot exceed: an INSERT of its reference plus a
    file created, written and fsynced with its folder."""
    conn.execute("DROP TABLE IF EXISTS bench_ceiling_ref")
    conn.execute("CREATE TABLE bench_ceiling_ref (id int PRIMARY KEY, ref jsonb)")
    ids = iter(range(1, 1 << 30))
    insert = _median_time(lambda: conn.execute("INSERT INTO bench_ceiling_ref VALUES (%s, %s)", (next(ids), REF)), n)
    conn.execute("DROP TABLE bench_ceiling_ref")
    folder = tempfile.mkdtemp(prefix=".bench-ceiling-", dir=store_dir)
    data = os.urandom(4096)

    def one_file():
        fd = os.open(os.path.join(folder, uuid.uuid4().hex), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    try:
        file = _median_time(one_file, n)
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    return {"ops": 1 / (insert + file), "insert ms": insert * 1e3, "file ms": file * 1e3}


def s3_ingest(spec, size, n, in_flight=16):
    """Objects/s SeaweedFS takes `n` objects of `size` bytes at, from s3fs with `in_flight` PUTs."""
    from gc_stores import S3Store

    store = S3Store(spec, in_flight)
    fs = store.fs(fresh=True)
    prefix = f"{store.base}/_ceiling/{uuid.uuid4().hex}"
    batch = {f"{prefix}/{i}": os.urandom(size) for i in range(n)}
    t0 = time.perf_counter()
    fs.pipe(batch, batch_size=in_flight)
    seconds = time.perf_counter() - t0
    fs.rm(list(batch))
    return {"ops": n / seconds}


def receive_seconds(conn, size, reps):
    """Time PostgreSQL takes to receive a `size`-byte bytea parameter and do nothing with it."""
    data = os.urandom(size)
    return _median_time(lambda: conn.execute("SELECT length(%b)", (data,)).fetchone(), reps)


def run(args, admin, specs, store_dir, sizes, puts):
    """The bounds, as cells for targets.py: {(kind, size, ...): value}."""
    quick = args.quick
    out = {}
    for size in (MiB, 64 * MiB):
        if size in sizes:
            log(f"ceiling: verified get of {size // MiB} MiB")
            out[("get", size)] = get_floor(admin, size, 5 if size > MiB else (20 if quick else 100))
    if 4096 in sizes:
        log("ceiling: durable 4 KiB put")
        out[("put", 4096)] = small_put_floor(admin, store_dir, 100 if quick else 500)
    s3 = specs.get(args.s3_store)
    if s3 and not args.no_batch:
        n = 100 if quick else 1_000
        log(f"ceiling: S3 ingest of {n:,} × 1 MiB, 16 in flight")
        out[("s3 ingest", MiB, n)] = s3_ingest(s3, MiB, n)
    dj = next((r for r in puts if r["size"] == 64 * MiB and r["key"] == "dj-s3"), None)
    if dj is not None:
        log("ceiling: receiving a 64 MiB parameter")
        recv = receive_seconds(admin, 64 * MiB, 3 if quick else 7)
        out[("put", 64 * MiB)] = {"mbps": 64 * MiB / (recv + 64 * MiB / dj["mbps"] / 1e6) / 1e6,
                                  "receive ms": recv * 1e3}
    return out


def describe(found):
    """The parts each bound is made of, as one Markdown list."""
    lines = []
    for size in (MiB, 64 * MiB):
        if (d := found.get(("get", size))) is not None:
            lines.append(f"- verified get of {size // MiB} MiB: MD5 {d['md5 ms']:.2f} ms + sending "
                         f"{d['send ms'] - d['copy ms']:.2f} ms (`SELECT data || ''` {d['send ms']:.2f} ms − detoast and copy "
                         f"{d['copy ms']:.2f} ms) = at most {d['mbps']:,.0f} MB/s")
    if (d := found.get(("put", 4096))) is not None:
        lines.append(f"- durable 4 KiB put: INSERT of the reference {d['insert ms']:.3f} ms + file created, written "
                     f"and fsynced with its folder {d['file ms']:.3f} ms = at most {d['ops']:,.0f}/s")
    for key, d in found.items():
        if key[0] == "s3 ingest":
            lines.append(f"- SeaweedFS ingest, {key[2]:,} × {key[1] // MiB} MiB from s3fs, 16 in flight: {d['ops']:,.0f}/s")
    if (d := found.get(("put", 64 * MiB))) is not None:
        lines.append(f"- put of 64 MiB to S3: receiving the parameter {d['receive ms']:.0f} ms + DataJoint's put "
                     f"= at most {d['mbps']:,.1f} MB/s")
    return "\n".join(lines)
