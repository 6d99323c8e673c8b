"""Backup and restore (#13): a database with stores, tracked tables (as DataJoint declares them:
CREATE TABLE, then COMMENT ON COLUMN with codec markers), a custom codec and store grants, dumped
with pg_dump and restored with pg_restore (custom format, by sections, one table) and psql (plain
format). The restored database has every table's triggers exactly once, its references resolve,
its catalog and ledger match the original's, and pointed at the same stores it cannot collect the
original's objects. Also: oas_ledger_rebuild() after writes that bypassed the triggers, and the
warning oas_gc() gives when trash retention is shorter than a base backup's age."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time

import psycopg
import pytest

from conftest import PGBIN, PORT, RUN_DIR, chown_postgres, connect, new_database, s3_spec, sql_error, unique

PAYLOAD = b"restored bytes " * 100
CLIENT = ["-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres"]


def pg(tool: str, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run one of the server's client programs (pg_dump, pg_restore, psql) against the test cluster."""
    out = subprocess.run([os.path.join(PGBIN, tool), *CLIENT, *args], input=stdin, capture_output=True,
                         text=True, timeout=300)
    if check:
        assert out.returncode == 0, f"{tool} {' '.join(args)} failed:\n{out.stderr}"
    return out


class Source:
    """The database that is dumped: its name, schema, tables, and the databases made from it."""

    def __init__(self, name: str, schema: str, role: str):
        self.name, self.schema, self.role = name, schema, role
        self.made: list[str] = []

    def empty_database(self) -> str:
        name = unique("bkr")
        with connect("postgres") as c:
            c.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        self.made.append(name)
        return name


@pytest.fixture(scope="module")
def source(servers, tmp_path_factory):
    """A database with a file store (default) and an S3 store at locations of their own, a custom
    codec chained to <hash>, a read grant, and two tracked tables sharing one object."""
    name = unique("bk")
    schema = unique("lab")
    role = unique("bk_reader")
    new_database(name)
    store_dir = RUN_DIR / f"{name}-store"
    store_dir.mkdir(parents=True)
    chown_postgres(store_dir)
    src = Source(name, schema, role)
    with connect(name) as c:
        c.execute("SELECT oas.oas_store_create('local', %s, true)",
                  [json.dumps({"protocol": "file", "location": str(store_dir)})])
        c.execute("SELECT oas.oas_store_create('cloud', %s)",
                  [json.dumps(s3_spec(servers, location=f"pytest-backup/{name}"))])
        c.execute(f"CREATE ROLE {role}")
        c.execute("SELECT oas.oas_store_grant('cloud', 'read', %s)", [role])
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(f"CREATE FUNCTION {schema}.up(text) RETURNS bytea LANGUAGE sql IMMUTABLE"
                  " AS $$ SELECT convert_to(upper($1), 'UTF8') $$")
        c.execute(f"CREATE FUNCTION {schema}.down(bytea) RETURNS text LANGUAGE sql IMMUTABLE"
                  " AS $$ SELECT convert_from($1, 'UTF8') $$")
        c.execute(f"SELECT oas.oas_codec_register('shout', 'hash', '{schema}.up(text)', '{schema}.down(bytea)')")
        # As DataJoint 2.3.5 declares a table: plain CREATE TABLE, then the codec comments.
        c.execute(f"CREATE TABLE {schema}.rec (id int PRIMARY KEY, h jsonb, b jsonb, n jsonb, o jsonb, s jsonb)")
        for col, marker in (("h", ":<hash@local>:raw bytes"), ("b", ":<blob@cloud>:"), ("n", ":<npy@local>:"),
                            ("o", ":<object@cloud>:"), ("s", ":<shout@local>:")):
            c.execute(f"COMMENT ON COLUMN {schema}.rec.{col} IS '{marker}'")
        c.execute(f"CREATE TABLE {schema}.other (k text PRIMARY KEY, h jsonb)")
        c.execute(f"COMMENT ON COLUMN {schema}.other.h IS ':<hash@local>:'")
        for i in range(1, 4):
            c.execute(f"INSERT INTO {schema}.rec VALUES ({i}, oas.oas_hash(%s), oas.oas_blob(%s::text),"
                      f" oas.oas_npy(ARRAY[{i}.5, 2.5]::float8[]), oas.oas_object(%s, '.bin'),"
                      f" oas.oas_encode('shout', %s::text))",
                      [PAYLOAD + bytes([i]), json.dumps([i, i]), b"object %d" % i, f"hello {i}"])
        # The same object referenced twice: the ledger counts 2.
        c.execute(f"INSERT INTO {schema}.other SELECT 'a' || id, h FROM {schema}.rec WHERE id = 1")
        c.execute(f"INSERT INTO {schema}.other SELECT 'b' || id, h FROM {schema}.rec WHERE id = 1")
    yield src
    with connect("postgres") as c:
        for db in [*src.made, name]:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        c.execute(f"DROP ROLE IF EXISTS {role}")
    shutil.rmtree(store_dir, ignore_errors=True)


