"""Migrating a column (#14): `CALL oas.oas_migrate_column` of a `<blob>` column of --gb GB
(int16-like noisy traces, packed as DataJoint blobs by oas_blob_pack, --mb MB each) into
`<blob@file>` and `<blob@s3>`, against:
  raw put    the store's put speed for the same bytes: one statement of oas_hash_put over the
             column (INSERT ... SELECT oas_hash_put(x, store, schema) FROM the table)
  DataJoint  the same migration by the DataJoint 2.3.5 client: fetch the <blob> table, insert
             into a table declared with <blob@store>, --dj-batch rows per call
MB/s counts the stored (packed) bytes. Each migration starts from the same in-table column
(the table is copied first, not timed); what a run wrote is removed after it (rows, objects).
Usage: python bench/migrate.py --dsn "host=... port=... user=postgres dbname=..." [--gb 10]
The database needs pg_oas and the stores `file` and `s3` (scripts/bench_migrate.sh makes one)."""

from __future__ import annotations

import argparse
import time

import numpy as np
import psycopg

from common import datajoint_for, log, machine_line, num, remove_hash_folder, store_specs, table


def build_source(conn, schema: str, gb: float, mb: float) -> tuple[int, int]:
    """Table {schema}.src (k, x <blob>) of `gb` GB of int16 arrays of `mb` MB; (rows, bytes).

    One array of random int16 samples is packed by oas_blob_pack (which packs as DataJoint's
    blob.pack does); random samples do not compress, so the blob is stored uncompressed, as
    DataJoint would store it. Each row is that blob with its first two samples replaced by the
    row's number, made on the server in one statement: every value is a distinct, valid blob
    (the one DataJoint packs for that array), and 10 GB are built in minutes, not hours."""
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.src (k int PRIMARY KEY, x bytea NOT NULL)")
    conn.execute(f"COMMENT ON COLUMN {schema}.src.x IS ':<blob>:trace'")
    n_values = int(mb * 1e6 / 2)
    rows = max(1, int(gb * 1e3 / mb))
    rng = np.random.default_rng(1)
    samples = rng.integers(-32768, 32768, n_values, dtype=np.int16).tolist()
    template = conn.execute("SELECT oas.oas_blob_pack(%s::int2[])", [samples], binary=True).fetchone()[0]
    if bytes(template).startswith(b"ZL123\0") or not bytes(template).endswith(np.array(samples[-4:], "<i2").tobytes()):
        raise SystemExit("the template blob is compressed: the row patch below needs an uncompressed one")
    data_at = len(template) - 2 * n_values + 1  # 1-based offset of the samples: the blob's tail
    conn.execute(
        f"INSERT INTO {schema}.src SELECT k, overlay(%b PLACING int4send(k) FROM {data_at})"
        f" FROM generate_series(1, {rows}) k", [bytes(template)])
    total = conn.execute(f"SELECT sum(length(x))::bigint FROM {schema}.src").fetchone()[0]
    return rows, int(total)


def copy_table(conn, schema: str, name: str) -> str:
    conn.execute(f"CREATE TABLE {schema}.{name} (LIKE {schema}.src INCLUDING ALL)")
    conn.execute(f"COMMENT ON COLUMN {schema}.{name}.x IS ':<blob>:trace'")
    conn.execute(f"INSERT INTO {schema}.{name} SELECT * FROM {schema}.src")
    return f"{schema}.{name}"


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dsn", required=True)
    p.add_argument("--gb", type=float, default=10.0)
    p.add_argument("--mb", type=float, default=4.0, help="MB per value")
    p.add_argument("--batch", type=int, default=50, help="batch_rows of the migration")
    p.add_argument("--dj-batch", type=int, default=10)
    p.add_argument("--stores", default="file,s3")
    p.add_argument("--no-dj", action="store_true")
    args = p.parse_args()
    schema = f"bench_mig_{int(time.time())}"
    results = []
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        specs = store_specs(conn)
        rows, total = build_source(conn, schema, args.gb, args.mb)
        mb = total / 1e6
        log(f"source: {rows} rows, {mb:.1f} MB packed")
        try:
            for store in args.stores.split(","):
                t = copy_table(conn, schema, f"m_{store}")
                s = timed(lambda: conn.execute(
                    f"CALL oas.oas_migrate_column('{t}', 'x', 'blob@{store}', batch_rows => {args.batch})"))
                results.append((store, "oas_migrate_column", num(mb / s, " MB/s"), num(s, " s")))
                conn.execute(f"DROP TABLE {t}")
                remove_hash_folder(specs[store], schema)
                conn.execute(f"CREATE TABLE {schema}.raw (k int, r jsonb)")
                s = timed(lambda: conn.execute(
                    f"INSERT INTO {schema}.raw SELECT k, oas.oas_hash_put(x, '{store}', '{schema}') FROM {schema}.src"))
                results.append((store, "raw put (oas_hash_put)", num(mb / s, " MB/s"), num(s, " s")))
                conn.execute(f"DROP TABLE {schema}.raw")
                remove_hash_folder(specs[store], schema)
                if not args.no_dj:
                    s = dj_migration(args, conn, specs, store, schema)
                    results.append((store, "DataJoint fetch + insert", num(mb / s, " MB/s"), num(s, " s")))
                    remove_hash_folder(specs[store], schema)
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            for store in args.stores.split(","):
                remove_hash_folder(specs[store], schema)
    print(machine_line())
    print(f"{rows} values of {args.mb} MB (random int16 arrays, DataJoint blobs, uncompressed as DataJoint packs them), {mb:.1f} MB packed")
    print(table(["store", "method", "MB/s", "time"], results))


def dj_migration(args, conn, specs, store: str, schema: str) -> float:
    """DataJoint does the migration: fetch the <blob> table, insert into a <blob@store> table."""
    dj = datajoint_for(args.dsn, {"default": "file", **{k: v for k, v in specs.items()}})
    djs = dj.Schema(f"{schema}_dj", connection=dj.conn(reset=True))

    class Src(dj.Manual):
        definition = "k : int32\n---\nx : <blob>\n"

    class Dst(dj.Manual):
        definition = f"k : int32\n---\nx : <blob@{store}>\n"

    Src, Dst = djs(Src), djs(Dst)
    conn.execute(f'INSERT INTO "{schema}_dj"."src" SELECT k, x FROM {schema}.src')

    def run():
        keys = Src.keys()
        for i in range(0, len(keys), args.dj_batch):
            chunk = (Src & keys[i:i + args.dj_batch]).to_dicts()
            Dst.insert(chunk)

    try:
        return timed(run)
    finally:
        djs.drop(prompt=False)
        remove_hash_folder(specs[store], f"{schema}_dj")


if __name__ == "__main__":
    main()
