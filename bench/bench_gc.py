"""Garbage collection at scale: pg_oas's oas_gc() against DataJoint 2.3.5's dj.gc on the same objects.

For each scenario (store kind and object count, default local:100000, s3:100000, local:1000000):

  setup      DataJoint's client declares schema `gcb_<kind>_<n>` with one table `obj`
             (obj_id int32, payload <blob@store>); pg_oas's event trigger attaches the ledger
             triggers. N objects of --min-bytes..--max-bytes random bytes are written straight
             into the store, content-addressed as DataJoint and pg_oas name them:
             `_hash/{schema}/{base32(md5)}` (file store: a process pool, files owned by postgres;
             S3: s3fs with --s3-concurrency requests in flight). The first --referenced fraction
             (default 50 %) gets one row each, loaded with one COPY (whose statement trigger
             writes the ledger); the rest are orphans. Setup is timed on its own.
  baseline   what listing costs without any collector: `find` (names only, and with size and
             mtime, i.e. one stat per file) on the file store; an s3fs find (ListObjectsV2 pages)
             on S3.
  pg_oas     each call on a new connection (backend), with grace '0':
               dry run     oas_gc(true, store, '0'): mark, list, count; writes nothing
               real run 1  oas_gc(false, store, '0'): records the orphans as candidates
               real run 2  oas_gc(false, store, '0'): moves candidates to _oas/trash/
               restore     oas_gc_restore(run_id of real run 2): moves them back (so that
                           DataJoint gets the same data)
             Checked: after run 2 every referenced object is in place and exactly the orphans
             are in _oas/trash/_hash/{schema}/; after the restore all N are back.
             Memory: VmHWM of the backend (which counts the shared buffers it touched) and the
             peak of its private memory (RssAnon, sampled every 20 ms).
             Time split: pg_stat_statements (track = all) gives the time of the SQL the
             collector runs inside (reading references, candidate bookkeeping, move
             bookkeeping); the rest is listing, renames/copies and the Rust side. The NOTICE the
             collector sends when its listing is done is timestamped on arrival.
  DataJoint  dj.gc.GarbageCollector(schema, store=store).collect(dry_run=True), then
             collect(dry_run=False), each in a new Python process (so its peak RSS,
             VmHWM, is the collector's alone), timed around collect() only, and split into
             mark / list / delete by wrapping the collector's methods. A run that exceeds
             --dj-timeout seconds is stopped; its progress (files sized, files deleted) until
             then is reported. Checked: it deleted exactly the orphans.
  cleanup    the schema is dropped and its objects removed (not timed).

Run it through scripts/bench_gc.sh (or `make bench-gc`), which prepares a fresh cluster and the
stores `file` and `s3`:
  scripts/bench_gc.sh [--scenarios local:100000,s3:100000] [--record]
--record writes the results, with the machine's description, into BENCHMARKS.md (replacing this
benchmark's section if there is one). Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from gc_stores import LocalStore, S3Store
from common import Sampler, add_output_args, print_and_record, MiB, datajoint_for, shared_buffers_mib, weed_version, extension_build, log, machine_line, now_line, num, table

SECTION = "## Garbage collection: pg_oas vs DataJoint dj.gc"
TABLE = "obj"


def dj_configure(dsn, stores):
    return datajoint_for(dsn, {"default": "file", **stores})


def dj_declare(dsn, stores, schema_name, store):
    """DataJoint declares the schema and the table, as a DataJoint user would."""
    dj = dj_configure(dsn, stores)
    conn = dj.conn(reset=True)
    schema = dj.Schema(schema_name, connection=conn)

    class Obj(dj.Manual):
        definition = f"""
        obj_id : int32
        ---
        payload : <blob@{store}>
        """

    schema(Obj)
    full = Obj.full_table_name
    conn.close()
    return full


def own_peak_rss_mib():
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak at fork
    over into it across exec, so a child started by a big parent would report the parent's."""
    return proc_status_mib(os.getpid(), "VmHWM")


def dj_delete_sample(cfg):
    """In its own process: DataJoint's own delete_path (what collect() calls per orphan) on the
    given paths, timed; prints a JSON result."""
    dj = dj_configure(cfg["dsn"], cfg["stores"])
    import datajoint.gc as djgc

    rss0 = own_peak_rss_mib()
    t0 = time.perf_counter()
    deleted = sum(bool(djgc.delete_path(p, cfg["store"], config=dj.config)) for p in cfg["paths"])
    dt = time.perf_counter() - t0
    print("DJRESULT " + json.dumps({"time": dt, "deleted": deleted, "n": len(cfg["paths"]), "rss_before": rss0,
                                    "rss_peak": own_peak_rss_mib()}), flush=True)


