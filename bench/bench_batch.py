"""Many objects in one statement (#12): one client round trip per row against one statement.

Run by bench_put_get.py (`make bench`; `--batch` runs only these cases, `--no-batch` skips them).
For each case (4 KiB × 10,000 and 1 MiB × 1,000; with --quick 4 KiB × 1,000 and 1 MiB × 100),
each store (`file`, and `s3` on SeaweedFS) and each form below, n objects go into a fresh table
`bench_batch.b_<form>` (id int PRIMARY KEY, ref jsonb) whose column is declared `:<hash@store>:`
as DataJoint declares it, so the ledger's triggers (and the row trigger for pending values) run as
in a pipeline. Each form is one transaction, timed from BEGIN to the end of COMMIT:

  per row   INSERT INTO t VALUES (i, oas.oas_hash_put(DATA(i), store, 'bench_batch')), one
            statement and one client round trip per row (psycopg prepares it after the 5th)
  one       INSERT INTO t SELECT i, oas.oas_hash_put(DATA(i), store, 'bench_batch')
            FROM generate_series(1, n) i
  pending   INSERT INTO t SELECT i, oas.oas_hash(DATA(i)) FROM generate_series(1, n) i: the row
            trigger stores each pending value
  COPY      COPY t (id) FROM STDIN with the ids 1..n, the column's DEFAULT being
            oas.oas_hash(DATA(nextval(seq))): COPY calls no function on its input, so a default
            is the one way a pending value made in SQL goes in with COPY

DATA(i) = decode(repeat(md5(RUN || i), size / 16), 'hex'): size bytes made in SQL, the same way for
every form, with RUN new for every form, store and run, so nothing is ever deduplicated. Making
the data alone (`SELECT sum(length(DATA(i))) FROM generate_series(1, n) i`) is timed too, once
per case, and a second ratio takes it off both forms, so it is about the uploads. Before the timed run each form runs once for
one row (id 0, not timed) on the same backend, which loads the library and connects the store.

Measured: objects/s and MB/s (MB = 10^6 bytes) of each form; one statement / per row; the backend's
private memory (RssAnon: anonymous pages, so not the shared buffers it touches), sampled every
20 ms from /proc while the transaction runs, at the start and at its peak. --uploads-in-flight N
sets oas.uploads_in_flight for the one-statement forms, when the installed pg_oas has it.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import psycopg
from psycopg import sql

from common import MiB, Sampler, extension_build, log, machine_line, now_line, num, remove_hash_folder, table

SCHEMA = "bench_batch"  # the SQL schema of the tables, hence the folder under _hash/ in each store
SECTION = "## Batches: many objects in one statement"
SETTING = "oas.uploads_in_flight"
CASES = [(4096, 10_000, 1_000), (MiB, 1_000, 100)]  # (size, n, n with --quick)
FORMS = {  # key: (label, one statement?)
    "per-row": ("per row: INSERT … VALUES, one statement per row", False),
    "one": ("one statement: INSERT … SELECT oas_hash_put", True),
    "pending": ("one statement: INSERT … SELECT oas_hash (pending)", True),
    "copy": ("one statement: COPY, pending value from DEFAULT", True),
}


def add_arguments(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", action="store_true", help="run only the batch cases")
    g.add_argument("--no-batch", action="store_true", help="skip the batch cases")
    p.add_argument("--uploads-in-flight", type=int, metavar="N",
                   help=f"SET {SETTING} = N for the one-statement batch forms (ignored if pg_oas has no such setting)")


def cases(args):
    return [(size, quick if args.quick else n) for size, n, quick in CASES]


def human(size, n):
    return f"{size // MiB} MiB × {n:,}" if size >= MiB else f"{size // 1024} KiB × {n:,}"


def data(run, size, i):
    """DATA(i): `size` bytes made in SQL from the run token and the SQL expression `i`."""
    return sql.SQL("decode(repeat(md5({} || ({})::text), {}), 'hex')").format(
        sql.Literal(run), i, sql.Literal(size // 16))


def setting_of(conn):
    """oas.uploads_in_flight as this backend sees it (the library loaded), or None without it."""
    conn.execute("SELECT oas.oas_content_hash(''::bytea)")  # loads pg_oas, which defines its settings
    row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s AND vartype = 'integer'", [SETTING]).fetchone()
    return row and row[0]


# ------------------------------------------------------------------------------------ one form
def make_table(admin, form, store, run, size):
    """A fresh `<hash@store>` table for `form`; for COPY, its column's DEFAULT makes the values."""
    t = sql.Identifier(SCHEMA, "b_" + form.replace("-", "_"))
    admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(t))
    admin.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, ref jsonb) WITH (autovacuum_enabled = off)").format(t))
    admin.execute(sql.SQL("COMMENT ON COLUMN {}.ref IS {}").format(t, sql.Literal(f":<hash@{store}>:")))
    if form == "copy":
        seq = sql.Identifier(SCHEMA, "b_copy_seq")
        admin.execute(sql.SQL("DROP SEQUENCE IF EXISTS {}; CREATE SEQUENCE {}").format(seq, seq))
        nextval = sql.SQL("nextval({})").format(sql.Literal(f"{SCHEMA}.b_copy_seq"))
        admin.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN ref SET DEFAULT oas.oas_hash({})").format(
            t, data(run, size, nextval)))
    return t


