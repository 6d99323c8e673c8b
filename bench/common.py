"""What both benchmark harnesses share: logging, Markdown tables, machine facts, recording into
BENCHMARKS.md (each harness owns one `## ` section and replaces only that one)."""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

MiB = 1 << 20
HAVE_S3FS = importlib.util.find_spec("s3fs") is not None  # DataJoint's S3 client


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def backend_peak_rss_mib(conn):
    """VmHWM of this connection's backend, when the server runs on this machine."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(ln.split()[1]) / 1024 for ln in status if ln.startswith("VmHWM:")), None)


class PeakGrowth:
    """How far a process's resident memory rose above where it stood, at its peak, during a
    block: `with PeakGrowth(pid) as g: ...`, then g.mib. The kernel's high-water mark (VmHWM) is
    reset first (`/proc/PID/clear_refs`, "5"), so g.mib = VmHWM after − VmRSS before. Pages the
    process had already mapped (for a backend, the shared buffers it touched before) do not count
    again, so it is the growth of its private memory, at its peak and not sampled. None when the
    mark cannot be reset (another user's process, or no /proc)."""

    def __init__(self, pid):
        self.pid, self.mib, self._before = pid, None, None

    def _status(self, key):
        for ln in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if ln.startswith(key + ":"):
                return int(ln.split()[1]) / 1024
        return None

    def __enter__(self):
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._before = self._status("VmRSS")
        except OSError:
            self._before = None
        return self

    def __exit__(self, *exc):
        if self._before is not None:
            try:
                self.mib = self._status("VmHWM") - self._before
            except (OSError, TypeError):
                self.mib = None


def num(x, unit=""):
    if x is None:
        return "—"
    return (f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}") + unit


def table(header, rows, text_cols=2):
    """A Markdown table; the first text_cols columns are left-aligned, the rest right-aligned."""
    align = ["---" if i < text_cols else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, align, *rows])


def machine_line():
    """CPU model, cores, RAM and kernel."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    return f"CPU: {cpu}, {os.cpu_count()} cores; RAM {mem / 1024 / 1024:.1f} GiB; kernel {platform.release()}"


def extension_build(admin, pg_config):
    """The PostgreSQL version, and the pg_oas version and build that served the run."""
    pg = admin.execute("SELECT version()").fetchone()[0].split(" on ")[0]
    ext = admin.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_oas'").fetchone()[0]
    so = ""
    if pg_config:
        libdir = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True).stdout.strip()
        st = os.stat(Path(libdir) / "pg_oas.so")
        so = f", pg_oas.so {st.st_size / MiB:.1f} MiB built {datetime.datetime.fromtimestamp(st.st_mtime):%Y-%m-%d %H:%M}"
    return pg, f"pg_oas {ext}{so}"


def datajoint_for(dsn, stores):
    """The DataJoint client configured for the database `dsn` and the store specs `stores`
    (`"default"` names the default store); returns the module."""
    import warnings

    import psycopg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No datajoint.json found": it is configured right here
        import datajoint as dj
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    settings = {"database.backend": "postgresql", "database.host": info.get("host", "127.0.0.1"),
                "database.port": int(info.get("port", 5432)), "database.user": info.get("user", "postgres"),
                "database.password": info.get("password", "unused"), "database.name": info["dbname"],
                "database.use_tls": False}
    for k, v in settings.items():
        dj.config[k] = v
    dj.config.stores.clear()
    dj.config.stores.update(stores)
    return dj


def store_specs(admin):
    """The pg_oas stores' full specs (secrets included), to give DataJoint the very same stores."""
    rows = admin.execute(
        "SELECT s.name, s.spec || coalesce(sec.secrets, '{}') FROM oas.store s"
        " LEFT JOIN oas.store_secret sec ON sec.store = s.name"
    ).fetchall()
    return dict(rows)


def remove_hash_folder(spec, schema):
    """Delete the objects of `schema` in the hash section of the store `spec` (between cells, not
    timed). S3 needs s3fs (DataJoint's client); without it nothing is removed."""
    if spec["protocol"] == "s3" and not HAVE_S3FS:
        return
    from datajoint.storage import StorageBackend

    backend = StorageBackend(spec)
    path = backend._full_path(f"{spec.get('hash_prefix', '_hash')}/{schema}")
    if spec["protocol"] == "file":
        shutil.rmtree(path, ignore_errors=True)
    elif backend.fs.exists(path):
        backend.fs.rm(path, recursive=True)


def git_rev():
    """The checkout's commit (short), with "+changes" when tracked files differ from it."""
    root = Path(__file__).resolve().parent.parent
    git = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    rev = git("rev-parse", "--short", "HEAD") or "?"
    return rev + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def weed_version():
    """The SeaweedFS build the S3 store runs, as `weed version` prints it."""
    weed = os.environ.get("OAS_WEED") or str(Path(sys.executable).parent / "weed")
    try:
        out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "?"
    return out.split("\n")[0].replace("version ", "").strip() or "?"


def shared_buffers_mib(admin):
    return int(admin.execute("SELECT setting FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0]) * 8 // 1024


def now_line():
    return f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"


def add_output_args(p):
    """The options every benchmark shares: which PostgreSQL it reports on, and where it records."""
    p.add_argument("--pg-config", default=os.environ.get("OAS_PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config"))
    p.add_argument("--record", action="store_true", help="write the results into BENCHMARKS.md")
    p.add_argument("--record-file", type=Path,
                   default=Path(__file__).resolve().parent.parent / "BENCHMARKS.md")


def print_and_record(args, section, text, after=None):
    """Print a benchmark's section and, with --record, put it into BENCHMARKS.md."""
    print(text)
    if args.record:
        record(args.record_file, section, text, after)


def record(path, section, text, after=None):
    """Put `text` (which starts with the `section` heading) in place of that section. A new
    section goes right after the section `after` when there is one, else at the end."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(section)
    if start < 0 and after and (at := old.find(after)) >= 0:
        start = end = old.find("\n## ", at + len(after)) + 1 or len(old)
    elif start >= 0:
        end = old.find("\n## ", start + len(section)) + 1 or len(old)
    else:
        start = end = len(old)
    head, tail = old[:start].rstrip("\n"), old[end:]
    new = (head + "\n\n" if head else "") + text.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    path.write_text(new)
    log(f"recorded in {path}")


class Sampler:
    """Private memory of a process (`RssAnon`: its anonymous pages, so neither shared buffers nor
    other shared memory, even pages of them only this process has touched), sampled from /proc
    every `every` seconds between `__enter__` and `__exit__`: `start_anon` is the first reading,
    `peak_anon` the highest (MiB; 0 when /proc has no such process, e.g. a remote server)."""

    def __init__(self, pid, every=0.02):
        import threading

        self.pid, self.every, self.peak_anon, self.start_anon = pid, every, 0.0, None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _read(self):
        try:
            for ln in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if ln.startswith("RssAnon:"):
                    anon = int(ln.split()[1]) / 1024
                    self.peak_anon = max(self.peak_anon, anon)
                    if self.start_anon is None:
                        self.start_anon = anon
        except OSError:
            pass

    def _run(self):
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self.every)

    def __enter__(self):
        self._read()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self._read()


class Timer:
    """Times blocks: `with timer: ...` appends one duration (seconds) to timer.samples."""

    def __init__(self):
        self.samples = []

    def __enter__(self):
        import time

        self._t0 = time.perf_counter()

    def __exit__(self, *exc):
        import time

        self.samples.append(time.perf_counter() - self._t0)
