"""`<filepath@>`: paths of files and folders the user manages, registered from SQL as DataJoint
registers them (and checked better: canonical, never in a reserved section, the file must exist),
hand-built values checked by the ledger's trigger, never collected, and read by DataJoint."""

from __future__ import annotations

import json

import pytest

from conftest import chown_postgres, dj_manual, sql_error, unique


@pytest.fixture
def user_files(store_dir):
    """A folder of user-managed files in the `file` store: raw/<id>/a.bin and raw/<id>/sess/."""
    rel = f"raw/{unique('fp')}"
    root = store_dir / rel
    (root / "sess").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"12345")
    (root / "sess" / "x.dat").write_bytes(b"x")
    for p in [store_dir / "raw", root, root / "sess", root / "a.bin", root / "sess" / "x.dat"]:
        chown_postgres(p)
    return rel


def test_register_a_file_and_a_folder(conn, user_files):
    f = conn.execute("SELECT oas.oas_filepath(%s, 'file')", [f"/{user_files}/a.bin"]).fetchone()[0]
    assert set(f) == {"path", "store", "size", "is_dir", "timestamp"}
    assert (f["path"], f["store"], f["size"], f["is_dir"]) == (f"{user_files}/a.bin", "file", 5, False)
    assert f["timestamp"].endswith("+00:00")
    d = conn.execute("SELECT oas.oas_filepath(%s)", [f"{user_files}/sess"]).fetchone()[0]
    assert (d["size"], d["is_dir"], d["store"]) == (None, True, "file")


@pytest.mark.parametrize("path, why", [
    ("_hash/lab/lvauakv4jmvhnolrtwiraf6fsi", "reserved section"),
    ("_schema/lab/t/id=1/f_tok", "reserved section"),
    ("raw/../_hash/lab/x", "invalid <filepath@> path"),
    ("_oas/owner.json", "reserved section"),
    ("raw//a", "invalid <filepath@> path"),
])
def test_paths_datajoint_would_misplace_are_refused(conn, path, why):
    e = sql_error(conn, "SELECT oas.oas_filepath(%s, 'file')", [path])
    assert e.sqlstate == "22023" and why in e.diag.message_primary, e


def test_a_missing_file_is_refused(conn, user_files):
    e = sql_error(conn, "SELECT oas.oas_filepath(%s, 'file')", [f"{user_files}/nope.bin"])
    assert e.sqlstate == "58P01", e


@pytest.fixture
def fp_table(conn):
    t = f"public.{unique('fpt')}"
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, f jsonb)")
    conn.execute(f"COMMENT ON COLUMN {t}.f IS ':<filepath@file>:'")
    yield t
    conn.execute(f"DROP TABLE {t}")


def test_the_trigger_checks_hand_built_values(conn, fp_table, user_files):
    good = {"path": f"{user_files}/a.bin", "store": "file", "size": 5, "is_dir": False, "timestamp": "x"}
    conn.execute(f"INSERT INTO {fp_table} VALUES (1, %s)", [json.dumps(good)])
    for bad, state in [
        ({**good, "path": f"{user_files}/missing.bin"}, "58P01"),
        ({**good, "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi"}, "22023"),
        ({**good, "path": f"{user_files}/sess/../a.bin"}, "22023"),
        ({**good, "path": f"/{user_files}/a.bin"}, "22023"),
    ]:
        e = sql_error(conn, f"INSERT INTO {fp_table} VALUES (2, %s)", [json.dumps(bad)])
        assert e.sqlstate == state, (bad, e)
    assert conn.execute(f"SELECT count(*) FROM {fp_table}").fetchone()[0] == 1


def test_filepaths_are_never_collected_and_verify_reports_vanished_files(conn, fp_table, user_files, store_dir):
    conn.execute(f"INSERT INTO {fp_table} VALUES (1, oas.oas_filepath(%s, 'file'))", [f"{user_files}/a.bin"])
    conn.execute(f"DELETE FROM {fp_table}")
    r = conn.execute("SELECT errors FROM oas.oas_gc(dry_run => false, store => 'file', grace => '0')").fetchone()
    r = conn.execute("SELECT errors FROM oas.oas_gc(dry_run => false, store => 'file', grace => '0')").fetchone()
    assert r == ([],)
    assert (store_dir / user_files / "a.bin").exists()
    conn.execute(f"INSERT INTO {fp_table} VALUES (2, oas.oas_filepath(%s, 'file'))", [f"{user_files}/sess/x.dat"])
    (store_dir / user_files / "sess" / "x.dat").unlink()
    problems = conn.execute("SELECT path, problem FROM oas.oas_verify(false, 'file') WHERE table_name = %s",
                            [fp_table.split(".")[1]]).fetchall()
    assert [p for p, _ in problems] == [f"{user_files}/sess/x.dat"], problems


def test_datajoint_reads_what_sql_registered(conn, dj_connection, dj_schema, user_files):
    schema = dj_schema("djfp", dj_connection)
    Rec = dj_manual(schema, "Rec", """
        rec_id : int32
        ---
        raw : <filepath@file>
        """)
    conn.execute(f'INSERT INTO "{schema.database}"."rec" VALUES (1, oas.oas_filepath(%s, %s))',
                 [f"{user_files}/a.bin", "file"])
    ref = (Rec & {"rec_id": 1}).fetch1("raw")
    assert ref.read() == b"12345"
    # And SQL registers exactly what DataJoint registers, but for the timestamp.
    Rec.insert1({"rec_id": 2, "raw": f"{user_files}/a.bin"})
    dj_value, sql_value = (r[0] for r in conn.execute(f'SELECT raw FROM "{schema.database}"."rec" ORDER BY rec_id'))
    assert {k: v for k, v in dj_value.items() if k != "timestamp"} == \
        {k: v for k, v in sql_value.items() if k != "timestamp"}


def test_with_no_store_named_the_filepath_default_store_is_used(store_dir, user_files):
    # As DataJoint: stores.filepath_default, else stores.default. A database of its own, as the
    # import marks stores.
    from conftest import connect, new_database

    name = unique("fpdb")
    elsewhere = store_dir / unique("elsewhere")
    elsewhere.mkdir()
    chown_postgres(elsewhere)
    new_database(name)
    try:
        with connect(name) as c:
            c.execute("SELECT * FROM oas.oas_store_import(%s)", [json.dumps({"stores": {
                "default": "objects", "filepath_default": "userfiles",
                "objects": {"protocol": "file", "location": str(elsewhere)},
                "userfiles": {"protocol": "file", "location": str(store_dir)}}})])
            ref = c.execute("SELECT oas.oas_filepath(%s)", [f"{user_files}/a.bin"]).fetchone()[0]
            assert (ref["store"], ref["size"]) == ("userfiles", 5)
            c.execute("UPDATE oas.store SET is_filepath_default = false")
            e = sql_error(c, "SELECT oas.oas_filepath(%s)", [f"{user_files}/a.bin"])
            assert e.sqlstate == "58P01" and "objects" in e.diag.message_primary, e
    finally:
        with connect("postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_an_ordinary_role_cannot_probe_the_store_through_the_triggers_check(conn, db):
    # oas._check_filepaths reads any store with the server's credentials (it answers whether a
    # path exists): only the ledger's trigger, running as the extension's owner, may call it.
    from conftest import connect

    role = unique("prober")
    conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        with connect(db, user=role) as c:
            e = sql_error(c, "SELECT oas._check_filepaths(ARRAY['file'], ARRAY['etc/passwd'])")
            assert e.sqlstate == "42501", e
    finally:
        conn.execute(f"DROP ROLE {role}")
