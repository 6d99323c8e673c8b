"""zstd-compressed stores (#14): compression ratio and speed on real-looking data, and put/get
through pg_oas on a compressed against an uncompressed store.

Data (deterministic, numpy's default_rng(1)):
  neural int16   --channels (64) x --samples (500,000) int16 traces, sample-major as a recording
                 system writes them: a band-limited signal (low-pass filtered noise, shared in part
                 between neighbouring channels) + spikes (about 20/s per channel at 30 kHz, a 1 ms
                 waveform) + Gaussian noise (sigma 6 counts), in the range of a 16-bit ADC.
  float32        the same traces as float32 in microvolts (x 0.195): what a pipeline keeps after
                 scaling (twice the bytes, and as the values are scaled integers their sign,
                 exponent and high mantissa bytes repeat: a better ratio than the int16 traces).
  random         random bytes of the same size: the bound where nothing compresses.

Part 1, the codec alone (`cargo run --release -p oas_core --example zstd_levels`: pg_oas's own
`oas_core::compress`, one frame with checksum, one thread), levels --levels (1,3,9): ratio
(uncompressed / compressed), compress and decompress MB/s of uncompressed bytes (best of 3).

Part 2, through pg_oas: the neural data cut into values of --value-mb (8 MB), each put with
oas_hash_put (one statement per value, binary parameter) and read back with oas_hash_get, into a
store marked 'zstd:3' (--put-level) and one not marked, for a file store (--file-dir) and, when
the OAS_S3_* variables are set, a SeaweedFS store. MB/s counts uncompressed bytes; the stored
size is the objects' bytes in the store. Every value read back is compared.

Needs a cluster with pg_oas installed (scripts/cluster.sh start test PORT): the benchmark makes a
database `oas_zstd_bench` there, and drops it and the stores' objects at the end.
  make bench-zstd BENCH_ARGS="--quick"      or   bench/zstd.py --port 25433 [--record]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg

from common import add_output_args, git_rev, log, machine_line, now_line, num, print_and_record, table

SECTION = "## zstd-compressed stores: ratio, codec speed, put/get through pg_oas"
ROOT = Path(__file__).resolve().parent.parent
DB = "oas_zstd_bench"
MB = 1e6


def neural(channels, samples, rng):
    """int16 traces, sample-major (samples x channels)."""
    # Band-limited signal: white noise through a moving-average low-pass (~300 Hz at 30 kHz),
    # partly shared between neighbouring channels.
    base = rng.normal(0, 1, (samples + 100, channels + 4)).astype(np.float32)
    kernel = np.ones(100, dtype=np.float32) / 10
    lfp = np.stack([np.convolve(base[:, c], kernel, mode="valid")[:samples] for c in range(channels + 4)], axis=1)
    signal = 40 * (lfp[:, :channels] + 0.5 * lfp[:, 2:channels + 2] + 0.25 * lfp[:, 4:channels + 4])
    # Spikes: ~20/s per channel at 30 kHz, a 30-sample waveform of -60..-150 counts.
    wave = -np.sin(np.linspace(0, np.pi, 30)) + 0.3 * np.sin(np.linspace(0, 2 * np.pi, 30))
    n_spikes = int(samples / 30_000 * 20 * channels)
    t = rng.integers(0, samples - 30, n_spikes)
    c = rng.integers(0, channels, n_spikes)
    amp = rng.uniform(60, 150, n_spikes)
    for i in range(30):
        np.add.at(signal, (t + i, c), amp * wave[i])
    signal += rng.normal(0, 6, signal.shape)
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def codec_speed(data_sets, levels, tmp):
    """Part 1: rows per data set and level."""
    log("building the codec benchmark (oas_core example zstd_levels, release)")
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "oas_core", "--example", "zstd_levels"],
                   cwd=ROOT, check=True)
    exe = ROOT / "target/release/examples/zstd_levels"
    rows = []
    for name, data in data_sets.items():
        path = Path(tmp) / f"{name.replace(' ', '_')}.bin"
        path.write_bytes(data)
        log(f"codec: {name}, {len(data) / MB:.0f} MB, levels {levels}")
        out = subprocess.run([str(exe), str(path), *map(str, levels)], capture_output=True, text=True, check=True)
        path.unlink()
        for line in out.stdout.splitlines():
            r = json.loads(line)
            rows.append([name, str(r["level"]), f"{r['bytes'] / MB:.0f}", f"{r['bytes'] / r['compressed']:.2f}",
                         num(r["bytes"] / MB / r["compress_s"]), num(r["bytes"] / MB / r["decompress_s"])])
    return rows


def s3_spec():
    env = os.environ
    if not all(k in env for k in ("OAS_S3_ENDPOINT", "OAS_S3_BUCKET", "OAS_S3_ACCESS_KEY", "OAS_S3_SECRET_KEY")):
        return None
    return {"protocol": "s3", "endpoint": env["OAS_S3_ENDPOINT"], "bucket": env["OAS_S3_BUCKET"],
            "location": f"bench-zstd/{uuid.uuid4().hex[:8]}", "secure": False,
            "access_key": env["OAS_S3_ACCESS_KEY"], "secret_key": env["OAS_S3_SECRET_KEY"]}


def through_pg_oas(args, data):
    """Part 2: rows per store kind and compression."""
    dsn = f"host=127.0.0.1 port={args.port} user=postgres"
    with psycopg.connect(f"{dsn} dbname=postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    file_dir = Path(args.file_dir)
    specs = {"file": {"protocol": "file", "location": str(file_dir)}}
    if (s3 := s3_spec()) is not None:
        specs["s3"] = s3
    else:
        log("no OAS_S3_* variables: the S3 store is left out")
    step = int(args.value_mb * MB)
    values = [data[i:i + step] for i in range(0, len(data), step)]
    rows = []
    try:
        with psycopg.connect(f"{dsn} dbname={DB}", autocommit=True) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION pg_oas")
            c.execute("CREATE SCHEMA bench")
            for kind, spec in specs.items():
                for method in ("none", f"zstd:{args.put_level}"):
                    name = f"{kind}_{method.replace(':', '')}"
                    s = dict(spec)
                    s["location"] = f"{spec['location']}/{name}" if kind == "s3" else str(file_dir / name)
                    if kind == "file":
                        shutil.rmtree(s["location"], ignore_errors=True)
                        os.makedirs(s["location"])
                        shutil.chown(s["location"], "postgres", "postgres")
                    c.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(s)])
                    c.execute("SELECT oas.oas_store_compression(%s, %s)", [name, method])
                    log(f"put/get: {name}, {len(values)} values of {args.value_mb} MB")
                    refs, t = [], time.perf_counter()
                    for v in values:
                        refs.append(c.execute("SELECT oas.oas_hash_put(%b, %s, 'bench')", [v, name]).fetchone()[0])
                    put_s = time.perf_counter() - t
                    t = time.perf_counter()
                    for v, r in zip(values, refs):
                        got = c.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(r)], binary=True).fetchone()[0]
                        assert bytes(got) == v, f"{name}: a value read back differs"
                    get_s = time.perf_counter() - t
                    # The objects' own size in the store (a reference without its marker is asked of
                    # the store; a compressed one would answer its uncompressed size).
                    stored = c.execute(
                        "SELECT sum(oas.oas_object_size(jsonb_build_object('path', r->>'path', 'store', r->>'store')))"
                        " FROM unnest(%s::jsonb[]) r", [[json.dumps(r) for r in refs]]).fetchone()[0]
                    stored = int(stored)
                    rows.append([kind, method, "<hash@>", f"{len(data) / MB:.0f}", f"{stored / MB:.1f}",
                                 num(len(data) / MB / put_s), num(len(data) / MB / get_s)])
                    rows.append([kind, method, "<object@> file", *object_files(c, name, values)])
                    c.execute("SELECT oas.oas_store_drop(%s, true, true)", [name])
                    if kind == "file":
                        shutil.rmtree(s["location"], ignore_errors=True)
    finally:
        with psycopg.connect(f"{dsn} dbname=postgres", autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    return rows


def object_files(c, name, values):
    """The same values as `<object@>` files (pending `oas_object` values in an `<object@>` column,
    read back whole with `oas_read`): MB, stored MB, put and get MB/s."""
    t = f"bench.o_{name}"
    c.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, o jsonb)")
    c.execute("SELECT oas.oas_declare_column(%s, 'o', %s)", [t, f"object@{name}"])
    t0 = time.perf_counter()
    for k, v in enumerate(values):
        c.execute(f"INSERT INTO {t} VALUES (%s, oas.oas_object(%b, '.bin'))", [k, v])
    put_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k, v in enumerate(values):
        got = c.execute(f"SELECT oas.oas_read(o, 0, (o->>'size')::bigint) FROM {t} WHERE k = %s", [k],
                        binary=True).fetchone()[0]
        assert bytes(got) == v, f"{name}: an <object@> file read back differs"
    get_s = time.perf_counter() - t0
    stored = c.execute(
        f"SELECT sum(oas.oas_object_size(jsonb_build_object('path', o->>'path', 'store', o->>'store'))) FROM {t}"
    ).fetchone()[0]
    c.execute(f"DROP TABLE {t}")
    total = sum(len(v) for v in values)
    return [f"{total / MB:.0f}", f"{int(stored) / MB:.1f}", num(total / MB / put_s), num(total / MB / get_s)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=int(os.environ.get("OAS_TEST_PORT", 25433)))
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--samples", type=int, default=500_000)
    p.add_argument("--levels", default="1,3,9")
    p.add_argument("--put-level", type=int, default=3)
    p.add_argument("--value-mb", type=float, default=8)
    p.add_argument("--file-dir", default=str(Path(os.environ.get("OAS_RUN_DIR", ROOT / ".run")) / "bench-zstd"))
    p.add_argument("--quick", action="store_true", help="100,000 samples (13 MB)")
    p.add_argument("--skip-pg", action="store_true", help="the codec alone")
    add_output_args(p)
    args = p.parse_args()
    if args.quick:
        args.samples = 100_000
    rng = np.random.default_rng(1)
    log(f"making {args.channels} x {args.samples} int16 traces")
    traces = neural(args.channels, args.samples, rng)
    data_sets = {
        "neural int16": traces.tobytes(),
        "float32 µV": (traces.astype(np.float32) * np.float32(0.195)).tobytes(),
    }
    data_sets["random"] = rng.bytes(len(data_sets["neural int16"]))
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        codec = codec_speed(data_sets, levels, tmp)
    text = [SECTION, "",
            f"{now_line()}; {machine_line()}; commit {git_rev()}.",
            f"{args.channels} channels x {args.samples:,} samples; `bench/zstd.py` (`make bench-zstd`) says how the data is made.",
            "", "The codec alone (pg_oas's `oas_core::compress`: one frame with checksum, one thread, best of 3):", "",
            table(["data", "level", "MB", "ratio", "compress MB/s", "decompress MB/s"], codec)]
    if not args.skip_pg:
        pg = through_pg_oas(args, data_sets["neural int16"])
        text += ["", f"Through pg_oas: the neural data in values of {args.value_mb:g} MB, oas_hash_put then "
                 "oas_hash_get of each; then as `<object@>` files, pending oas_object values then oas_read of each "
                 "(MB/s of uncompressed bytes, one connection):", "",
                 table(["store", "compression", "value", "MB", "stored MB", "put MB/s", "get MB/s"], pg)]
    print_and_record(args, SECTION, "\n".join(text) + "\n")


if __name__ == "__main__":
    sys.exit(main())
