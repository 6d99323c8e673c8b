"""Custom codecs registered in SQL (`oas_codec_register`): values encoded from SQL land where
DataJoint's own codec puts them and DataJoint decodes them; DataJoint's values decode in SQL;
columns are classified by the end of their codec's chain; registration is checked and guarded."""

from __future__ import annotations

import json

import pytest

from conftest import connect, dj_manual, sql_error, unique

dj = pytest.importorskip("datajoint")


class GraphCodec(dj.Codec):
    """DataJoint's documented chaining pattern (its GraphCodec): a graph kept as a dict of lists
    in a <blob>. Named `cgraph` here: DataJoint's codec registry is global to the process."""

    name = "cgraph"

    def get_dtype(self, is_store: bool) -> str:
        return "<blob>"

    def encode(self, value, *, key=None, store_name=None):
        return {"nodes": list(value["nodes"]), "edges": [list(e) for e in value["edges"]]}

    def decode(self, stored, *, key=None):
        return {"nodes": stored["nodes"], "edges": [tuple(e) for e in stored["edges"]], "decoded": True}


class PythonOnlyCodec(dj.Codec):
    """A codec only DataJoint's Python side knows."""

    name = "pyonly"

    def get_dtype(self, is_store: bool) -> str:
        return "<blob>"

    def encode(self, value, *, key=None, store_name=None):
        return {"v": value}

    def decode(self, stored, *, key=None):
        return stored["v"]


# The same codec in SQL: encode builds DataJoint's stored dict (as json, which keeps the keys in
# Python's order: the same bytes, so the same hash), decode adds the marker.
GRAPH_SQL = """
CREATE FUNCTION {s}.graph_encode(g jsonb) RETURNS json LANGUAGE sql IMMUTABLE
    AS $$ SELECT json_build_object('nodes', g->'nodes', 'edges', g->'edges') $$;
CREATE FUNCTION {s}.graph_decode(g jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT g || '{{"decoded": true}}' $$;
"""


@pytest.fixture
def codec_schema(conn):
    """A schema for the codec functions; codecs registered in the test are dropped after it."""
    s = unique("cdc")
    conn.execute(f"CREATE SCHEMA {s}")
    conn.execute(GRAPH_SQL.format(s=s))
    before = {r[0] for r in conn.execute("SELECT name FROM oas.codec")}
    yield s
    for (name,) in conn.execute("SELECT name FROM oas.codec ORDER BY registered_at DESC").fetchall():
        if name not in before:
            conn.execute("SELECT oas.oas_codec_drop(%s)", [name])
    conn.execute(f"DROP SCHEMA {s} CASCADE")


@pytest.mark.parametrize("store", ["file", "s3"])
def test_a_chained_codec_written_from_sql_reads_in_datajoint_and_back(conn, codec_schema, dj_connection, dj_schema, store):
    s = codec_schema
    schema = dj_schema("cdg", dj_connection)
    Net = dj_manual(schema, "Net", f"net_id : int32\n---\ng = null : <cgraph@{store}>")
    table = f'"{schema.database}"."net"'
    # Before registration the column is tracked from its values alone.
    row = conn.execute("SELECT addressing, chain_end FROM oas.tracked_columns WHERE table_oid = %s::regclass",
                       [table]).fetchone()
    assert row == ("custom", None)
    conn.execute(f"SELECT oas.oas_codec_register('cgraph', 'blob', '{s}.graph_encode(jsonb)', '{s}.graph_decode(jsonb)')")
    row = conn.execute("SELECT addressing, chain_end FROM oas.tracked_columns WHERE table_oid = %s::regclass",
                       [table]).fetchone()
    assert row == ("hash", "blob")
    trig = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass "
                        "AND tgname IN ('oas_fill_values', 'oas_track_insert') ORDER BY tgname", [table]).fetchall()
    assert "'g'" in trig[0][0] and "'b'" in trig[1][0], trig  # row trigger; blob check in the ledger

    graph = {"nodes": ["a", "b", "c"], "edges": [["a", "b"], ["b", "c"]]}
    Net.insert1({"net_id": 1, "g": graph})
    conn.execute(f"INSERT INTO {table} VALUES (2, oas.oas_encode('cgraph', %s::jsonb))", [json.dumps(graph)])
    theirs, ours = [r[0] for r in conn.execute(f"SELECT g FROM {table} ORDER BY net_id")]
    # The same bytes, so the same object: DataJoint's codec and ours agree.
    assert ours["hash"] == theirs["hash"] and ours["path"] == theirs["path"], (ours, theirs)
    want = {"nodes": ["a", "b", "c"], "edges": [("a", "b"), ("b", "c")], "decoded": True}
    assert (Net & {"net_id": 2}).fetch1("g") == want
    for ref in (theirs, ours):
        got = conn.execute("SELECT oas.oas_decode('cgraph', %s::jsonb)", [json.dumps(ref)]).fetchone()[0]
        assert got == dict(graph, decoded=True)
    # The wrong codec's value is refused, with the way to make the right one.
    e = sql_error(conn, f"INSERT INTO {table} VALUES (3, oas.oas_blob(%s::jsonb))", [json.dumps(graph)])
    assert e.sqlstate == "22023" and "oas_encode('cgraph'" in e.diag.message_hint, e


