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
import io
import json
import os
import pathlib
import pwd
import shutil
import time
import uuid
from dataclasses import dataclass

import numpy as np
import psycopg
import pytest
from psycopg import sql

from conftest import RUN_DIR, chown_postgres, s3_spec, unique
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
    with connect_db("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {SEC_DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {SEC_DB}")
    store_dir = RUN_DIR / "pytest-security" / "file"
    shutil.rmtree(store_dir.parent, ignore_errors=True)
    store_dir.mkdir(parents=True)
    chown_postgres(store_dir.parent)
    chown_postgres(store_dir)
    with connect() as c:
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION pg_oas")
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
            assert (result, waited < 15) == ("55P03", True), \
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
