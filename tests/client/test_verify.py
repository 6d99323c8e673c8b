"""oas_verify against a real S3 server: damage done behind the database's back is found and
reported by table, column and key."""

from __future__ import annotations


from conftest import unique


def test_verify_finds_damage_in_s3(conn, s3fs_client, servers):
    schema = unique("ver")
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, payload jsonb)")
    conn.execute("SELECT oas.oas_declare_column(%s, 'payload', 'hash@s3')", [f"{schema}.t"])
    for i, data in enumerate([b"alpha" * 100, b"beta" * 100, b"gamma" * 100]):
        conn.execute(f"INSERT INTO {schema}.t VALUES (%s, oas.oas_hash_put(%s, 's3', %s))", [i, data, schema])
    verify = "SELECT row_key->>'id', problem FROM oas.oas_verify(check_content => %s) WHERE schema_name = %s ORDER BY 1"
    assert conn.execute(verify, [True, schema]).fetchall() == []
    refs = dict(conn.execute(f"SELECT id, payload FROM {schema}.t").fetchall())
    key = lambda r: f"{servers['OAS_S3_BUCKET']}/pytest/{r['path']}"
    s3fs_client.rm_file(key(refs[0]))
    s3fs_client.pipe_file(key(refs[1]), b"BETA" * 100)  # same size, other content
    s3fs_client.pipe_file(key(refs[2]), b"gamma")  # truncated
    assert conn.execute(verify, [True, schema]).fetchall() == [
        ("0", "missing"),
        ("1", f"content hash is {_md5b32(b'BETA' * 100)}, the reference records {refs[1]['hash']}"),
        ("2", "size is 5 bytes, the reference records 500"),
    ]
    # Existence and size only: the same-size corruption is not seen.
    assert [r[0] for r in conn.execute(verify, [False, schema]).fetchall()] == ["0", "2"]
    conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _md5b32(data: bytes) -> str:
    import base64
    import hashlib

    return base64.b32encode(hashlib.md5(data).digest()).decode().rstrip("=").lower()