def triggers(c, schema: str) -> list[tuple]:
    return c.execute("SELECT c.relname, t.tgname, t.tgenabled, pg_catalog.encode(t.tgargs, 'escape')"
                     " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                     " JOIN pg_namespace n ON n.oid = c.relnamespace"
                     " WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY 1, 2", [schema]).fetchall()


def ledger(c) -> list[tuple]:
    """The ledger by table name (oids differ between databases)."""
    return c.execute("SELECT n.nspname, cl.relname, l.column_name, l.store, l.path, l.refs::bigint"
                     " FROM oas.ledger l JOIN pg_class cl ON cl.oid = l.table_oid"
                     " JOIN pg_namespace n ON n.oid = cl.relnamespace ORDER BY 1, 2, 3, 4, 5").fetchall()


def rows_reference(c) -> list[tuple]:
    """What the rows reference, counted as the ledger counts (per table, column and object)."""
    out = []
    for t, schema, table, column, refs in c.execute(
            "SELECT table_oid, schema_name, table_name, column_name, refs FROM oas._tracked_refs()").fetchall():
        for store, path, n in c.execute(
                f"SELECT coalesce(q.store, ''), q.path, count(*) FROM ({refs}) q WHERE q.path IS NOT NULL"
                " GROUP BY 1, 2").fetchall():
            out.append((schema, table, column, store, path, n))
    return sorted(out)


def catalog(c) -> dict:
    return {
        "stores": c.execute("SELECT name, protocol, spec, is_default, is_filepath_default, has_credentials,"
                            " require_references FROM oas.stores ORDER BY name").fetchall(),
        "secrets": c.execute("SELECT store, secrets FROM oas.store_secret ORDER BY store").fetchall(),
        "grants": c.execute("SELECT store, grantee::text, privilege FROM oas.store_grant ORDER BY 1, 2, 3").fetchall(),
        "codecs": c.execute("SELECT * FROM oas.codec ORDER BY 1").fetchall(),
    }


def check_restored(src: Source, dst: str, tables=("other", "rec")) -> None:
    """The restored database agrees with the original: triggers (once each), catalog, ledger, and
    every reference resolves."""
    with connect(src.name) as a, connect(dst) as b:
        assert triggers(b, src.schema) == triggers(a, src.schema)
        names = [(t, g) for t, g, _, _ in triggers(b, src.schema)]
        assert len(names) == len(set(names))
        assert {t for t, _ in names} == set(tables)
        assert catalog(b) == catalog(a)
        assert ledger(b) == [r for r in ledger(a) if r[1] in tables]
        assert [tuple(r) for r in ledger(b)] == rows_reference(b)
        assert b.execute("SELECT * FROM oas.oas_verify()").fetchall() == []
        if "rec" in tables:
            got = b.execute(f"SELECT oas.oas_hash_get(h), oas.oas_blob_get(b), oas.oas_decode('shout', s),"
                            f" oas.oas_npy_slice_array(n, '1') FROM {src.schema}.rec WHERE id = 2").fetchone()
            assert got == (PAYLOAD + b"\x02", [2, 2], "HELLO 2", [2.5])
        # Nothing for a rebuild to correct, and new rows are tracked.
        assert b.execute("SELECT * FROM oas.oas_ledger_rebuild()").fetchall() == []
        b.execute(f"INSERT INTO {src.schema}.other VALUES ('new', oas.oas_hash('new after restore'::bytea))")
        assert [tuple(r) for r in ledger(b)] == rows_reference(b)


def test_pg_restore_custom_format(source, tmp_path):
    """pg_dump -Fc, pg_restore into a new database (stopping at the first error): each table's
    triggers are the dump's, once; stores, secrets, grants and codecs come with the dump."""
    dump = tmp_path / "db.dump"
    pg("pg_dump", "-Fc", "-f", str(dump), source.name)
    dst = source.empty_database()
    out = pg("pg_restore", "--exit-on-error", "-d", dst, str(dump))
    assert "error" not in out.stderr.lower(), out.stderr
    check_restored(source, dst)