def fill(conn, form, t, store, run, size, first, last):
    """Rows first..last of table t in `form`, in the caller's transaction."""
    put = sql.SQL("oas.oas_hash_put({}, {}, {})")
    if form == "per-row":
        stmt = sql.SQL("INSERT INTO {} VALUES (%(i)s, {})").format(
            t, put.format(data(run, size, sql.Placeholder("i")), sql.Literal(store), sql.Literal(SCHEMA)))
        for i in range(first, last + 1):
            conn.execute(stmt, {"i": i})
    elif form == "copy":
        with conn.cursor().copy(sql.SQL("COPY {} (id) FROM STDIN").format(t)) as copy:
            for i in range(first, last + 1):
                copy.write_row((i,))
    else:
        value = (put.format(data(run, size, sql.SQL("i")), sql.Literal(store), sql.Literal(SCHEMA)) if form == "one"
                 else sql.SQL("oas.oas_hash({})").format(data(run, size, sql.SQL("i"))))
        conn.execute(sql.SQL("INSERT INTO {} SELECT i, {} FROM generate_series(%s::int, %s::int) i").format(t, value),
                     [first, last])


def check(admin, t, store, size, rows):
    """Every row has its own object of the right size in the right store; the last one reads back."""
    got = admin.execute(sql.SQL(
        "SELECT count(*), count(DISTINCT ref->>'hash'), coalesce(sum((ref->>'size')::bigint), 0),"
        " count(*) FILTER (WHERE ref->>'store' IS DISTINCT FROM %s) FROM {}").format(t), [store]).fetchone()
    if tuple(got) != (rows, rows, rows * size, 0):
        raise SystemExit(f"{t.as_string(admin)}: rows, distinct objects, bytes, wrong store = {got}, "
                         f"expected {(rows, rows, rows * size, 0)}")
    n = admin.execute(sql.SQL("SELECT length(oas.oas_hash_get(ref)) FROM {} WHERE id = %s").format(t),
                      [rows - 1]).fetchone()[0]
    if n != size:
        raise SystemExit(f"{t.as_string(admin)}: the last object read back {n} bytes, not {size}")


def run_form(args, admin, form, store, size, n, in_flight):
    run = f"{uuid.uuid4().hex}-{form}-{store}-{size}-"  # new for every form: nothing deduplicates
    t = make_table(admin, form, store, run, size)
    conn = psycopg.connect(args.dsn, autocommit=True)
    if in_flight is not None and FORMS[form][1] and args.uploads_in_flight:
        conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(*SETTING.split(".")),
                                                            sql.Literal(args.uploads_in_flight)))
    fill(conn, form, t, store, run, size, 0, 0)  # the warm-up row, not timed
    admin.execute("CHECKPOINT")  # start with nothing left to flush from the last form
    os.sync()
    with Sampler(conn.info.backend_pid) as mem:
        t0 = time.perf_counter()
        with conn.transaction():
            fill(conn, form, t, store, run, size, 1, n)
        dt = time.perf_counter() - t0
    conn.close()
    check(admin, t, store, size, n + 1)
    admin.execute(sql.SQL("DROP TABLE {}").format(t))
    start = mem.start_anon
    return {"size": size, "n": n, "store": store, "form": form, "s": dt, "ops": n / dt, "mbps": n * size / dt / 1e6,
            "start": start, "peak": mem.peak_anon if start is not None else None,
            "growth": mem.peak_anon - start if start is not None else None}


