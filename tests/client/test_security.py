"""Attacks on pg_oas by real roles against the live cluster. Each test asserts the SAFE outcome.

Threat model. The attacker, `alice_<id>`, is an ordinary login role whose only privilege is
owning one schema (`CREATE SCHEMA alice_<id> AUTHORIZATION alice_<id>`): she may create tables,
functions, operators, domains and row-security policies there, call pg_oas's public functions,
and choose her own settings (search_path). She wants store credentials (`oas.store_secret`),
superuser rights, files outside a store, or to destroy objects other people depend on. Her
victims are the superuser that installed pg_oas (owner of the extension, which pg_oas switches
to while it reads secrets), the members of `oas_admin` (`bob_<id>`: may read secrets, is NOT a
superuser and has neither pg_read_server_files nor pg_write_server_files), the collector run by
a superuser, and other databases sharing a store location.

The module runs in a database of its own (as tests/test_gc.py does): a real collection refuses
to delete anything while some table references a store this database does not know, which other
modules leave behind, and the hostile objects made here must not leak into their tests. Every
test makes its own roles, schema, tables and stores (unique names) and drops them at the end.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import itertools
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass

import numpy as np
import psycopg
import pytest
from psycopg import sql

from conftest import CANCEL_BOUND_S, PGBIN, PORT, RUN_DIR, BlackHole, chown_postgres, free_port, new_database, s3_spec, unique, wait_until
from conftest import connect as connect_db

SEC_DB = "oas_security_pytest"
STRIPE_CLASS = 1869705984  # first half of the advisory keys guarding new references (oas.lock_stripe)
THREE_DAYS = 3 * 24 * 3600


def connect(**kw) -> psycopg.Connection:
    return connect_db(SEC_DB, **kw)


def outcome(conn: psycopg.Connection, query: str, params=()) -> str:
    """Run a statement: its SQLSTATE if it failed, "ok" if it succeeded."""
    try:
        cur = conn.execute(query, params)
        if cur.description:
            cur.fetchall()
    except psycopg.Error as e:
        return e.sqlstate or "?"
    return "ok"


def content_hash(data: bytes) -> str:
    """DataJoint's content hash: MD5, base32, lowercase, unpadded (26 characters)."""
    return base64.b32encode(hashlib.md5(data).digest()).decode().rstrip("=").lower()


def fake_hash() -> str:
    return content_hash(uuid.uuid4().bytes)


def age(path: pathlib.Path, seconds: int = THREE_DAYS) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


# ---------------------------------------------------------------------------------------------
# Fixtures: the database, the roles, fresh stores


@pytest.fixture(scope="module")
def sec_db(servers):
    """A database of its own with pg_oas, a default `file` store and an `s3` store with keys."""
    new_database(SEC_DB)
    store_dir = RUN_DIR / "pytest-security" / "file"
    shutil.rmtree(store_dir.parent, ignore_errors=True)
    store_dir.mkdir(parents=True)
    chown_postgres(store_dir.parent)
    chown_postgres(store_dir)
    with connect() as c:
        c.execute("SELECT oas.oas_store_create('file', %s, true)",
                  [json.dumps({"protocol": "file", "location": str(store_dir)})])
        c.execute("SELECT oas.oas_store_create('s3', %s)", [json.dumps(s3_spec(servers, location="pytest-security"))])
    return SEC_DB


@pytest.fixture
def su(sec_db):
    """The superuser (the extension's owner)."""
    with connect() as c:
        yield c


@dataclass
class Role:
    name: str

    @property
    def schema(self) -> str:
        return self.name

    def connect(self, **kw) -> psycopg.Connection:
        return connect(user=self.name, **kw)


def make_role(prefix: str, *grants: str):
    role = Role(unique(prefix))
    with connect() as c:
        c.execute(f"CREATE ROLE {role.name} LOGIN")
        for g in grants:
            c.execute(f"GRANT {g} TO {role.name}")
    return role


def drop_role(role: Role) -> None:
    with connect() as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role.name])
        c.execute(f"DROP OWNED BY {role.name} CASCADE")
        c.execute(f"DROP ROLE {role.name}")


@pytest.fixture
def alice(sec_db):
    """The attacker: LOGIN, owns schema alice_<id>, nothing else."""
    role = make_role("alice")
    with connect() as c:
        c.execute(f"CREATE SCHEMA {role.schema} AUTHORIZATION {role.name}")
    yield role
    drop_role(role)


@pytest.fixture
def bob(sec_db):
    """An oas_admin member: not a superuser, no server-file roles."""
    role = make_role("bob", "oas_admin")
    with connect() as c:
        row = c.execute("SELECT rolsuper, pg_has_role(rolname, 'pg_read_server_files', 'USAGE'),"
                        " pg_has_role(rolname, 'pg_write_server_files', 'USAGE') FROM pg_roles WHERE rolname = %s",
                        [role.name]).fetchone()
        assert row == (False, False, False)
    yield role
    drop_role(role)


@pytest.fixture
def new_store(sec_db, servers):
    """Factory: new_store("file") is (name, directory) of a fresh file store; new_store("s3", ...)
    is (name, None) of an S3 store at a fresh location, with keys unless keys=False."""
    made: list[tuple[str, pathlib.Path | None]] = []

    def make(protocol: str = "file", keys: bool = True):
        name = unique(f"sec{protocol}")
        loc = None
        if protocol == "file":
            loc = RUN_DIR / "pytest-security" / name
            loc.mkdir(parents=True)
            chown_postgres(loc)
            spec = {"protocol": "file", "location": str(loc)}
        else:
            spec = s3_spec(servers, location=f"pytest-security/{name}",
                           **({} if keys else {"access_key": None, "secret_key": None}))
        with connect() as c:
            c.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
        made.append((name, loc))
        return name, loc

    yield make
    with connect() as c:
        for name, loc in made:
            c.execute("DELETE FROM oas.store WHERE name = %s", [name])
            if loc is not None:
                shutil.rmtree(loc, ignore_errors=True)


def tracked_table(conn, schema: str, store: str, table: str = "t", codec: str = "hash", col_type: str = "jsonb") -> str:
    """`schema.table (id int PRIMARY KEY, c <col_type>)` with c tracked as `<codec@store>`."""
    conn.execute(f"CREATE TABLE {schema}.{table} (id int PRIMARY KEY, c {col_type})")
    conn.execute(f"COMMENT ON COLUMN {schema}.{table}.c IS {sql.quote(f':<{codec}@{store}>:')}")
    return f"{schema}.{table}"


def gc_real(su, store: str) -> dict:
    """One real collection of `store` with zero grace; the report as a dict."""
    cur = su.execute("SELECT * FROM oas.oas_gc(dry_run => false, store => %s, grace => '0')", [store])
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


def trash_of(store_dir: pathlib.Path) -> list[pathlib.Path]:
    trash = store_dir / "_oas" / "trash"
    return sorted(trash.rglob("*")) if trash.exists() else []


# ---------------------------------------------------------------------------------------------
# 1. search_path hijack while pg_oas reads secrets as the extension's owner


def test_attack_search_path_operator_runs_as_owner_while_reading_secrets(su, alice, new_store):
    """pg_oas reads `oas.store_secret WHERE store = $1` as the extension's owner with the
    caller's search_path: alice's `=(text,text)` placed before pg_catalog runs as superuser."""
    store, _ = new_store("s3")
    s = alice.schema
    with alice.connect() as a:
        a.execute(f"CREATE TABLE {s}.loot (secret text)")
        a.execute(f"CREATE TABLE {s}.calls (who text)")
        a.execute(f"GRANT INSERT ON {s}.loot, {s}.calls TO PUBLIC")
        a.execute(f"""
            CREATE FUNCTION {s}.eq(text, text) RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
            BEGIN
                BEGIN INSERT INTO {s}.calls VALUES (current_user); EXCEPTION WHEN OTHERS THEN NULL; END;
                BEGIN INSERT INTO {s}.loot SELECT secrets::text FROM oas.store_secret; EXCEPTION WHEN OTHERS THEN NULL; END;
                BEGIN ALTER ROLE {alice.name} SUPERUSER; EXCEPTION WHEN OTHERS THEN NULL; END;
                RETURN $1 OPERATOR(pg_catalog.=) $2;
            END $$""")
        a.execute(f"CREATE OPERATOR {s}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {s}.eq)")
    # A new session: no cached client, so the store's secrets are read.
    with alice.connect() as a:
        a.execute(f"SET search_path = {s}, pg_catalog")
        # The trap is live: alice's own comparisons go through her operator.
        assert a.execute("SELECT 'a'::text = 'a'::text").fetchone()[0] is True
        assert su.execute(f"SELECT count(*) FROM {s}.calls WHERE who = %s", [alice.name]).fetchone()[0] > 0
        outcome(a, "SELECT oas.oas_hash_put('x'::bytea, %s, %s)", [store, s])
    ran_as = sorted(r[0] for r in su.execute(f"SELECT DISTINCT who FROM {s}.calls").fetchall())
    superuser = su.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [alice.name]).fetchone()[0]
    looted = su.execute(f"SELECT count(*) FROM {s}.loot").fetchone()[0]
    assert (superuser, looted) == (False, 0), \
        f"alice's operator ran as {ran_as}: superuser={superuser}, {looted} secret rows stolen"


def test_attack_search_path_operator_bypasses_the_collector_privilege_check(su, alice):
    """require_gc_privileges looks up `rolname = current_user` with the caller's search_path:
    alice's `=(name,name)` makes her own name match the superuser's row. The collector must
    refuse her at its privilege check (42501, "permission denied to collect garbage"), not let
    her in to fail later on some table."""
    s = alice.schema
    superuser = su.execute("SELECT current_user").fetchone()[0]
    with alice.connect() as a:
        a.execute(f"""
            CREATE FUNCTION {s}.eq(name, name) RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
            BEGIN
                IF $2 OPERATOR(pg_catalog.=) session_user THEN
                    RETURN $1 OPERATOR(pg_catalog.=) {sql.quote(superuser)}::name;
                END IF;
                RETURN $1 OPERATOR(pg_catalog.=) $2;
            END $$""")
        a.execute(f"CREATE OPERATOR {s}.= (LEFTARG = name, RIGHTARG = name, FUNCTION = {s}.eq)")
        a.execute(f"SET search_path = {s}, pg_catalog")
        # The trap is live: to alice, she is the superuser.
        assert a.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0] is True
        with pytest.raises(psycopg.Error) as info:
            a.execute("SELECT * FROM oas.oas_gc(dry_run => false)").fetchall()
    err = info.value
    assert (err.sqlstate, "collect garbage" in err.diag.message_primary) == ("42501", True), \
        f"{err.sqlstate}: {err.diag.message_primary}"


# ---------------------------------------------------------------------------------------------
# 2. Row-security policies run as the administrator who scans the tables


@pytest.mark.parametrize("call", ["oas_verify", "usage", "oas_store_references", "oas_store_drop"])
def test_attack_row_security_policy_runs_as_admin(su, alice, bob, new_store, call):
    """alice's table carries a policy whose function copies `oas.store_secret` into her loot
    table. pg_oas's scans of every tracked table must not run it as bob (an oas_admin member,
    who may read secrets). Skipping the table, or failing, is fine; leaking is not."""
    s = alice.schema
    throwaway, _ = new_store("s3")
    with alice.connect() as a:
        t = tracked_table(a, s, "file")
        a.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash_put('policy bait'::bytea, 'file', %s))", [s])
        a.execute(f"CREATE TABLE {s}.loot (secret text)")
        a.execute(f"GRANT USAGE ON SCHEMA {s} TO PUBLIC")
        a.execute(f"GRANT SELECT, INSERT ON {s}.loot TO PUBLIC")
        a.execute(f"""
            CREATE FUNCTION {s}.steal() RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
            BEGIN
                BEGIN INSERT INTO {s}.loot SELECT secrets::text FROM oas.store_secret; EXCEPTION WHEN OTHERS THEN NULL; END;
                RETURN true;
            END $$""")
        a.execute(f"GRANT SELECT ON {t} TO PUBLIC")
        a.execute(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
        a.execute(f"CREATE POLICY p ON {t} FOR SELECT USING ({s}.steal())")
    statement = {
        "oas_verify": ("SELECT * FROM oas.oas_verify()", []),
        "usage": ("SELECT * FROM oas.usage", []),
        "oas_store_references": ("SELECT * FROM oas.oas_store_references('file')", []),
        "oas_store_drop": ("SELECT oas.oas_store_drop(%s)", [throwaway]),
    }[call]
    with bob.connect() as b:
        # The trap is live: bob reading the table himself fills the loot (rolled back here).
        b.autocommit = False
        b.execute(f"SELECT * FROM {t}").fetchall()
        assert b.execute(f"SELECT count(*) FROM {s}.loot").fetchone()[0] > 0
        b.rollback()
        b.autocommit = True
        result = outcome(b, *statement)
    looted = su.execute(f"SELECT count(*) FROM {s}.loot").fetchone()[0]
    assert looted == 0, f"{call} as oas_admin ({result}) ran alice's policy: {looted} secret rows stolen"


# ---------------------------------------------------------------------------------------------
# 3. A hand-written reference makes the collector list (and trash) another database's objects


def test_attack_hostile_reference_makes_gc_trash_another_databases_objects(su, alice, new_store):
    """Another database keeps objects under `_hash/otherdb_<id>/` of a shared location; no schema
    of that name exists here. alice's hand-written reference names that folder: the collector
    must not list it as this database's, nor trash what it holds."""
    store, store_dir = new_store("file")
    other = unique("otherdb")
    planted = []
    folder = store_dir / "_hash" / other
    folder.mkdir(parents=True)
    for d in (store_dir / "_hash", folder):
        chown_postgres(d)
    for i in range(3):
        f = folder / fake_hash()
        f.write_bytes(f"another database's object {i}".encode())
        chown_postgres(f)
        age(f)
        planted.append((f, f.read_bytes()))
    assert su.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [other]).fetchone()[0] == 0
    # A genuine orphan of this database in the same store: shows the collection really runs.
    control = su.execute("SELECT oas.oas_hash_put('control orphan'::bytea, %s, %s)", [store, alice.schema]).fetchone()[0]
    with alice.connect() as a:
        t = tracked_table(a, alice.schema, store)
        h = fake_hash()
        a.execute(f"INSERT INTO {t} VALUES (1, %s)",
                  [json.dumps({"path": f"_hash/{other}/{h}", "store": store, "hash": h, "size": 1})])
    gc_real(su, store)  # records candidates
    report = gc_real(su, store)  # moves those past the (zero) grace
    # Not vacuous: the run either collected this database's orphan or refused with a reason.
    assert not (store_dir / control["path"]).exists() or report["errors"], report
    gone = [f.name for f, data in planted if not (f.exists() and f.read_bytes() == data)]
    trashed = [str(p.relative_to(store_dir)) for p in trash_of(store_dir) if other in str(p)]
    assert (gone, trashed) == ([], []), report


# ---------------------------------------------------------------------------------------------
# 4. oas_admin without the server-file roles writes the catalog directly


