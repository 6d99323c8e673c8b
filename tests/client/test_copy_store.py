"""Copying a reference's objects into another store (`oas._copy_to_store`, moves between tiers,
#14): every shape, file → SeaweedFS, SeaweedFS → file and file → Azurite, read back through the
usual get functions; a large object streamed with little memory and cancellable; the attacks
(a reference is input, not authority); the collector's view of the old and new copies; a
destination that refuses connections."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import sys
import time

import psycopg
import pytest

from conftest import CANCEL_BOUND_S, RUN_DIR, chown_postgres, connect, free_port, s3_spec, sql_error, unique

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
from common import PeakGrowth  # noqa: E402

COLUMNS = {"h": "hash", "b": "blob", "a": "attach", "n": "npy", "o": "object", "d": "object"}


def content_hash(data: bytes) -> str:
    return base64.b32encode(hashlib.md5(data).digest()).decode().rstrip("=").lower()


class Stores:
    """Fresh stores of this module: file ones in a directory, S3 ones at a fresh location."""

    def __init__(self, servers, s3fs_client):
        self.servers, self.s3, self.made = servers, s3fs_client, []
        self.locations: dict[str, pathlib.Path | str] = {}

    def make(self, kind: str, **spec_over) -> str:
        name = unique(f"cp{kind}")
        if kind == "file":
            loc = RUN_DIR / "pytest-copy" / name
            loc.mkdir(parents=True)
            chown_postgres(loc.parent)
            chown_postgres(loc)
            spec = {"protocol": "file", "location": str(loc)}
            self.locations[name] = loc
        else:
            spec = s3_spec(self.servers, location=f"pytest-copy/{name}", **spec_over)
            self.locations[name] = f"{self.servers['OAS_S3_BUCKET']}/pytest-copy/{name}"
        with connect() as c:
            c.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
        self.made.append(name)
        return name

    def has(self, store: str, path: str) -> bool:
        if store == "az":  # the shared Azurite store: asked through pg_oas (as a superuser)
            with connect() as c:
                try:
                    c.execute("SELECT oas.oas_object_size(jsonb_build_object('path', %s::text, 'store', 'az'))", [path])
                    return True
                except psycopg.errors.UndefinedFile:
                    return False
        loc = self.locations[store]
        if isinstance(loc, pathlib.Path):
            return (loc / path).exists()
        self.s3.invalidate_cache()
        return self.s3.exists(f"{loc}/{path}")

    def listing(self, store: str) -> set[str]:
        loc = self.locations[store]
        if isinstance(loc, pathlib.Path):
            return {str(p.relative_to(loc)) for p in loc.rglob("*") if p.is_file()}
        self.s3.invalidate_cache()
        with contextlib.suppress(FileNotFoundError):
            return {k.removeprefix(loc + "/") for k in self.s3.find(loc)}
        return set()


@pytest.fixture(scope="module")
def stores(db, servers, s3fs_client):
    s = Stores(servers, s3fs_client)
    yield s
    with connect() as c:
        for name in s.made:
            c.execute("DELETE FROM oas.store WHERE name = %s", [name])
    shutil.rmtree(RUN_DIR / "pytest-copy", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        s3fs_client.rm(f"{servers['OAS_S3_BUCKET']}/pytest-copy", recursive=True)


@pytest.fixture
def schema(db):
    name = unique("cps")
    with connect() as c:
        c.execute(f"CREATE SCHEMA {name}")
    yield name
    with connect() as c:
        c.execute(f"DROP SCHEMA {name} CASCADE")


def every_shape_table(conn, schema: str, store: str) -> str:
    """`schema.t` with a column of every shape in `store`, two rows."""
    t = f"{schema}.t"
    conn.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, {', '.join(f'{c} jsonb' for c in COLUMNS)})")
    for col, codec in COLUMNS.items():
        conn.execute("SELECT oas.oas_declare_column(%s, %s, %s)", [t, col, f"{codec}@{store}"])
    for k in (1, 2):
        conn.execute(
            f"INSERT INTO {t} VALUES (%s, oas.oas_hash(%s), oas.oas_blob(%s::float8[]), oas.oas_attach('x.bin', %s),"
            " oas.oas_npy(%s::float8[]), oas.oas_object(%s, '.bin'),"
            " oas.oas_object_folder(ARRAY['a.bin', 'sub/b.bin'], ARRAY[%s, %s]))",
            [k, os.urandom(100_000 * k), [1.5 * k, 2.0], os.urandom(3000), [3.0, 4.0 * k], os.urandom(20_000),
             os.urandom(10), os.urandom(7000)])
    return t


READ_BACK = ("SELECT k, oas.oas_hash_get(h), oas.oas_blob_get(b), (oas.oas_attach_get(a)).*,"
             " oas.oas_read(n, 0, oas.oas_object_size(n)), oas.oas_read(o, 0, oas.oas_object_size(o)),"
             " oas.oas_object_file_read(d, 'a.bin'), oas.oas_object_file_read(d, 'sub/b.bin') FROM {t} ORDER BY k")

COPY_ALL = "UPDATE {t} SET " + ", ".join(f"{c} = oas._copy_to_store({c}, %(dst)s)" for c in COLUMNS)


@pytest.mark.parametrize("src_kind,dst_kind", [("file", "s3"), ("s3", "file"), ("file", "az")])
def test_every_shape_copies_and_reads_back_identical(conn, stores, schema, src_kind, dst_kind):
    src = stores.make(src_kind)
    dst = "az" if dst_kind == "az" else stores.make(dst_kind)
    t = every_shape_table(conn, schema, src)
    before_refs = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {t} ORDER BY k").fetchall()
    before = conn.execute(READ_BACK.format(t=t), binary=True).fetchall()
    started = time.monotonic()
    conn.execute(COPY_ALL.format(t=t), {"dst": dst})
    print(f"{src_kind} -> {dst_kind}: 12 values copied in one UPDATE in {time.monotonic() - started:.2f} s")
    after_refs = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {t} ORDER BY k").fetchall()
    for old_row, new_row in zip(before_refs, after_refs):
        for old, new in zip(old_row, new_row):
            assert new["store"] == dst
            assert {**old, "store": dst} == new  # every other key as it was: the same relative path
            assert stores.has(dst, new["path"]) or new.get("is_dir")
            if new.get("is_dir"):
                assert stores.has(dst, new["path"] + ".manifest.json")
                assert stores.has(dst, new["path"] + "/sub/b.bin")
    assert conn.execute(READ_BACK.format(t=t), binary=True).fetchall() == before
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [dst]).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [src]).fetchone()[0] == 0
    # Already there: unchanged, nothing copied; a copy back finds the old objects (same size) and
    # keeps them.
    for col in COLUMNS:
        ref = after_refs[0][COLUMNS_INDEX[col]]
        assert conn.execute("SELECT oas._copy_to_store(%s, %s)", [json.dumps(ref), dst]).fetchone()[0] == ref
    conn.execute(COPY_ALL.format(t=t), {"dst": src})
    assert conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {t} ORDER BY k").fetchall() == before_refs
    assert conn.execute(READ_BACK.format(t=t), binary=True).fetchall() == before
    # NULL stays NULL (the function is strict).
    assert conn.execute("SELECT oas._copy_to_store(NULL, %s)", [dst]).fetchone()[0] is None


COLUMNS_INDEX = {c: i for i, c in enumerate(COLUMNS)}


def test_many_rows_of_one_update_copy_concurrently(conn, stores, schema):
    """Small objects are uploads of the statement: up to oas.uploads_in_flight at once. Timings
    are printed, not asserted (a shared machine)."""
    src, dst = stores.make("file"), stores.make("s3")
    t = f"{schema}.many"
    conn.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, h jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'h', %s)", [t, f"hash@{src}"])
    conn.execute(f"INSERT INTO {t} SELECT i, oas.oas_hash(convert_to(repeat(i::text, 20000), 'UTF8'))"
                 " FROM generate_series(1, 60) i")
    before = conn.execute(f"SELECT k, oas.oas_hash_get(h) FROM {t} ORDER BY k").fetchall()
    times = {}
    for in_flight in ("1", "16"):
        conn.execute("SET oas.uploads_in_flight = " + in_flight)
        started = time.monotonic()
        conn.execute(f"UPDATE {t} SET h = oas._copy_to_store(h, %s)", [dst])
        times[in_flight] = time.monotonic() - started
        if in_flight == "1":
            # Back (the source's objects are found and kept), and the next round copies anew.
            conn.execute(f"UPDATE {t} SET h = oas._copy_to_store(h, %s)", [src])
            assert len(stores.listing(dst)) == 60
            for path in stores.listing(dst):
                stores.s3.rm(f"{stores.locations[dst]}/{path}")
    conn.execute("RESET oas.uploads_in_flight")
    print(f"60 objects file -> SeaweedFS in one UPDATE: {times['1'] * 1e3:.0f} ms one at a time,"
          f" {times['16'] * 1e3:.0f} ms with 16 in flight")
    assert {r[0] for r in conn.execute(f"SELECT h->>'store' FROM {t}").fetchall()} == {dst}
    assert conn.execute(f"SELECT k, oas.oas_hash_get(h) FROM {t} ORDER BY k").fetchall() == before
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [dst]).fetchone()[0] == 0


def test_filepath_values_and_unknown_shapes_are_refused(conn, stores):
    src, dst = stores.make("file"), stores.make("file")
    fp = {"path": "raw/session1.bin", "store": src, "size": 3, "is_dir": False, "timestamp": "2026-01-01T00:00:00"}
    err = sql_error(conn, "SELECT oas._copy_to_store(%s, %s)", [json.dumps(fp), dst])
    assert err.sqlstate == "22023" and "<filepath@>" in str(err), str(err)
    assert "oas_filepath" in err.diag.message_hint
    err = sql_error(conn, "SELECT oas._copy_to_store(%s, %s)", [json.dumps({"path": "x/y", "store": src}), dst])
    assert err.sqlstate == "22023" and "not of a shape" in str(err)
    err = sql_error(conn, "SELECT oas._copy_to_store(%s, 'no_such_store')",
                    [json.dumps({**fp, "ext": None, "item_count": None})])
    assert err.sqlstate == "42704"
    assert stores.listing(dst) == set()


def write_hash_file(loc: pathlib.Path, schema: str, size: int) -> tuple[str, str]:
    """A hash-addressed object of `size` random bytes written straight into a file store (as
    DataJoint would): (hash, path)."""
    md5 = hashlib.md5()
    tmp = loc / f"incoming-{unique()}"
    with open(tmp, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            md5.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    h = base64.b32encode(md5.digest()).decode().rstrip("=").lower()
    path = f"_hash/{schema}/{h}"
    (loc / path).parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(loc / path)
    for p in [loc / "_hash", loc / "_hash" / schema, loc / path]:
        chown_postgres(p)
    return h, path


def test_a_large_object_streams_with_little_memory_and_cancels(conn, stores, schema):
    size = 210 << 20
    src, dst = stores.make("file"), stores.make("s3")
    h, path = write_hash_file(stores.locations[src], schema, size)
    ref = {"hash": h, "path": path, "schema": schema, "store": src, "size": size}
    t = f"{schema}.big"
    conn.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, h jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'h', %s)", [t, f"hash@{src}"])
    conn.execute(f"INSERT INTO {t} VALUES (1, %s)", [json.dumps(ref)])
    update = f"UPDATE {t} SET h = oas._copy_to_store(h, %s)"

    # A statement timeout in the middle: 57014 within the bound, the row unchanged, nothing
    # published (the upload in parts is aborted).
    conn.execute("SET statement_timeout = '400ms'")
    started = time.monotonic()
    err = sql_error(conn, update, [dst])
    elapsed = time.monotonic() - started
    conn.execute("RESET statement_timeout")
    print(f"statement_timeout of 0.4 s ended a 210 MiB copy after {elapsed * 1e3:.0f} ms")
    assert err.sqlstate == "57014", str(err)
    assert elapsed < 0.4 + CANCEL_BOUND_S, elapsed
    assert conn.execute(f"SELECT h FROM {t}").fetchone()[0] == ref
    assert not stores.has(dst, path)

    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    started = time.monotonic()
    with PeakGrowth(pid) as growth:
        conn.execute(update, [dst])
    elapsed = time.monotonic() - started
    print(f"210 MiB file -> SeaweedFS in {elapsed:.1f} s ({size / 2**20 / elapsed:.0f} MiB/s),"
          f" backend memory grew by {growth.mib} MiB at its peak")
    if growth.mib is not None:
        assert growth.mib < 100, growth.mib
    assert conn.execute(f"SELECT h FROM {t}").fetchone()[0] == {**ref, "store": dst}
    got = conn.execute(f"SELECT oas.oas_hash_get(h) FROM {t}", binary=True).fetchone()[0]
    assert content_hash(got) == h
    del got
    # And back: the source's copy is found (same size) and kept.
    conn.execute(update, [src])
    assert conn.execute(f"SELECT h FROM {t}").fetchone()[0] == ref


@pytest.mark.parametrize("size", [5000, 9 << 20], ids=["small", "in-parts"])
def test_a_file_destination_is_synced_before_commit(conn, stores, schema, size):
    """As test_durability sees it: an object the copy wrote, removed before COMMIT, fails the
    commit naming it (the commit syncs it), and the row keeps its old reference."""
    src, dst = stores.make("s3"), stores.make("file")
    t = f"{schema}.t"
    conn.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, h jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'h', %s)", [t, f"hash@{src}"])
    ref = conn.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash(%s)) RETURNING h", [os.urandom(size)]).fetchone()[0]
    conn.execute("BEGIN")
    conn.execute(f"UPDATE {t} SET h = oas._copy_to_store(h, %s)", [dst])
    (stores.locations[dst] / ref["path"]).unlink()
    with pytest.raises(psycopg.errors.IoError) as e:
        conn.execute("COMMIT")
    assert ref["path"] in str(e.value) and "fsync" in str(e.value), str(e.value)
    assert conn.execute(f"SELECT h FROM {t}").fetchone()[0] == ref


def test_an_object_of_another_size_at_the_destination_is_an_error(conn, stores, schema):
    src, dst = stores.make("file"), stores.make("file")
    t = f"{schema}.t"
    conn.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, h jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'h', %s)", [t, f"hash@{src}"])
    ref = conn.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash(%s)) RETURNING h", [b"the real bytes"]).fetchone()[0]
    damaged = stores.locations[dst] / ref["path"]
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"short")
    err = sql_error(conn, f"UPDATE {t} SET h = oas._copy_to_store(h, %s)", [dst])
    assert err.sqlstate == "XX001" and "already at the destination" in str(err), str(err)
    assert damaged.read_bytes() == b"short"
    assert conn.execute(f"SELECT h FROM {t}").fetchone()[0] == ref


def test_a_destination_that_refuses_connections_fails_the_statement(conn, stores, schema):
    src = stores.make("file")
    down = stores.make("s3", endpoint=f"127.0.0.1:{free_port()}")
    t = every_shape_table(conn, schema, src)
    before = conn.execute(f"SELECT * FROM {t} ORDER BY k").fetchall()
    conn.execute("SET oas.max_retries = 1")
    err = sql_error(conn, COPY_ALL.format(t=t), {"dst": down})
    conn.execute("RESET oas.max_retries")
    assert err.sqlstate == "58030", str(err)
    assert f'store "{down}"' in str(err)
    assert conn.execute(f"SELECT * FROM {t} ORDER BY k").fetchall() == before


def collect_and_check(conn, stores, refs, kept: str, gone: str) -> None:
    """Collect both stores with zero grace (the first run notes a candidate, the next moves it):
    the objects of `refs` are then in store `kept` and no longer in store `gone`, and
    `oas_verify()` finds nothing wrong in either."""
    for store in (kept, gone):
        for _ in range(3):
            conn.execute("SELECT * FROM oas.oas_gc(false, store => %s, grace => '0')", [store]).fetchall()
    for r in refs:
        assert stores.has(kept, r["path"]) and not stores.has(gone, r["path"]), (r, kept, gone)
    for store in (kept, gone):
        assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0


def test_the_collector_removes_the_copy_a_rollback_left_and_the_source_after_a_commit(conn, stores, schema):
    src, dst = stores.make("file"), stores.make("s3")
    t = f"{schema}.t"
    conn.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, h jsonb, o jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'h', %s)", [t, f"hash@{src}"])
    conn.execute("SELECT oas.oas_declare_column(%s, 'o', %s)", [t, f"object@{src}"])
    data = (os.urandom(5000), os.urandom(6000))
    h, o = conn.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash(%s), oas.oas_object(%s, '.bin')) RETURNING h, o",
                        data).fetchone()
    copy = f"UPDATE {t} SET h = oas._copy_to_store(h, %(d)s), o = oas._copy_to_store(o, %(d)s)"

    # Rolled back: the destination's copies are garbage, the source's are kept.
    conn.execute("BEGIN")
    conn.execute(copy, {"d": dst})
    conn.execute("ROLLBACK")
    assert stores.has(dst, h["path"]) and stores.has(dst, o["path"])
    collect_and_check(conn, stores, [h, o], kept=src, gone=dst)

    # Committed: the copy never deletes the source; the collector does, after grace.
    conn.execute(copy, {"d": dst})
    assert stores.has(src, h["path"]) and stores.has(src, o["path"])
    conn.execute("SELECT * FROM oas.oas_gc(false, store => %s, grace => '1 day')", [src]).fetchall()
    assert stores.has(src, h["path"]) and stores.has(src, o["path"])
    collect_and_check(conn, stores, [h, o], kept=dst, gone=src)
    assert conn.execute(f"SELECT oas.oas_hash_get(h), oas.oas_read(o, 0, 6000) FROM {t}").fetchone() == data


# ---------------------------------------------------------------------------------------------
# Attacks: a reference typed by a user is input, not authority.


@pytest.fixture
def mallory(db):
    """The attacker: LOGIN, owns schema mallory_<id>, nothing else yet (test_security's roles
    live in a database of their own)."""
    name = unique("mallory")
    with connect() as c:
        c.execute(f"CREATE ROLE {name} LOGIN")
        c.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    yield name
    with connect() as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
        c.execute(f"DROP OWNED BY {name} CASCADE")
        c.execute(f"DROP ROLE {name}")


def test_attacks(conn, stores, schema, mallory):
    src, dst, ro = stores.make("file"), stores.make("file"), stores.make("file")
    for store in (src, dst, ro):  # no longer the defaults of a new store: PUBLIC reads and writes
        for privilege in ("read", "write"):
            conn.execute("SELECT oas.oas_store_revoke(%s, %s, 'PUBLIC')", [store, privilege])
    # The victim's secret, in a table mallory may not read.
    t = f"{schema}.secret"
    conn.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, h jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'h', %s)", [t, f"hash@{src}"])
    victim = conn.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash(%s)) RETURNING h", [b"the victim's secret"]).fetchone()[0]
    conn.execute("SELECT oas.oas_store_grant(%s, 'write', %s)", [dst, mallory])
    copy = "SELECT oas._copy_to_store(%s, %s)"

    def attempt(m, ref, to):
        err = sql_error(m, copy, [json.dumps(ref), to])
        return err.sqlstate, str(err)

    with connect(user=mallory) as m:
        # 1. No read on the source store.
        code, text = attempt(m, victim, dst)
        assert code == "42501" and f'read objects of store "{src}"' in text, text
        # 2. read on the source, but no row of hers references the victim's object; not even one
        #    she writes into her own table (her schema's rows vouch only for her section).
        conn.execute("SELECT oas.oas_store_grant(%s, 'read', %s)", [src, mallory])
        conn.execute("SELECT oas.oas_store_grant(%s, 'write', %s)", [src, mallory])
        code, text = attempt(m, victim, dst)
        assert code == "42501" and "no row you may read references it" in text, text
        m.execute(f"CREATE TABLE {mallory}.t (k int PRIMARY KEY, h jsonb)")
        m.execute(f"COMMENT ON COLUMN {mallory}.t.h IS ':<hash@{src}>:'")
        m.execute(f"INSERT INTO {mallory}.t VALUES (1, %s)", [json.dumps(victim)])
        code, text = attempt(m, victim, dst)
        assert code == "42501", text
        # 3. Crafted paths: out of the store, absolute, another schema's section under her name.
        for path in ["../../etc/passwd", "/etc/passwd", f"_hash/{schema}/../{mallory}/{victim['hash']}"]:
            code, text = attempt(m, {**victim, "path": path}, dst)
            assert code == "22023", (path, text)
        code, text = attempt(m, {**victim, "schema": mallory}, dst)
        assert code == "42501", text
        obj = {"path": f"_schema/{schema}/secret/k=1/o_AbCd1234.bin", "store": src, "size": 3, "ext": ".bin",
               "is_dir": False, "item_count": None, "timestamp": "t"}
        code, text = attempt(m, obj, dst)
        assert code == "42501", text

        # Her own object: she may read it.
        m.execute(f"INSERT INTO {mallory}.t VALUES (2, oas.oas_hash(%s))", [b"mallory's own"])
        own = m.execute(f"SELECT h FROM {mallory}.t WHERE k = 2").fetchone()[0]
        # 4. Into a store she may not write (read only).
        conn.execute("SELECT oas.oas_store_grant(%s, 'read', %s)", [ro, mallory])
        code, text = attempt(m, own, ro)
        assert code == "42501" and f'write objects of store "{ro}"' in text, text
        # 5. Into a read-only store, even with write.
        conn.execute("SELECT oas.oas_store_grant(%s, 'write', %s)", [ro, mallory])
        conn.execute("SELECT oas.oas_store_read_only(%s, true)", [ro])
        code, text = attempt(m, own, ro)
        assert code == "25006" and "read-only" in text, text
        conn.execute("SELECT oas.oas_store_read_only(%s, false)", [ro])
        assert stores.listing(dst) == set() and stores.listing(ro) == set()
        # Allowed: her own object, into a store she may write.
        moved = m.execute(copy, [json.dumps(own), dst]).fetchone()[0]
        assert moved == {**own, "store": dst}
        assert stores.listing(dst) == {own["path"]}
