"""Moving objects between stores (`CALL oas.oas_move(...)`, #14), end to end against the real
servers, file store -> SeaweedFS and back: a column, a table and a whole store moved, every value
read back byte-identical through the usual get functions, comments retargeted, `<filepath@>`
columns skipped, the collector then removing exactly the old copies; a table moved while another
connection reads it continuously (never an error) and another writes into it; a move cancelled
or killed half-way and resumed; the refusals (read-only destination, privileges, another role's
table, a transaction block).

Interruptions are made deterministic as in test_migrate: another connection holds one row, the
batch that reaches it waits, and is cancelled or killed there."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import threading
import time

import psycopg
import pytest

from conftest import RUN_DIR, PrivateCluster, chown_postgres, connect, s3_spec, sql_error, unique, wait_until
from test_copy_store import COLUMNS, READ_BACK, collect_and_check, every_shape_table, mallory, schema, stores  # noqa: F401
from test_migrate import WAIT_S, blocked_on_lock, held_row, run_in_thread

DIRECTIONS = [("file", "s3"), ("s3", "file")]


def move(conn, to: str, *args, **kw) -> list[str]:
    """CALL oas_move(to, args...); the NOTICEs it raised."""
    notices: list[str] = []
    handler = lambda d: notices.append(d.message_primary)  # noqa: E731
    conn.add_notice_handler(handler)
    try:
        params = [to, *args, *kw.values()]
        named = "".join(f", {k} => %s" for k in kw)
        conn.execute(f"CALL oas.oas_move(%s{', %s' * len(args)}{named})", params)
    finally:
        conn.remove_notice_handler(handler)
    return notices


def stores_of(conn, table: str, columns) -> set[str | None]:
    return {r[0] for c in columns for r in conn.execute(f"SELECT {c}->>'store' FROM {table} WHERE {c} IS NOT NULL")}


def comment_store(conn, table: str, column: str) -> str:
    return conn.execute("SELECT (oas.oas_parse_marker(col_description(attrelid, attnum))).store FROM pg_attribute"
                        " WHERE attrelid = %s::regclass AND attname = %s", [table, column]).fetchone()[0]


def last_job(conn, table: str, column: str):
    return conn.execute("SELECT state, rows_done, rows_total, position FROM oas.job WHERE table_oid = %s::regclass"
                        " AND column_name = %s ORDER BY id DESC LIMIT 1", [table, column]).fetchone()


def put_user_file(stores, store: str, path: str, data: bytes) -> None:
    """A file the user manages, written straight into the store (for a `<filepath@>` value)."""
    loc = stores.locations[store]
    if isinstance(loc, pathlib.Path):
        (loc / path).parent.mkdir(parents=True, exist_ok=True)
        (loc / path).write_bytes(data)
        chown_postgres(loc / path)
    else:
        stores.s3.pipe(f"{loc}/{path}", data)


@pytest.mark.parametrize("src_kind,dst_kind", DIRECTIONS)
def test_a_column_a_table_then_a_whole_store(conn, stores, schema, src_kind, dst_kind):  # noqa: F811
    src, dst = stores.make(src_kind), stores.make(dst_kind)
    t = every_shape_table(conn, schema, src)
    t2 = f"{schema}.other"
    conn.execute(f"CREATE TABLE {t2} (k int PRIMARY KEY, h jsonb, f jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'h', %s)", [t2, f"hash@{src}"])
    conn.execute("SELECT oas.oas_declare_column(%s, 'f', %s)", [t2, f"filepath@{src}"])
    put_user_file(stores, src, "raw/session.bin", b"the user's own file")
    conn.execute(f"INSERT INTO {t2} VALUES (1, oas.oas_hash(%s), oas.oas_filepath('raw/session.bin', %s)),"
                 " (2, NULL, NULL)", [os.urandom(4000), src])
    read_t2 = f"SELECT k, oas.oas_hash_get(h), f FROM {t2} ORDER BY k"
    before = conn.execute(READ_BACK.format(t=t), binary=True).fetchall()
    before_t2 = conn.execute(read_t2, binary=True).fetchall()
    old_refs = [r for row in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {t}") for r in row]
    old_refs += [r[0] for r in conn.execute(f"SELECT h FROM {t2} WHERE h IS NOT NULL")]
    started = time.monotonic()

    # One column.
    notices = move(conn, dst, src, t, "h")
    assert any("moved: 2/2 rows" in n and "done" in n for n in notices), notices
    assert stores_of(conn, t, ["h"]) == {dst} and stores_of(conn, t, [c for c in COLUMNS if c != "h"]) == {src}
    assert comment_store(conn, t, "h") == dst and comment_store(conn, t, "b") == src
    assert last_job(conn, t, "h")[:3] == ("done", 2, 2)
    # One table (its column h is already there: nothing left to do for it).
    move(conn, dst, src, t, batch_rows=1)
    assert stores_of(conn, t, COLUMNS) == {dst}
    assert {comment_store(conn, t, c) for c in COLUMNS} == {dst}
    # The whole store: the other table's managed column; its <filepath@> column is skipped with a
    # NOTICE (the user's files stay where they are, its comment too).
    notices = move(conn, dst, src)
    assert any(f"{t2}.f is a <filepath@> column" in n for n in notices), notices
    assert not any(f"{t}." in n for n in notices), notices  # nothing left to move there
    assert stores_of(conn, t2, ["h"]) == {dst} and stores_of(conn, t2, ["f"]) == {src}
    assert comment_store(conn, t2, "h") == dst and comment_store(conn, t2, "f") == src
    print(f"{src_kind} -> {dst_kind}: a column, a table and a store moved in {time.monotonic() - started:.1f} s")

    # Every value reads back byte-identical, from the new store; oas_verify is clean.
    assert conn.execute(READ_BACK.format(t=t), binary=True).fetchall() == before
    assert conn.execute(read_t2, binary=True).fetchall() == before_t2
    for store in (src, dst):
        assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0
    # New values go to the new store.
    conn.execute(f"INSERT INTO {t} (k, h, n) VALUES (3, oas.oas_hash('new'), oas.oas_npy(ARRAY[1.0]::float8[]))")
    assert stores_of(conn, t, ["h", "n"]) == {dst}

    # The collector (zero grace) removes the old copies, and nothing the rows reference.
    files = [r for r in old_refs if not r.get("is_dir")]
    collect_and_check(conn, stores, files, kept=dst, gone=src)
    for r in old_refs:
        if r.get("is_dir"):
            assert not stores.has(src, r["path"] + ".manifest.json") and stores.has(dst, r["path"] + ".manifest.json")
    # Exactly the old copies went to the source's trash; the user's file stays; nothing of the
    # destination went.
    left = stores.listing(src)
    assert {p for p in left if not p.startswith("_oas/")} == {"raw/session.bin"}
    folders = [r["path"] + f for r in old_refs if r.get("is_dir") for f in (".manifest.json", "/a.bin", "/sub/b.bin")]
    trashed = {p.removeprefix("_oas/trash/") for p in left if p.startswith("_oas/trash/")}
    assert trashed == {r["path"] for r in files} | set(folders)
    assert not any(p.startswith("_oas/trash/") for p in stores.listing(dst))
    assert conn.execute(READ_BACK.format(t=t), binary=True).fetchall()[:2] == before
    assert conn.execute(read_t2, binary=True).fetchall() == before_t2


def traces_table(conn, t: str, store: str, n: int) -> dict[int, tuple[bytes, list[float]]]:
    """Table t (k int PRIMARY KEY, h <hash@store>, n <npy@store>) with n rows; their values."""
    conn.execute(f"CREATE TABLE {t} (k int PRIMARY KEY, h jsonb, n jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'h', %s)", [t, f"hash@{store}"])
    conn.execute("SELECT oas.oas_declare_column(%s, 'n', %s)", [t, f"npy@{store}"])
    values = {k: (os.urandom(2000 + 37 * k), [float(k), k / 3.0, -1.5]) for k in range(1, n + 1)}
    for k, (h, a) in values.items():
        conn.execute(f"INSERT INTO {t} VALUES (%s, oas.oas_hash(%s), oas.oas_npy(%s::float8[]))", [k, h, a])
    return values


READ_TRACES = "SELECT k, oas.oas_hash_get(h), oas.oas_npy_slice(n, '1:') FROM {t} ORDER BY k"


class Reader(threading.Thread):
    """Reads every row of a table through oas_hash_get and oas_npy_slice in a loop until stopped,
    as `user`; counts the rounds and keeps the first error."""

    def __init__(self, t: str, user: str):
        super().__init__(daemon=True)
        self.t, self.user, self.rounds, self.error, self.stop = t, user, 0, None, threading.Event()
        self.mixed = 0  # rounds that saw rows in both stores: read in the middle of the move
        self.seen: dict[int, tuple[bytes, bytes]] = {}

    def run(self):
        try:
            with connect(user=self.user) as c:
                while not self.stop.is_set():
                    stores = set()
                    for k, h, n, store in c.execute(READ_TRACES.format(t=self.t).replace(" FROM", ", h->>'store' FROM"),
                                                    binary=True):
                        self.seen[k] = (h, n)
                        stores.add(store)
                    self.mixed += len(stores) > 1
                    self.rounds += 1
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e


@pytest.mark.parametrize("src_kind,dst_kind", DIRECTIONS)
def test_a_table_moved_while_read_and_written(conn, stores, schema, mallory, src_kind, dst_kind):  # noqa: F811
    """The reader is a role that administers no store (`mallory`, with SELECT on the table): its
    reads go through the reference check (a row it may read references the object) as well."""
    src, dst = stores.make(src_kind), stores.make(dst_kind)
    t = f"{schema}.traces"
    traces_table(conn, t, src, 40)
    conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {mallory}")
    conn.execute(f"GRANT SELECT ON {t} TO {mallory}")
    expected = {k: (h, n) for k, h, n in conn.execute(READ_TRACES.format(t=t), binary=True)}
    reader = Reader(t, mallory)
    reader.start()
    assert wait_until(lambda: reader.rounds >= 1 or reader.error is not None, WAIT_S)
    # The move waits on a held row half-way, so the writer's rows land before and after it.
    holder = held_row(t, 23)
    worker = connect()
    pid = worker.info.backend_pid
    th, box = run_in_thread(lambda: move(worker, dst, None, t, batch_rows=3))
    assert wait_until(lambda: blocked_on_lock(conn, pid), WAIT_S)
    written = {}
    with connect() as writer:
        for k in (3, 30, 41, 42):  # one row moved, one not yet, two new ones
            h = os.urandom(3000 + k)
            ref = writer.execute(f"INSERT INTO {t} (k, h, n) VALUES (%s, oas.oas_hash(%s), oas.oas_npy(%s::float8[]))"
                                 " ON CONFLICT (k) DO UPDATE SET h = EXCLUDED.h RETURNING h",
                                 [k, h, [1.0, 2.0, float(k)]]).fetchone()[0]
            written[k] = (h, ref["store"])
    holder.close()
    th.join(WAIT_S)
    assert "error" not in box, box
    rounds = reader.rounds
    assert wait_until(lambda: reader.rounds >= rounds + 1 or reader.error is not None, WAIT_S)
    reader.stop.set()
    reader.join(WAIT_S)
    worker.close()
    print(f"{src_kind} -> {dst_kind}: {reader.rounds} rounds of reads over the table during the move,"
          f" {reader.mixed} of them with rows in both stores")
    assert reader.error is None, reader.error
    assert reader.mixed >= 1
    assert written[3][1] == src and written[41][1] == src  # written before the move finished
    assert stores_of(conn, t, ["h", "n"]) == {dst}
    got = {k: (h, n) for k, h, n in conn.execute(READ_TRACES.format(t=t), binary=True)}
    assert set(got) == set(range(1, 43))
    for k, (h, n) in got.items():
        if k in written:
            assert h == written[k][0], k
        else:
            assert (h, n) == expected[k], k
    assert reader.seen[1] == got[1]
    for store in (src, dst):
        assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [store]).fetchone()[0] == 0


def check_ledger(conn, t: str) -> None:
    """The ledger counts each reference of the table once."""
    for col in ("h", "n"):
        ledger = sorted(conn.execute("SELECT store, path, refs::bigint FROM oas.ledger WHERE table_oid = %s::regclass"
                                     " AND column_name = %s", [t, col]).fetchall())
        counted = sorted(conn.execute(f"SELECT {col}->>'store', {col}->>'path', count(*) FROM {t}"
                                      f" WHERE {col} IS NOT NULL GROUP BY 1, 2").fetchall())
        assert ledger == counted, col


def test_cancelled_half_way_then_resumed(conn, stores, schema):  # noqa: F811
    src, dst = stores.make("file"), stores.make("s3")
    t = f"{schema}.traces"
    traces_table(conn, t, src, 30)
    before = conn.execute(READ_TRACES.format(t=t), binary=True).fetchall()
    holder = held_row(t, 23)
    worker = connect()
    pid = worker.info.backend_pid
    th, box = run_in_thread(lambda: move(worker, dst, src, t, "h", batch_rows=5))
    assert wait_until(lambda: blocked_on_lock(conn, pid), WAIT_S)
    conn.execute("SELECT pg_cancel_backend(%s)", [pid])
    th.join(WAIT_S)
    assert isinstance(box.get("error"), psycopg.errors.QueryCanceled), box
    worker.close()
    # The batches before the held row are kept (4 of them), the one that waited is not.
    assert last_job(conn, t, "h") == ("running", 20, 30, ["20"])
    assert conn.execute(f"SELECT count(*) FILTER (WHERE h->>'store' = %s), count(*) FROM {t}",
                        [dst]).fetchone() == (20, 30)
    holder.close()
    notices = move(conn, dst, src, t, "h", batch_rows=5)
    progress = [n for n in notices if "moved:" in n]
    # One NOTICE per batch: rows 21-25, 26-30, then the last step (nothing written meanwhile).
    assert len(progress) == 3, progress
    assert progress[0].startswith("moved: 25/30 rows") and progress[2].startswith("moved: 30/30 rows"), progress
    assert progress[2].endswith("done") and not progress[1].endswith("done"), progress
    assert last_job(conn, t, "h") == ("done", 30, 30, ["30"])
    assert conn.execute("SELECT count(*) FROM oas.job WHERE table_oid = %s::regclass", [t]).fetchone()[0] == 1
    assert stores_of(conn, t, ["h"]) == {dst} and stores_of(conn, t, ["n"]) == {src}
    assert conn.execute(READ_TRACES.format(t=t), binary=True).fetchall() == before
    check_ledger(conn, t)
    assert conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [dst]).fetchone()[0] == 0


@pytest.fixture(scope="module")
def crash_cluster(servers):
    c = PrivateCluster("movecrash")
    yield c
    c.destroy()


def test_kill_9_half_way_then_resumed(crash_cluster, servers, s3fs_client):
    """The backend is killed (SIGKILL) while its batch waits: a new call resumes, every row moved
    once, values identical, oas_verify clean. Small: file -> SeaweedFS, 10 rows."""
    c = crash_cluster
    src, dst, loc = unique("mvk"), unique("mvk"), RUN_DIR / unique("mvkdir")
    loc.mkdir()
    chown_postgres(loc)
    t = f"public.{src}"
    with c.session() as conn:
        conn.execute("SELECT oas.oas_store_create(%s, %s)", [src, json.dumps({"protocol": "file", "location": str(loc)})])
        conn.execute("SELECT oas.oas_store_create(%s, %s)", [dst, json.dumps(s3_spec(servers, location=f"pytest-move/{dst}"))])
        traces_table(conn, t, src, 10)
        before = conn.execute(READ_TRACES.format(t=t), binary=True).fetchall()
    box = c.kill_while_waiting(t, 7, lambda worker: move(worker, dst, src, t, batch_rows=2), WAIT_S)
    assert "error" in box
    try:
        with c.session() as conn:
            assert last_job(conn, t, "h") == ("running", 6, 10, ["6"])
            move(conn, dst, src, t, batch_rows=2)
            assert last_job(conn, t, "h") == ("done", 10, 10, ["10"])
            assert last_job(conn, t, "n")[:3] == ("done", 10, 10)
            assert stores_of(conn, t, ["h", "n"]) == {dst}
            assert conn.execute(READ_TRACES.format(t=t), binary=True).fetchall() == before
            check_ledger(conn, t)
            assert conn.execute("SELECT * FROM oas.oas_verify(true, %s)", [dst]).fetchall() == []
    finally:
        with contextlib.suppress(FileNotFoundError):
            s3fs_client.rm(f"{servers['OAS_S3_BUCKET']}/pytest-move/{dst}", recursive=True)
        shutil.rmtree(loc, ignore_errors=True)


def test_refusals(conn, stores, schema, mallory):  # noqa: F811
    """Before anything is written: a read-only destination (25006), a role without write on the
    destination or read on the source (42501), another role's table (42501), a transaction block
    (25001)."""
    src, dst = stores.make("file"), stores.make("file")
    conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {mallory}")
    for store in (src, dst):
        for privilege in ("read", "write"):
            conn.execute("SELECT oas.oas_store_revoke(%s, %s, 'PUBLIC')", [store, privilege])
    t = f"{schema}.traces"
    traces_table(conn, t, src, 3)
    conn.execute("SELECT oas.oas_store_read_only(%s, true)", [dst])
    e = sql_error(conn, "CALL oas.oas_move(%s, %s, %s)", [dst, src, t])
    assert e.sqlstate == "25006" and "read-only" in str(e), e
    assert stores.listing(dst) == set()
    conn.execute("SELECT oas.oas_store_read_only(%s, false)", [dst])
    conn.execute("BEGIN")
    e = sql_error(conn, "CALL oas.oas_move(%s, %s, %s)", [dst, src, t])
    assert e.sqlstate == "25001" and "transaction block" in str(e), e
    conn.execute("ROLLBACK")
    assert last_job(conn, t, "h") is None

    # Mallory's own table in src, written while she could.
    mine = f"{mallory}.t"
    conn.execute("SELECT oas.oas_store_grant(%s, 'write', %s)", [src, mallory])
    with connect(user=mallory) as m:
        m.execute(f"CREATE TABLE {mine} (k int PRIMARY KEY, h jsonb)")
        m.execute(f"COMMENT ON COLUMN {mine}.h IS ':<hash@{src}>:'")
        m.execute(f"INSERT INTO {mine} VALUES (1, oas.oas_hash('hers'))")
    conn.execute("SELECT oas.oas_store_revoke(%s, 'write', %s)", [src, mallory])
    with connect(user=mallory) as m:
        e = sql_error(m, "CALL oas.oas_move(%s, %s, %s)", [dst, src, mine])
        assert e.sqlstate == "42501" and f'write objects of store "{dst}"' in str(e), e
        conn.execute("SELECT oas.oas_store_grant(%s, 'write', %s)", [dst, mallory])
        e = sql_error(m, "CALL oas.oas_move(%s, %s, %s)", [dst, src, mine])
        assert e.sqlstate == "42501" and f'read objects of store "{src}"' in str(e), e
        conn.execute("SELECT oas.oas_store_grant(%s, 'read', %s)", [src, mallory])
        e = sql_error(m, "CALL oas.oas_move(%s, %s, %s)", [dst, src, t])
        assert e.sqlstate == "42501" and "owner" in str(e), e
        assert m.execute("SELECT count(*) FROM oas.job").fetchone()[0] == 0
        assert stores.listing(dst) == set()
        # Allowed: her own table, with read on the source and write on the destination.
        move(m, dst, src, mine)
        assert stores_of(m, mine, ["h"]) == {dst}
        conn.execute("SELECT oas.oas_store_grant(%s, 'read', %s)", [dst, mallory])
        assert m.execute(f"SELECT oas.oas_hash_get(h) FROM {mine}").fetchone()[0] == b"hers"
    assert last_job(conn, t, "h") is None