def dj_child(cfg):
    """In its own process: one dj.gc collect(), timed and instrumented; prints a JSON result."""
    if cfg.get("paths") is not None:
        return dj_delete_sample(cfg)
    dj = dj_configure(cfg["dsn"], cfg["stores"])
    import datajoint.gc as djgc

    conn = dj.conn(reset=True)
    schema = dj.Schema(cfg["schema"], connection=conn, create_schema=False)
    collector = djgc.GarbageCollector(schema, store=cfg["store"])
    prog = {"phase": "start", "sized": 0, "deleted": 0, "t": 0.0}
    phases = {}
    t_start = [0.0]

    def timed(name, fn):
        def wrapper(*a, **k):
            prog["phase"] = name
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
                if name == "list" and not cfg["dry_run"]:
                    prog["phase"], prog["delete_t"] = "delete", time.perf_counter() - t_start[0]
        return wrapper

    collector._references = timed("mark", collector._references)
    collector.list_hash_paths = timed("list", collector.list_hash_paths)
    collector.list_schema_paths = timed("list", collector.list_schema_paths)
    fs = collector.backend.fs
    size = fs.size

    def counted_size(path):
        prog["sized"] += 1
        return size(path)

    fs.size = counted_size
    delete_path = djgc.delete_path

    def counted_delete(*a, **k):
        r = delete_path(*a, **k)
        prog["deleted"] += 1
        return r

    djgc.delete_path = counted_delete

    def report_progress():
        prog["t"] = time.perf_counter() - t_start[0]
        prog["rss"] = own_peak_rss_mib()
        print(json.dumps(prog), file=sys.stderr, flush=True)

    def every_second():
        while True:
            time.sleep(1)
            report_progress()

    def on_term(*_):  # the parent stops a run that takes too long: say how far it got
        report_progress()
        os._exit(3)

    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(target=every_second, daemon=True).start()
    rss0 = own_peak_rss_mib()
    print("COLLECT_START", file=sys.stderr, flush=True)
    t_start[0] = time.perf_counter()
    profile = os.environ.get("GCBENCH_DJ_PROFILE")  # a file to write a cProfile of collect() to
    if profile:
        import cProfile

        prof = cProfile.Profile()
        stats = prof.runcall(collector.collect, dry_run=cfg["dry_run"])
        prof.dump_stats(f"{profile}.{'dry' if cfg['dry_run'] else 'real'}")
    else:
        stats = collector.collect(dry_run=cfg["dry_run"])
    dt = time.perf_counter() - t_start[0]
    rss = own_peak_rss_mib()
    out = {k: v for k, v in stats.items() if not isinstance(v, list)}
    out.update(time=dt, rss_before=rss0, rss_peak=rss, phases=phases, scan_errors=stats["scan_errors"],
               orphans_sample=stats["orphaned_hash_paths"][:3])
    print("DJRESULT " + json.dumps(out), flush=True)