def test_two_codecs_chained_and_a_codec_chained_to_hash(conn, codec_schema, dj_connection, dj_schema):
    s = codec_schema
    conn.execute(f"""
        CREATE FUNCTION {s}.up(t text) RETURNS bytea LANGUAGE sql AS $$ SELECT convert_to(upper(t), 'UTF8') $$;
        CREATE FUNCTION {s}.down(b bytea) RETURNS text LANGUAGE sql AS $$ SELECT lower(convert_from(b, 'UTF8')) $$;
        CREATE FUNCTION {s}.wrap(t text) RETURNS text LANGUAGE sql AS $$ SELECT '<' || t || '>' $$;
        CREATE FUNCTION {s}.unwrap(t text) RETURNS text LANGUAGE sql AS $$ SELECT trim(both '<>' from t) $$;
    """)
    conn.execute(f"SELECT oas.oas_codec_register('shout', 'hash', '{s}.up(text)', '{s}.down(bytea)')")
    conn.execute(f"SELECT oas.oas_codec_register('wrapped', 'shout', '{s}.wrap(text)', '{s}.unwrap(text)')")
    schema = dj_schema("cdh", dj_connection)
    table = f'"{schema.database}"."t"'
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v jsonb)")
    conn.execute(f"COMMENT ON COLUMN {table}.v IS ':<wrapped@file>:'")
    conn.execute(f"INSERT INTO {table} VALUES (1, oas.oas_encode('wrapped', 'hi'::text))")
    ref = conn.execute(f"SELECT v FROM {table}").fetchone()[0]
    assert conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)]).fetchone()[0] == b"<HI>"
    assert ref["path"].startswith(f"_hash/{schema.database}/")
    assert conn.execute("SELECT oas.oas_decode('wrapped', %s::jsonb)", [json.dumps(ref)]).fetchone()[0] == "hi"
    # In use: the inner codec cannot go first.
    e = sql_error(conn, "SELECT oas.oas_codec_drop('shout')")
    assert e.sqlstate == "2BP01" and "wrapped" in str(e), e


def test_registration_is_checked(conn, codec_schema):
    s = codec_schema
    conn.execute(f"CREATE FUNCTION {s}.two(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT a $$")
    conn.execute(f"CREATE FUNCTION {s}.to_bytes(a jsonb) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$")
    cases = [
        (f"SELECT oas.oas_codec_register('blob', 'hash')", "23514"),  # a built-in name
        (f"SELECT oas.oas_codec_register('x', 'nothing')", "22023"),
        (f"SELECT oas.oas_codec_register('x', 'blob', '{s}.two(jsonb,jsonb)')", "22023"),
        (f"SELECT oas.oas_codec_register('x', 'blob', '{s}.to_bytes(jsonb)')", "42804"),  # <blob> takes no bytea
        (f"SELECT oas.oas_codec_register('x', 'hash', NULL, '{s}.graph_decode(jsonb)')", "42804"),  # hash gives bytea
        (f"SELECT oas.oas_codec_register('x', 'filepath', '{s}.graph_encode(jsonb)')", "42804"),
        ("SELECT oas.oas_codec_register('bad name', 'blob')", "23514"),
    ]
    for sql, state in cases:
        e = sql_error(conn, sql)
        assert e.sqlstate == state, (sql, e)
    conn.execute(f"SELECT oas.oas_codec_register('g2', 'blob', '{s}.graph_encode(jsonb)', '{s}.graph_decode(jsonb)')")
    e = sql_error(conn, "SELECT oas.oas_codec_register('g2', 'blob')")
    assert e.sqlstate == "42710", e
    e = sql_error(conn, "SELECT oas.oas_encode('nope', 1)")
    assert e.sqlstate == "42704", e
    e = sql_error(conn, "SELECT oas.oas_encode('blob', 1)")
    assert e.sqlstate == "42704" and "oas_blob()" in e.diag.message_hint, e
    e = sql_error(conn, "SELECT oas.oas_codec_drop('nope')")
    assert e.sqlstate == "42704", e