def test_pg_restore_by_sections_in_one_transaction(source, tmp_path):
    """pre-data, data and post-data restored one after the other (each in one transaction)."""
    dump = tmp_path / "db.dump"
    pg("pg_dump", "-Fc", "-f", str(dump), source.name)
    dst = source.empty_database()
    for section in ("pre-data", "data", "post-data"):
        pg("pg_restore", "--single-transaction", "--exit-on-error", f"--section={section}", "-d", dst, str(dump))
    check_restored(source, dst)


def test_plain_dump_through_psql(source, tmp_path):
    """pg_dump's plain SQL, run by psql stopping at the first error."""
    dump = tmp_path / "db.sql"
    pg("pg_dump", "-Fp", "-f", str(dump), source.name)
    dst = source.empty_database()
    pg("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dst, "-f", str(dump))
    check_restored(source, dst)


def test_one_table_dumped_and_restored(source, tmp_path):
    """pg_dump -t of one table, restored into a copy of the database that lost it."""
    full, one = tmp_path / "db.dump", tmp_path / "other.dump"
    pg("pg_dump", "-Fc", "-f", str(full), source.name)
    pg("pg_dump", "-Fc", "-t", f"{source.schema}.other", "-f", str(one), source.name)
    dst = source.empty_database()
    pg("pg_restore", "--exit-on-error", "-d", dst, str(full))
    with connect(dst) as b:
        b.execute(f"DROP TABLE {source.schema}.other")
        assert all(r[1] != "other" for r in ledger(b))
    pg("pg_restore", "--exit-on-error", "-d", dst, str(one))
    check_restored(source, dst)


def test_data_only_restore_with_triggers_disabled_then_rebuild(source, tmp_path):
    """Schema first, then the rows with --disable-triggers: the ledger knows nothing of them until
    oas_ledger_rebuild() counts them."""
    dump = tmp_path / "db.dump"
    pg("pg_dump", "-Fc", "-f", str(dump), source.name)
    dst = source.empty_database()
    pg("pg_restore", "--exit-on-error", "--schema-only", "-d", dst, str(dump))
    pg("pg_restore", "--exit-on-error", "--data-only", "--disable-triggers", "-d", dst, str(dump))
    with connect(dst) as b:
        assert ledger(b) == []
        fixed = b.execute("SELECT schema_name, table_name, column_name, store, path, delta"
                          " FROM oas.oas_ledger_rebuild()").fetchall()
        assert sorted(fixed) == rows_reference(b)
    check_restored(source, dst)


def test_a_restore_not_recognised_fails_loudly(source, tmp_path):
    """Why a restore must be recognised (check_function_bodies = off, which every dump sets): a
    script without that line gets triggers from its COMMENTs, and the dump's own CREATE TRIGGER
    then fails. It fails; it does not leave triggers twice."""
    dump = tmp_path / "db.sql"
    pg("pg_dump", "-Fp", "--schema-only", "-f", str(dump), source.name)
    text = dump.read_text()
    assert "SET check_function_bodies = false;" in text
    dst = source.empty_database()
    out = pg("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dst,
             stdin=text.replace("SET check_function_bodies = false;", ""), check=False)
    assert out.returncode != 0 and "already exists" in out.stderr, out.stderr


def test_dump_without_secrets(source, tmp_path):
    """A dump carries the stores' credentials (oas.store_secret is dumped with the extension);
    --exclude-table-data=oas.store_secret leaves them out: the stores come back without them."""
    dump = tmp_path / "db.dump"
    pg("pg_dump", "-Fc", "--exclude-table-data=oas.store_secret", "-f", str(dump), source.name)
    dst = source.empty_database()
    pg("pg_restore", "--exit-on-error", "-d", dst, str(dump))
    with connect(dst) as b:
        assert b.execute("SELECT count(*) FROM oas.store_secret").fetchone()[0] == 0
        assert b.execute("SELECT has_credentials FROM oas.stores WHERE name = 'cloud'").fetchone()[0] is False
    with connect(source.name) as a, connect(dst) as b:
        assert triggers(b, source.schema) == triggers(a, source.schema)


def gc(c, store: str) -> dict:
    cur = c.execute("SELECT store, trashed, errors FROM oas.oas_gc(dry_run => false, store => %s, grace => '0')",
                    [store])
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


def test_restored_database_cannot_collect_the_originals_objects(source, tmp_path):
    """The restored database, pointed at the same store locations, finds them claimed by the
    original (_oas/owner.json) and deletes nothing; the original keeps collecting."""
    with connect(source.name) as a:
        for store in ("local", "cloud"):
            assert gc(a, store)["errors"] == []  # claims both locations
    dump = tmp_path / "db.dump"
    pg("pg_dump", "-Fc", "-f", str(dump), source.name)
    dst = source.empty_database()
    pg("pg_restore", "--exit-on-error", "-d", dst, str(dump))
    with connect(dst) as b:
        # The copy's rows drift from the original's: what it no longer references is still the
        # original's, and must stay.
        b.execute(f"DELETE FROM {source.schema}.rec")
        b.execute(f"DELETE FROM {source.schema}.other")
        for store in ("local", "cloud"):
            for _ in range(2):
                r = gc(b, store)
                assert r["trashed"] == 0, r
                assert any("collected by another database" in e and "_oas/owner.json" in e
                           and "its own location" in e for e in r["errors"]), r
    with connect(source.name) as a:
        assert a.execute("SELECT * FROM oas.oas_verify()").fetchall() == []
        a.execute(f"DELETE FROM {source.schema}.rec WHERE id = 3")
        trashed = 0
        for _ in range(3):
            r = gc(a, "cloud")
            assert r["errors"] == [], r
            trashed += r["trashed"]
            if trashed:
                break
        assert trashed >= 2  # the row's blob and its object folder
        assert a.execute("SELECT * FROM oas.oas_verify()").fetchall() == []


# ---------------------------------------------------------------------------------------------
# oas_ledger_rebuild()

@pytest.fixture
def bypassed(conn):
    """A tracked table (store `file`) with rows written past its triggers: one by the triggers,
    two under session_replication_role = replica, one changed with the triggers disabled."""
    schema = unique("lr")
    t = f"{schema}.t"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, h jsonb)")
    conn.execute(f"COMMENT ON COLUMN {t}.h IS ':<hash@file>:'")
    refs = [conn.execute("SELECT oas.oas_hash_put(%s, 'file', %s)", [b"ledger %d" % i, schema]).fetchone()[0]
            for i in range(4)]
    conn.execute(f"INSERT INTO {t} VALUES (1, %s)", [json.dumps(refs[0])])
    conn.execute("SET session_replication_role = replica")
    conn.execute(f"INSERT INTO {t} VALUES (2, %s), (3, %s)", [json.dumps(refs[1]), json.dumps(refs[1])])
    conn.execute(f"DELETE FROM {t} WHERE id = 1")
    conn.execute("RESET session_replication_role")
    conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
    conn.execute(f"UPDATE {t} SET h = %s WHERE id = 3", [json.dumps(refs[2])])
    conn.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")
    yield t, schema, refs
    conn.execute(f"DROP SCHEMA {schema} CASCADE")