def test_attack_admin_writes_the_store_catalog_directly(su, bob, new_store, servers):
    """File stores need pg_read_server_files and pg_write_server_files, and oas_store_create
    checks so; the same oas_admin member must not get a file store at `/` by writing the
    catalog tables himself (or turn an S3 store into one, or change secrets, or drop stores)."""
    victim_s3, _ = new_store("s3")
    victim_nokeys, _ = new_store("s3", keys=False)
    victim_drop, _ = new_store("s3")
    evil, bob_s3 = unique("evil"), unique("bobs3")
    root = json.dumps({"protocol": "file", "location": "/"})
    try:
        with bob.connect() as b:
            got = {
                "INSERT INTO oas.store": outcome(
                    b, "INSERT INTO oas.store (name, protocol, spec) VALUES (%s, 'file', %s)", [evil, root]),
                "UPDATE oas.store": outcome(
                    b, "UPDATE oas.store SET protocol = 'file', spec = %s WHERE name = %s", [root, victim_s3]),
                "INSERT INTO oas.store_secret": outcome(
                    b, "INSERT INTO oas.store_secret (store, secrets) VALUES (%s, '{\"secret_key\": \"x\"}')",
                    [victim_nokeys]),
                "DELETE FROM oas.store": outcome(b, "DELETE FROM oas.store WHERE name = %s", [victim_drop]),
                # Control: the function refuses already.
                "oas_store_create(file)": outcome(b, "SELECT oas.oas_store_create(%s, %s)", [evil + "2", root]),
            }
            # Admins keep managing stores that are not on the server's disk.
            b.execute("SELECT oas.oas_store_create(%s, %s)",
                      [bob_s3, json.dumps(s3_spec(servers, location=f"pytest-security/{bob_s3}"))])
            ref = b.execute("SELECT oas.oas_hash_put('by bob'::bytea, %s, 'public')", [bob_s3]).fetchone()[0]
            assert ref["store"] == bob_s3
        assert got == dict.fromkeys(got, "42501")
    finally:
        su.execute("DELETE FROM oas.store WHERE name IN (%s, %s, %s)", [evil, evil + "2", bob_s3])


# ---------------------------------------------------------------------------------------------
# 5. Symlinks in a file store


@pytest.fixture
def symlinked_store(su, alice, new_store):
    """A file store holding `_hash/<alice>/<hash of /etc/passwd>` -> /etc/passwd and
    `_hash/linkdir_<id>` -> /tmp/outside_<id>, a directory with one old hash-named file. Its
    reference check is off, so what refuses a read here is the link, nothing before it."""
    store, store_dir = new_store("file")
    su.execute("SELECT oas.oas_store_require_references(%s, false)", [store])
    passwd = pathlib.Path("/etc/passwd").read_bytes()
    mine = store_dir / "_hash" / alice.schema
    mine.mkdir(parents=True)
    chown_postgres(store_dir / "_hash")
    chown_postgres(mine)
    link = mine / content_hash(passwd)
    link.symlink_to("/etc/passwd")
    pg = pwd.getpwnam("postgres")
    os.lchown(link, pg.pw_uid, pg.pw_gid)
    outside = pathlib.Path(f"/tmp/{unique('outside')}")
    outside.mkdir()
    chown_postgres(outside)
    victim = outside / fake_hash()
    victim.write_bytes(b"a file outside the store")
    chown_postgres(victim)
    age(victim)
    linkdir = unique("linkdir")
    (store_dir / "_hash" / linkdir).symlink_to(outside)
    yield {"store": store, "dir": store_dir, "passwd": passwd, "hash": content_hash(passwd),
           "outside": outside, "victim": victim, "linkdir": linkdir}
    shutil.rmtree(outside, ignore_errors=True)


def test_attack_symlink_reads_a_server_file(alice, symlinked_store):
    """Reads through a file symlink or a linked folder are refused: no server file's bytes."""
    st = symlinked_store
    h = st["hash"]
    ref = json.dumps({"path": f"_hash/{alice.schema}/{h}", "store": st["store"], "hash": h,
                      "schema": alice.schema, "size": len(st["passwd"])})
    outside_ref = json.dumps({"path": f"_hash/{st['linkdir']}/{st['victim'].name}", "store": st["store"]})
    got = {}
    with alice.connect() as a:
        for label, query, params in [
            ("oas_hash_get(link to /etc/passwd)", "SELECT oas.oas_hash_get(%s)", [ref]),
            ("oas_read(link to /etc/passwd)", "SELECT oas.oas_read(%s, 0, 100000)", [ref]),
            ("oas_read(through linked folder)", "SELECT oas.oas_read(%s, 0, 100000)", [outside_ref]),
        ]:
            try:
                data = a.execute(query, params, binary=True).fetchone()[0]
                target = bytes(data) in (st["passwd"], st["victim"].read_bytes())
                got[label] = f"returned {len(data)} bytes" + (" of the target" if target else "")
            except psycopg.Error as e:
                link = e.sqlstate == "42501" and "symbolic link" in (e.diag.message_primary or "")
                got[label] = "refused" if link else f"{e.sqlstate}: {e.diag.message_primary}"
    assert got == dict.fromkeys(got, "refused")


def test_attack_symlinked_folder_receives_a_put(su, alice, symlinked_store):
    """A put into the linked folder's schema writes nothing outside the store: refused for alice
    (no such schema of hers), and for a superuser, who may write any section, by the link."""
    st = symlinked_store
    before = sorted(p.name for p in st["outside"].iterdir())
    put = "SELECT oas.oas_hash_put('y'::bytea, %s, %s)"
    with alice.connect() as a:
        assert outcome(a, put, [st["store"], st["linkdir"]]) == "42501"
    err = sql_error_of(su, put, [st["store"], st["linkdir"]])
    assert err.sqlstate == "42501" and "symbolic link" in str(err)
    assert sorted(p.name for p in st["outside"].iterdir()) == before


def test_attack_gc_follows_symlinks_out_of_the_store(su, alice, symlinked_store):
    """alice names the linked folder in a reference so the collector lists it; a real
    collection must neither move the file outside the store nor trash links."""
    st = symlinked_store
    with alice.connect() as a:
        t = tracked_table(a, alice.schema, st["store"])
        h = fake_hash()
        a.execute(f"INSERT INTO {t} VALUES (1, %s)",
                  [json.dumps({"path": f"_hash/{st['linkdir']}/{h}", "store": st["store"], "hash": h, "size": 1})])
    gc_real(su, st["store"])
    report = gc_real(su, st["store"])
    assert pathlib.Path("/etc/passwd").read_bytes() == st["passwd"]
    targets = {st["passwd"], b"a file outside the store"}
    bad = [str(p.relative_to(st["dir"])) for p in trash_of(st["dir"])
           if p.is_symlink() or (p.is_file() and p.read_bytes() in targets)]
    assert (st["victim"].exists(), bad) == (True, []), report


# ---------------------------------------------------------------------------------------------
# 7. Holding every stripe lock stops every writer


def test_attack_stripe_locks_block_writers_forever(su, alice):
    """alice takes all 1,024 stripes exclusively (advisory locks are open to everyone). A
    writer must give up with lock_not_available (55P03) under `oas.lock_timeout`, not hang."""
    victim = unique("victim")
    su.execute(f"CREATE SCHEMA {victim}")
    try:
        tracked_table(su, victim, "file")
        with alice.connect() as a, connect() as b:
            a.execute("SELECT pg_advisory_lock(%s, k) FROM generate_series(0, 1023) k", [STRIPE_CLASS]).fetchall()
            b.execute("SELECT oas.oas_content_hash('')")  # loads the library, so oas.* settings are known
            b.execute("SET statement_timeout = '20s'")  # a client-side guard: today's build waits forever
            lock_timeout = outcome(b, "SET oas.lock_timeout = '1s'")
            insert = f"INSERT INTO {victim}.t VALUES (1, oas.oas_hash_put('stripe'::bytea, 'file', %s))"
            start = time.monotonic()
            result = outcome(b, insert, [victim])
            waited = time.monotonic() - start
            print(f"oas.lock_timeout of 1 s ended the insert after {waited * 1e3:.0f} ms")
            assert (result, waited < 1 + CANCEL_BOUND_S) == ("55P03", True), \
                f"insert ended with {result} after {waited:.1f} s (SET oas.lock_timeout: {lock_timeout})"
            a.execute("SELECT pg_advisory_unlock_all()")
            b.execute(insert, [victim])
            assert b.execute(f"SELECT count(*) FROM {victim}.t").fetchone()[0] == 1
    finally:
        su.execute(f"DROP SCHEMA {victim} CASCADE")


# ---------------------------------------------------------------------------------------------
# 9. Low findings


def test_attack_domain_over_jsonb_breaks_oas_verify(alice):
    """A tracked column may be a domain over jsonb; oas_verify() must check it beside plain
    jsonb columns (not fail with 42804 when the row type changes between tables)."""
    s = alice.schema
    with alice.connect() as a:
        a.execute(f"CREATE DOMAIN {s}.refd AS jsonb")
        plain = tracked_table(a, s, "file", table="a_plain")
        dom = tracked_table(a, s, "file", table="b_domain", col_type=f"{s}.refd")
        for t in (plain, dom):
            a.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash_put(%b, 'file', %s))", [t.encode(), s])
        assert a.execute("SELECT count(*) FROM oas.tracked_columns WHERE schema_name = %s", [s]).fetchone()[0] == 2
        result = outcome(a, "SELECT * FROM oas.oas_verify()")
    assert result == "ok"


# (function, [(value, type) per argument]): each call is made with NULL in one position.
NULL_CALLS = [
    ("oas_object_folder", [("ARRAY['a.txt']", "text[]"), ("ARRAY['x'::bytea]", "bytea[]")]),
    ("oas_encode_pk_text", [("'int4'::regtype::oid", "oid"), ("'1'", "text")]),
    ("oas_upload_begin", [("'pg_catalog.pg_class'", "text"), ("'relname'", "text"), ("'{\"id\": 1}'", "jsonb"),
                          ("'.npy'", "text")]),
    ("oas_declare_column", [("'pg_catalog.pg_class'", "text"), ("'relname'", "text"), ("'hash@file'", "text"),
                            ("'comment'", "text")]),
    ("oas_object", [("'x'::bytea", "bytea"), ("'.tif'", "text")]),
    ("oas_gc", [("true", "boolean"), ("'file'", "text"), ("'1 day'", "interval"), ("'7 days'", "interval")]),
]
NULL_CASES = [pytest.param(fn, args, i, id=f"{fn}-arg{i + 1}") for fn, args in NULL_CALLS for i in range(len(args))]
# Arrays with a NULL element.
NULL_CASES += [
    pytest.param("oas_object_folder", [("ARRAY[NULL]", "text[]"), ("ARRAY['x'::bytea]", "bytea[]")], None,
                 id="oas_object_folder-null-name"),
    pytest.param("oas_object_folder", [("ARRAY['a.txt']", "text[]"), ("ARRAY[NULL]", "bytea[]")], None,
                 id="oas_object_folder-null-content"),
]


@pytest.mark.parametrize("fn, args, null_at", NULL_CASES)
def test_attack_null_arguments_never_crash(su, fn, args, null_at):
    """A NULL argument (or array element) gives NULL, rows, or a proper error, never XX000."""
    values = ["NULL::" + t if i == null_at else f"{v}::{t}" for i, (v, t) in enumerate(args)]
    query = f"SELECT * FROM oas.{fn}({', '.join(values)})"
    try:
        su.execute(query).fetchall()
    except psycopg.Error as e:
        assert e.sqlstate != "XX000", f"{query}: {e.sqlstate} {e.diag.message_primary}"


def test_attack_int64_beyond_2_53_is_refused_not_rounded(alice):
    """An int64 that no double holds exactly is refused by oas_npy_slice_array, not rounded."""
    s = alice.schema
    with alice.connect() as a:
        t = tracked_table(a, s, "file", codec="npy")
        a.execute(f"INSERT INTO {t} VALUES (1, oas.oas_npy(ARRAY[9007199254740993]::int8[]))")
        npy = a.execute(f"SELECT oas.oas_npy_slice(c) FROM {t}", binary=True).fetchone()[0]
        assert np.load(io.BytesIO(npy)).tolist() == [2**53 + 1]  # stored exactly
        try:
            got = a.execute(f"SELECT oas.oas_npy_slice_array(c) FROM {t}").fetchone()[0]
        except psycopg.Error as e:
            assert e.sqlstate != "XX000", f"{e.sqlstate} {e.diag.message_primary}"
        else:
            pytest.fail(f"2^53 + 1 returned as {got!r}")


def bad_spec(kind: str, servers, secret: str, location: str) -> dict:
    """A spec that fails validation and carries `secret` where a credential goes."""
    return {
        "s3-unknown-key": s3_spec(servers, secret_key=secret, location=location, bogus_field=1),
        "azure-malformed-key": {"protocol": "azure", "container": "c", "location": location,
                                "connection_string": f"AccountName=x;AccountKey={secret};Bogus"},
        "gcs-malformed-token": {"protocol": "gcs", "bucket": "b", "location": location,
                                "token": {"type": "service_account", "private_key": secret}},
    }[kind]


@pytest.mark.parametrize("kind", ["s3-unknown-key", "azure-malformed-key", "gcs-malformed-token"])
def test_attack_secret_passed_as_bind_parameter_stays_out_of_the_log(su, servers, kind):
    """A spec passed as a bind parameter to a call that fails: the secret appears in neither the
    error, the notices, oas.stores (once stored) nor the server log."""
    secret = f"sEcReT-{uuid.uuid4().hex}"
    data_dir = pathlib.Path(su.execute("SELECT current_setting('data_directory')").fetchone()[0])
    current = su.execute("SELECT pg_current_logfile()").fetchone()[0]
    log = data_dir / current if current else data_dir.parent / "server.log"  # scripts/cluster.sh: pg_ctl -l
    assert log.exists(), log
    start = log.stat().st_size
    name = unique("leaky")
    notices: list[str] = []
    with connect() as c:
        c.add_notice_handler(lambda d: notices.append(f"{d.message_primary} {d.message_detail} {d.message_hint}"))
        bad = bad_spec(kind, servers, secret, f"pytest-security/{name}")
        with pytest.raises(psycopg.Error) as info:
            c.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(bad)])
        d = info.value.diag
        said = " ".join(str(x) for x in (info.value, d.message_primary, d.message_detail, d.message_hint, d.context))
        # The same secret in a valid spec: stored, never shown.
        c.execute("SELECT oas.oas_store_create(%s, %s)",
                  [name, json.dumps(s3_spec(servers, secret_key=secret, location=f"pytest-security/{name}"))])
        try:
            shown = json.dumps(c.execute("SELECT * FROM oas.stores").fetchall(), default=str)
        finally:
            c.execute("SELECT oas.oas_store_drop(%s)", [name])
    with open(log, "rb") as f:
        f.seek(start)
        logged = f.read().decode(errors="replace")
    assert "oas_store_create" in logged  # the failed call was logged: the check below means something
    leaks = {"error": secret in said, "notices": secret in " ".join(notices), "oas.stores": secret in shown,
             "server log": secret in logged}
    assert leaks == dict.fromkeys(leaks, False)


