"""Stores that fail: wrong credentials, unreachable, hanging; cancellation; secrets never shown."""

from __future__ import annotations

import json
import os
import threading
import time

import psycopg
import pytest

from conftest import CANCEL_BOUND_S, azure_spec, connect, s3_spec, sql_error, unique, wait_until

WRONG_SECRET = "wrong-secret-Zq81xv0p"


def all_text(err: psycopg.Error) -> str:
    d = err.diag
    return " ".join(str(x) for x in (err, d.message_primary, d.message_detail, d.message_hint, d.context) if x)


def test_wrong_s3_secret_is_rejected_and_masked(conn, servers):
    name = unique("badkey")
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(s3_spec(servers, secret_key=WRONG_SECRET))])
    err = sql_error(conn, "SELECT oas.oas_hash_put('x'::bytea, %s)", [name])
    assert err.sqlstate == "28000", all_text(err)
    assert "rejected the credentials" in str(err) and "SignatureDoesNotMatch" in str(err)
    assert WRONG_SECRET not in all_text(err)
    # Reading with a bad key fails the same way.
    good = conn.execute("SELECT oas.oas_hash_put('y'::bytea, 's3', 'lab')").fetchone()[0]
    err = sql_error(conn, "SELECT oas.oas_hash_get(%s)", [json.dumps(dict(good, store=name))])
    assert err.sqlstate == "28000", all_text(err)
    # verify shows which step fails and why, also masked.
    rows = conn.execute("SELECT step, ok, detail FROM oas.oas_store_verify(%s)", [name]).fetchall()
    assert rows[0][:2] == ("put", False) and "SignatureDoesNotMatch" in rows[0][2]
    assert all(WRONG_SECRET not in r[2] for r in rows)


def test_unknown_access_key_is_rejected(conn, servers):
    name = unique("badid")
    spec = s3_spec(servers, access_key="AKIANOBODY", secret_key=WRONG_SECRET)
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
    err = sql_error(conn, "SELECT oas.oas_hash_put('x'::bytea, %s)", [name])
    assert err.sqlstate == "28000", all_text(err)
    assert WRONG_SECRET not in all_text(err)


def test_wrong_azure_key_is_rejected_and_masked(conn, servers):
    name = unique("badaz")
    bad_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    cs = servers["OAS_AZURE_CONNECTION_STRING"]
    good_key = [p.split("=", 1)[1] for p in cs.split(";") if p.startswith("AccountKey=")][0]
    conn.execute("SELECT oas.oas_store_create(%s, %s)",
                 [name, json.dumps(azure_spec(servers, connection_string=cs.replace(good_key, bad_key)))])
    err = sql_error(conn, "SELECT oas.oas_hash_put('x'::bytea, %s)", [name])
    assert err.sqlstate in ("28000", "42501"), all_text(err)
    assert bad_key not in all_text(err) and good_key not in all_text(err)


def test_unreachable_store_fails_fast_with_io_error(conn, servers):
    from conftest import free_port

    name = unique("down")
    spec = s3_spec(servers, endpoint=f"127.0.0.1:{free_port()}")
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
    conn.execute("SET oas.max_retries = 1")
    t = time.monotonic()
    err = sql_error(conn, "SELECT oas.oas_hash_put('x'::bytea, %s)", [name])
    elapsed = time.monotonic() - t
    print(f"an unreachable store (1 retry) failed after {elapsed * 1e3:.0f} ms")
    assert elapsed < 10, elapsed
    assert err.sqlstate == "58030", all_text(err)
    assert f'store "{name}"' in str(err)
    assert "oas_store_verify" in err.diag.message_hint


def test_request_timeout_abandons_a_hanging_store(conn, servers, black_hole):
    name = unique("hang")
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(s3_spec(servers, endpoint=f"127.0.0.1:{black_hole.port}"))])
    conn.execute("SET oas.request_timeout = 400")
    conn.execute("SET oas.max_retries = 0")
    t = time.monotonic()
    err = sql_error(conn, "SELECT oas.oas_hash_put('x'::bytea, %s)", [name])
    elapsed = time.monotonic() - t
    print(f"oas.request_timeout of 400 ms ended the request after {elapsed * 1e3:.0f} ms")
    assert err.sqlstate == "58000", all_text(err)
    assert "timed out" in str(err)
    assert elapsed < 0.4 + CANCEL_BOUND_S, elapsed