def table_ledger(c, t: str) -> dict:
    return dict(c.execute("SELECT path, refs::bigint FROM oas.ledger WHERE table_oid = %s::regclass", [t]).fetchall())


def table_rows(c, t: str) -> dict:
    return dict(c.execute(f"SELECT h->>'path', count(*) FROM {t} GROUP BY 1").fetchall())


def test_ledger_rebuild_after_bypassed_triggers(conn, bypassed):
    t, schema, refs = bypassed
    assert table_ledger(conn, t) == {refs[0]["path"]: 1}
    assert table_rows(conn, t) == {refs[1]["path"]: 1, refs[2]["path"]: 1}
    got = conn.execute("SELECT schema_name, table_name, column_name, store, path, delta"
                       " FROM oas.oas_ledger_rebuild() WHERE schema_name = %s ORDER BY path", [schema]).fetchall()
    assert sorted(got) == sorted([(schema, "t", "h", "file", refs[0]["path"], -1),
                                  (schema, "t", "h", "file", refs[1]["path"], 1),
                                  (schema, "t", "h", "file", refs[2]["path"], 1)])
    assert table_ledger(conn, t) == table_rows(conn, t)
    assert conn.execute("SELECT count(*) FROM oas.ref_log WHERE table_oid = %s::regclass AND op = 'REBUILD'",
                        [t]).fetchone()[0] == 3
    # Once right, nothing more to do; the triggers go on from there.
    assert conn.execute("SELECT * FROM oas.oas_ledger_rebuild() WHERE schema_name = %s", [schema]).fetchall() == []
    conn.execute(f"DELETE FROM {t} WHERE id = 2")
    assert table_ledger(conn, t) == table_rows(conn, t) == {refs[2]["path"]: 1}
    # Rows of a table dropped with the triggers' event trigger bypassed are released too.
    assert all(r[0] != schema for r in conn.execute("SELECT * FROM oas.oas_ledger_rebuild()").fetchall())