# ---------------------------------------------------------------------------------------------
# Per-store privileges: read, write, admin (oas.store_grant), and the matrix of who may call what.


@pytest.fixture
def locked_store(su, new_store):
    """A fresh file store with PUBLIC's default read and write revoked, one object in it, and four
    roles: reader (read), writer (write), keeper (admin on the store), nobody (nothing)."""
    name, _ = new_store("file")
    ref = su.execute("SELECT oas.oas_hash_put('locked bytes'::bytea, %s, 'public')", [name]).fetchone()[0]
    # Objects are read through rows (a reference is not a capability): one the roles may SELECT.
    table = tracked_table(su, "public", name, table=unique("locked"))
    su.execute(f"INSERT INTO {table} VALUES (1, %s)", [json.dumps(ref)])
    for p in ("read", "write"):
        assert su.execute("SELECT oas.oas_store_revoke(%s, %s, 'PUBLIC')", [name, p]).fetchone()[0] is True
    roles = {k: make_role(k) for k in ("reader", "writer", "keeper", "nobody")}
    for who, p in (("reader", "read"), ("writer", "write"), ("keeper", "admin")):
        assert su.execute("SELECT oas.oas_store_grant(%s, %s, %s)", [name, p, roles[who].name]).fetchone()[0] is True
    su.execute(f"GRANT SELECT ON {table} TO PUBLIC")
    yield name, json.dumps(ref), roles
    for r in roles.values():
        drop_role(r)
    su.execute(f"DROP TABLE {table}")


# (what, statement, needs): statements take the store name and a reference as %(s)s and %(ref)s.
MATRIX = [
    ("oas_hash_put", "SELECT oas.oas_hash_put('new'::bytea, %(s)s, 'public')", "write"),
    ("oas_store_verify", "SELECT * FROM oas.oas_store_verify(%(s)s)", "write"),
    ("oas_hash_get", "SELECT oas.oas_hash_get(%(ref)s::jsonb)", "read"),
    ("oas_read", "SELECT oas.oas_read(%(ref)s::jsonb, 0, 6)", "read"),
    ("oas_object_size", "SELECT oas.oas_object_size(%(ref)s::jsonb)", "read"),
]


def check_outcome(conn, ref: str) -> str:
    """oas_check_reference reports rather than raises (oas_verify goes on past a row): "ok" for
    NULL (intact), "42501" for a refusal to read, the problem otherwise."""
    problem = conn.execute("SELECT oas.oas_check_reference(%s::jsonb)", [ref]).fetchone()[0]
    if problem is None:
        return "ok"
    return "42501" if problem.startswith("permission denied") else problem


@pytest.mark.parametrize("who", ["reader", "writer", "keeper", "nobody"])
def test_store_privilege_matrix(locked_store, who):
    name, ref, roles = locked_store
    holds = {"reader": {"read"}, "writer": {"write"}, "keeper": {"read", "write"}, "nobody": set()}[who]
    with roles[who].connect() as c:
        got = {what: outcome(c, q, {"s": name, "ref": ref}) for what, q, _ in MATRIX}
        got["oas_check_reference"] = check_outcome(c, ref)
    want = {what: "ok" if need in holds else "42501" for what, _, need in MATRIX + [("oas_check_reference", "", "read")]}
    assert got == want


def test_store_privileges_are_managed_in_sql(su, locked_store, bob):
    name, ref, roles = locked_store
    shown = su.execute("SELECT grantee, privilege FROM oas.store_privileges WHERE store = %s ORDER BY 2, 1",
                       [name]).fetchall()
    assert shown == [(roles["keeper"].name, "admin"), (roles["reader"].name, "read"), (roles["writer"].name, "write")]
    # A store admin grants and revokes on its store; nobody and readers may not.
    with roles["keeper"].connect() as k:
        assert k.execute("SELECT oas.oas_store_grant(%s, 'read', %s)", [name, roles["nobody"].name]).fetchone()[0] is True
        assert k.execute("SELECT oas.oas_store_grant(%s, 'read', %s)", [name, roles["nobody"].name]).fetchone()[0] is False
        # ... but does not manage the store itself.
        assert outcome(k, "SELECT oas.oas_store_drop(%s, force => true)", [name]) == "42501"
        assert outcome(k, "SELECT secrets FROM oas.store_secret") == "42501"
    with roles["nobody"].connect() as n:
        assert outcome(n, "SELECT oas.oas_hash_get(%s::jsonb)", [ref]) == "ok"
        assert outcome(n, "SELECT oas.oas_store_grant(%s, 'write', %s)", [name, roles["nobody"].name]) == "42501"
        # Revoked in another session: the next call in this one is refused (nothing is cached).
        su.execute("SELECT oas.oas_store_revoke(%s, 'read', %s)", [name, roles["nobody"].name])
        assert outcome(n, "SELECT oas.oas_hash_get(%s::jsonb)", [ref]) == "42501"
    with roles["reader"].connect() as r:
        assert outcome(r, "SELECT oas.oas_store_revoke(%s, 'read', %s)", [name, roles["reader"].name]) == "42501"
    # Through a group role; an oas_admin member needs no grant and may grant.
    group = make_role("group")
    try:
        su.execute(f"GRANT {group.name} TO {roles['nobody'].name}")
        with bob.connect() as b:
            assert b.execute("SELECT oas.oas_store_grant(%s, 'read', %s)", [name, group.name]).fetchone()[0] is True
            assert outcome(b, "SELECT oas.oas_hash_get(%s::jsonb)", [ref]) == "ok"
        with roles["nobody"].connect() as n:
            assert outcome(n, "SELECT oas.oas_hash_get(%s::jsonb)", [ref]) == "ok"
    finally:
        drop_role(group)
    # Bad input: unknown privilege or role (22023), NULL (a STRICT function: NULL).
    assert outcome(su, "SELECT oas.oas_store_grant(%s, 'delete', 'PUBLIC')", [name]) == "22023"
    assert outcome(su, "SELECT oas.oas_store_grant(%s, 'read', 'no_such_role_x')", [name]) == "22023"
    assert outcome(su, "SELECT oas.oas_store_grant('no_such_store_x', 'read', 'PUBLIC')") == "42704"
    assert su.execute("SELECT oas.oas_store_grant(%s, NULL, 'PUBLIC')", [name]).fetchone()[0] is None
    # Grants are part of the catalog: dropping the store drops them.
    su.execute("SELECT oas.oas_store_drop(%s, force => true)", [name])
    assert su.execute("SELECT count(*) FROM oas.store_grant WHERE store = %s", [name]).fetchone()[0] == 0


def test_new_stores_let_public_read_and_write(su, new_store):
    """The documented default, which keeps single-user set-ups working."""
    name, _ = new_store("file")
    rows = su.execute("SELECT grantee, privilege FROM oas.store_privileges WHERE store = %s ORDER BY 2",
                      [name]).fetchall()
    assert rows == [("PUBLIC", "read"), ("PUBLIC", "write")]


def test_attack_writes_the_grant_table_directly(locked_store):
    name, _, roles = locked_store
    with roles["nobody"].connect() as n:
        assert outcome(n, "INSERT INTO oas.store_grant (store, grantee, privilege, granted_by)"
                          " VALUES (%s, 0, 'read', current_user)", [name]) == "42501"
        assert outcome(n, "UPDATE oas.store_grant SET grantee = 0 WHERE store = %s", [name]) == "42501"


# ---------------------------------------------------------------------------------------------
# A reference is not a capability: reading needs a row the reader may SELECT that references it.


@pytest.fixture
def victim_object(su, new_store):
    """A secret object of schema victim_<id>, referenced from a table nobody else may read, in a
    file store whose privileges are the defaults (PUBLIC may read and write)."""
    store, _ = new_store("file")
    schema = unique("victim")
    su.execute(f"CREATE SCHEMA {schema}")
    table = tracked_table(su, schema, store)
    ref = su.execute("SELECT oas.oas_hash_put('the victim''s secret'::bytea, %s, %s)", [store, schema]).fetchone()[0]
    su.execute(f"INSERT INTO {table} VALUES (1, %s)", [json.dumps(ref)])
    yield store, schema, table, json.dumps(ref)
    su.execute(f"DROP SCHEMA {schema} CASCADE")


READS = {
    "oas_hash_get": "SELECT oas.oas_hash_get(%s::jsonb)",
    "oas_hash_get_many": "SELECT data FROM oas.oas_hash_get_many(ARRAY[NULL, %s::jsonb])",
    "oas_read": "SELECT oas.oas_read(%s::jsonb, 0, 3)",
    "oas_object_size": "SELECT oas.oas_object_size(%s::jsonb)",
}


def read_outcomes(conn, ref: str) -> dict[str, str]:
    got = {what: outcome(conn, q, [ref]) for what, q in READS.items()}
    got["oas_check_reference"] = check_outcome(conn, ref)
    return got


def test_attack_hand_written_reference_reads_another_schemas_object(su, alice, victim_object):
    store, schema, table, ref = victim_object
    denied = {what: "42501" for what in [*READS, "oas_check_reference"]}
    with alice.connect() as a:
        # Typed by hand: the store lets PUBLIC read, but no row alice may read references it.
        assert read_outcomes(a, ref) == denied
        # Copied into a table of her own: her schema's rows do not vouch for the victim's section.
        mine = tracked_table(a, alice.schema, store)
        a.execute(f"INSERT INTO {mine} VALUES (1, %s)", [ref])
        assert read_outcomes(a, ref) == denied
    # With SELECT on the victim's table (and USAGE on its schema) she reads it through its row.
    su.execute(f"GRANT USAGE ON SCHEMA {schema} TO {alice.name}")
    su.execute(f"GRANT SELECT ON {table} TO {alice.name}")
    with alice.connect() as a:
        assert read_outcomes(a, ref) == {what: "ok" for what in denied}
        assert a.execute(f"SELECT oas.oas_hash_get(c) FROM {table}").fetchone()[0] == b"the victim's secret"
    # Row security on the victim's table: only the rows alice sees vouch for an object.
    su.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    su.execute(f"CREATE POLICY hide ON {table} FOR SELECT USING (id <> 1)")
    with alice.connect() as a:
        assert read_outcomes(a, ref) == denied
    su.execute(f"DROP POLICY hide ON {table}")
    su.execute(f"CREATE POLICY show ON {table} FOR SELECT USING (id = 1)")
    with alice.connect() as a:
        assert read_outcomes(a, ref) == {what: "ok" for what in denied}
    # Deleted row: nothing vouches for the object any more.
    su.execute(f"DELETE FROM {table}")
    with alice.connect() as a:
        assert read_outcomes(a, ref) == denied


def test_store_administrators_switch_the_reference_check_off(su, alice, victim_object):
    store, _, _, ref = victim_object
    with alice.connect() as a:
        assert outcome(a, "SELECT oas.oas_store_require_references(%s, false)", [store]) == "42501"
        assert outcome(a, READS["oas_hash_get"], [ref]) == "42501"
    assert su.execute("SELECT oas.oas_store_require_references(%s, false)", [store]).fetchone()[0] is False
    assert su.execute("SELECT require_references FROM oas.stores WHERE name = %s", [store]).fetchone()[0] is False
    with alice.connect() as a:
        assert a.execute(READS["oas_hash_get"], [ref]).fetchone()[0] == b"the victim's secret"
    su.execute("SELECT oas.oas_store_require_references(%s, true)", [store])
    with alice.connect() as a:
        assert outcome(a, READS["oas_hash_get"], [ref]) == "42501"


def test_attack_presigned_url_for_an_unreadable_object(su, alice, victim_object):
    """Even with EXECUTE on oas_presign_url granted, a URL is issued only for readable objects."""
    _, _, _, ref = victim_object
    su.execute(f"GRANT EXECUTE ON FUNCTION oas.oas_presign_url(jsonb, interval) TO {alice.name}")
    with alice.connect() as a:
        assert outcome(a, "SELECT oas.oas_presign_url(%s::jsonb)", [ref]) == "42501"


def test_attack_probe_whether_objects_exist(su, alice, victim_object):
    """Finding 8: size and existence of objects no row of hers references stay hidden: a real
    object and a made-up one give the same refusal."""
    _, schema, _, ref = victim_object
    fake = json.loads(ref)
    fake["path"] = fake["path"][:-26] + fake_hash()
    fake["hash"] = fake["path"][-26:]
    with alice.connect() as a:
        real = sql_error_of(a, READS["oas_object_size"], [ref])
        made_up = sql_error_of(a, READS["oas_object_size"], [json.dumps(fake)])
    assert (real.sqlstate, made_up.sqlstate) == ("42501", "42501")
    assert str(real).replace(json.loads(ref)["path"], "P") == str(made_up).replace(fake["path"], "P")


def sql_error_of(conn, query: str, params) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value


# ---------------------------------------------------------------------------------------------
# 10. Every oas_* function, and who may call it
#
# FUNCTION_MATRIX names every function of schema oas whose name starts with oas_, and the internal
# ones users call themselves (INTERNAL_CALLED), by signature (so a new function or a new overload
# without an entry fails test_function_matrix_covers_every_oas_function), with a sample call and
# the privilege it needs:
#   none         anyone
#   read         `read` on the store (or `admin`), and a row the caller may SELECT referencing the object
#   write        `write` on the store (or `admin`)
#   store-admin  `admin` on the store: granting and revoking, the reference check
#   oas_admin    a member of oas_admin: store management; oas_object_list and oas_presign_url by
#                their EXECUTE grant (see test_function_matrix_execute_granted_deliberately)
#   collector    a superuser, or oas_admin with pg_read_all_stats
# The roles: reader (read), writer (write), keeper (admin on the store), nobody, admin (oas_admin)
# and collector (oas_admin and pg_read_all_stats). All of them belong to one role, `crew`, that
# owns the tables the calls write, so that the store privilege is the only thing that varies.
#
# Sample calls take %(name)s parameters (the store, references, tables, fresh ids) and `{w}`,
# the crew's table, where SQL needs an identifier. A tuple is statements run in turn: the first
# value the first one returns is %(u)s in the others (an upload's id). oas_upload_part, _finish
# and _abort act only on an upload this session began, so they are as guarded as
# oas_upload_begin (test_attack_another_sessions_upload_id checks someone else's id is useless).


def _check_reference_call(conn, p) -> str:
    """oas_check_reference reports instead of raising (see check_outcome)."""
    try:
        problem = conn.execute("SELECT oas.oas_check_reference(%(ref)s::jsonb)", p).fetchone()[0]
    except psycopg.Error as e:
        return e.sqlstate or "?"
    if problem is None:
        return "ok"
    return "42501" if problem.startswith("permission denied") else problem


UPLOAD_BEGIN = "SELECT oas.oas_upload_begin(%(w)s, 'o', jsonb_build_object('id', %(id)s), '.bin')"

INTERNAL_CALLED = ["_copy_to_store"]