def generation_seconds(admin, size, n):
    """Making the data alone, as every form makes it (best of two)."""
    stmt = sql.SQL("SELECT sum(length({})) FROM generate_series(1, %s) i").format(data(uuid.uuid4().hex, size, sql.SQL("i")))
    best = None
    for _ in range(2):
        t0 = time.perf_counter()
        total = admin.execute(stmt, [n]).fetchone()[0]
        best = min(best or 1e9, time.perf_counter() - t0)
        if total != size * n:
            raise SystemExit(f"data generation made {total} bytes, not {size * n}")
    return best


def run(args, admin, specs):
    """All cases on the file store and on S3 (when there is one): (rows, generation times, setting)."""
    admin.execute("SET client_min_messages = warning")
    admin.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    in_flight = setting_of(admin)
    stores = [s for s in (args.file_store, args.s3_store) if s in specs]
    rows, gen = [], {}
    for size, n in cases(args):
        gen[(size, n)] = generation_seconds(admin, size, n)
        log(f"batch {human(size, n)}: making the data alone {gen[(size, n)]:.2f} s")
        for store in stores:
            for form in FORMS:
                remove_hash_folder(specs[store], SCHEMA)  # at most one form's objects on disk
                r = run_form(args, admin, form, store, size, n, in_flight)
                rows.append(r)
                log(f"batch {human(size, n):>14} {store:<5} {form:<8} {r['s']:7.2f} s {r['ops']:9.1f} objects/s "
                    f"{r['mbps']:7.1f} MB/s  private {num(r['start'])} → {num(r['peak'])} MiB")
            remove_hash_folder(specs[store], SCHEMA)
    admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
    return rows, gen, in_flight


# ---------------------------------------------------------------------------------- reporting
def report(args, admin, rows, gen, in_flight):
    pg, build = extension_build(admin, args.pg_config)
    if in_flight is None:
        setting = f"`{SETTING}`: not in this build"
    else:
        setting = f"`{SETTING}` = {args.uploads_in_flight or in_flight}" + (
            " (--uploads-in-flight, one-statement forms)" if args.uploads_in_flight else " (default)")
    per_row = {(r["size"], r["n"], r["store"]): r["s"] for r in rows if r["form"] == "per-row"}

    def ratios(r):
        """One statement / per row, as measured and with the time of making the data taken off both."""
        if r["form"] == "per-row":
            return ["—", "—"]
        base, g = per_row[(r["size"], r["n"], r["store"])], gen[(r["size"], r["n"])]
        return [num(base / r["s"], "×"), num((base - g) / (r["s"] - g), "×") if r["s"] > g else "—"]

    body = [[human(r["size"], r["n"]), r["store"], FORMS[r["form"]][0], num(r["s"]), num(r["ops"]), num(r["mbps"]),
             *ratios(r), num(r["start"]), num(r["peak"]), num(r["growth"])] for r in rows]
    gen_rows = [[human(size, n), num(size * n / 1e6), num(s), num(size * n / s / 1e6)] for (size, n), s in gen.items()]
    return "\n".join([
        SECTION, "",
        f"- {now_line()}",
        f"- {machine_line()}",
        f"- {pg}; {build}; {setting}",
        f"- command: bench_put_get.py {' '.join(sys.argv[1:])}", "",
        "**One transaction per form** (a fresh `<hash@store>` table; BEGIN to the end of COMMIT; backend private "
        "memory = RssAnon, without shared buffers)\n",
        table(["case", "store", "form", "s", "objects/s", "MB/s", "one statement / per row", "the same, data time off",
               "private MiB at start", "private MiB peak", "growth MiB"], body, text_cols=3),
        "\n**Making the data alone** (`SELECT sum(length(DATA(i))) FROM generate_series(1, n) i`, best of 2; "
        "\"data time off\" above takes this time off both forms)\n",
        table(["case", "MB", "s", "MB/s"], gen_rows, text_cols=1),
    ]) + "\n"