def test_only_administrators_register_and_only_their_own_functions(conn, codec_schema):
    """An attacker with CREATE on one schema cannot make others run its code by naming a codec:
    registering needs oas_admin, and an administrator registers only functions it owns (so the
    attacker cannot later replace a registered function's body). The codec's functions run as
    the caller of oas_encode, never as the extension's owner."""
    s = codec_schema
    mallory, admin = unique("mal"), unique("adm")
    conn.execute(f"CREATE ROLE {mallory} LOGIN; CREATE ROLE {admin} LOGIN IN ROLE oas_admin")
    try:
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {s} TO {mallory}, {admin}")
        with connect(user=mallory) as m:
            m.execute(f"CREATE FUNCTION {s}.evil(g jsonb) RETURNS jsonb LANGUAGE sql "
                      "AS $$ SELECT jsonb_build_object('ran_as', current_user::text) $$")
            e = sql_error(m, f"SELECT oas.oas_codec_register('evil', 'blob', '{s}.evil(jsonb)')")
            assert e.sqlstate == "42501", e
            e = sql_error(m, "INSERT INTO oas.codec (name, chains_to) VALUES ('evil', 'blob')")
            assert e.sqlstate == "42501", e
        with connect(user=admin) as a:
            e = sql_error(a, f"SELECT oas.oas_codec_register('evil', 'blob', '{s}.evil(jsonb)')")
            assert e.sqlstate == "42501" and "do not own" in str(e), e
            a.execute(f"CREATE FUNCTION {s}.whoami(g jsonb) RETURNS jsonb LANGUAGE sql "
                      "AS $$ SELECT jsonb_build_object('ran_as', current_user::text) $$")
            a.execute(f"SELECT oas.oas_codec_register('whoami', 'blob', '{s}.whoami(jsonb)', '{s}.whoami(jsonb)')")
        with connect(user=mallory) as m:
            # The codec's functions run as the caller.
            got = m.execute("SELECT oas.oas_decode('whoami', oas.oas_blob_pack('{}'::text))").fetchone()[0]
            assert got == {"ran_as": mallory}
        pend = conn.execute("SELECT oas.oas_encode('whoami', '{}'::jsonb)").fetchone()[0]
        assert pend["codec"] == "whoami" and pend["kind"] == "blob"
        conn.execute("SELECT oas.oas_codec_drop('whoami')")
    finally:
        conn.execute(f"DROP OWNED BY {mallory}, {admin} CASCADE; DROP ROLE {mallory}; DROP ROLE {admin}")