# signature -> (sample call, required privilege[, what an allowed caller gets; "ok" by default])
FUNCTION_MATRIX = {
    # Read from the store, write into %(s3)s (PUBLIC may write it, as a new store grants).
    "_copy_to_store(jsonb, text)": ("SELECT oas._copy_to_store(%(npy)s::jsonb, %(s3)s)", "read"),
    "oas_attach_pack(text, bytea)": ("SELECT oas.oas_attach_pack('a.txt', 'x'::bytea)", "none"),
    "oas_attach_unpack(bytea)": ("SELECT * FROM oas.oas_attach_unpack('a.txt'::bytea || '\\x0078'::bytea)", "none"),
    "oas_attach_put(text, bytea, text, text)": (
        "SELECT oas.oas_attach_put('a.txt', 'new'::bytea, %(s)s, 'public')", "write"),
    # The object read is no attachment (no NUL): past the checks, an allowed caller gets 22023.
    "oas_attach_get(jsonb)": ("SELECT * FROM oas.oas_attach_get(%(ref)s::jsonb)", "read", "22023"),
    "oas_blob_pack(text)": ("SELECT oas.oas_blob_pack('[1, 2]')", "none"),
    "oas_blob_pack(jsonb)": ("SELECT oas.oas_blob_pack('[1, 2]'::jsonb)", "none"),
    "oas_blob_pack(anyarray)": ("SELECT oas.oas_blob_pack(ARRAY[1, 2])", "none"),
    "oas_blob_pack(bytea)": ("SELECT oas.oas_blob_pack('x'::bytea)", "none"),
    "oas_blob_pack(anynonarray)": ("SELECT oas.oas_blob_pack(42)", "none"),
    "oas_blob_unpack_array(bytea)": ("SELECT oas.oas_blob_unpack_array(oas.oas_blob_pack(ARRAY[1, 2]))", "none"),
    "oas_blob_unpack(bytea)": ("SELECT oas.oas_blob_unpack(oas.oas_blob_pack('[1, 2]'))", "none"),
    "oas_blob_put(text, text, text)": ("SELECT oas.oas_blob_put('[1, 2]', %(s)s, 'public')", "write"),
    # The object read is no blob: past the checks, an allowed caller gets 22023.
    "oas_blob(text)": ("INSERT INTO {w} (id, b) VALUES (%(id)s, oas.oas_blob('[1, 2]'::text))", "write"),
    "oas_blob(jsonb)": ("INSERT INTO {w} (id, b) VALUES (%(id)s, oas.oas_blob('[1, 2]'::jsonb))", "write"),
    "oas_blob(anyarray)": ("INSERT INTO {w} (id, b) VALUES (%(id)s, oas.oas_blob(ARRAY[1, 2]))", "write"),
    "oas_blob(bytea)": ("INSERT INTO {w} (id, b) VALUES (%(id)s, oas.oas_blob('x'::bytea))", "write"),
    "oas_blob(anynonarray)": ("INSERT INTO {w} (id, b) VALUES (%(id)s, oas.oas_blob(42))", "write"),
    "oas_attach(text, bytea)": (
        "INSERT INTO {w} (id, a) VALUES (%(id)s, oas.oas_attach('a.txt', 'x'::bytea))", "write"),
    "oas_hash(bytea)": ("INSERT INTO {w} (id, h) VALUES (%(id)s, oas.oas_hash('x'::bytea))", "write"),
    # Registering needs oas_admin; past that check, dropping a codec nobody registered is 42704.
    "oas_codec_register(text, text, regprocedure, regprocedure)": (
        "SELECT oas.oas_codec_register(%(new)s, 'blob')", "oas_admin"),
    "oas_codec_drop(text)": ("SELECT oas.oas_codec_drop(%(new)s)", "oas_admin", "42704"),
    # A codec's functions run as the caller: anyone may call these (here with no codec: 42704).
    "oas_encode(text, anyelement)": ("SELECT oas.oas_encode(%(new)s, 1)", "none", "42704"),
    "oas_decode(text, jsonb)": ("SELECT oas.oas_decode(%(new)s, '{{}}'::jsonb)", "none", "42704"),
    "oas_decode(text, bytea)": ("SELECT oas.oas_decode(%(new)s, 'x'::bytea)", "none", "42704"),
    "oas_blob_get(jsonb)": ("SELECT oas.oas_blob_get(%(ref)s::jsonb)", "read", "22023"),
    "oas_check_reference(jsonb, boolean)": (_check_reference_call, "read"),
    "oas_content_hash(bytea)": ("SELECT oas.oas_content_hash('x'::bytea)", "none"),
    "oas_declare_column(text, text, text, text)": (
        "SELECT oas.oas_declare_column(%(w)s, 'd', %(hash_codec)s)", "none"),
    "oas_encode_pk_text(oid, text)": ("SELECT oas.oas_encode_pk_text('int4'::regtype::oid, '7')", "none"),
    "oas_encode_pk_value(anyelement)": ("SELECT oas.oas_encode_pk_value(7)", "none"),
    # Past the checks the file is missing: an allowed caller gets 58P01.
    "oas_filepath(text, text)": ("SELECT oas.oas_filepath('raw/none.bin', %(s)s)", "write", "58P01"),
    "oas_gc(boolean, text, interval, interval)": (
        "SELECT * FROM oas.oas_gc(dry_run => true, store => %(s)s)", "collector"),
    "oas_gc_purge(interval, text)": ("SELECT * FROM oas.oas_gc_purge(store => %(s)s)", "collector"),
    # Past the privilege check a run with nothing in trash is refused as an invalid argument.
    "oas_gc_restore(bigint, text)": ("SELECT * FROM oas.oas_gc_restore(run_id => 0)", "collector", "22023"),
    "oas_hash_get(jsonb)": ("SELECT oas.oas_hash_get(%(ref)s::jsonb)", "read"),
    "oas_hash_get_many(jsonb[])": ("SELECT data FROM oas.oas_hash_get_many(ARRAY[%(ref)s::jsonb])", "read"),
    "oas_hash_put(bytea, text, text)": ("SELECT oas.oas_hash_put('new'::bytea, %(s)s, 'public')", "write"),
    # It reads every tracked table and writes the ledger: what the collector may do.
    "oas_ledger_rebuild()": ("SELECT * FROM oas.oas_ledger_rebuild()", "collector"),
    "oas_npy(anyarray)": ("INSERT INTO {w} (id, n) VALUES (%(id)s, oas.oas_npy(ARRAY[1.5, 2.5]::float8[]))", "write"),
    "oas_npy(bytea)": (
        "INSERT INTO {w} (id, n) VALUES (%(id)s, oas.oas_npy(oas.oas_npy_from_array(ARRAY[1, 2])))", "write"),
    "oas_npy_dtype(jsonb)": ("SELECT oas.oas_npy_dtype(%(npy)s::jsonb)", "none"),
    "oas_npy_from_array(anyarray)": ("SELECT oas.oas_npy_from_array(ARRAY[1, 2])", "none"),
    "oas_npy_nbytes(jsonb)": ("SELECT oas.oas_npy_nbytes(%(npy)s::jsonb)", "none"),
    "oas_npy_ndim(jsonb)": ("SELECT oas.oas_npy_ndim(%(npy)s::jsonb)", "none"),
    "oas_npy_put(text, text, jsonb, bytea)": (
        "SELECT oas.oas_npy_put(%(w)s, 'n', jsonb_build_object('id', %(id)s), oas.oas_npy_from_array(ARRAY[1, 2]))",
        "write"),
    "oas_npy_shape(jsonb)": ("SELECT oas.oas_npy_shape(%(npy)s::jsonb)", "none"),
    "oas_npy_size(jsonb)": ("SELECT oas.oas_npy_size(%(npy)s::jsonb)", "none"),
    "oas_npy_slice(jsonb, text)": ("SELECT oas.oas_npy_slice(%(npy)s::jsonb, '0')", "read"),
    "oas_npy_slice_array(jsonb, text)": ("SELECT oas.oas_npy_slice_array(%(npy)s::jsonb, '0')", "read"),
    "oas_npy_slice_stats(jsonb, text)": ("SELECT * FROM oas.oas_npy_slice_stats(%(npy)s::jsonb, '0')", "read"),
    "oas_object(bytea, text)": (
        "INSERT INTO {w} (id, o) VALUES (%(id)s, oas.oas_object('f'::bytea, '.bin'))", "write"),
    "oas_object_folder(text[], bytea[])": (
        "INSERT INTO {w} (id, o) VALUES (%(id)s, oas.oas_object_folder(ARRAY['a.bin'], ARRAY['a'::bytea]))",
        "write"),
    "oas_object_list(jsonb)": ("SELECT * FROM oas.oas_object_list(%(folder)s::jsonb)", "oas_admin"),
    "oas_object_file_read(jsonb, text, bigint, bigint)": (
        "SELECT oas.oas_object_file_read(%(folder)s::jsonb, 'a.bin')", "read"),
    "oas_object_file_size(jsonb, text)": ("SELECT oas.oas_object_file_size(%(folder)s::jsonb, 'sub/b.bin')", "read"),
    "oas_object_size(jsonb)": ("SELECT oas.oas_object_size(%(ref)s::jsonb)", "read"),
    "oas_parse_marker(text)": ("SELECT * FROM oas.oas_parse_marker(':<npy@x>:')", "none"),
    "oas_presign_url(jsonb, interval)": ("SELECT oas.oas_presign_url(%(ref)s::jsonb)", "oas_admin"),
    "oas_read(jsonb, bigint, bigint)": ("SELECT oas.oas_read(%(ref)s::jsonb, 0, 6)", "read"),
    "oas_store_alter(text, jsonb)": ("SELECT oas.oas_store_alter(%(s3)s, %(s3_spec)s::jsonb)", "oas_admin"),
    "oas_store_compression(text, text)": ("SELECT oas.oas_store_compression(%(s)s, 'none')", "store-admin"),
    "oas_store_create(text, jsonb, boolean)": (
        "SELECT oas.oas_store_create(%(new)s, %(new_spec)s::jsonb)", "oas_admin"),
    "oas_store_drop(text, boolean, boolean)": ("SELECT oas.oas_store_drop(%(doomed)s)", "oas_admin"),
    "oas_store_grant(text, text, text)": (
        "SELECT oas.oas_store_grant(%(s)s, 'read', %(bystander)s)", "store-admin"),
    # Procedures (they commit): a job on the crew's table passes the owner check (every role is a
    # member of crew) and stops at the column's type; a move into no store stops at the store.
    "oas_migrate_column(regclass, text, text, integer, boolean, bigint)": (
        "CALL oas.oas_migrate_column('{w}', 'id', 'blob@x')", "none", "22023"),
    "oas_move(text, text, regclass, text, integer)": ("CALL oas.oas_move('no_such_store_mx')", "none", "42704"),
    "oas_store_import(jsonb)": ("SELECT * FROM oas.oas_store_import(%(import)s::jsonb)", "oas_admin"),
    "oas_store_read_only(text, boolean)": ("SELECT oas.oas_store_read_only(%(s)s, false)", "store-admin"),
    "oas_store_references(text)": ("SELECT * FROM oas.oas_store_references(%(s)s)", "none"),
    "oas_store_require_references(text, boolean)": (
        "SELECT oas.oas_store_require_references(%(s)s, true)", "store-admin"),
    "oas_store_revoke(text, text, text)": (
        "SELECT oas.oas_store_revoke(%(s)s, 'read', %(bystander)s)", "store-admin"),
    "oas_store_set_default(text)": ("SELECT oas.oas_store_set_default('file')", "oas_admin"),
    "oas_store_verify(text)": ("SELECT * FROM oas.oas_store_verify(%(s)s)", "write"),
    "oas_upload_abort(text)": ((UPLOAD_BEGIN, "SELECT oas.oas_upload_abort(%(u)s)"), "write"),
    "oas_upload_begin(text, text, jsonb, text)": ((UPLOAD_BEGIN, "SELECT oas.oas_upload_abort(%(u)s)"), "write"),
    "oas_upload_finish(text)": (
        (UPLOAD_BEGIN, "SELECT oas.oas_upload_part(%(u)s, 'x'::bytea)", "SELECT oas.oas_upload_finish(%(u)s)"),
        "write"),
    "oas_upload_part(text, bytea)": (
        (UPLOAD_BEGIN, "SELECT oas.oas_upload_part(%(u)s, 'x'::bytea)", "SELECT oas.oas_upload_abort(%(u)s)"),
        "write"),
    "oas_usage()": ("SELECT * FROM oas.oas_usage()", "none"),
    "oas_verify(boolean, text)": ("SELECT * FROM oas.oas_verify(only_store => %(s)s)", "none"),
}

PRIVILEGES = {"none", "read", "write", "store-admin", "oas_admin", "collector"}
HOLDS = {
    "reader": {"none", "read"},
    "writer": {"none", "write"},
    "keeper": {"none", "read", "write", "store-admin"},
    "nobody": {"none"},
    "admin": {"none", "read", "write", "store-admin", "oas_admin"},
    "collector": PRIVILEGES,
}


def run_call(conn, call, params: dict) -> str:
    """A sample call's outcome: "ok", or the SQLSTATE of the first statement that failed."""
    if callable(call):
        return call(conn, params)
    p = dict(params)
    statements = (call,) if isinstance(call, str) else call
    for i, q in enumerate(statements):
        try:
            cur = conn.execute(q.format(w=p["w"]), p)
            rows = cur.fetchall() if cur.description else []
        except psycopg.Error as e:
            return e.sqlstate or "?"
        if i == 0 and len(statements) > 1:
            p["u"] = rows[0][0]
    return "ok"


def allowed_outcome(entry) -> str:
    return entry[2] if len(entry) > 2 else "ok"


