"""A full disk (#13): a `file` store on a small tmpfs the test mounts, filled to the last byte.
Every write path fails with SQLSTATE 53100 (disk_full) and a hint naming the store, the
transaction rolls back, nothing half-written is referenced; once space is freed the next write
succeeds and the collector removes what the failed writes left.

Needs root (mount); skipped otherwise. The filesystem is unmounted in teardown, always."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import shutil
import subprocess

import numpy as np
import psycopg
import pytest

from conftest import RUN_DIR, chown_postgres, connect, unique

SIZE = "8m"


def mounted(path: pathlib.Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


@contextlib.contextmanager
def small_filesystem():
    """A tmpfs of SIZE owned by postgres; unmounted and removed on the way out, whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = RUN_DIR / unique("fulldisk")
    mnt.mkdir(parents=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=2775", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
        chown_postgres(mnt)
        yield mnt
    finally:
        for _ in range(20):
            if not mounted(mnt):
                break
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)


def fill(fs: pathlib.Path, name: str = "filler") -> pathlib.Path:
    """Write a filler file until the filesystem has no byte left. Returns it."""
    filler = fs / name
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        for _ in range(10_000):  # far more than SIZE needs; bounds the loop
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        # The last pages, smaller than a chunk.
        for _ in range(10_000):
            try:
                f.write(b"\0" * 512)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
    return filler


@pytest.fixture
def full(db):
    """A file store on a full tmpfs, a schema with a table of every kind of column on it, and a
    connection. Yields (conn, store, schema, filesystem, filler)."""
    store, schema = unique("full"), unique("fullsch")
    with small_filesystem() as fs, connect() as conn:
        loc = fs / "store"
        loc.mkdir()
        chown_postgres(loc)
        conn.execute("SELECT oas.oas_store_create(%s, %s)",
                     [store, json.dumps({"protocol": "file", "location": str(loc)})])
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.t (k int PRIMARY KEY, h jsonb, b jsonb, n jsonb, o jsonb)")
        for col, kind in (("h", "hash"), ("b", "blob"), ("n", "npy"), ("o", "object")):
            conn.execute("SELECT oas.oas_declare_column(%s, %s, %s)", [f"{schema}.t", col, f"{kind}@{store}"])
        filler = fill(fs)
        try:
            yield conn, store, schema, loc, filler
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute("DELETE FROM oas.gc_candidate WHERE store = %s", [store])
            conn.execute("DELETE FROM oas.gc_trash WHERE store = %s", [store])
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT oas.oas_store_drop(%s)", [store])


def files(loc: pathlib.Path) -> set[str]:
    """Every file in the store, as paths relative to its location."""
    return {str(p.relative_to(loc)) for p in loc.rglob("*") if p.is_file()}


def disk_full(conn, query: str, params=()) -> psycopg.Error:
    """Run a write that must fail with 53100 inside a transaction, and roll it back."""
    conn.execute("BEGIN")
    try:
        with pytest.raises(psycopg.errors.DiskFull) as info:
            conn.execute(query, params)
    finally:
        conn.execute("ROLLBACK")
    return info.value


