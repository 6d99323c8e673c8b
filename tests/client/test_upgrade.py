"""Upgrades: `ALTER EXTENSION pg_oas UPDATE` from every earlier release.

An install of an earlier version (its install script is kept in sql/history/) is filled with
stores, tracked rows, ledger entries and trash, then updated. The update must keep every value
meaning what it meant, and leave a catalog identical to a fresh install of the current version:
same functions (bodies, settings, strictness, volatility), same privileges, same triggers.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import uuid

import psycopg
import pytest

from conftest import PG_CONFIG, ROOT, RUN_DIR, chown_postgres, connect

HISTORY = ROOT / "sql" / "history"
OLD_VERSIONS = sorted(p.name.removeprefix("pg_oas--").removesuffix(".sql") for p in HISTORY.glob("pg_oas--*.sql"))


def current_version() -> str:
    for line in (ROOT / "Cargo.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in Cargo.toml")


def extension_dir() -> pathlib.Path:
    share = subprocess.run([PG_CONFIG, "--sharedir"], check=True,
                           capture_output=True, text=True).stdout.strip()
    return pathlib.Path(share) / "extension"


@pytest.fixture
def fresh_db():
    """A new empty database; dropped afterwards."""
    names = []

    def make() -> str:
        name = f"oas_upgrade_{uuid.uuid4().hex[:8]}"
        with connect("postgres") as c:
            c.execute(f"CREATE DATABASE {name}")
        names.append(name)
        return name

    yield make
    with connect("postgres") as c:
        for name in names:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# What a release's catalog is, in a form two databases can be compared by.
CATALOG_QUERIES = {
    "functions": """
        SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid),
               pg_catalog.pg_get_function_result(p.oid), p.prosrc, p.proconfig, p.proisstrict,
               p.provolatile, p.prosecdef, p.proparallel,
               ARRAY(SELECT a::text FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) a ORDER BY 1)
        FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'oas'::regnamespace ORDER BY 1, 2""",
    "relations": """
        SELECT c.relname, c.relkind,
               -- NULL means the default: a sequence's differs from a table's.
               ARRAY(SELECT a::text FROM unnest(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char",
                                                                            c.relowner))) a ORDER BY 1),
               ARRAY(SELECT format('%s %s %s', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull)
                     FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                     ORDER BY a.attnum),
               CASE WHEN c.relkind = 'v' THEN pg_catalog.pg_get_viewdef(c.oid) END
        FROM pg_catalog.pg_class c WHERE c.relnamespace = 'oas'::regnamespace ORDER BY 1""",
    "indexes": """
        SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'oas'::regnamespace ORDER BY 1""",
    "event_triggers": "SELECT evtname, evtevent, evttags::text, evtfoid::regproc::text FROM pg_catalog.pg_event_trigger ORDER BY 1",
    # COMMENT ON: `\df+` and `\d+` show the same help after an update as after a fresh install.
    "comments": """
        SELECT p.oid::regprocedure::text, d.description FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_proc p ON d.classoid = 'pg_catalog.pg_proc'::regclass AND d.objoid = p.oid
        WHERE p.pronamespace = 'oas'::regnamespace
        UNION ALL
        SELECT c.oid::regclass::text || coalesce('.' || a.attname, ''), d.description FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::regclass AND d.objoid = c.oid
        LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
        WHERE c.relnamespace = 'oas'::regnamespace ORDER BY 1""",
    "config_dump": """
        SELECT c::regclass::text FROM pg_catalog.pg_extension e, unnest(e.extconfig) c
        WHERE e.extname = 'pg_oas' ORDER BY 1""",
}


def catalog_of(dbname: str) -> dict[str, list]:
    with connect(dbname) as c:
        return {k: c.execute(q).fetchall() for k, q in CATALOG_QUERIES.items()}


def test_every_symbol_an_old_version_names_is_in_the_library(fresh_db):
    """A database runs its old function definitions until it is updated, and CREATE EXTENSION of
    an old version looks each C symbol up: the library keeps every one (src/compat.rs)."""
    symbols = set()
    for old in OLD_VERSIONS:
        symbols |= set(re.findall(r"'MODULE_PATHNAME', '(\w+)'", (HISTORY / f"pg_oas--{old}.sql").read_text()))
    assert len(symbols) > 40
    with connect(fresh_db()) as c:
        for sym in sorted(symbols):
            # check_function_bodies (on) makes CREATE FUNCTION look the symbol up in the library.
            c.execute(f"CREATE FUNCTION pg_temp.probe() RETURNS void AS 'pg_oas', '{sym}' LANGUAGE c")
            c.execute("DROP FUNCTION pg_temp.probe()")


@pytest.mark.parametrize("old", OLD_VERSIONS)
def test_update_keeps_values_and_matches_a_fresh_install(old, fresh_db, tmp_path):
    # The kept install script is the authority: a stale copy in the extension folder (from an
    # older build of that version) would test an update from something that was never released.
    shutil.copyfile(HISTORY / f"pg_oas--{old}.sql", extension_dir() / f"pg_oas--{old}.sql")
    store_dir = RUN_DIR / f"upgrade-store-{uuid.uuid4().hex[:8]}"
    store_dir.mkdir(parents=True)
    chown_postgres(store_dir)

    old_db = fresh_db()
    with connect(old_db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute(f"CREATE EXTENSION pg_oas VERSION '{old}'")
        c.execute("SELECT oas.oas_store_create('main', %s, true)",
                  [json.dumps({"protocol": "file", "location": str(store_dir)})])
        c.execute("CREATE SCHEMA lab")
        c.execute("CREATE TABLE lab.rec (id int PRIMARY KEY, payload jsonb)")
        c.execute("COMMENT ON COLUMN lab.rec.payload IS ':<hash@main>:payload'")
        c.execute("""INSERT INTO lab.rec SELECT g, oas.oas_hash_put(convert_to('value ' || g, 'UTF8'), 'main', 'lab')
                     FROM generate_series(1, 20) g""")
        # This library's collector refuses an older catalog (it uses SQL of its own version) ...
        orphan = c.execute("SELECT oas.oas_hash_put('orphan'::bytea, 'main', 'lab')").fetchone()[0]
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as refused:
            c.execute("SELECT * FROM oas.oas_gc(dry_run => true)")
        assert "ALTER EXTENSION pg_oas UPDATE" in refused.value.diag.message_hint
        # ... so the orphan goes to trash as the old version's collector left it: moved under
        # _oas/trash/ and recorded with its run.
        run_id = c.execute("INSERT INTO oas.gc_run (store, grace, finished_at) VALUES ('main', '0', now())"
                           " RETURNING run_id").fetchone()[0]
        trashed = store_dir / "_oas" / "trash" / orphan["path"]
        trashed.parent.mkdir(parents=True, exist_ok=True)
        (store_dir / orphan["path"]).rename(trashed)
        for d in [trashed, *trashed.relative_to(store_dir).parents]:
            chown_postgres(store_dir / d)  # the server moves it back
        c.execute("INSERT INTO oas.gc_trash (store, path, ref_path, size, run_id) VALUES ('main', %s, %s, %s, %s)",
                  [orphan["path"], orphan["path"], orphan["size"], run_id])
        before = {
            "rows": c.execute("SELECT id, payload FROM lab.rec ORDER BY id").fetchall(),
            "ledger": c.execute("SELECT store, path, refs FROM oas.ledger ORDER BY 1, 2").fetchall(),
            "trash": c.execute("SELECT store, path, ref_path, size FROM oas.gc_trash ORDER BY 1, 2").fetchall(),
            "stores": c.execute("SELECT name, protocol, spec, is_default FROM oas.stores ORDER BY 1").fetchall(),
        }
        assert len(before["trash"]) == 1, "the orphan went to trash before the update"

        c.execute("ALTER EXTENSION pg_oas UPDATE")
        version = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_oas'").fetchone()[0]
        assert version == current_version()
        after = {
            "rows": c.execute("SELECT id, payload FROM lab.rec ORDER BY id").fetchall(),
            "ledger": c.execute("SELECT store, path, refs FROM oas.ledger ORDER BY 1, 2").fetchall(),
            "trash": c.execute("SELECT store, path, ref_path, size FROM oas.gc_trash ORDER BY 1, 2").fetchall(),
            "stores": c.execute("SELECT name, protocol, spec, is_default FROM oas.stores ORDER BY 1").fetchall(),
        }
        assert after == before
        # Stores made before per-store privileges go on letting every role read and write.
        grants = c.execute("SELECT store, grantee, privilege FROM oas.store_privileges ORDER BY 3").fetchall()
        assert grants == [("main", "PUBLIC", "read"), ("main", "PUBLIC", "write")]
        # Values still read back, new rows are still tracked, the collector still runs.
        got = c.execute("SELECT convert_from(oas.oas_hash_get(payload), 'UTF8') FROM lab.rec WHERE id = 7").fetchone()[0]
        assert got == "value 7"
        c.execute("INSERT INTO lab.rec VALUES (21, oas.oas_hash_put('value 21'::bytea, 'main', 'lab'))")
        assert c.execute("SELECT count(*) FROM oas.ledger").fetchone()[0] == 21
        report = c.execute("SELECT referenced, errors FROM oas.oas_gc() WHERE store = 'main'").fetchone()
        assert report == (21, [])
        # The trash an older version left is restorable.
        restored = c.execute("SELECT path FROM oas.oas_gc_restore(%s)", [run_id]).fetchall()
        assert restored == [(orphan["path"],)] and (store_dir / orphan["path"]).exists()

    new_db = fresh_db()
    with connect(new_db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION pg_oas")
    updated, fresh = catalog_of(old_db), catalog_of(new_db)
    for part in CATALOG_QUERIES:
        assert updated[part] == fresh[part], f"{part} differ between an updated and a fresh install"
    shutil.rmtree(store_dir, ignore_errors=True)
