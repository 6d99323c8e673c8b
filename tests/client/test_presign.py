"""oas_presign_url: clients read objects with their own tools, without the store's credentials."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import sql_error, unique

# A URL's lifetime counts from its signing time truncated to the second, so one valid for 2 s may
# expire 1 s after it is made; 5 s leaves a loaded machine time to read it back first.
EXPIRY_S = 5


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("store", ["s3", "az"])
def test_presigned_url_reads_the_object_and_expires(conn, store):
    data = os.urandom(200_001)
    ref = conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, store, unique("ps")]).fetchone()[0]
    url = conn.execute("SELECT oas.oas_presign_url(%s, %s)", [json.dumps(ref), f"{EXPIRY_S} seconds"]).fetchone()[0]
    signed = time.monotonic()
    assert url.startswith("http://") and ref["path"] in urllib.parse.unquote(url)
    assert fetch(url) == (200, data)
    print(f"read back {time.monotonic() - signed:.2f} s after signing (valid {EXPIRY_S} s, to the second)")
    # Tampering with the signed path is refused by the server.
    assert fetch(url.replace(ref["hash"], ref["hash"][::-1]))[0] in (403, 404)
    time.sleep(max(0.0, signed + EXPIRY_S + 1.0 - time.monotonic()))
    assert fetch(url)[0] == 403


def test_file_store_gives_a_file_url(conn):
    data = b"local bytes"
    ref = conn.execute("SELECT oas.oas_hash_put(%b, 'file', %s)", [data, unique("ps")]).fetchone()[0]
    url = conn.execute("SELECT oas.oas_presign_url(%s)", [json.dumps(ref)]).fetchone()[0]
    assert url.startswith("file:///")
    with open(urllib.parse.unquote(urllib.parse.urlparse(url).path), "rb") as f:
        assert f.read() == data
    missing = dict(ref, path=ref["path"][:-1] + ("a" if ref["path"][-1] != "a" else "b"))
    assert sql_error(conn, "SELECT oas.oas_presign_url(%s)", [json.dumps(missing)]).sqlstate == "58P01"


def test_bad_requests_are_refused(conn):
    ref = conn.execute("SELECT oas.oas_hash_put('x'::bytea, 's3', %s)", [unique("ps")]).fetchone()[0]
    e = sql_error(conn, "SELECT oas.oas_presign_url(%s, '8 days')", [json.dumps(ref)])
    assert e.sqlstate == "22023" and e.diag.message_hint
    e = sql_error(conn, "SELECT oas.oas_presign_url(%s, '0 seconds')", [json.dumps(ref)])
    assert e.sqlstate == "22023"
    folder = {"path": "_schema/x/t/id=1/f_abc", "store": "s3", "is_dir": True}
    assert sql_error(conn, "SELECT oas.oas_presign_url(%s)", [json.dumps(folder)]).sqlstate == "22023"
    role = unique("reader")
    conn.execute(f"CREATE ROLE {role}")
    try:
        conn.execute(f"SET ROLE {role}")
        assert sql_error(conn, "SELECT oas.oas_presign_url(%s)", [json.dumps(ref)]).sqlstate == "42501"
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP ROLE {role}")