def test_a_codec_runs_only_functions_an_administrator_owns(conn, codec_schema):
    """A superuser is a member of every role, so "you own it" alone let one register an ordinary
    role's function, which that role could then replace: its code would run as everyone calling
    oas_encode/oas_decode, superusers included. The owner must be an administrator, when the codec
    is registered and whenever its functions run (a function given away later, dropped, or not a
    plain function, is refused). So must the types they take and return, and the types those are
    made of: a type's owner can add a cast to json, which to_jsonb of a decoded value runs."""
    s = codec_schema
    mallory = unique("mal")
    conn.execute(f"CREATE ROLE {mallory} LOGIN")
    try:
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {s} TO {mallory}")
        with connect(user=mallory) as m:
            m.execute(f"CREATE FUNCTION {s}.mine(g jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT g $$")
        e = sql_error(conn, f"SELECT oas.oas_codec_register('mine', 'blob', NULL, '{s}.mine(jsonb)')")
        assert e.sqlstate == "42501" and "oas_admin" in str(e), e

        conn.execute(f"SELECT oas.oas_codec_register('given', 'blob', '{s}.graph_encode(jsonb)', '{s}.graph_decode(jsonb)')")
        stored = conn.execute("SELECT oas.oas_blob_pack('{\"nodes\": []}'::text)").fetchone()[0]
        assert conn.execute("SELECT oas.oas_decode('given', %s::bytea)", [stored]).fetchone()[0] == {
            "nodes": [], "decoded": True}
        # Given away after registration (ALTER FUNCTION ... OWNER TO, REASSIGN OWNED): the new
        # owner replaces the body, and nobody runs it.
        conn.execute(f"ALTER FUNCTION {s}.graph_decode(jsonb) OWNER TO {mallory}")
        with connect(user=mallory) as m:
            m.execute(f"CREATE OR REPLACE FUNCTION {s}.graph_decode(g jsonb) RETURNS jsonb LANGUAGE sql "
                      "AS $$ SELECT jsonb_build_object('ran_as', current_user::text) $$")
        e = sql_error(conn, "SELECT oas.oas_decode('given', %s::bytea)", [stored])
        assert e.sqlstate == "42501" and mallory in str(e), e
        conn.execute(f"ALTER FUNCTION {s}.graph_encode(jsonb) OWNER TO {mallory}")
        e = sql_error(conn, "SELECT oas.oas_encode('given', '{}'::jsonb)")
        assert e.sqlstate == "42501", e
        # Dropped (a schema's owner may drop any function in it): refused, not a broken query.
        conn.execute(f"DROP FUNCTION {s}.graph_encode(jsonb)")
        e = sql_error(conn, "SELECT oas.oas_encode('given', '{}'::jsonb)")
        assert e.sqlstate == "42883" and "no longer exists" in str(e), e

        # A type an ordinary role owns, directly or inside a composite type of an administrator's.
        with connect(user=mallory) as m:
            m.execute(f"CREATE TYPE {s}.mood AS ENUM ('ok')")
            m.execute(f"CREATE FUNCTION {s}.mood_json(v {s}.mood) RETURNS json LANGUAGE sql "
                      "AS $$ SELECT json_build_object('ran_as', current_user::text) $$")
            m.execute(f"CREATE CAST ({s}.mood AS json) WITH FUNCTION {s}.mood_json({s}.mood)")
        conn.execute(f"CREATE TYPE {s}.rec AS (m {s}.mood)")
        conn.execute(f"CREATE TYPE {s}.plain AS (n int)")
        for ret, body in [(f"{s}.mood", "'ok'"), (f"{s}.rec", "ROW('ok')"), (f"{s}.plain", "ROW(1)")]:
            name = ret.split(".")[1]
            conn.execute(f"CREATE FUNCTION {s}.to_{name}(g jsonb) RETURNS {ret} LANGUAGE sql AS $$ SELECT {body}::{ret} $$")
        for name in ("mood", "rec"):
            e = sql_error(conn, f"SELECT oas.oas_codec_register('typed', 'blob', NULL, '{s}.to_{name}(jsonb)')")
            assert e.sqlstate == "42501" and f"{s}.mood" in str(e), e
        conn.execute(f"SELECT oas.oas_codec_register('typed', 'blob', NULL, '{s}.to_plain(jsonb)')")
        assert conn.execute("SELECT oas.oas_decode('typed', %s::bytea)", [stored]).fetchone()[0] == {"n": 1}
        conn.execute(f"ALTER TYPE {s}.plain OWNER TO {mallory}")
        e = sql_error(conn, "SELECT oas.oas_decode('typed', %s::bytea)", [stored])
        assert e.sqlstate == "42501" and f"{s}.plain" in str(e), e

        conn.execute(f"CREATE PROCEDURE {s}.proc(g jsonb) LANGUAGE sql AS $$ SELECT 1 $$")
        conn.execute("CREATE FUNCTION pg_temp.tmp(g jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT g $$")
        fresh = conn.execute("SELECT max(oid::int8) + 1000000 FROM pg_proc").fetchone()[0]
        for fn, state in [(f"'{s}.proc(jsonb)'", "42809"), ("'pg_temp.tmp(jsonb)'", "22023"),
                          (f"{fresh}::oid::regprocedure", "42883")]:
            e = sql_error(conn, f"SELECT oas.oas_codec_register('odd', 'blob', NULL, {fn})")
            assert e.sqlstate == state, (fn, e)
    finally:
        conn.execute(f"DROP OWNED BY {mallory} CASCADE; DROP ROLE {mallory}")


def test_a_codec_the_database_does_not_know_stays_tracked(conn, dj_connection, dj_schema):
    """A Python-only codec's column (not registered in SQL) is tracked from its JSON: the ledger
    records its objects (and so the collector keeps them)."""
    schema = dj_schema("cdu", dj_connection)
    Net = dj_manual(schema, "Net", "net_id : int32\n---\ng = null : <pyonly@file>")
    Net.insert1({"net_id": 1, "g": [1, 2]})
    assert (Net & {"net_id": 1}).fetch1("g") == [1, 2]
    ref = conn.execute(f'SELECT g FROM "{schema.database}"."net"').fetchone()[0]
    n = conn.execute("SELECT sum(delta) FROM oas.ref_log WHERE path = %s", [ref["path"]]).fetchone()[0]
    assert n == 1
    assert conn.execute("SELECT addressing FROM oas.tracked_columns WHERE table_oid = %s::regclass",
                        [f'"{schema.database}"."net"']).fetchone()[0] == "custom"