@pytest.fixture
def matrix_env(su, locked_store, new_store, servers):
    """locked_store's four roles plus admin and collector, all members of `crew`, which owns
    schema crew_<id> and its table w (id, n <npy@store>, o <object@store>, d jsonb) holding an
    array and a folder made by the superuser (row 0, readable by PUBLIC). Yields (roles, a
    function giving fresh call parameters)."""
    name, ref, roles = locked_store
    roles = dict(roles)
    roles["admin"] = make_role("admin", "oas_admin")
    roles["collector"] = make_role("collector", "oas_admin", "pg_read_all_stats")
    crew = make_role("crew")
    bystander = make_role("bystander")
    schema = crew.name
    su.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {crew.name}")
    w = f"{schema}.w"
    su.execute(f"CREATE TABLE {w} (id int PRIMARY KEY, n jsonb, o jsonb, d jsonb, b jsonb, a jsonb, h jsonb)")
    su.execute(f"COMMENT ON COLUMN {w}.n IS {sql.quote(f':<npy@{name}>:')}")
    for col, codec in (("b", "blob"), ("a", "attach"), ("h", "hash")):
        su.execute(f"COMMENT ON COLUMN {w}.{col} IS {sql.quote(f':<{codec}@{name}>:')}")
    su.execute(f"COMMENT ON COLUMN {w}.o IS {sql.quote(f':<object@{name}>:')}")
    su.execute(f"ALTER TABLE {w} OWNER TO {crew.name}")
    su.execute(f"INSERT INTO {w} (id, n, o) VALUES (0, oas.oas_npy(ARRAY[[1.5, 2.5], [3.5, 4.5]]::float8[]),"
               " oas.oas_object_folder(ARRAY['a.bin', 'sub/b.bin'], ARRAY['a'::bytea, 'b'::bytea]))")
    npy, folder = su.execute(f"SELECT n, o FROM {w} WHERE id = 0").fetchone()
    su.execute(f"GRANT USAGE ON SCHEMA {schema} TO PUBLIC")
    su.execute(f"GRANT SELECT ON {w} TO PUBLIC")
    for r in roles.values():
        su.execute(f"GRANT {crew.name} TO {r.name}")
    s3, _ = new_store("s3")
    doomed, _ = new_store("s3")
    made: list[str] = []
    ids = itertools.count(1)
    assert su.execute("SELECT name FROM oas.store WHERE is_default").fetchone()[0] == "file"

    def params() -> dict:
        new, imported = unique("mxnew"), unique("mximp")
        made.extend([new, imported])
        return {
            "s": name, "ref": ref, "npy": json.dumps(npy), "folder": json.dumps(folder), "w": w,
            "id": next(ids), "hash_codec": f"hash@{name}", "bystander": bystander.name,
            "s3": s3, "s3_spec": json.dumps(s3_spec(servers, location=f"pytest-security/{s3}")),
            "doomed": doomed,
            "new": new, "new_spec": json.dumps(s3_spec(servers, location=f"pytest-security/{new}")),
            "import": json.dumps({"stores": {imported: s3_spec(servers, location=f"pytest-security/{imported}")}}),
        }

    yield roles, params
    su.execute("DELETE FROM oas.store WHERE name = ANY(%s)", [made])
    for r in (roles["admin"], roles["collector"], bystander):
        drop_role(r)
    su.execute(f"DROP SCHEMA {schema} CASCADE")
    drop_role(crew)


def test_function_matrix_covers_every_oas_function(su):
    """A function added to schema oas without an entry in FUNCTION_MATRIX fails here."""
    installed = {r[0] for r in su.execute(
        "SELECT p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')'"
        "  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'oas' AND (p.proname LIKE 'oas\\_%%' OR p.proname = ANY(%s))",
        [INTERNAL_CALLED]).fetchall()}
    assert len(installed) > 40
    assert set(FUNCTION_MATRIX) == installed
    assert {e[1] for e in FUNCTION_MATRIX.values()} == PRIVILEGES


def test_function_matrix_samples_work_for_a_superuser(su, matrix_env):
    """Each sample call does what it should for a superuser: a refusal in the matrix below comes
    from a privilege check, not from a malformed call."""
    _, params = matrix_env
    got = {fn: run_call(su, e[0], params()) for fn, e in FUNCTION_MATRIX.items()}
    assert got == {fn: allowed_outcome(e) for fn, e in FUNCTION_MATRIX.items()}


@pytest.mark.parametrize("who", list(HOLDS))
def test_function_matrix(matrix_env, who):
    """Every oas_* function, called by each role: allowed calls succeed (never 42501), refused
    ones fail with 42501."""
    roles, params = matrix_env
    with roles[who].connect() as c:
        got = {fn: run_call(c, e[0], params()) for fn, e in FUNCTION_MATRIX.items()}
        assert c.execute("SELECT 1").fetchone()[0] == 1
    want = {fn: allowed_outcome(e) if e[1] in HOLDS[who] else "42501" for fn, e in FUNCTION_MATRIX.items()}
    assert got == want


@pytest.mark.parametrize("who", ["reader", "writer", "keeper", "nobody"])
def test_function_matrix_execute_granted_deliberately(su, matrix_env, who):
    """oas_object_list and oas_presign_url are for oas_admin by their EXECUTE grant; granted
    deliberately to another role they still need `read` on the store and a referencing row."""
    roles, params = matrix_env
    fns = ["oas_object_list(jsonb)", "oas_presign_url(jsonb, interval)"]
    with roles[who].connect() as c:
        before = {fn: run_call(c, FUNCTION_MATRIX[fn][0], params()) for fn in fns}
    su.execute(f"GRANT EXECUTE ON FUNCTION oas.oas_object_list(jsonb), oas.oas_presign_url(jsonb, interval)"
               f" TO {roles[who].name}")
    with roles[who].connect() as c:
        after = {fn: run_call(c, FUNCTION_MATRIX[fn][0], params()) for fn in fns}
    assert before == dict.fromkeys(fns, "42501")
    assert after == dict.fromkeys(fns, "ok" if "read" in HOLDS[who] else "42501")


# ---------------------------------------------------------------------------------------------
# 11. Hostile input at every entry point that takes a path, a name or a reference
#
# Each payload is "invalid" (refused before any I/O: 22023), "literal" (a legal name that only
# looks like a way out: `%2e%2e`, look-alike dots and slashes; it names something inside the
# store) or "long" (10,000 characters: the file system refuses it). Whatever happens: never
# XX000, the session survives (SELECT 1), and nothing appears outside the store's directory.

LONG = 10_000
H0 = "lvauakv4jmvhnolrtwiraf6fsi"  # content_hash(b"hello")


class Outside:
    """Entries that appear, after construction, outside `store_dir`: anywhere below its parent
    directory, or named with `marker` in /tmp (two levels deep) or in /."""

    def __init__(self, store_dir: pathlib.Path, marker: str):
        self.store_dir = store_dir.resolve()
        self.marker = marker
        self.before = self._scan()

    def _scan(self) -> set[str]:
        seen = set()
        for root, dirs, files in os.walk(self.store_dir.parent):
            here = pathlib.Path(root)
            if here == self.store_dir:
                dirs[:] = []
                continue
            seen.update(str(here / n) for n in dirs + files if here / n != self.store_dir)
        for top in (pathlib.Path("/tmp"), pathlib.Path("/")):
            for p in top.iterdir():
                if self.marker in p.name:
                    seen.add(str(p))
        for p in pathlib.Path("/tmp").glob("*/*"):
            if self.marker in p.name:
                seen.add(str(p))
        return seen

    def new(self) -> list[str]:
        return sorted(self._scan() - self.before)


def inside(store_dir: pathlib.Path, rel: str) -> bool:
    """Is `rel` an existing entry of the store whose real path is below the store's directory?"""
    p = store_dir / rel
    return p.exists() and p.resolve().is_relative_to(store_dir.resolve()) and not p.is_symlink()


def hostile_paths(m: str, h: str) -> list[tuple[str, str, str]]:
    """(label, object path, kind): paths a reference may carry; all end with hash `h`."""
    return [
        ("dotdot", f"../{m}/{h}", "invalid"),
        ("dotdot-inner", f"_hash/../../{m}/{h}", "invalid"),
        ("dotdot-last", f"_hash/{m}/{h}/..", "invalid"),
        ("dot", f"./_hash/{h}", "invalid"),
        ("absolute", f"/tmp/{m}/{h}", "invalid"),
        ("absolute-double", f"//tmp/{m}/{h}", "invalid"),
        ("file-url", f"file:///tmp/{m}/{h}", "invalid"),
        ("backslash", f"_hash\\..\\..\\{m}\\{h}", "invalid"),
        ("control-01", f"_hash/{m}\x01/{h}", "invalid"),
        ("newline", f"_hash/{m}\n/{h}", "invalid"),
        ("tab", f"_hash/.\t./{h}", "invalid"),
        ("empty-segment", f"_hash//{m}/{h}", "invalid"),
        ("empty", "", "invalid"),
        ("pct-dotdot", f"_hash/%2e%2e/%2e%2e/{m}/{h}", "literal"),
        ("pct-DOTDOT", f"_hash/%2E%2E/{m}/{h}", "literal"),
        ("pct-mixed", f"_hash/.%2e/%2e./{m}/{h}", "literal"),
        ("pct-double", f"_hash/%252e%252e/{m}/{h}", "literal"),
        ("pct-slash", f"_hash/..%2f..%2f{m}/{h}", "literal"),
        ("pct-backslash", f"_hash/..%5c..%5c{m}/{h}", "literal"),
        ("fullwidth-dots", f"_hash/\uff0e\uff0e/{m}/{h}", "literal"),
        ("one-dot-leaders", f"_hash/\u2024\u2024/{m}/{h}", "literal"),
        ("fullwidth-solidus", f"_hash/..\uff0f..\uff0f{m}/{h}", "literal"),
        ("division-slash", f"_hash/..\u2215{m}/{h}", "literal"),
        ("three-dots", f"_hash/.../{m}/{h}", "literal"),
        ("long", f"_hash/{'a' * LONG}/{h}", "long"),
    ]


REFERENCE_ENTRY_POINTS = {
    "oas_hash_get": "SELECT oas.oas_hash_get(%s::jsonb)",
    "oas_hash_get_many": "SELECT * FROM oas.oas_hash_get_many(ARRAY[%s::jsonb])",
    "oas_read": "SELECT oas.oas_read(%s::jsonb, 0, 5)",
    "oas_object_size": "SELECT oas.oas_object_size(%s::jsonb)",
    "oas_check_reference": "SELECT oas.oas_check_reference(%s::jsonb)",
    "oas_npy_slice": "SELECT oas.oas_npy_slice(%s::jsonb, '')",
    "oas_npy_slice_array": "SELECT oas.oas_npy_slice_array(%s::jsonb, '')",
    "oas_npy_slice_stats": "SELECT * FROM oas.oas_npy_slice_stats(%s::jsonb, '')",
    "oas_presign_url": "SELECT oas.oas_presign_url(%s::jsonb)",
    "oas_object_list": "SELECT * FROM oas.oas_object_list(%s::jsonb)",
}


def reference_outcome(conn, fn: str, ref: str) -> str:
    """As `outcome`; for oas_check_reference, which reports: "ok" (intact), or the kind of the
    problem ("22023" invalid reference, "42501" refused, "58P01" missing, else the text)."""
    if fn != "oas_check_reference":
        return outcome(conn, REFERENCE_ENTRY_POINTS[fn], [ref])
    try:
        problem = conn.execute(REFERENCE_ENTRY_POINTS[fn], [ref]).fetchone()[0]
    except psycopg.Error as e:
        return e.sqlstate or "?"
    if problem is None:
        return "ok"
    for prefix, code in (("invalid", "22023"), ("permission denied", "42501"), ("missing", "58P01"),
                         ("could not be checked", "58030")):
        if problem.startswith(prefix):
            return code
    return problem


def alive(conn) -> bool:
    try:
        return conn.execute("SELECT 1").fetchone()[0] == 1
    except psycopg.Error:
        return False


@pytest.fixture
def hostile_store(su, new_store):
    """A fresh file store with a real object of each kind (hash, array, folder) referenced from
    a table in public; yields (name, directory, {kind: reference})."""
    name, store_dir = new_store("file")
    table = f"public.{unique('hostile')}"
    su.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, h jsonb, n jsonb, o jsonb)")
    for col, codec in (("h", "hash"), ("n", "npy"), ("o", "object")):
        su.execute(f"COMMENT ON COLUMN {table}.{col} IS {sql.quote(f':<{codec}@{name}>:')}")
    su.execute(f"INSERT INTO {table} VALUES (1, oas.oas_hash_put('hello'::bytea, %s, 'public'),"
               " oas.oas_npy(ARRAY[1.5, 2.5]::float8[]), oas.oas_object_folder(ARRAY['f.bin'], ARRAY['f'::bytea]))",
               [name])
    refs = dict(zip("hno", (json.dumps(r) for r in su.execute(f"SELECT h, n, o FROM {table}").fetchone())))
    yield name, store_dir, {"hash": refs["h"], "npy": refs["n"], "folder": refs["o"]}
    su.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("fn", list(REFERENCE_ENTRY_POINTS))
def test_attack_hostile_paths_in_references(su, alice, hostile_store, fn):
    """References carrying traversal, absolute, encoded, control-character, look-alike and
    overlong paths. A superuser (no privilege check to stop them first) gets 22023 for invalid
    paths and 58P01 for legal names that do not exist (a 10k name: the file system's refusal);
    alice gets 22023 or 42501, never an answer about existence (no 58P01)."""
    store, store_dir, refs = hostile_store
    m = unique("oasevil")
    real = refs["npy"] if fn.startswith("oas_npy") else refs["folder"] if fn == "oas_object_list" else refs["hash"]
    assert reference_outcome(su, fn, real) == "ok"  # the entry point works: refusals below are the input's
    watch = Outside(store_dir, m)
    got_su, got_alice, want_su, want_alice = {}, {}, {}, {}
    with alice.connect() as a:
        for label, path, kind in hostile_paths(m, H0):
            ref = json.dumps({"path": path, "store": store, "hash": H0, "schema": "public", "size": 5})
            got_su[label] = reference_outcome(su, fn, ref)
            got_alice[label] = reference_outcome(a, fn, ref)
            assert alive(su) and alive(a), label
            want_su[label] = {"invalid": "22023", "literal": "58P01"}.get(kind, got_su[label])
            no_execute = fn in ("oas_presign_url", "oas_object_list")
            want_alice[label] = "22023" if kind == "invalid" and not no_execute else "42501"
            if kind == "long":
                assert got_su[label] in ("22023", "54000", "58030"), got_su[label]
    assert (got_su, got_alice) == (want_su, want_alice)
    assert watch.new() == []


def test_attack_forged_references_with_extra_keys(su, hostile_store):
    """Keys a reference does not define (location, protocol, endpoint, credentials, prefixes)
    are ignored: reads go to the catalog's store, never where the reference says."""
    store, store_dir, refs = hostile_store
    real = json.loads(refs["hash"])
    extra = {"location": "/etc", "protocol": "file", "endpoint": "127.0.0.1:1", "bucket": "x",
             "access_key": "a", "secret_key": "s", "hash_prefix": "..", "schema_prefix": "/",
             "subfolding": [1, 1], "spec": {"protocol": "file", "location": "/"}, "is_dir": False}
    assert su.execute("SELECT oas.oas_hash_get(%s::jsonb)", [json.dumps({**real, **extra})]).fetchone()[0] == b"hello"
    passwd = content_hash(pathlib.Path("/etc/passwd").read_bytes())
    got = {}
    for label, ref in {
        "passwd-with-location": {"path": "passwd", "store": store, **extra},
        "passwd-hash-with-location": {"path": f"passwd/{passwd}", "hash": passwd, "store": store, "schema": "passwd",
                                      "size": 1, **extra},
        "store-traversal": {**real, "store": "../file"},
        "store-control": {**real, "store": f"{store}\x01"},
        "store-not-a-string": {**real, "store": ["file"]},
        "path-not-a-string": {**real, "path": ["_hash", "public", real["hash"]]},
        "hash-traversal": {**real, "hash": "../../etc/passwd"},
        "size-negative": {**real, "size": -1},
        "size-huge": {**real, "size": 10**30},
    }.items():
        for fn in ("oas_hash_get", "oas_read", "oas_object_size"):
            got[f"{label}/{fn}"] = outcome(su, REFERENCE_ENTRY_POINTS[fn], [json.dumps(ref)])
    for label, text in {"array": "[]", "string": '"_hash/x"', "null": "null", "number": "1"}.items():
        got[f"{label}/oas_read"] = outcome(su, REFERENCE_ENTRY_POINTS["oas_read"], [text])
    assert alive(su)
    # The passwd references reached the store (58P01: looked for in it, not in /etc); the rest are
    # refused as malformed (22023) or name no configured store (42704).
    want = {f"{label}/{fn}": code for label, code in {
        "passwd-with-location": "58P01", "passwd-hash-with-location": "58P01", "store-traversal": "42704",
        "store-control": "42704", "store-not-a-string": "22023", "path-not-a-string": "22023",
        "hash-traversal": "22023", "size-negative": "22023", "size-huge": "22023",
    }.items() for fn in ("oas_hash_get", "oas_read", "oas_object_size")}
    want["passwd-with-location/oas_hash_get"] = "22023"  # no hash: not a hash reference at all
    want.update({f"{label}/oas_read": "22023" for label in ("array", "string", "null", "number")})
    assert got == want


