"""Hash-addressed puts of several parts to S3 (SeaweedFS): hashed first, then a multipart upload
straight to the object's path with a few parts in flight (`oas.upload_part_size`,
`oas.upload_parts_in_flight`). The object and the reference are a single put's; dedup and repair
hold; a cancelled or failed upload is aborted and leaves nothing at the path."""

from __future__ import annotations

import json
import os
import time

import pytest

from conftest import CANCEL_BOUND_S, CuttableProxy, s3_spec, sql_error, unique

from test_hash_objects import dj_hash, get, put

PART = 5 << 20  # the smallest part S3 takes; the tests set it to keep payloads small


def key(servers, ref) -> str:
    return f"{servers['OAS_S3_BUCKET']}/pytest/{ref['path']}"


def pending_uploads(s3fs_client, servers, path: str) -> list:
    """Multipart uploads started and neither completed nor aborted, for the object at `path`."""
    uploads = s3fs_client.list_multipart_uploads(servers["OAS_S3_BUCKET"])
    return [u for u in uploads if u["Key"] == f"pytest/{path}"]


@pytest.fixture
def parts(conn):
    """Parts of 5 MiB, two in flight, on `conn`."""
    conn.execute("SELECT oas.oas_content_hash('')")  # loads the library: its settings exist
    conn.execute(f"SET oas.upload_part_size = {PART}")
    conn.execute("SET oas.upload_parts_in_flight = 2")
    return conn


def proxied_store(conn, servers, proxy: CuttableProxy) -> str:
    name = unique("proxied")
    spec = s3_spec(servers, endpoint=f"127.0.0.1:{proxy.port}")
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
    return name


def test_parts_store_the_object_and_reference_of_a_single_put(parts, s3fs_client, servers):
    conn = parts
    data = os.urandom(3 * PART + 12_345)
    in_parts = put(conn, data, "s3", unique("parts"))
    conn.execute("SET oas.upload_part_size = '1GB'")  # one part: a single conditional PUT
    single_schema = unique("single")
    single = put(conn, data, "s3", single_schema)
    h = dj_hash(data)
    assert in_parts == dict(single, schema=in_parts["schema"], path=f"_hash/{in_parts['schema']}/{h}")
    assert single == {"hash": h, "path": f"_hash/{single_schema}/{h}", "schema": single_schema,
                      "store": "s3", "size": len(data)}
    for ref in (in_parts, single):
        assert s3fs_client.cat_file(key(servers, ref)) == data
        assert get(conn, ref) == data
    # A multipart upload's ETag counts its parts; a single PUT's is the MD5.
    etag = lambda ref: s3fs_client.info(key(servers, ref), refresh=True)["ETag"].strip('"')  # noqa: E731
    assert etag(in_parts).endswith("-4"), etag(in_parts)
    assert "-" not in etag(single)
    assert pending_uploads(s3fs_client, servers, in_parts["path"]) == []


def test_parts_to_azure_store_the_object_and_reference_of_a_single_put(parts):
    """Azure (Azurite) goes through the same code: blocks, then the block list."""
    conn = parts
    data = os.urandom(2 * PART + 99)
    schema = unique("azparts")
    ref = put(conn, data, "az", schema)
    assert ref == {"hash": dj_hash(data), "path": f"_hash/{schema}/{dj_hash(data)}", "schema": schema,
                   "store": "az", "size": len(data)}
    assert get(conn, ref) == data
    assert put(conn, data, "az", schema) == ref
    conn.execute("SET oas.upload_part_size = '1GB'")
    single_schema = unique("azsingle")
    assert put(conn, data, "az", single_schema) == dict(ref, schema=single_schema,
                                                          path=f"_hash/{single_schema}/{dj_hash(data)}")


def test_parts_deduplicate_and_repair(parts, s3fs_client, servers):
    conn = parts
    data = os.urandom(2 * PART + 1)
    schema = unique("dedup")
    ref = put(conn, data, "s3", schema)
    # A copy of the right size is the content (its path is its hash): kept, nothing sent. To
    # show nothing was sent, the copy is swapped for other bytes of the same size first.
    other = os.urandom(len(data))
    s3fs_client.pipe_file(key(servers, ref), other)
    assert put(conn, data, "s3", schema) == ref
    assert s3fs_client.cat_file(key(servers, ref)) == other
    # A copy of the wrong size is damaged: replaced.
    s3fs_client.pipe_file(key(servers, ref), b"short")
    assert put(conn, data, "s3", schema) == ref
    assert s3fs_client.cat_file(key(servers, ref)) == data
    assert get(conn, ref) == data


def test_statement_timeout_mid_upload_aborts_it(parts, s3fs_client, servers):
    """The upload runs through a proxy that passes 4 MB/s a connection: 30 MiB in two parts at a
    time take ~4 s, the statement ends after 1.5 s, in the middle of it."""
    conn = parts
    proxy = CuttableProxy(servers["OAS_S3_ENDPOINT"], rate=4e6)
    try:
        name = proxied_store(conn, servers, proxy)
        data = os.urandom(6 * PART)
        schema = unique("cancel")
        conn.execute("SET statement_timeout = '1500ms'")
        t = time.monotonic()
        err = sql_error(conn, "SELECT oas.oas_hash_put(%b, %s, %s)", [data, name, schema])
        elapsed = time.monotonic() - t
        conn.execute("RESET statement_timeout")
        print(f"statement_timeout of 1.5 s ended a 30 MiB upload in parts after {elapsed * 1e3:.0f} ms,"
              f" {proxy.sent / 1e6:.1f} MB sent")
        assert err.sqlstate == "57014" and "statement timeout" in str(err)
        assert elapsed < 1.5 + CANCEL_BOUND_S, elapsed
        assert 1e6 < proxy.sent < len(data), "the timeout did not fall in the upload"
    finally:
        proxy.close()
    path = f"_hash/{schema}/{dj_hash(data)}"
    assert not s3fs_client.exists(f"{servers['OAS_S3_BUCKET']}/pytest/{path}")
    assert pending_uploads(s3fs_client, servers, path) == []
    # The session goes on working.
    assert get(conn, put(conn, b"after the timeout", "s3", schema)) == b"after the timeout"


def test_a_failure_mid_upload_aborts_it_and_is_a_store_error(parts, s3fs_client, servers):
    """The store drops the connection that sends the third part; no retry."""
    conn = parts
    proxy = CuttableProxy(servers["OAS_S3_ENDPOINT"])
    proxy.fail_if = lambda head: b"partNumber=3&" in head
    try:
        name = proxied_store(conn, servers, proxy)
        conn.execute("SET oas.max_retries = 0")
        data = os.urandom(6 * PART)
        schema = unique("fail")
        err = sql_error(conn, "SELECT oas.oas_hash_put(%b, %s, %s)", [data, name, schema])
        conn.execute("RESET oas.max_retries")
    finally:
        proxy.close()
    path = f"_hash/{schema}/{dj_hash(data)}"
    assert proxy.failed == 1
    assert err.sqlstate == "58030", str(err)
    assert f'store "{name}"' in str(err) and "upload part" in str(err) and path in str(err)
    assert not s3fs_client.exists(f"{servers['OAS_S3_BUCKET']}/pytest/{path}")
    assert pending_uploads(s3fs_client, servers, path) == []