def test_every_write_path_fails_cleanly_on_a_full_disk(full):
    conn, store, schema, loc, filler = full
    t = f"{schema}.t"
    big = os.urandom(256 * 1024)
    npy = np.arange(50_000, dtype=np.float64)
    cases = {
        "oas_hash_put": (f"INSERT INTO {t} (k, h) VALUES (1, oas.oas_hash_put(%s, %s, %s))", [big, store, schema]),
        "oas_hash, pending": (f"INSERT INTO {t} (k, h) VALUES (2, oas.oas_hash(%s))", [big]),
        "oas_blob, pending": (f"INSERT INTO {t} (k, b) VALUES (3, oas.oas_blob(%s::float8[]))", [npy.tolist()]),
        "oas_npy, pending": (f"INSERT INTO {t} (k, n) VALUES (4, oas.oas_npy(%s::float8[]))", [npy.tolist()]),
        "oas_object, pending": (f"INSERT INTO {t} (k, o) VALUES (5, oas.oas_object(%s, '.bin'))", [big]),
        "oas_npy_put": ("SELECT oas.oas_npy_put(%s, 'n', '{\"k\": 6}', oas.oas_npy_from_array(%s::float8[]))",
                        [t, npy.tolist()]),
        "many objects in one statement": (
            f"INSERT INTO {t} (k, h) SELECT i, oas.oas_hash(convert_to(repeat(i::text, 20000), 'UTF8'))"
            " FROM generate_series(100, 140) i", []),
    }
    for what, (query, params) in cases.items():
        err = disk_full(conn, query, params)
        hint = err.diag.message_hint or ""
        assert f'store "{store}"' in str(err) and f'"{store}"' in hint and "oas_gc" in hint, (what, str(err), hint)
        print(f"{what}: {err.sqlstate} {str(err).splitlines()[0]}")
    # An upload in parts: a part or the finish fails; the upload is abandoned with its transaction.
    conn.execute("BEGIN")
    with pytest.raises(psycopg.errors.DiskFull) as info:
        up = conn.execute("SELECT oas.oas_upload_begin(%s, 'o', '{\"k\": 7}', '.bin')", [t]).fetchone()[0]
        for _ in range(8):
            conn.execute("SELECT oas.oas_upload_part(%s, %s)", [up, big])
        conn.execute("SELECT oas.oas_upload_finish(%s)", [up])
    conn.execute("ROLLBACK")
    assert f'"{store}"' in (info.value.diag.message_hint or "")

    # Nothing was committed, nothing half-written is referenced.
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0

    # Some room, not enough: a large put (staged first, being over 1 MiB) and many objects in one
    # statement get part of the way and fail; what they wrote is left to the collector.
    os.truncate(filler, filler.stat().st_size - (1536 << 10))
    disk_full(conn, f"INSERT INTO {t} (k, h) VALUES (8, oas.oas_hash_put(%s, %s, %s))",
              [os.urandom(3 << 20), store, schema])
    disk_full(conn, cases["many objects in one statement"][0])
    left = files(loc)
    print(f"left by the failed writes: {sorted(left)}")
    assert left
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0

    # Space freed: the next write of each kind succeeds and reads back.
    filler.unlink()
    conn.execute(f"INSERT INTO {t} (k, h, n) VALUES (1, oas.oas_hash_put(%s, %s, %s), oas.oas_npy(%s::float8[]))",
                 [big, store, schema, npy[:100].tolist()])
    h = conn.execute(f"SELECT oas.oas_hash_get(h) FROM {t} WHERE k = 1").fetchone()[0]
    assert bytes(h) == big
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0

    # The collector removes what the failed writes left (staging files, unreferenced objects):
    # with zero grace and zero trash retention, three runs (the first sees them unreferenced, the
    # second moves them to trash, the third purges it) leave the store holding the referenced objects.
    refs = {r[0] for r in conn.execute(f"SELECT h->>'path' FROM {t} UNION ALL SELECT n->>'path' FROM {t}")}
    for _ in range(3):
        r = conn.execute("SELECT trashed, purged, staging_removed, errors FROM oas.oas_gc(false, %s, '0', '0')",
                         [store]).fetchone()
        print(f"collector run: trashed, purged, staging removed, errors = {r}")
        assert r[-1] == [], r
    leftovers = files(loc) - refs - {"_oas/owner.json"}
    assert not leftovers, leftovers
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0



def test_the_collector_frees_a_full_store(full):
    """What the hint advises works on the full disk itself, not a byte free: on a store it has
    collected before, the collector only reads its owner marker, moves the unreferenced objects a
    statement that failed part of the way left to trash and purges them; the next write fits."""
    conn, store, schema, loc, filler = full
    t = f"{schema}.t"
    os.truncate(filler, filler.stat().st_size - (1536 << 10))
    # A store the collector has run on before (it records there which database owns it).
    assert conn.execute("SELECT errors FROM oas.oas_gc(false, %s)", [store]).fetchone()[0] == []
    disk_full(conn, f"INSERT INTO {t} (k, h) SELECT i, oas.oas_hash(convert_to(repeat(i::text, 20000), 'UTF8'))"
                    " FROM generate_series(100, 140) i")
    left = files(loc) - {"_oas/owner.json"}
    assert left
    fill(loc.parent, "filler2")  # what the statement left free, too
    free = os.statvfs(loc).f_bavail
    assert free == 0
    for _ in range(3):
        r = conn.execute("SELECT trashed, purged, errors FROM oas.oas_gc(false, %s, '0', '0')", [store]).fetchone()
        print(f"collector run on the full disk: trashed, purged, errors = {r}")
        assert r[-1] == [], r
    assert not files(loc) & left
    print(f"blocks free before the collector ran: {free}, after: {os.statvfs(loc).f_bavail}")
    assert os.statvfs(loc).f_bavail > free
    conn.execute(f"INSERT INTO {t} (k, h) VALUES (1, oas.oas_hash_put(%s, %s, %s))", [os.urandom(65536), store, schema])
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0