def test_statement_timeout_cancels_a_hanging_request(conn, servers, black_hole):
    name = unique("hang")
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(s3_spec(servers, endpoint=f"127.0.0.1:{black_hole.port}"))])
    conn.execute("SET statement_timeout = '300ms'")
    t = time.monotonic()
    err = sql_error(conn, "SELECT oas.oas_hash_put('x'::bytea, %s)", [name])
    elapsed = time.monotonic() - t
    assert err.sqlstate == "57014"
    assert "statement timeout" in str(err)
    # The promise is a cancel within 1 s; asserted with a margin for a loaded 2-core machine.
    print(f"statement_timeout of 300 ms ended the statement after {elapsed * 1e3:.0f} ms")
    assert elapsed < 0.3 + CANCEL_BOUND_S, f"cancel took {elapsed:.3f}s"
    conn.execute("RESET statement_timeout")
    assert conn.execute("SELECT 1").fetchone()[0] == 1


class Canceller:
    """Cancels `conn`'s query `delay` seconds after the backend starts waiting on a store (shown as
    wait_event_type 'Extension'; a cancel that arrives while PostgreSQL is still reading a large
    query is ignored by design), and records when it was sent."""

    def __init__(self, conn: psycopg.Connection, delay: float, terminate: bool = False):
        self.pid, self.delay, self.terminate = conn.info.backend_pid, delay, terminate
        self.sent_at: float | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        with connect() as c:
            active = lambda: c.execute("SELECT wait_event_type IS NOT DISTINCT FROM 'Extension' "
                                       "FROM pg_stat_activity WHERE pid = %s", [self.pid]).fetchone()[0]
            assert wait_until(active, 60, 0.01)
            time.sleep(self.delay)
            self.sent_at = time.monotonic()
            c.execute(f"SELECT {'pg_terminate_backend' if self.terminate else 'pg_cancel_backend'}(%s)", [self.pid])

    def latency(self, failed_at: float) -> float:
        self.thread.join()
        assert self.sent_at is not None
        return failed_at - self.sent_at


def test_cancel_request_abandons_a_hanging_request_quickly(conn, servers, black_hole):
    name = unique("hang")
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(s3_spec(servers, endpoint=f"127.0.0.1:{black_hole.port}"))])
    canceller = Canceller(conn, 0.3)
    err = sql_error(conn, "SELECT oas.oas_hash_put('x'::bytea, %s)", [name])
    latency = canceller.latency(time.monotonic())
    print(f"cancel of a hanging request: {latency * 1e3:.0f} ms")
    assert err.sqlstate == "57014"
    assert "user request" in str(err)
    assert latency < CANCEL_BOUND_S, f"cancel took {latency:.3f}s"


@pytest.mark.parametrize("delay", [0.05, 0.8])
def test_cancelled_long_upload_to_seaweedfs_leaves_the_session_usable(db, servers, delay):
    """Cancel early (while the payload is hashed) and late (while it is uploaded)."""
    schema = unique("long")
    data = os.urandom(768 << 20)
    with connect() as c:
        canceller = Canceller(c, delay)
        err = sql_error(c, "SELECT oas.oas_hash_put(%b, 's3', %s)", [data, schema])
        latency = canceller.latency(time.monotonic())
        print(f"cancel {delay}s into a 768 MiB upload: {latency * 1e3:.0f} ms")
        assert err.sqlstate == "57014"
        assert latency < CANCEL_BOUND_S, f"cancel took {latency:.3f}s"
        # The same session goes on working: the runtime was not left wedged.
        ref = c.execute("SELECT oas.oas_hash_put('after cancel'::bytea, 's3', %s)", [schema]).fetchone()[0]
        assert c.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)], binary=True).fetchone()[0] == b"after cancel"


def test_terminated_backend_during_a_hang_exits_cleanly(db, servers, black_hole):
    name = unique("hang")
    with connect() as c:
        c.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(s3_spec(servers, endpoint=f"127.0.0.1:{black_hole.port}"))])
    victim = connect()
    pid = victim.info.backend_pid
    killer = Canceller(victim, 0.3, terminate=True)
    with pytest.raises(psycopg.OperationalError):
        victim.execute("SELECT oas.oas_hash_put('x'::bytea, %s)", [name])
    # The request is dropped at once; exiting also tears the backend down (measured 0.1-0.6 s
    # depending on load). Latency itself is benchmarked, not here.
    latency = killer.latency(time.monotonic())
    print(f"terminate during a hanging request: {latency * 1e3:.0f} ms")
    assert latency < CANCEL_BOUND_S, f"terminate took {latency:.3f}s"
    with connect() as c:
        assert wait_until(lambda: c.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0] == 0, 5)
        # The postmaster did not restart (a crash would have reset every connection).
        assert c.execute("SELECT 1").fetchone()[0] == 1