def test_attack_presigned_file_url_of_an_encoded_name_stays_in_the_store(su, hostile_store):
    """A literal `%2e%2e` folder: the file:// URL pg_oas gives must not mean `..` to a URL parser."""
    store, store_dir, _ = hostile_store
    for schema in ("%2e%2e", "%2E%2E", ".%2e"):
        ref = su.execute("SELECT oas.oas_hash_put('enc'::bytea, %s, %s)", [store, schema]).fetchone()[0]
        assert inside(store_dir, ref["path"])
        url = su.execute("SELECT oas.oas_presign_url(%s::jsonb)", [json.dumps(ref)]).fetchone()[0]
        path = urllib.parse.urlsplit(url).path
        dotty = [s for s in path.split("/") if s.lower() in ("..", ".", "%2e%2e", ".%2e", "%2e.", "%2e")]
        assert (url.startswith("file://"), dotty, urllib.parse.unquote(path)) == \
            (True, [], str((store_dir / ref["path"]).resolve()))


def hostile_schemas(m: str) -> list[tuple[str, str, str]]:
    return [
        ("dotdot", "..", "invalid"), ("dotdot-path", f"../{m}", "invalid"), ("inner", f"{m}/../..", "invalid"),
        ("dot", ".", "invalid"), ("slash", f"{m}/x", "invalid"), ("absolute", f"/tmp/{m}", "invalid"),
        ("backslash", f"..\\{m}", "invalid"), ("control-01", f"{m}\x01", "invalid"),
        ("newline", f"{m}\n", "invalid"), ("tab", f"{m}\t", "invalid"), ("empty", "", "invalid"),
        ("pct-dotdot", "%2e%2e", "literal"), ("pct-DOTDOT", "%2E%2E", "literal"),
        ("pct-double", "%252e%252e", "literal"), ("pct-slash", f"..%2f{m}", "literal"),
        ("fullwidth-dots", "\uff0e\uff0e", "literal"), ("one-dot-leaders", "\u2024\u2024", "literal"),
        ("fullwidth-solidus", f"..\uff0f{m}", "literal"), ("three-dots", "...", "literal"),
        ("long", "s" * LONG, "long"),
    ]


def test_attack_hostile_schema_in_hash_put(su, alice, new_store):
    """oas_hash_put's schema becomes a path segment. A superuser may write any section: invalid
    names are refused (22023), legal look-alikes land inside the store; alice is refused (42501:
    no such schema of hers) before anything is written."""
    store, store_dir = new_store("file")
    m = unique("oasevil")
    watch = Outside(store_dir, m)
    got, want, placed = {}, {}, {}
    with alice.connect() as a:
        for label, schema, kind in hostile_schemas(m):
            for who, conn in (("su", su), ("alice", a)):
                try:
                    ref = conn.execute("SELECT oas.oas_hash_put(%s::bytea, %s, %s)",
                                       [label.encode(), store, schema]).fetchone()[0]
                    got[f"{who}/{label}"] = "ok"
                    placed[f"{who}/{label}"] = (ref["path"] == f"_hash/{schema}/{ref['hash']}"
                                                and inside(store_dir, ref["path"]))
                except psycopg.Error as e:
                    got[f"{who}/{label}"] = e.sqlstate
                assert alive(conn), label
            want[f"su/{label}"] = {"invalid": "22023", "literal": "ok"}.get(kind, got[f"su/{label}"])
            want[f"alice/{label}"] = "42501"
            if kind == "long":
                assert got[f"su/{label}"] in ("22023", "54000", "58030")
    assert got == want
    assert placed == {k: True for k in placed} and placed
    assert watch.new() == []


def hostile_names(m: str) -> list[tuple[str, str, str]]:
    """File names inside a folder object."""
    return [
        ("dotdot", f"../{m}", "invalid"), ("inner", f"a/../../{m}", "invalid"), ("absolute", f"/tmp/{m}", "invalid"),
        ("backslash", f"..\\{m}", "invalid"), ("control-01", f"{m}\x01", "invalid"), ("newline", f"{m}\n", "invalid"),
        ("tab", f"{m}\t", "invalid"), ("empty", "", "invalid"), ("empty-segment", f"a//{m}", "invalid"),
        ("dot", f"./{m}", "invalid"), ("trailing-slash", f"{m}/", "invalid"),
        ("pct-dotdot", f"%2e%2e/%2e%2e/{m}", "literal"), ("pct-double", f"%252e%252e/{m}", "literal"),
        ("fullwidth-dots", f"\uff0e\uff0e/{m}", "literal"), ("one-dot-leaders", f"\u2024\u2024/{m}", "literal"),
        ("fullwidth-solidus", f"..\uff0f{m}", "literal"), ("three-dots", f".../{m}", "literal"),
        ("long", "n" * LONG, "long"),
    ]


def object_table(conn, schema: str, store: str, table: str = "obj") -> str:
    """`schema.table (id text PRIMARY KEY, o <object@store>, n <npy@store>, plain jsonb)`."""
    conn.execute(f"CREATE TABLE {schema}.{table} (id text PRIMARY KEY, o jsonb, n jsonb, plain jsonb)")
    conn.execute(f"COMMENT ON COLUMN {schema}.{table}.o IS {sql.quote(f':<object@{store}>:')}")
    conn.execute(f"COMMENT ON COLUMN {schema}.{table}.n IS {sql.quote(f':<npy@{store}>:')}")
    return f"{schema}.{table}"


def test_attack_hostile_names_in_object_folder(alice, new_store):
    store, store_dir = new_store("file")
    m = unique("oasevil")
    got, want, placed = {}, {}, {}
    with alice.connect() as a:
        t = object_table(a, alice.schema, store)
        watch = Outside(store_dir, m)
        for label, name, kind in hostile_names(m):
            try:
                ref = a.execute(f"INSERT INTO {t} (id, o) VALUES (%s, oas.oas_object_folder(ARRAY[%s], ARRAY['x'::bytea]))"
                                " RETURNING o", [label, name]).fetchone()[0]
                got[label] = "ok"
                placed[label] = inside(store_dir, f"{ref['path']}/{name}") and (store_dir / ref["path"] / name).is_file()
            except psycopg.Error as e:
                got[label] = e.sqlstate
            assert alive(a), label
            want[label] = {"invalid": "22023", "literal": "ok"}.get(kind, got[label])
            if kind == "long":
                assert got[label] in ("22023", "54000", "58030")
    assert got == want
    assert placed == {k: True for k in placed} and placed
    assert watch.new() == []


HOSTILE_EXTS = [
    ("dotdot-path", "../x", "invalid"), ("absolute", "/x", "invalid"), ("backslash", ".\\x", "invalid"),
    ("control-01", ".x\x01", "invalid"), ("newline", ".x\n", "invalid"), ("tab", ".x\t", "invalid"),
    ("slash-dotdot", "./..", "invalid"), ("long", "e" * LONG, "invalid"),
    ("pct-dotdot", ".%2e%2e", "literal"), ("dotdot", "..", "literal"), ("fullwidth-solidus", ".\uff0f..", "literal"),
    ("fullwidth-dots", ".\uff0e\uff0e", "literal"), ("division-slash", ".\u2215..", "literal"),
]


def test_attack_hostile_extension_in_oas_object(alice, new_store):
    """The extension is the tail of one file name: anything that would make it more is 22023."""
    store, store_dir = new_store("file")
    m = unique("oasevil")
    got, want, placed = {}, {}, {}
    with alice.connect() as a:
        t = object_table(a, alice.schema, store)
        watch = Outside(store_dir, m)
        for label, ext, kind in HOSTILE_EXTS:
            try:
                ref = a.execute(f"INSERT INTO {t} (id, o) VALUES (%s, oas.oas_object('x'::bytea, %s)) RETURNING o",
                                [label, ext]).fetchone()[0]
                got[label] = "ok"
                placed[label] = inside(store_dir, ref["path"]) and ref["path"].rsplit("/", 1)[-1].endswith(ext)
            except psycopg.Error as e:
                got[label] = e.sqlstate
            assert alive(a), label
            want[label] = {"invalid": "22023", "literal": "ok"}[kind]
    assert got == want
    assert placed == {k: True for k in placed} and placed
    assert watch.new() == []


def hostile_keys(m: str) -> list[tuple[str, str, str]]:
    """Values of a text primary key, which DataJoint's rules render into one path segment."""
    return [
        ("dotdot", "..", "ok"), ("dot", ".", "ok"), ("path", f"../../{m}", "ok"), ("absolute", f"/tmp/{m}", "ok"),
        ("backslash", f"..\\..\\{m}", "ok"), ("pct", "%2e%2e", "ok"), ("fullwidth", "\uff0e\uff0e", "ok"),
        ("empty", "", "ok"), ("long", "k" * LONG, "ok"),
        ("control-01", "\x01", "invalid"), ("newline", f"{m}\n", "invalid"),
    ]


HOSTILE_TABLES = [
    ("dotdot", "../{s}.obj"), ("injection", "{s}.obj; DROP TABLE {s}.obj"), ("quote", "{s}.obj'"),
    ("control-01", "{s}.obj\x01"), ("long", "t" * LONG), ("empty", ""), ("absolute", "/tmp/{s}.obj"),
]
HOSTILE_FIELDS = [("dotdot", "../o"), ("inner", "o/../../x"), ("control-01", "o\x01"), ("empty", ""),
                  ("long", "o" * LONG), ("untracked", "plain"), ("quote", 'o"; DROP TABLE x; --')]
BAD_RELATION = {"42P01", "42602", "3F000", "22023", "42501", "22P02"}


def test_attack_hostile_upload_begin(alice, new_store):
    """oas_upload_begin(table, field, key, ext): bad tables and fields are refused; key values and
    legal extensions become names inside the store (the upload is finished and looked at)."""
    store, store_dir = new_store("file")
    m = unique("oasevil")
    s = alice.schema
    got, want, placed = {}, {}, {}
    with alice.connect() as a:
        t = object_table(a, s, store)
        watch = Outside(store_dir, m)

        def upload(label, table, field, key, ext):
            try:
                u = a.execute("SELECT oas.oas_upload_begin(%s, %s, %s::jsonb, %s)",
                              [table, field, json.dumps(key), ext]).fetchone()[0]
                a.execute("SELECT oas.oas_upload_part(%s, 'bytes'::bytea)", [u])
                ref = a.execute("SELECT oas.oas_upload_finish(%s)", [u]).fetchone()[0]
                placed[label] = inside(store_dir, ref["path"]) and (store_dir / ref["path"]).is_file()
                got[label] = "ok"
            except psycopg.Error as e:
                got[label] = e.sqlstate
            assert alive(a), label

        for label, table in HOSTILE_TABLES:
            upload(f"table/{label}", table.format(s=s), "o", {"id": "1"}, ".bin")
            want[f"table/{label}"] = got[f"table/{label}"] if got[f"table/{label}"] in BAD_RELATION else "refused"
        for label, field in HOSTILE_FIELDS:
            upload(f"field/{label}", t, field, {"id": "1"}, ".bin")
            want[f"field/{label}"] = "22023"
        for label, key, kind in hostile_keys(m):
            upload(f"key/{label}", t, "o", {"id": key}, ".bin")
            want[f"key/{label}"] = {"ok": "ok", "invalid": "22023"}[kind]
        for label, ext, kind in HOSTILE_EXTS:
            upload(f"ext/{label}", t, "o", {"id": label}, ext)
            want[f"ext/{label}"] = {"invalid": "22023", "literal": "ok"}[kind]
        assert a.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0  # the injection dropped nothing
    assert got == want
    assert placed == {k: True for k in placed} and placed
    assert watch.new() == []


def test_attack_hostile_npy_put(alice, new_store):
    """oas_npy_put(table, field, key, npy): the same rules as uploads."""
    store, store_dir = new_store("file")
    m = unique("oasevil")
    s = alice.schema
    got, want, placed = {}, {}, {}
    with alice.connect() as a:
        t = object_table(a, s, store)
        npy = a.execute("SELECT oas.oas_npy_from_array(ARRAY[1, 2])").fetchone()[0]
        watch = Outside(store_dir, m)

        def put(label, table, field, key):
            try:
                ref = a.execute("SELECT oas.oas_npy_put(%s, %s, %s::jsonb, %s)",
                                [table, field, json.dumps(key), npy]).fetchone()[0]
                placed[label] = inside(store_dir, ref["path"]) and (store_dir / ref["path"]).is_file()
                got[label] = "ok"
            except psycopg.Error as e:
                got[label] = e.sqlstate
            assert alive(a), label

        for label, table in HOSTILE_TABLES:
            put(f"table/{label}", table.format(s=s), "n", {"id": "1"})
            want[f"table/{label}"] = got[f"table/{label}"] if got[f"table/{label}"] in BAD_RELATION else "refused"
        for label, field in HOSTILE_FIELDS:
            put(f"field/{label}", t, field, {"id": "1"})
            want[f"field/{label}"] = "22023"
        for label, key, kind in hostile_keys(m):
            put(f"key/{label}", t, "n", {"id": key})
            want[f"key/{label}"] = {"ok": "ok", "invalid": "22023"}[kind]
        for label, key in {"nested-object": {"id": {"a": "../.."}}, "array": {"id": ["..", ".."]},
                           "missing": {}, "not-an-object": [".."]}.items():
            put(f"shape/{label}", t, "n", key)
            want[f"shape/{label}"] = "ok" if got[f"shape/{label}"] == "ok" else "22023"
        assert a.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0
    assert got == want
    assert placed == {k: True for k in placed} and placed
    assert watch.new() == []


