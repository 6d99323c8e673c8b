"""The store catalog seen from several connections: cache invalidation, privileges, secrets,
DataJoint's config imported as-is, and ambient S3 credentials."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess

from conftest import PGBIN, RUN_DIR, chown_postgres, connect, free_port, s3_spec, sql_error, unique


def test_altered_store_is_picked_up_by_other_backends_after_commit(db, tmp_path_factory):
    a_dir, b_dir = (RUN_DIR / unique("dir_a"), RUN_DIR / unique("dir_b"))
    for d in (a_dir, b_dir):
        d.mkdir()
        chown_postgres(d)
    name = unique("moving")
    with connect() as admin, connect() as user:
        admin.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps({"protocol": "file", "location": str(a_dir)})])
        user.execute("SELECT oas.oas_hash_put('one'::bytea, %s, 'lab')", [name])  # caches a client for a_dir
        assert len(list((a_dir / "_hash/lab").iterdir())) == 1
        # An uncommitted change is invisible to the other backend.
        admin.autocommit = False
        admin.execute("SELECT oas.oas_store_alter(%s, %s)", [name, json.dumps({"protocol": "file", "location": str(b_dir)})])
        user.execute("SELECT oas.oas_hash_put('two'::bytea, %s, 'lab')", [name])
        assert len(list((a_dir / "_hash/lab").iterdir())) == 2
        admin.commit()
        # Committed: the other backend's cached client is stale and rebuilt.
        user.execute("SELECT oas.oas_hash_put('three'::bytea, %s, 'lab')", [name])
        assert [p.name for p in (b_dir / "_hash/lab").iterdir()] != []
        assert len(list((a_dir / "_hash/lab").iterdir())) == 2
        # Dropped and re-created under the same name: a new version, never the old client.
        admin.execute("SELECT oas.oas_store_drop(%s)", [name])
        admin.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps({"protocol": "file", "location": str(a_dir)})])
        admin.commit()
        user.execute("SELECT oas.oas_hash_put('four'::bytea, %s, 'lab')", [name])
        assert len(list((a_dir / "_hash/lab").iterdir())) == 3


def test_ordinary_role_uses_a_store_without_seeing_its_secrets(db, servers):
    role = unique("user")
    with connect() as c:
        c.execute(f"CREATE ROLE {role} LOGIN")
        table = unique("public.mine")
        try:
            c.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
            c.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, ref jsonb)")
            c.execute(f"COMMENT ON COLUMN {table}.ref IS ':<hash@s3>:'")
            c.execute(f"GRANT SELECT, INSERT ON {table} TO {role}")
            with connect(user=role) as u:
                ref = u.execute("SELECT oas.oas_hash_put('by a user'::bytea, 's3', 'public')").fetchone()[0]
                # Objects of a schema are written only with USAGE on it (here: no such schema).
                assert sql_error(u, "SELECT oas.oas_hash_put('x'::bytea, 's3', 'lab')").sqlstate == "42501"
                # Read through a row that references it (a reference alone is not a capability).
                assert sql_error(u, "SELECT oas.oas_hash_get(%s)", [json.dumps(ref)]).sqlstate == "42501"
                u.execute(f"INSERT INTO {table} VALUES (1, %s)", [json.dumps(ref)])
                assert u.execute(f"SELECT oas.oas_hash_get(ref) FROM {table}", binary=True).fetchone()[0] == b"by a user"
                # The secrets table stays closed, and the identity switch did not leak.
                assert sql_error(u, "SELECT * FROM oas.store_secret").sqlstate == "42501"
                assert u.execute("SELECT current_user").fetchone()[0] == role
                spec = u.execute("SELECT spec FROM oas.stores WHERE name = 's3'").fetchone()[0]
                assert "secret_key" not in spec and servers["OAS_S3_SECRET_KEY"] not in json.dumps(spec)
                assert sql_error(u, "SELECT oas.oas_store_drop('s3')").sqlstate == "42501"
        finally:
            c.execute(f"DROP TABLE IF EXISTS {table}")
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")


def test_secrets_are_nowhere_public(conn, servers):
    secret = servers["OAS_S3_SECRET_KEY"]
    public = conn.execute("SELECT json_agg(s)::text FROM oas.stores s").fetchone()[0]
    assert secret not in public
    conn.execute("SELECT oas.oas_content_hash('')")  # loads the library, which defines the settings
    settings = conn.execute("SELECT string_agg(name || '=' || setting, ' ') FROM pg_settings WHERE name LIKE 'oas.%'").fetchone()[0]
    assert secret not in settings and "oas.request_timeout" in settings


def test_datajoint_json_imports_as_is(conn, servers, tmp_path):
    # The file a DataJoint user keeps, with an S3 store (keys inline) and defaults.
    cfg = {"database.backend": "postgresql",
           "stores": {"default": unique("dj"), "filepath_default": None}}
    name = cfg["stores"]["default"]
    cfg["stores"][name] = s3_spec(servers, location="dj-import", subfolding=[2, 2])
    del cfg["stores"]["filepath_default"]
    rows = conn.execute("SELECT * FROM oas.oas_store_import(%s)", [json.dumps(cfg)]).fetchall()
    assert (name, "created") in rows and (name, "set as default") in rows
    ref = conn.execute("SELECT oas.oas_hash_put('imported'::bytea, NULL, 'lab')").fetchone()[0]
    assert ref["store"] == name and ref["path"].startswith("_hash/lab/")
    assert ref["path"].split("/")[2] == ref["hash"][:2]
    conn.execute("SELECT oas.oas_store_set_default('file')")


@contextlib.contextmanager
def cluster_with_env(env: dict[str, str]):
    """A throwaway cluster whose server process has `env`: how ambient credentials reach pg_oas."""
    d = RUN_DIR / unique("ambient")
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    chown_postgres(d)
    data, port = d / "data", free_port()
    run = lambda *a: subprocess.run(["sudo", "-u", "postgres", "env", *[f"{k}={v}" for k, v in env.items()], *a],
                                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run(f"{PGBIN}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust")
    run(f"{PGBIN}/pg_ctl", "-D", str(data), "-l", str(d / "log"), "-w",
        "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {d}", "start")
    try:
        with connect("postgres", port=port) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION pg_oas")
            yield c
    finally:
        subprocess.run(["sudo", "-u", "postgres", f"{PGBIN}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)


def ambient_round_trip(c, servers) -> dict:
    spec = s3_spec(servers, access_key=None, secret_key=None, location="ambient")
    c.execute("SELECT oas.oas_store_create('amb', %s)", [json.dumps(spec)])
    assert c.execute("SELECT has_credentials FROM oas.stores WHERE name = 'amb'").fetchone()[0] is False
    ref = c.execute("SELECT oas.oas_hash_put('ambient'::bytea, 'amb', 'lab')").fetchone()[0]
    assert c.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)], binary=True).fetchone()[0] == b"ambient"
    return ref


def test_s3_without_keys_uses_environment_credentials(db, servers):
    env = {"AWS_ACCESS_KEY_ID": servers["OAS_S3_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY": servers["OAS_S3_SECRET_KEY"]}
    with cluster_with_env(env) as c:
        ambient_round_trip(c, servers)


def test_s3_without_keys_uses_the_shared_credentials_file(db, servers):
    creds = RUN_DIR / unique("awscreds")
    creds.write_text(f"[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing-here\n\n"
                     f"[lab]\naws_access_key_id = {servers['OAS_S3_ACCESS_KEY']}\n"
                     f"aws_secret_access_key = {servers['OAS_S3_SECRET_KEY']}\n")
    chown_postgres(creds)
    try:
        with cluster_with_env({"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_PROFILE": "lab"}) as c:
            ambient_round_trip(c, servers)
        # The same file with the wrong profile: the store answers with a credential error.
        with cluster_with_env({"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_PROFILE": "default"}) as c:
            spec = s3_spec(servers, access_key=None, secret_key=None, location="ambient")
            c.execute("SELECT oas.oas_store_create('amb', %s)", [json.dumps(spec)])
            err = sql_error(c, "SELECT oas.oas_hash_put('x'::bytea, 'amb', 'lab')")
            assert err.sqlstate == "28000", str(err)
    finally:
        creds.unlink()