# A store that is down for a while (#13): how long a blip the retries cover. object_store backs off
# from 100 ms, each wait drawn between 100 ms and twice the last: 10 retries wait at least 1 s.
BLIP_S = 0.5


def test_a_brief_outage_is_covered_by_retries(conn, servers):
    """A store that refuses connections for less than the retries' backoff window, then comes back
    on its port, still gets the write (oas.max_retries); without retries the same outage fails the
    write with 58030 and a hint naming the store."""
    from conftest import CuttableProxy, free_port

    port = free_port()
    name = unique("blip")
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(s3_spec(servers, endpoint=f"127.0.0.1:{port}"))])
    data = os.urandom(4096)
    conn.execute("SET oas.max_retries = 0")
    err = sql_error(conn, "SELECT oas.oas_hash_put(%b, %s)", [data, name])
    assert err.sqlstate == "58030", all_text(err)
    assert f"oas_store_verify('{name}')" in err.diag.message_hint

    conn.execute("SET oas.max_retries = 10")
    back: list[CuttableProxy] = []

    def come_back():
        time.sleep(BLIP_S)
        back.append(CuttableProxy(servers["OAS_S3_ENDPOINT"], listen_port=port))

    returns = threading.Thread(target=come_back)
    started = time.monotonic()
    returns.start()
    try:
        ref = conn.execute("SELECT oas.oas_hash_put(%b, %s)", [data, name]).fetchone()[0]
        elapsed = time.monotonic() - started
    finally:
        returns.join(10)
        for p in back:
            p.close()
    print(f"a write to a store down for {BLIP_S} s (10 retries) succeeded after {elapsed * 1e3:.0f} ms")
    assert elapsed >= BLIP_S and back and back[0].sent > 0
    with connect() as c:
        c.execute("SELECT oas.oas_store_alter(%s, %s)", [name, json.dumps(s3_spec(servers))])
        assert c.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)], binary=True).fetchone()[0] == data


def test_the_collector_deletes_nothing_while_the_store_is_down(db, servers):
    """A collection of a store that does not answer: the report names the failure, a WARNING says
    so, nothing is moved or deleted; once the store is back every object is still there."""
    from conftest import CuttableProxy

    proxy = CuttableProxy(servers["OAS_S3_ENDPOINT"])
    name, schema = unique("gcdown"), unique("gcdown")
    with connect() as c:
        c.execute("SELECT oas.oas_store_create(%s, %s)",
                  [name, json.dumps(s3_spec(servers, endpoint=f"127.0.0.1:{proxy.port}", location=f"pytest-down/{name}"))])
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, v jsonb)")
        c.execute("SELECT oas.oas_declare_column(%s, 'v', %s)", [f"{schema}.t", f"hash@{name}"])
        kept = c.execute(f"INSERT INTO {schema}.t VALUES (1, oas.oas_hash_put(%b, %s, %s)) RETURNING v",
                         [os.urandom(512), name, schema]).fetchone()[0]
        orphan = c.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [os.urandom(512), name, schema]).fetchone()[0]
        proxy.close()
        notices: list[str] = []
        c.add_notice_handler(lambda d: notices.append(f"{d.severity}: {d.message_primary}"))
        c.execute("SET oas.max_retries = 0")
        row = c.execute("SELECT trashed, purged, errors FROM oas.oas_gc(false, %s, '0', '0')", [name]).fetchone()
        print(f"collector while the store is down: trashed, purged = {row[:2]}, {len(row[2])} errors; {notices}")
        trashed, purged, errors = row
        assert (trashed, purged) == (0, 0) and errors, row
        assert any(n.startswith("WARNING") and name in n for n in notices), notices
        c.execute("SELECT oas.oas_store_alter(%s, %s)",
                  [name, json.dumps(s3_spec(servers, location=f"pytest-down/{name}"))])
        for ref in (kept, orphan):
            assert c.execute("SELECT oas.oas_check_reference(%s, false)", [json.dumps(ref)]).fetchone()[0] is None
        c.execute(f"DROP SCHEMA {schema} CASCADE")