def test_attack_hostile_store_create(su, servers):
    """Store names are refused unless plain (22023); a file store's location must be an existing
    absolute directory without `..` (nothing is created); an S3 location has no dot segments."""
    m = unique("oasevil")
    names = ["..", "../x", "a/b", "%2e%2e", "a\\b", "a\x01b", "a\nb", "a\tb", "n" * LONG, "", "\uff53tore",
             ".hidden", "a b", "a'b", "x" * 64, "ａ", f"{m}\u2215x"]
    got, tried = {}, list(names)
    for i, n in enumerate(names):
        got[f"name/{i}:{n[:12]!r}"] = outcome(su, "SELECT oas.oas_store_create(%s, %s)",
                                              [n, json.dumps({"protocol": "file", "location": "/tmp"})])
    file_locations = ["../x", f"relative/{m}", f"/tmp/{m}/../{m}2", f"/tmp/{m}/./x", f"/tmp/{m}\x01", f"/tmp/{m}\n",
                      "/tmp/" + "l" * LONG, "", f"/tmp/\uff0e\uff0e/{m}", f"/tmp/%2e%2e/{m}", f"/tmp/{m}",
                      f"file:///tmp/{m}", f"\\tmp\\{m}"]
    try:
        for loc in file_locations:
            tried.append(unique("hostile"))
            got[f"file/{loc[:40]!r}"] = outcome(su, "SELECT oas.oas_store_create(%s, %s)",
                                                [tried[-1], json.dumps({"protocol": "file", "location": loc})])
        for loc in ["../x", f"a/../../{m}", f"./{m}", f"{m}/.", f"{m}/..", ".."]:
            tried.append(unique("hostile"))
            got[f"s3/{loc!r}"] = outcome(su, "SELECT oas.oas_store_create(%s, %s)",
                                         [tried[-1], json.dumps(s3_spec(servers, location=loc))])
        assert alive(su)
    finally:
        su.execute("DELETE FROM oas.store WHERE name = ANY(%s)", [tried])
    assert got == dict.fromkeys(got, "22023")
    made = [p for top in (pathlib.Path("/tmp"), pathlib.Path("/")) for p in top.iterdir() if m in p.name]
    assert made == []


def test_attack_hostile_declare_column(alice):
    """oas_declare_column(table, column, codec, comment): bad relations, columns and codecs are
    refused; what it accepts is written as the column's comment exactly, and nothing else runs."""
    s = alice.schema
    got, want, stored = {}, {}, {}
    with alice.connect() as a:
        a.execute(f"CREATE TABLE {s}.t (id int PRIMARY KEY, c jsonb)")
        a.execute(f"CREATE TABLE {s}.canary (x int)")

        def declare(label, table, column, codec, comment=None):
            try:
                text = a.execute("SELECT oas.oas_declare_column(%s, %s, %s, %s)",
                                 [table, column, codec, comment]).fetchone()[0]
                got[label] = "ok"
                stored[label] = (text, a.execute(f"SELECT col_description('{s}.t'::regclass, 2)").fetchone()[0])
            except psycopg.Error as e:
                got[label] = e.sqlstate
            assert alive(a), label

        for label, table in HOSTILE_TABLES:
            declare(f"table/{label}", table.format(s=s).replace("obj", "t"), "c", "hash@file")
            want[f"table/{label}"] = got[f"table/{label}"] if got[f"table/{label}"] in BAD_RELATION else "refused"
        for label, column in [("dotdot", "../c"), ("quote", 'c"; DROP TABLE canary; --'), ("control-01", "c\x01"),
                              ("long", "c" * LONG), ("empty", "")]:
            declare(f"column/{label}", f"{s}.t", column, "hash@file")
            want[f"column/{label}"] = "22023"
        for label, codec in [("no-store", "hash"), ("dotdot-codec", "../hash@file"), ("angle", "hash@file>x"),
                             ("control-codec", "ha\x01sh@file"), ("empty", ""), ("at-only", "@file")]:
            declare(f"codec/{label}", f"{s}.t", "c", codec)
            want[f"codec/{label}"] = "22023"
        # Store names no store can have (store names are checked when stores are made): refused,
        # or kept as text that names no store.
        for label, codec in [("store-dotdot", "hash@../x"), ("store-slash", "hash@a/b"), ("store-control", "hash@a\x01"),
                             ("store-quote", "hash@a'b"), ("store-backslash", "hash@a\\b"),
                             ("store-long", "hash@" + "s" * LONG), ("codec-long", "h" * LONG + "@file"),
                             ("two-markers", "hash@a>:<npy@b")]:
            declare(f"codec/{label}", f"{s}.t", "c", codec)
            want[f"codec/{label}"] = got[f"codec/{label}"] if got[f"codec/{label}"] in ("ok", "22023") else "ok|22023"
        for label, comment in [("quote", "it's"), ("backslash-quote", "x\\'; DROP TABLE canary; --"),
                               ("marker", ":<npy@other>:x"), ("control-01", "a\x01b"), ("newline", "a\nb"),
                               ("long", "c" * LONG), ("dollar", "$$; DROP TABLE canary; --")]:
            declare(f"comment/{label}", f"{s}.t", "c", "hash@file", comment)
            want[f"comment/{label}"] = "ok"
        canary = a.execute(f"SELECT to_regclass('{s}.canary') IS NOT NULL").fetchone()[0]
    assert got == want
    assert {k: v for k, v in stored.items() if v[0] != v[1]} == {}  # what it said it wrote, it wrote
    assert all(stored[f"comment/{k}"][1].endswith(c) for k, c in [("backslash-quote", "x\\'; DROP TABLE canary; --"),
                                                                    ("long", "c" * LONG)])
    assert canary


def test_attack_forged_pending_values(su, alice, new_store):
    """A pending value is a handle to bytes held by the session that made it, for one use in its
    transaction. Forged, copied from another session, reused or kept past its transaction, it is
    refused (22023) and nothing is written; extra keys never choose the path or the store; in a
    column no trigger stores (untracked) it stays an inert JSON value."""
    store, store_dir = new_store("file")
    other, other_dir = new_store("file")
    s = alice.schema

    def files(d: pathlib.Path) -> list[str]:
        return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())

    got = {}
    with alice.connect() as a, connect() as victim:
        t = object_table(a, s, store)
        a.execute(f"CREATE TABLE {s}.hashed (id int PRIMARY KEY, h jsonb)")
        a.execute(f"COMMENT ON COLUMN {s}.hashed.h IS {sql.quote(f':<hash@{store}>:')}")
        a.execute(f"CREATE TABLE {s}.untracked (id int PRIMARY KEY, j jsonb)")
        before = files(store_dir)
        # Another session's value, in its still-open transaction.
        victim.autocommit = False
        theirs = victim.execute("SELECT oas.oas_object('the victim''s bytes'::bytea, '.bin')").fetchone()[0]
        made_up = {"oas_pending": "v-0-AAAAAAAAAAAAAAAA", "kind": "file", "size": 1}
        for label, value in {"made-up": made_up, "other-session": theirs,
                             "other-session-extra-keys": {**theirs, "path": "../../x", "store": other}}.items():
            got[f"object/{label}"] = outcome(a, f"INSERT INTO {t} (id, o) VALUES (%s, %s)", [label, json.dumps(value)])
            got[f"npy/{label}"] = outcome(a, f"INSERT INTO {t} (id, n) VALUES (%s, %s)", [label, json.dumps(value)])
            got[f"hash/{label}"] = outcome(a, f"INSERT INTO {s}.hashed VALUES (%s, %s)", [len(got), json.dumps(value)])
        victim.rollback()
        # Her own value: once, in its transaction.
        mine = a.execute("SELECT oas.oas_object('mine'::bytea, '.bin')").fetchone()[0]
        got["own/after-its-transaction"] = outcome(a, f"INSERT INTO {t} (id, o) VALUES ('late', %s)", [json.dumps(mine)])
        with a.transaction():
            mine = a.execute("SELECT oas.oas_object('mine'::bytea, '.bin')").fetchone()[0]
            a.execute(f"INSERT INTO {t} (id, o) VALUES ('first', %s)", [json.dumps(mine)])
            try:
                with a.transaction():  # a savepoint
                    a.execute(f"INSERT INTO {t} (id, o) VALUES ('second', %s)", [json.dumps(mine)])
                got["own/second-use"] = "ok"
            except psycopg.Error as e:
                got["own/second-use"] = e.sqlstate
        assert alive(a)
        first = a.execute(f"SELECT o->>'path' FROM {t} WHERE id = 'first'").fetchone()[0]
        unchanged = files(store_dir) == sorted(before + [first])  # only the one legitimate use wrote
        # Extra keys on her own value: the row's path in the column's store, whatever they say.
        with a.transaction():
            mine = a.execute("SELECT oas.oas_object('extra'::bytea, '.bin')").fetchone()[0]
            forged = {**mine, "path": f"../../{unique('oasevil')}", "store": other, "schema": "victim",
                      "location": "/tmp"}
            ref = a.execute(f"INSERT INTO {t} (id, o) VALUES ('extra', %s) RETURNING o", [json.dumps(forged)]).fetchone()[0]
        # Not a column any trigger stores: inert data.
        inert = {}
        for label, q in {"untracked-table": f"INSERT INTO {s}.untracked VALUES (1, %s) RETURNING j",
                         "untracked-column": f"INSERT INTO {t} (id, plain) VALUES ('plain', %s) RETURNING plain"}.items():
            try:
                inert[label] = a.execute(q, [json.dumps(theirs)]).fetchone()[0] == theirs
            except psycopg.Error as e:
                inert[label] = e.sqlstate
    assert got == dict.fromkeys(got, "22023")
    assert unchanged
    assert (ref["store"], ref["path"].startswith(f"_schema/{s}/obj/id=extra/"), inside(store_dir, ref["path"])) == \
        (store, True, True)
    assert inert == {"untracked-table": True, "untracked-column": True}
    assert files(other_dir) == []


def test_attack_another_sessions_upload_id(su, alice, new_store):
    """An upload belongs to the session that began it: its id is useless anywhere else."""
    store, store_dir = new_store("file")
    t = object_table(su, "public", store, table=unique("uploads"))
    try:
        u = su.execute("SELECT oas.oas_upload_begin(%s, 'o', '{\"id\": \"1\"}'::jsonb, '.bin')", [t]).fetchone()[0]
        with alice.connect() as a:
            got = {fn: outcome(a, q, [u]) for fn, q in {
                "part": "SELECT oas.oas_upload_part(%s, 'alice''s bytes'::bytea)",
                "finish": "SELECT oas.oas_upload_finish(%s)",
                "abort": "SELECT oas.oas_upload_abort(%s)"}.items()}
        su.execute("SELECT oas.oas_upload_part(%s, 'mine'::bytea)", [u])
        ref = su.execute("SELECT oas.oas_upload_finish(%s)", [u]).fetchone()[0]
        assert (store_dir / ref["path"]).read_bytes() == b"mine"
    finally:
        su.execute(f"DROP TABLE {t}")
    assert got == dict.fromkeys(got, "22023")


# ---------------------------------------------------------------------------------------------
# 12. Secrets in every channel: pg_stat_activity, pg_dump, errors and notices (and the log), views
#
# A store made by the superuser with a distinctive secret_key (passed as a bind parameter, as the
# README says to); then an ordinary role and bob (oas_admin, who may read oas.store_secret itself)
# use it. The secret must show in none of these channels.

PG_DUMP = f"{PGBIN}/pg_dump"


def new_secret() -> str:
    return f"sEcReT-{uuid.uuid4().hex}"


@pytest.fixture
def secret_store(su, servers):
    """Factory: secret_store(endpoint=None) -> (name, secret) of an S3 store with a fresh
    secret_key (by default at SeaweedFS, which then rejects the key). Dropped at the end."""
    made = []

    def make(endpoint: str | None = None):
        name, secret = unique("leaky"), new_secret()
        over = {"endpoint": endpoint} if endpoint else {}
        su.execute("SELECT oas.oas_store_create(%s, %s)",
                   [name, json.dumps(s3_spec(servers, secret_key=secret, location=f"pytest-security/{name}", **over))])
        made.append(name)
        assert secret in json.dumps(su.execute("SELECT secrets FROM oas.store_secret WHERE store = %s",
                                               [name]).fetchone()[0])
        return name, secret

    yield make
    su.execute("DELETE FROM oas.store WHERE name = ANY(%s)", [made])


@pytest.fixture
def ordinary(sec_db):
    """A role with LOGIN and nothing else: what any user of the database is."""
    role = make_role("ordinary")
    yield role
    drop_role(role)


def load_library(conn, timeout: str = "4s") -> None:
    """Load pg_oas in this session (so its settings are known) and bound every store request."""
    conn.execute("SELECT oas.oas_content_hash('')")
    conn.execute(f"SET oas.request_timeout = '{timeout}'")
    conn.execute("SET oas.max_retries = 0")