def test_ledger_rebuild_waits_for_writers_not_readers(conn, bypassed, db):
    """A rebuild takes each tracked table SHARE ROW EXCLUSIVE: a writer still in its transaction
    holds it back, and while it runs, writers wait and readers do not. It runs at READ COMMITTED."""
    t, schema, refs = bypassed
    with connect(db) as writer, connect(db) as reader:
        writer.execute("BEGIN")
        writer.execute(f"INSERT INTO {t} VALUES (9, %s)", [json.dumps(refs[3])])
        conn.execute("SET lock_timeout = '300ms'")
        assert sql_error(conn, "SELECT * FROM oas.oas_ledger_rebuild()").sqlstate == "55P03"
        writer.execute("COMMIT")
        conn.execute("BEGIN")
        conn.execute("SELECT * FROM oas.oas_ledger_rebuild()").fetchall()
        assert reader.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 3
        reader.execute("SET lock_timeout = '300ms'")
        assert sql_error(reader, f"DELETE FROM {t} WHERE id = 9").sqlstate == "55P03"
        conn.execute("COMMIT")
        conn.execute("RESET lock_timeout")
    assert table_ledger(conn, t) == table_rows(conn, t)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    e = sql_error(conn, "SELECT * FROM oas.oas_ledger_rebuild()")
    assert e.sqlstate == "22023" and "READ COMMITTED" in e.diag.message_hint
    conn.execute("ROLLBACK")


# ---------------------------------------------------------------------------------------------
# Point-in-time recovery: trash retention against the base backups the server shows

def test_gc_warns_when_retention_is_shorter_than_a_base_backup(conn):
    """pg_backup_stop() (so pg_basebackup too) writes a backup history file into pg_wal, where it
    stays while WAL is archived (without archiving PostgreSQL removes it at once, so one is
    planted here, as an archiving server keeps it, dated ten days ago): a trash retention shorter
    than the backup's age gets a WARNING from oas_gc(), a longer one none."""
    archiving = conn.execute("SELECT current_setting('archive_mode') <> 'off'").fetchone()[0]
    data = pathlib.Path(conn.execute("SHOW data_directory").fetchone()[0])
    started = conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC' - interval '10 days',"
                           " 'YYYY-MM-DD HH24:MI:SS')").fetchone()[0]
    history = data / "pg_wal" / "00000001000000000000000F.00000028.backup"
    history.write_text("START WAL LOCATION: 0/F000028 (file 00000001000000000000000F)\n"
                       "STOP WAL LOCATION: 0/F000100 (file 00000001000000000000000F)\n"
                       "CHECKPOINT LOCATION: 0/F000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n"
                       f"START TIME: {started} UTC\nLABEL: oas-pitr-test\nSTART TIMELINE: 1\n"
                       f"STOP TIME: {started} UTC\nSTOP TIMELINE: 1\n")
    warnings: list[str] = []
    conn.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity == "WARNING" else None)
    try:
        conn.execute("SELECT * FROM oas.oas_gc(dry_run => true, store => 'file', trash_retention => '7 days')").fetchall()
        assert any("trash retention (7 days) is shorter than the age of the oldest base backup this server"
                   " shows (10 days)" in w and "oas.gc_trash_retention" in w for w in warnings), warnings
        warnings.clear()
        conn.execute("SELECT * FROM oas.oas_gc(dry_run => true, store => 'file', trash_retention => '11 days')").fetchall()
        assert not any("base backup" in w or "WAL is archived" in w for w in warnings), warnings
    finally:
        history.unlink(missing_ok=True)
    if not archiving:
        # Nothing seen, archiving off: no warning whatever the retention.
        warnings.clear()
        conn.execute("SELECT * FROM oas.oas_gc(dry_run => true, store => 'file', trash_retention => '0')").fetchall()
        assert not any("base backup" in w or "WAL is archived" in w for w in warnings), warnings