def run_dj(args, stores, schema, store, dry_run, paths=None):
    """dj.gc in a child process; stopped when collect() has run for --dj-timeout seconds. With
    paths: DataJoint's delete_path on those paths instead."""
    import tempfile

    cfg = {"dsn": args.dsn, "stores": stores, "schema": schema, "store": store, "dry_run": dry_run, "paths": paths}
    cfg_file = tempfile.NamedTemporaryFile(mode="w", suffix=".json", delete=False)
    json.dump(cfg, cfg_file)
    cfg_file.close()
    out = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, __file__, "--dj-child", cfg_file.name],
                            stdout=out, stderr=subprocess.PIPE, text=True)
    last, err_lines, started = {}, [], threading.Event()

    def read_err():
        for line in proc.stderr:
            if line.startswith("{"):
                try:
                    last.update(json.loads(line))
                except ValueError:
                    pass
            elif line.startswith("COLLECT_START"):
                started.set()
            else:
                err_lines.append(line)

    t = threading.Thread(target=read_err, daemon=True)
    t.start()
    if paths is None:
        started.wait(300)  # imports and connecting are not timed
    try:
        proc.wait(timeout=args.dj_timeout if paths is None else 3600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        t.join(5)
        log(f"    DataJoint {'dry' if dry_run else 'real'} run stopped after {args.dj_timeout:.0f} s: {last}")
        return {"timeout": True, "progress": dict(last)}
    t.join(5)
    os.unlink(cfg_file.name)
    out.seek(0)
    text = out.read()
    line = next((ln for ln in text.splitlines() if ln.startswith("DJRESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"DataJoint child failed (rc {proc.returncode}):\n{''.join(err_lines)[-4000:]}\n{text[-2000:]}")
    return json.loads(line[len("DJRESULT "):])


# ------------------------------------------------------------------------ pg_oas (measured)
def proc_status_mib(pid, key):
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            if ln.startswith(key + ":"):
                return int(ln.split()[1]) / 1024
    except OSError:
        return None
    return None


# Statements the collector runs inside (pg_stat_statements, nested), by what they are for.
STATEMENT_KINDS = [
    ("mark: read references", re.compile(r"oas_gc_mark", re.I)),
    ("candidates: record", re.compile(r"INSERT INTO oas\.gc_candidate", re.I)),
    ("candidates: dry-run check", re.compile(r"JOIN oas\.gc_candidate", re.I)),
    ("move: pick batch", re.compile(r"SELECT path, size FROM oas\.gc_candidate", re.I)),
    ("move: lock stripes", re.compile(r"pg_try_advisory_lock", re.I)),
    ("move: ledger veto", re.compile(r"FROM oas\.ref_log\s+WHERE store = (ANY\()?\$1\)? AND path = ANY", re.I)),
    ("move: record in gc_trash", re.compile(r"INSERT INTO oas\.gc_trash AS t", re.I)),
    ("move: drop candidates", re.compile(r"DELETE FROM oas\.gc_candidate WHERE store = \$1 AND path = ANY", re.I)),
    ("move: unlock stripes", re.compile(r"pg_advisory_unlock", re.I)),
    ("restore: pick page", re.compile(r"SELECT path FROM oas\.gc_trash\s+WHERE run_id", re.I)),
    ("restore: drop records", re.compile(r"DELETE FROM oas\.gc_trash WHERE", re.I)),
    ("store catalog lookups", re.compile(r"FROM oas\.store WHERE name = \$1|FROM oas\.store_secret", re.I)),
]
HORIZON = re.compile(r"least\(now\(\) - grace", re.I)


def stmt_breakdown(admin):
    rows = admin.execute(
        "SELECT query, calls, total_exec_time / 1000 FROM pg_stat_statements"
        " WHERE NOT toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " ORDER BY total_exec_time DESC").fetchall()
    kinds = {}
    horizon = None
    for q, calls, s in rows:
        if HORIZON.search(q):
            horizon = (calls, s)  # nested inside other statements: reported, not added
            continue
        kind = next((k for k, rx in STATEMENT_KINDS if rx.search(q)), "other SQL")
        c, t = kinds.get(kind, (0, 0.0))
        kinds[kind] = (c + calls, t + s)
    top = [(re.sub(r"\s+", " ", q)[:110], calls, s) for q, calls, s in rows[:8]]
    return kinds, horizon, top


def oas_call(args, admin, sql, params, label, timeout=None, settings=()):
    """One measured call on a new backend: time, memory, rows, NOTICE times, statement breakdown.
    With a timeout (s), a call that takes longer is cancelled and returns rows None."""
    conn = psycopg.connect(args.dsn, autocommit=True)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    for setting in settings:
        conn.execute(f"SET {setting}")
    if timeout:
        conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
    notices = []
    t0 = [time.perf_counter()]
    conn.add_notice_handler(lambda d: notices.append((time.perf_counter() - t0[0], d.message_primary)))
    busy = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE xact_start IS NOT NULL"
                         " AND pid NOT IN (pg_backend_pid(), %s) AND backend_type = 'client backend'", [pid]).fetchone()[0]
    if busy:
        log(f"    warning: {busy} other transaction(s) open during {label}")
    admin.execute("SELECT pg_stat_statements_reset()")
    rss0 = proc_status_mib(pid, "VmHWM")
    with Sampler(pid) as sampler:
        t0[0] = time.perf_counter()
        try:
            cur = conn.execute(sql, params)
            rows = cur.fetchall()
            names = [d.name for d in cur.description]
        except psycopg.errors.QueryCanceled:
            rows, names = None, []
        dt = time.perf_counter() - t0[0]
    hwm = proc_status_mib(pid, "VmHWM")
    conn.close()
    kinds, horizon, top = stmt_breakdown(admin)
    listed_at = next((t for t, m in notices if "objects listed" in m), None)
    log(f"    pg_oas {label}: {dt:.2f} s{' (STOPPED: statement_timeout)' if rows is None else ''}, VmHWM {hwm:.0f} MiB (at connect {rss0:.0f}), peak RssAnon {sampler.peak_anon:.0f} MiB"
        + (f", listing done at {listed_at:.2f} s" if listed_at is not None else ""))
    for k, (c, s) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        log(f"      {k:<28} {c:>9,} calls {s:8.2f} s")
    if horizon:
        log(f"      (oas._gc_horizon body       {horizon[0]:>9,} calls {horizon[1]:8.2f} s, inside the above)")
    for q, c, t in top[:5]:
        log(f"      top: {t:8.2f} s {c:>9,} calls  {q}")
    return {"time": dt, "rows": None if rows is None else [dict(zip(names, r)) for r in rows], "hwm": hwm, "anon": sampler.peak_anon,
            "hwm0": rss0, "notices": notices, "listed_at": listed_at, "kinds": kinds, "horizon": horizon, "top": top}


# ------------------------------------------------------------------------------- scenarios
def expect(cond, what, failures):
    if not cond:
        failures.append(what)
        log(f"    CHECK FAILED: {what}")


def run_scenario(args, admin, specs, kind, n):
    store = "file" if kind == "local" else "s3"
    spec = specs[store]
    st = LocalStore(spec) if kind == "local" else S3Store(spec, args.s3_concurrency)
    size = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k" if n >= 1000 else str(n)
    label = f"{'local' if kind == 'local' else 'S3'} {size}"
    schema = f"gcb_{kind}_{n}"
    nref = round(n * args.referenced)
    res = {"label": label, "kind": kind, "n": n, "nref": nref, "schema": schema, "store": store, "rows": [], "failures": []}
    fails = res["failures"]
    dj_stores = {name: dict(s) for name, s in specs.items()}
    log(f"== {label}: {n:,} objects, {nref:,} referenced, schema {schema}, store {store}")

    # --- setup
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    st.remove(schema)
    full = dj_declare(args.dsn, dj_stores, schema, store)
    st.make_dirs(schema)
    t0 = time.perf_counter()
    objs = st.write(schema, n, args.seed, args.min_bytes, args.max_bytes, args.workers)
    res["write_s"] = time.perf_counter() - t0
    hashes = [h for h, _ in objs]
    if len(set(hashes)) != n:
        raise SystemExit("content hashes collide: the payloads are not unique")
    ref_set, orphan_set = set(hashes[:nref]), set(hashes[nref:])
    res["bytes"] = sum(z for _, z in objs)
    t0 = time.perf_counter()
    with admin.cursor() as cur, cur.copy(f"COPY {full} (obj_id, payload) FROM STDIN") as cp:
        buf = []
        for i in range(nref):
            h, z = objs[i]
            buf.append(f'{i}\t{{"hash": "{h}", "path": "_hash/{schema}/{h}", "size": {z}, "store": "{store}", "schema": "{schema}"}}\n')
            if len(buf) == 50_000:
                cp.write("".join(buf))
                buf = []
        cp.write("".join(buf))
    res["load_s"] = time.perf_counter() - t0
    ledger = admin.execute("SELECT count(*) FROM oas.ref_log WHERE schema_name = %s", [schema]).fetchone()[0]
    # Autovacuum is off on the benchmark cluster (so that when statistics appear is not up to
    # chance); this is what it would do after the load.
    admin.execute(f"VACUUM ANALYZE {full}")
    admin.execute("ANALYZE oas.ref_log")
    del objs
    log(f"  setup: objects {res['write_s']:.1f} s ({n / res['write_s']:,.0f}/s, {res['bytes'] / MiB:.0f} MiB), "
        f"COPY of {nref:,} rows {res['load_s']:.1f} s (ledger rows {ledger:,})")
    # Our names are pg_oas's: it checks one object's size and MD5 against its reference.
    problem = admin.execute(f"SELECT oas.oas_check_reference(payload, true) FROM {full} WHERE obj_id = 0").fetchone()[0]
    expect(problem is None, f"pg_oas verifies a written object (size and MD5): {problem}", fails)

    # --- baselines
    for what, count, dt in st.baselines(schema):
        res["rows"].append(("listing baseline", what, count, None, None, dt, None, None))
        log(f"  baseline {what}: {count:,} in {dt:.2f} s")

    # --- pg_oas
    gc_sql = "SELECT * FROM oas.oas_gc(%s, %s, '0'::interval)"
    calls = {}

    def gc_call(phase, dry, timeout=None, settings=(), report=True):
        r = oas_call(args, admin, gc_sql, [dry, store], phase, timeout=timeout, settings=settings)
        if not report:
            return r, (r["rows"] or [None])[0]
        calls[phase] = r
        if r["rows"] is None:  # stopped: what it moved so far stays in trash (unrecorded: rolled back)
            moved = len(st.names(schema, trash=True))
            r["moved_before_stop"] = moved
            log(f"    stopped after {r['time']:.0f} s with {moved:,} objects in trash ({moved / r['time']:,.0f}/s)")
            res["rows"].append(("pg_oas", f"{phase}: **stopped after {timeout:.0f} s**", None, None, moved,
                                r["time"], r["hwm"], r["anon"]))
            return r, None
        row = r["rows"][0]
        res["rows"].append(("pg_oas", phase, row["stored"], row["orphaned"], row["trashed"] if not dry else 0,
                            r["time"], r["hwm"], r["anon"]))
        expect(not row["errors"], f"pg_oas {phase}: no errors ({row['errors']})", fails)
        expect(row["stored"] == n and row["orphaned"] == n - nref and row["referenced"] == nref,
               f"pg_oas {phase}: stored {row['stored']} = {n}, orphaned {row['orphaned']} = {n - nref}, "
               f"referenced {row['referenced']} = {nref}", fails)
        return r, row

    def check_collected(phase, row):
        expect(row["trashed"] == n - nref, f"pg_oas {phase}: trashed {row['trashed']} = {n - nref}", fails)
        live, trash = st.names(schema), st.names(schema, trash=True)
        expect(live == ref_set, f"after pg_oas {phase}: {len(live):,} objects in place = the {nref:,} referenced", fails)
        expect(trash == orphan_set, f"after pg_oas {phase}: {len(trash):,} objects in trash = the {n - nref:,} orphans", fails)

    def back_to_candidates(run_id):
        """Undo a run 2 (untimed): objects back in place, its trash records gone, and the orphans
        candidates again (a stopped run's records rolled back; a finished one's are re-recorded)."""
        t0 = time.perf_counter()
        back = st.untrash(schema)
        if run_id is not None:
            admin.execute("DELETE FROM oas.gc_trash WHERE run_id = %s", [run_id])
        have = admin.execute("SELECT count(*) FROM oas.gc_candidate WHERE store = %s", [store]).fetchone()[0]
        if have != n - nref:
            _, row = gc_call("real run 1 again", False, report=False)
            expect(row and row["trashed"] == 0, "real run 1 again records candidates only", fails)
        log(f"    (reset: {back:,} objects put back, candidates recorded again, {time.perf_counter() - t0:.1f} s)")

    def analyze():
        # What autovacuum (off here) would have done between runs: statistics for the new
        # candidates, and the dead rows of the harness's own resets gone from gc_trash.
        t0 = time.perf_counter()
        admin.execute("VACUUM ANALYZE oas.gc_candidate, oas.gc_trash")
        dt = time.perf_counter() - t0
        what = "VACUUM ANALYZE oas.gc_candidate, oas.gc_trash (autovacuum's job)"
        res["rows"].append(("PostgreSQL", what, None, None, None, dt, None, None))
        log(f"    {what}: {dt:.2f} s")

    gc_call("dry run", True)
    gc_call("real run 1 (record candidates)", False)
    # Run 2 as a test with grace '0' meets it: right after run 1, before autovacuum has analyzed
    # gc_candidate (local stores only: undoing it on S3 costs minutes of copies) ...
    last_run = None
    if kind == "local":
        phase = "real run 2 right after run 1 (gc_candidate not analyzed)"
        r, row = gc_call(phase, False, timeout=args.cap)
        if row is not None:
            check_collected(phase, row)
        back_to_candidates(row["run_id"] if row else None)
    # ... and as it meets it in production, a grace period after run 1: statistics are there.
    analyze()
    phase = "real run 2 (move to trash)"
    r, row = gc_call(phase, False)
    check_collected(phase, row)
    last_run = row["run_id"]
    if kind == "local" and not args.no_fsync_variant:
        back_to_candidates(last_run)
        analyze()
        phase = "real run 2, oas.file_fsync = off"
        r, row = gc_call(phase, False, settings=["oas.file_fsync = off"])
        check_collected(phase, row)
        last_run = row["run_id"]

    r = oas_call(args, admin, "SELECT count(*) AS restored FROM oas.oas_gc_restore(%s)", [last_run], "restore",
                 timeout=args.restore_timeout if kind == "local" else args.restore_timeout_s3)
    calls["restore"] = r
    if r["rows"] is not None:
        res["rows"].append(("pg_oas", "restore (oas_gc_restore)", None, None, r["rows"][0]["restored"], r["time"], r["hwm"], r["anon"]))
    else:
        # Stopped: the objects it moved back stay back (moves are not transactional), its
        # gc_trash deletions roll back. Count them, put the rest back, and drop the run's records.
        back = len(st.names(schema)) - nref
        r["restored_before_stop"] = back
        rest = st.untrash(schema)
        gone = admin.execute("DELETE FROM oas.gc_trash WHERE run_id = %s", [last_run]).rowcount
        log(f"    restore stopped after {r['time']:.0f} s with {back:,} objects back ({back / r['time']:,.0f}/s); "
            f"the other {rest:,} moved back by the harness, {gone:,} gc_trash rows deleted")
        res["rows"].append(("pg_oas", f"restore (oas_gc_restore): **stopped after {r['time']:.0f} s**",
                            None, None, back, r["time"], r["hwm"], r["anon"]))
    live, trash = st.names(schema), st.names(schema, trash=True)
    expect(live == ref_set | orphan_set and not trash, f"after restore: {len(live):,} objects in place, {len(trash):,} in trash", fails)
    res["oas"] = calls

    # --- DataJoint
    res["dj"] = {}
    for phase, dry in (("dry run", True), ("real run (delete)", False)):
        first = res["dj"].get("dry run", {})
        if not dry and first.get("timeout") and first["progress"].get("phase") in (None, "mark", "list"):
            # The real run lists the same way before it deletes anything: it would be stopped in
            # its listing too. Measure its deletion step alone instead, on some of the orphans.
            sample = [f"_hash/{schema}/{h}" for h in sorted(orphan_set)[:args.dj_delete_sample]]
            log(f"  DataJoint real run: not run (its listing is the dry run's); delete_path on {len(sample):,} orphans ...")
            d = run_dj(args, dj_stores, schema, store, False, paths=sample)
            d["skipped"] = True
            res["dj"][phase] = d
            log(f"    {d['deleted']:,} deleted in {d['time']:.2f} s ({d['deleted'] / d['time']:,.0f}/s)")
            res["rows"].append(("DataJoint dj.gc", f"{phase}: not run (it lists as the dry run does first)",
                                None, None, None, None, None, None))
            res["rows"].append(("DataJoint dj.gc", f"its deletion step alone: `delete_path` on {len(sample):,} of the orphans",
                                None, None, d["deleted"], d["time"], d["rss_peak"], None))
            expect(d["deleted"] == len(sample), f"dj delete_path deleted {d['deleted']} of {len(sample)}", fails)
            continue
        log(f"  DataJoint {phase} ...")
        d = run_dj(args, dj_stores, schema, store, dry)
        res["dj"][phase] = d
        if d.get("timeout"):
            p = d["progress"]
            res["rows"].append(("DataJoint dj.gc", f"{phase}: **stopped after {args.dj_timeout:.0f} s** in {p.get('phase')}",
                                p.get("sized"), None, p.get("deleted") if not dry else None, p.get("t"), p.get("rss"), None))
            continue
        log(f"    {d['time']:.2f} s, listed {d['hash_paths_stored']:,}, orphaned {d['hash_paths_orphaned']:,}, deleted {d['deleted']:,}, "
            f"peak RSS {d['rss_peak']:.0f} MiB (before collect {d['rss_before']:.0f}), phases "
            + ", ".join(f"{k} {v:.2f} s" for k, v in d["phases"].items()))
        res["rows"].append(("DataJoint dj.gc", phase, d["hash_paths_stored"], d["hash_paths_orphaned"],
                            d["deleted"] if not dry else 0, d["time"], d["rss_peak"], None))
        expect(d["hash_paths_stored"] == n and d["hash_paths_orphaned"] == n - nref and d["hash_paths_referenced"] == nref,
               f"dj.gc {phase}: stored {d['hash_paths_stored']} orphaned {d['hash_paths_orphaned']} referenced {d['hash_paths_referenced']}", fails)
        if not dry:
            expect(d["deleted"] == n - nref and d["errors"] == 0, f"dj.gc deleted {d['deleted']} = {n - nref}, errors {d['errors']}", fails)
    if not any(res["dj"]["real run (delete)"].get(k) for k in ("timeout", "skipped")):
        live = st.names(schema)
        expect(live == ref_set, f"after dj.gc: {len(live):,} objects in place = the {nref:,} referenced", fails)

    # --- cleanup
    if not args.keep:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        st.remove(schema)
    log(f"  {label}: {'all checks passed' if not fails else f'{len(fails)} CHECK(S) FAILED'}")
    return res


# --------------------------------------------------------------------------------- report
def s(x):
    return "—" if x is None else f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def table_aligned(header, rows, aligns):
    """A Markdown table with one alignment letter per column: l(eft) or r(ight)."""
    align = ["---" if a == "l" else "---:" for a in aligns]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, align, *rows])


def report(results, args):
    rows = []
    for r in results:
        for coll, phase, listed, orphans, moved, dt, rss, anon in r["rows"]:
            rate = None if dt is None or not listed else listed / dt
            rows.append([r["label"], coll, phase, "—" if listed is None else f"{listed:,}",
                         "—" if orphans is None else f"{orphans:,}", "—" if moved is None else f"{moved:,}",
                         s(dt), num(rate), num(rss), num(anon)])
    parts = [f"**Results** ({args.referenced:.0%} of the objects referenced by one row each, the rest orphans; "
             "pg_oas: one new backend per call, grace '0'; peak RSS = the backend's VmHWM, which counts the "
             "shared buffers it touched, private = its peak RssAnon; DataJoint: one new Python process per "
             "collect(), its VmHWM; objects/s = objects listed / time)\n",
             table(["scenario", "collector", "phase", "objects listed", "orphans found", "moved / deleted",
                    "time s", "objects/s", "peak RSS MiB", "private MiB"], rows, text_cols=3)]

    # Where pg_oas's time goes.
    kinds = [k for k, _ in STATEMENT_KINDS] + ["other SQL"]
    brows = []
    for r in results:
        for phase, c in r["oas"].items():
            used = [k for k in kinds if k in c["kinds"]]
            sql = sum(c["kinds"][k][1] for k in used)
            cells = "; ".join(f"{k} {c['kinds'][k][1]:.2f} s ({c['kinds'][k][0]:,})" for k in used
                              if c["kinds"][k][1] >= 0.005 * c["time"])
            brows.append([r["label"], phase, s(c["time"]), s(c["listed_at"]), s(sql), s(c["time"] - sql), cells or "—"])
    parts += ["\n**pg_oas: where the time goes** (SQL run inside the call, from pg_stat_statements with "
              "`track = all`: seconds (calls); the rest is the Rust side: listing the store, renames or "
              "copies, hashing paths, moving rows through SPI; `listing done` = arrival of the collector's "
              "NOTICE after its listing)\n",
              table_aligned(["scenario", "call", "total s", "listing done at s", "SQL s", "rest s", "SQL by purpose"],
                            brows, "llrrrrl")]

    drows = []
    for r in results:
        for phase, d in r["dj"].items():
            if d.get("timeout"):
                p = d["progress"]
                t = p.get("t") or args.dj_timeout
                done = f"{p.get('sized', 0):,} files listed and sized"
                if p.get("delete_t") is not None:
                    done += (f" in {p['delete_t']:.1f} s, then {p.get('deleted', 0):,} deleted in "
                             f"{t - p['delete_t']:.0f} s ({p.get('deleted', 0) / max(t - p['delete_t'], 1e-9):,.0f}/s)")
                drows.append([r["label"], phase, f"stopped after {t:.0f} s in {p.get('phase')}", done,
                              f"peak {p.get('rss', 0):.0f}"])
                continue
            if d.get("skipped"):
                rate = d["deleted"] / d["time"]
                orphans = r["n"] - r["nref"]
                drows.append([r["label"], phase, "not run",
                              f"its listing is the dry run's (stopped); its deletion step, DataJoint's `delete_path` "
                              f"per orphan, ran at {rate:,.0f}/s on {d['deleted']:,} orphans: the {orphans:,} orphans "
                              f"would take {orphans / rate:,.0f} s after the listing", f"{d['rss_before']:.0f} → {d['rss_peak']:.0f}"])
                continue
            ph = d["phases"]
            rest = d["time"] - sum(ph.values())
            drows.append([r["label"], phase, s(d["time"]),
                          f"mark {s(ph.get('mark'))}, list + size {s(ph.get('list'))}, "
                          f"{'delete' if not d['dry_run'] else 'set difference'} {s(rest)}",
                          f"{d['rss_before']:.0f} → {d['rss_peak']:.0f}"])
    parts += ["\n**DataJoint dj.gc: where the time goes** (seconds; mark = reading the references, "
              "list = fs.walk plus one fs.size per file; VmHWM before → after collect(); a stopped "
              "run gives its progress until then)\n",
              table_aligned(["scenario", "run", "time s", "phases", "VmHWM MiB"], drows, "llrlr")]

    notes = []
    for r in results:
        notes.append(f"- {r['label']}: {r['n']:,} objects of {args.min_bytes}–{args.max_bytes} bytes "
                     f"({r['bytes'] / MiB:.0f} MiB) written in {r['write_s']:.1f} s ({r['n'] / r['write_s']:,.0f}/s), "
                     f"{r['nref']:,} rows loaded with COPY (ledger trigger included) in {r['load_s']:.1f} s; "
                     + ("all checks passed" if not r["failures"] else "**checks failed: " + "; ".join(r["failures"]) + "**"))
    for r in results:
        if r["kind"] != "local" or r["n"] < 1_000_000:
            continue
        c = r["oas"]
        main = ["dry run", "real run 1 (record candidates)", "real run 2 (move to trash)"]
        worst = max(c[p]["time"] for p in main if p in c)
        notes.append(f"- target, {r['n']:,} local objects in under 60 s per oas_gc() call: dry run "
                     f"{c['dry run']['time']:.1f} s, real run 1 {c[main[1]]['time']:.1f} s, real run 2 "
                     f"{c[main[2]]['time']:.1f} s: **{'met' if worst < 60 else 'not met'}**"
                     + "".join(f"; {p}: " + (f"{c[p]['time']:.1f} s" if c[p]["rows"] is not None
                                             else f"stopped after {c[p]['time']:.0f} s")
                               for p in c if p not in main and p != "restore"))
        notes.append(f"- memory at {r['n']:,}: backend private memory (RssAnon) peak "
                     f"{max(c[p]['anon'] for p in c):.0f} MiB over all calls, VmHWM peak {max(c[p]['hwm'] for p in c):.0f} MiB")
    return "\n".join(parts) + "\n\n" + "\n".join(notes) + "\n"


def so_stamp(pg_config):
    """Size and mtime of the installed pg_oas.so (a reinstall during the run mixes two builds)."""
    libdir = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    st = os.stat(Path(libdir) / "pg_oas.so")
    return st.st_size, time.strftime("%H:%M:%S", time.gmtime(st.st_mtime))


def machine_info(admin, args, load_start, specs):
    pg, build = extension_build(admin, args.pg_config)
    import datajoint

    loc = specs["file"]["location"]
    df = subprocess.run(["df", "-hT", loc], capture_output=True, text=True).stdout.splitlines()[-1].split()
    return "\n".join([
        f"- {now_line()}",
        f"- {machine_line()}; load average (1 min) {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
        f"- stores: `file` on {df[0]} ({df[1]}), one directory per schema as DataJoint lays it out (no subfolding); "
        f"`s3` SeaweedFS ({weed_version()}) on {specs['s3'].get('endpoint')}, same machine; page and dentry caches warm",
        f"- {pg} (shared_buffers {shared_buffers_mib(admin)} MiB, pg_stat_statements.track = all); {build}",
        f"- clients: psycopg {psycopg.__version__}, DataJoint {datajoint.__version__} (s3fs for S3), Python {platform.python_version()}",
        f"- command: bench_gc.py {' '.join(a for a in sys.argv[1:] if not a.startswith('--dsn') and 'host=' not in a)}",
    ])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default="host=127.0.0.1 port=25436 user=postgres dbname=gcbench")
    p.add_argument("--scenarios", default="local:100000,s3:100000,local:1000000",
                   help="comma-separated KIND:N, KIND local or s3")
    p.add_argument("--referenced", type=float, default=0.5, help="fraction of the objects that rows reference")
    p.add_argument("--min-bytes", type=int, default=64)
    p.add_argument("--max-bytes", type=int, default=256)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes writing local objects")
    p.add_argument("--s3-concurrency", type=int, default=64, help="uploads in flight during setup")
    p.add_argument("--cap", type=float, default=120.0,
                   help="stop the run 2 that follows run 1 immediately (no statistics) after this many seconds")
    p.add_argument("--no-fsync-variant", action="store_true", help="skip the run 2 with oas.file_fsync = off")
    p.add_argument("--restore-timeout", type=float, default=60.0,
                   help="stop oas_gc_restore after this many seconds on the file store (the harness puts the rest back)")
    p.add_argument("--restore-timeout-s3", type=float, default=600.0,
                   help="the same on S3 (where putting the rest back from the harness is slower than pg_oas)")
    p.add_argument("--dj-delete-sample", type=int, default=2000,
                   help="when dj.gc's listing does not finish, time its delete_path on this many orphans")
    p.add_argument("--dj-timeout", type=float, default=900.0, help="stop a dj.gc collect() after this many seconds")
    p.add_argument("--seed", type=int, default=20261124)
    p.add_argument("--keep", action="store_true", help="leave each scenario's schema and objects in place")
    add_output_args(p)
    p.add_argument("--dj-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dj_child:
        return dj_child(json.loads(Path(args.dj_child).read_text()))

    scenarios = []
    for item in args.scenarios.split(","):
        kind, _, n = item.strip().partition(":")
        if kind not in ("local", "s3") or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--scenarios: {item!r} is not KIND:N with KIND local or s3")
        scenarios.append((kind, int(n)))

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute("SET client_min_messages = warning")
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    specs = {}
    for store in ("file", "s3"):
        row = admin.execute("SELECT s.spec || coalesce(sec.secrets, '{}') FROM oas.store s"
                            " LEFT JOIN oas.store_secret sec ON sec.store = s.name WHERE s.name = %s", [store]).fetchone()
        if row is None:
            raise SystemExit(f"no store {store!r} in oas.store")
        specs[store] = row[0]

    so_start = so_stamp(args.pg_config)
    results = []
    for kind, n in scenarios:
        results.append(run_scenario(args, admin, specs, kind, n))
        if so_stamp(args.pg_config) != so_start:
            break
    total = time.perf_counter() - t_start
    if so_stamp(args.pg_config) != so_start:
        raise SystemExit(f"pg_oas.so was replaced during the run ({so_start} -> {so_stamp(args.pg_config)}): "
                         "the scenarios did not all measure the same build; nothing recorded. Run it again.")
    text = (f"{SECTION}\n\n{machine_info(admin, args, load_start, specs)}\n- wall time of the whole run: {total / 60:.1f} min\n\n"
            f"{report(results, args)}")
    print_and_record(args, SECTION, text)
    failed = sum(len(r["failures"]) for r in results)
    log(f"total {total:.0f} s; {'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