def test_secret_stays_out_of_pg_stat_activity(su, secret_store, black_hole, ordinary, bob):
    """While a statement using the store waits on it (a black-hole endpoint), nothing another
    session sees in pg_stat_activity (the superuser: every column of every row) holds the secret."""
    store, secret = secret_store(f"127.0.0.1:{black_hole.port}")
    watcher = make_role("watcher")
    seen = {}
    try:
        for who in (ordinary, bob):
            with who.connect() as slow, watcher.connect() as w:
                load_library(slow)
                pid = slow.info.backend_pid
                result = {}
                thread = threading.Thread(target=lambda: result.setdefault("r", outcome(
                    slow, "SELECT oas.oas_hash_put('slow'::bytea, %s, 'public')", [store])))
                thread.start()
                waiting = wait_until(lambda: su.execute(
                    "SELECT wait_event_type = 'Extension' AND position('oas_hash_put' in query) > 0"
                    "  FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0] is True, timeout=3.5)
                shown = [json.dumps(c.execute("SELECT * FROM pg_stat_activity").fetchall(), default=str)
                         for c in (su, w)]
                thread.join(30)
                seen[who.name] = (waiting, result.get("r"), [secret in s for s in shown])
    finally:
        drop_role(watcher)
    assert seen == {ordinary.name: (True, "58000", [False, False]), bob.name: (True, "58000", [False, False])}


def pg_dump(role: Role, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PG_DUMP, "-h", "127.0.0.1", "-p", str(PORT), "-U", role.name, *args, SEC_DB],
                          capture_output=True, text=True, timeout=300)


def test_secret_stays_out_of_pg_dump_by_ordinary_roles(secret_store, ordinary, bob):
    """Store configuration, secrets included, is part of pg_dump (extension configuration
    tables): a role that may not read oas.store_secret gets a permission error, never the secret.

    What bob (oas_admin) gets, as of 0.2.0: `pg_dump -t oas.store_secret` succeeds and holds the
    secret (he may read secrets: keep such dumps as secret as the credentials); a whole-database
    pg_dump fails with "permission denied for sequence store_version_seq" (oas_admin has no
    SELECT on that configuration sequence), so in practice whole dumps are a superuser's job.
    Either outcome of his whole dump is accepted below."""
    _, secret = secret_store()
    whole, table = pg_dump(ordinary), pg_dump(ordinary, "-t", "oas.store_secret")
    assert (whole.returncode != 0, "permission denied" in whole.stderr, secret in whole.stdout + whole.stderr) == \
        (True, True, False), whole.stderr
    assert (table.returncode != 0, "permission denied for table store_secret" in table.stderr,
            secret in table.stdout + table.stderr) == (True, True, False), table.stderr
    bob_table, bob_whole = pg_dump(bob, "-t", "oas.store_secret"), pg_dump(bob)
    assert (bob_table.returncode, secret in bob_table.stdout) == (0, True), bob_table.stderr
    assert (bob_whole.returncode != 0 and "permission denied" in bob_whole.stderr) or \
        (bob_whole.returncode == 0 and secret in bob_whole.stdout), bob_whole.stderr


class EchoServer:
    """An S3 endpoint that refuses everything with 403 and repeats what it knows, the secret
    included, in its reply (body and a header): what a hostile or misconfigured server might say."""

    def __init__(self, secret: str):
        class Handler(http.server.BaseHTTPRequestHandler):
            def reply(self):
                body = ("<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>you sent "
                        f"{self.path} signed {self.headers.get('Authorization')}; your key is {secret}"
                        "</Message></Error>").encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Echo", secret)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = reply

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


STORE_CALLS = {
    "hash_put": "SELECT oas.oas_hash_put('x'::bytea, %(s)s, 'public')",
    "hash_get": "SELECT oas.oas_hash_get(%(ref)s::jsonb)",
    "read": "SELECT oas.oas_read(%(ref)s::jsonb, 0, 1)",
    "size": "SELECT oas.oas_object_size(%(ref)s::jsonb)",
    "check": "SELECT oas.oas_check_reference(%(ref)s::jsonb)",
    "verify": "SELECT * FROM oas.oas_verify(only_store => %(s)s)",
    "store_verify": "SELECT * FROM oas.oas_store_verify(%(s)s)",
    "pending": "INSERT INTO {t} (id, n) VALUES (%(id)s, oas.oas_npy(ARRAY[1, 2]))",
    "upload": "SELECT oas.oas_upload_begin(%(t)s, 'n', jsonb_build_object('id', %(id)s))",
    "presign": "SELECT oas.oas_presign_url(%(ref)s::jsonb)",
    "alter_bad": "SELECT oas.oas_store_alter(%(s)s, %(bad)s::jsonb)",
}


@pytest.mark.parametrize("endpoint", ["echo", "refused", "wrong-key", "black-hole"])
def test_secret_stays_out_of_errors_notices_and_the_log(su, servers, ordinary, bob, endpoint):
    """Every call that uses a failing store, by an ordinary role and by bob: the secret is in no
    error (message, detail, hint, context), no NOTICE, no returned row (problems, reports,
    presigned URLs) and not in the server log. The store really was asked (the first call's
    SQLSTATE says how it failed), and a server that repeats the secret is masked (***)."""
    secret = new_secret()
    echo = EchoServer(secret) if endpoint == "echo" else None
    hole = BlackHole() if endpoint == "black-hole" else None
    address = {"echo": lambda: f"127.0.0.1:{echo.port}", "refused": lambda: f"127.0.0.1:{free_port()}",
               "wrong-key": lambda: servers["OAS_S3_ENDPOINT"], "black-hole": lambda: f"127.0.0.1:{hole.port}"}[endpoint]()
    store = unique("leaky")
    table = f"public.{unique('leaky')}"
    data_dir = pathlib.Path(su.execute("SELECT current_setting('data_directory')").fetchone()[0])
    current = su.execute("SELECT pg_current_logfile()").fetchone()[0]
    log = data_dir / current if current else data_dir.parent / "server.log"
    start = log.stat().st_size
    texts: dict[str, list[str]] = {}
    codes: dict[str, dict[str, str]] = {}
    try:
        su.execute("SELECT oas.oas_store_create(%s, %s)", [store, json.dumps(s3_spec(
            servers, endpoint=address, secret_key=secret, location=f"pytest-security/{store}"))])
        su.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, h jsonb, n jsonb)")
        su.execute(f"COMMENT ON COLUMN {table}.h IS {sql.quote(f':<hash@{store}>:')}")
        su.execute(f"COMMENT ON COLUMN {table}.n IS {sql.quote(f':<npy@{store}>:')}")
        ref = {"path": f"_hash/public/{H0}", "hash": H0, "schema": "public", "store": store, "size": 5}
        su.execute(f"INSERT INTO {table} (id, h) VALUES (0, %s)", [json.dumps(ref)])
        su.execute(f"GRANT SELECT, INSERT ON {table} TO PUBLIC")
        ids = itertools.count(1)
        for who in (ordinary, bob):
            said: list[str] = []
            codes[who.name] = {}
            with who.connect() as c:
                c.add_notice_handler(lambda d: said.append(" ".join(
                    str(x) for x in (d.message_primary, d.message_detail, d.message_hint, d.context))))
                load_library(c, "1s")
                for call, q in STORE_CALLS.items():
                    params = {"s": store, "ref": json.dumps(ref), "t": table, "id": next(ids),
                              "bad": json.dumps(bad_spec("s3-unknown-key", servers, secret, f"pytest-security/{store}"))}
                    try:
                        cur = c.execute(q.format(t=table), params)
                        said.append(json.dumps(cur.fetchall() if cur.description else [], default=str))
                        codes[who.name][call] = "ok"
                    except psycopg.Error as e:
                        d = e.diag
                        said.append(" ".join(str(x) for x in (e, d.message_primary, d.message_detail,
                                                              d.message_hint, d.context)))
                        codes[who.name][call] = e.sqlstate
                assert alive(c)
            texts[who.name] = said
    finally:
        su.execute(f"DROP TABLE IF EXISTS {table}")
        su.execute("DELETE FROM oas.store WHERE name = %s", [store])
        for server in (echo, hole):
            if server:
                server.close()
    with open(log, "rb") as f:
        f.seek(start)
        logged = f.read().decode(errors="replace")
    # How the store failed (a 403 is 42501, "store refused the operation"); oas_check_reference,
    # oas_verify and oas_store_verify report in rows instead; presigning is local (bob's URL is
    # checked for the secret like everything else).
    asked = {"echo": "42501", "refused": "58030", "wrong-key": "28000", "black-hole": "58000"}[endpoint]
    want = {call: asked for call in ("hash_put", "hash_get", "read", "size", "pending", "upload")}
    want.update(check="ok", verify="ok", store_verify="ok")
    assert codes == {ordinary.name: {**want, "presign": "42501", "alter_bad": "42501"},
                     bob.name: {**want, "presign": "ok", "alter_bad": "22023"}}
    if endpoint == "echo":  # the server did repeat the secret: the masker hid it
        assert ["***" in " ".join(said) for said in texts.values()] == [True, True]
    assert "oas_hash_put" in logged  # the failures were logged: the log check means something
    leaks = {who: [t for t in said if secret in t] for who, said in texts.items()}
    leaks["server log"] = [line for line in logged.splitlines() if secret in line]
    assert leaks == dict.fromkeys(leaks, [])


def test_secret_stays_out_of_catalog_views(su, secret_store, ordinary, bob):
    """Every view of schema oas (and every table of it PUBLIC may read), read by an ordinary role
    and by bob: the store is listed, with has_credentials, and its secret nowhere."""
    store, secret = secret_store()
    views = {r[0] for r in su.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'oas' AND c.relkind IN ('v', 'm')").fetchall()}
    public = {r[0] for r in su.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'oas' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        "   AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0 AND a.privilege_type = 'SELECT')")}
    assert {"oas.stores", "oas.usage", "oas.tracked_columns", "oas.store_privileges"} <= views & public
    read, leaks = {}, {}
    for who in (ordinary, bob):
        with who.connect() as c:
            for rel in sorted((views | public) - {"oas.store_secret"}):
                if not c.execute("SELECT has_table_privilege(%s, 'SELECT')", [rel]).fetchone()[0]:
                    continue
                shown = json.dumps(c.execute(f"SELECT * FROM {rel}").fetchall(), default=str)
                read.setdefault(who.name, []).append(rel)
                if secret in shown:
                    leaks.setdefault(who.name, []).append(rel)
            listed = c.execute("SELECT has_credentials FROM oas.stores WHERE name = %s", [store]).fetchone()
            assert listed == (True,), who.name
    assert set(read[ordinary.name]) >= public - {"oas.store_secret"}
    assert set(read[bob.name]) >= views
    assert leaks == {}


# ---------------------------------------------------------------------------------------------
# 13. Found by this suite and fixed: literals quoted by PostgreSQL (standard_conforming_strings
#     off), DDL that compiles under either setting, oas_npy_put's table check


def test_attack_marker_store_name_injects_sql_into_the_collector(su, alice):
    """alice's column marker names the store `\\' || alice.evil()), ...`: a superuser who runs
    oas_gc() with standard_conforming_strings = off (a legal, if old-fashioned, setting) runs
    alice.evil() as superuser, which makes alice a superuser."""
    s = alice.schema
    store = f"\\' || {s}.evil()), jsonb_extract_path_text(c, $$path$$), --"
    with alice.connect() as a:
        a.execute(f"CREATE TABLE {s}.loot (who text)")
        a.execute(f"GRANT USAGE ON SCHEMA {s} TO PUBLIC")
        a.execute(f"GRANT INSERT ON {s}.loot TO PUBLIC")
        a.execute(f"""
            CREATE FUNCTION {s}.evil() RETURNS text LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {s}.loot VALUES (current_user);
                BEGIN ALTER ROLE {alice.name} SUPERUSER; EXCEPTION WHEN OTHERS THEN NULL; END;
                RETURN 'x';
            END $$""")
        a.execute(f"CREATE TABLE {s}.t (id int PRIMARY KEY, c jsonb)")
        a.execute(f"INSERT INTO {s}.t VALUES (1, %s)", [json.dumps({"path": "x/y"})])
        a.execute(sql.SQL("COMMENT ON COLUMN {}.t.c IS {}").format(sql.Identifier(s), sql.Literal(f":<hash@{store}>:")))
        assert a.execute("SELECT store FROM oas.tracked_columns WHERE schema_name = %s", [s]).fetchone()[0] == store
        # The trap is live: called by alice herself it records her.
        a.execute(f"SELECT {s}.evil()")
        assert a.execute(f"DELETE FROM {s}.loot RETURNING who").fetchall() == [(alice.name,)]
    su.execute("SET standard_conforming_strings = off")
    try:
        result = outcome(su, "SELECT * FROM oas.oas_gc(dry_run => true)")
    finally:
        su.execute("RESET standard_conforming_strings")
    ran_as = [r[0] for r in su.execute(f"SELECT who FROM {s}.loot").fetchall()]
    superuser = su.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [alice.name]).fetchone()[0]
    assert (ran_as, superuser) == ([], False), f"oas_gc ({result}) ran alice.evil() as {ran_as}"


def test_attack_declare_column_comment_injects_sql(su, alice):
    """A superuser creates a table and declares its column with a comment alice wrote (say, the
    one of her DataJoint table definition), in a session with standard_conforming_strings = off."""
    table = f"public.{unique('declared')}"
    comment = f"raw trace\\'; ALTER ROLE {alice.name} SUPERUSER; --"
    su.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, c jsonb)")
    try:
        su.execute("SET standard_conforming_strings = off")
        try:
            result = outcome(su, "SELECT oas.oas_declare_column(%s, 'c', 'hash@file', %s)", [table, comment])
        finally:
            su.execute("RESET standard_conforming_strings")
        stored = su.execute(f"SELECT col_description('{table}'::regclass, 2)").fetchone()[0]
        superuser = su.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [alice.name]).fetchone()[0]
    finally:
        su.execute(f"DROP TABLE {table}")
    assert (result, stored, superuser) == ("ok", f":<hash@file>:{comment}", False)


def test_ddl_works_with_standard_conforming_strings_off(alice):
    """Not an attack: a session with standard_conforming_strings = off (a legacy client, or a
    role's default) cannot create a table in a database with pg_oas."""
    s = alice.schema
    with alice.connect() as a:
        a.execute("SET standard_conforming_strings = off")  # before this session's first DDL
        got = {"CREATE TABLE": outcome(a, f"CREATE TABLE {s}.t (id int PRIMARY KEY, c jsonb)"),
               "COMMENT ON COLUMN": outcome(a, f"COMMENT ON COLUMN {s}.t.c IS ':<hash@file>:'")}
        tracked = a.execute("SELECT count(*) FROM oas.tracked_columns WHERE schema_name = %s", [s]).fetchone()[0]
    assert (got, tracked) == (dict.fromkeys(got, "ok"), 1)


def test_attack_npy_put_writes_objects_for_a_table_it_may_not_write(su, alice, new_store):
    store, store_dir = new_store("file")
    table = unique("victim")
    su.execute(f"CREATE TABLE public.{table} (id int PRIMARY KEY, n jsonb, o jsonb)")
    su.execute(f"COMMENT ON COLUMN public.{table}.n IS {sql.quote(f':<npy@{store}>:')}")
    su.execute(f"COMMENT ON COLUMN public.{table}.o IS {sql.quote(f':<object@{store}>:')}")
    try:
        with alice.connect() as a:
            npy = a.execute("SELECT oas.oas_npy_from_array(ARRAY[6, 6, 6])").fetchone()[0]
            got = {
                "oas_upload_begin": outcome(a, "SELECT oas.oas_upload_begin(%s, 'o', '{\"id\": 1}'::jsonb, '.bin')",
                                            [f"public.{table}"]),
                "INSERT with oas_npy": outcome(a, f"INSERT INTO public.{table} (id, n) VALUES (1, oas.oas_npy(%s::bytea))",
                                               [npy]),
                "oas_npy_put": outcome(a, "SELECT oas.oas_npy_put(%s, 'n', '{\"id\": 1}'::jsonb, %s)",
                                       [f"public.{table}", npy]),
            }
        planted = sorted(str(p.relative_to(store_dir)) for p in (store_dir / "_schema" / "public").rglob("*")
                         if p.is_file()) if (store_dir / "_schema" / "public").exists() else []
    finally:
        su.execute(f"DROP TABLE public.{table}")
    assert (got, planted) == (dict.fromkeys(got, "42501"), [])


def test_schema_addressed_writes_must_read_back_as_their_schemas(su, new_store):
    """Found by the `paths` fuzz target: a schema named `a=b` reads back as a partition folder, so
    its objects would be vouched for by a table named like its table in another schema. Such a
    write is refused (22023) before anything is stored; an ordinary schema still writes."""
    store, store_dir = new_store("file")
    for schema, want in (('"a=b"', "22023"), (unique("plain"), "ok")):
        su.execute(f"CREATE SCHEMA {schema}")
        try:
            su.execute(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, n jsonb)")
            su.execute(f"COMMENT ON COLUMN {schema}.t.n IS {sql.quote(f':<npy@{store}>:')}")
            got = outcome(su, f"INSERT INTO {schema}.t VALUES (1, oas.oas_npy(oas.oas_npy_from_array(ARRAY[1, 2])))")
            assert got == want, schema
        finally:
            su.execute(f"DROP SCHEMA {schema} CASCADE")
    stored = [p for p in store_dir.rglob("*.npy")]
    assert len(stored) == 1 and "a=b" not in str(stored[0])
