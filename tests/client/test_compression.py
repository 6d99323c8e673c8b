"""zstd-compressed stores (#14, "Compression"): a store marked with `oas_store_compression` keeps
the hash-addressed objects (`<hash@>`, `<blob@>`, `<attach@>`) written into it zstd-compressed at
`{hash path}.zst`, the reference adding `"compression": "zstd"` while `hash` and `size` stay the
uncompressed bytes'; so are `<object@>` files, at `{path}.zst` with `size` and `ext` the
uncompressed file's. Reads decompress (bounded by the reference's size); ranged reads and presigned
URLs of a compressed object are refused (0A000); `<npy@>` values, `<object@>` folders and uploads in
parts are never compressed. Also: DataJoint's own blob compression rule (over 1000 bytes and
smaller), byte for byte."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

import numpy as np
import psycopg
import pytest

from conftest import RUN_DIR, chown_postgres, connect, drop_test_store, s3_spec, sql_error, unique

# Compressible, like a recording: a slow signal with a little noise, as int16.
rng = np.random.default_rng(7)
TRACE = (1000 * np.sin(np.arange(200_000) / 50) + rng.normal(0, 3, 200_000)).astype(np.int16).tobytes()


class Store:
    """A store, a schema with a table of hash-addressed columns, and access to the raw objects."""

    def __init__(self, conn, name, schema, kind, loc=None, prefix=None, s3=None):
        self.conn, self.name, self.schema, self.kind = conn, name, schema, kind
        self.loc, self.prefix, self.s3 = loc, prefix, s3

    def compress(self, method):
        return self.conn.execute("SELECT oas.oas_store_compression(%s, %s)", [self.name, method]).fetchone()[0]

    def put(self, data, fn="oas_hash_put"):
        return self.conn.execute(f"SELECT oas.{fn}(%s, %s, %s)", [data, self.name, self.schema]).fetchone()[0]

    def raw(self, path):
        if self.kind == "file":
            return (self.loc / path).read_bytes()
        self.s3.invalidate_cache()
        return self.s3.cat(f"{self.prefix}/{path}")

    def exists(self, path):
        if self.kind == "file":
            return (self.loc / path).is_file()
        self.s3.invalidate_cache()
        return self.s3.exists(f"{self.prefix}/{path}")

    def overwrite(self, path, data):
        if self.kind == "file":
            (self.loc / path).write_bytes(data)
        else:
            self.s3.pipe(f"{self.prefix}/{path}", data)


@pytest.fixture(params=["file", "s3"])
def zs(request, db, servers, s3fs_client):
    kind = request.param
    name, schema = unique("zs"), unique("zsch")
    loc = prefix = None
    if kind == "file":
        loc = RUN_DIR / f"{name}-store"
        loc.mkdir()
        chown_postgres(loc)
        spec = {"protocol": "file", "location": str(loc)}
    else:
        spec = s3_spec(servers, location=f"pytest-zstd/{name}")
        prefix = f"{servers['OAS_S3_BUCKET']}/pytest-zstd/{name}"
    with connect() as conn:
        conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.t (k int PRIMARY KEY, h jsonb, b jsonb, a jsonb, n jsonb, o jsonb)")
        for col, codec in (("h", "hash"), ("b", "blob"), ("a", "attach"), ("n", "npy"), ("o", "object")):
            conn.execute("SELECT oas.oas_declare_column(%s, %s, %s)", [f"{schema}.t", col, f"{codec}@{name}"])
        try:
            yield Store(conn, name, schema, kind, loc, prefix, s3fs_client)
        finally:
            drop_test_store(conn, name, schema, loc, s3fs_client, prefix)


def test_the_method_is_checked_shown_and_kept(zs):
    assert zs.conn.execute("SELECT compression FROM oas.stores WHERE name = %s", [zs.name]).fetchone()[0] == "none"
    assert zs.compress("zstd") == "zstd:3"
    assert zs.compress("ZSTD:9") == "zstd:9"
    assert zs.conn.execute("SELECT compression FROM oas.stores WHERE name = %s", [zs.name]).fetchone()[0] == "zstd:9"
    for bad in ("gzip", "zstd:0", "zstd:23"):
        e = sql_error(zs.conn, "SELECT oas.oas_store_compression(%s, %s)", [zs.name, bad])
        assert e.sqlstate == "22023" and "zstd:N" in (e.diag.message_hint or ""), e
    assert zs.compress("none") == "none"
    e = sql_error(zs.conn, "SELECT oas.oas_store_compression('no such store', 'zstd')")
    assert e.sqlstate == "42704", e


def test_every_hash_shape_round_trips_with_the_uncompressed_hash_and_size(zs):
    c = zs.conn
    attach = c.execute("SELECT oas.oas_attach_pack('trace.bin', %s)", [TRACE]).fetchone()[0]
    plain = zs.put(TRACE)
    zs.compress("zstd")
    ref = zs.put(TRACE)
    assert ref["compression"] == "zstd" and "compression" not in plain
    assert ref["path"] == plain["path"] + ".zst"
    assert (ref["hash"], ref["size"]) == (plain["hash"], plain["size"])
    assert ref["hash"] == c.execute("SELECT oas.oas_content_hash(%s)", [TRACE]).fetchone()[0]
    assert ref["size"] == len(TRACE)
    stored = zs.raw(ref["path"])
    assert len(stored) < len(TRACE) * 0.7, (len(stored), len(TRACE))
    assert stored[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert zs.raw(plain["path"]) == TRACE
    for r in (ref, plain):
        assert bytes(c.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(r)]).fetchone()[0]) == TRACE
    got = c.execute("SELECT data FROM oas.oas_hash_get_many(ARRAY[%s::jsonb, %s::jsonb]) ORDER BY ordinality",
                    [json.dumps(ref), json.dumps(plain)]).fetchall()
    assert [bytes(g[0]) for g in got] == [TRACE, TRACE]
    # Blobs and attachments, by value and pending in their columns (the <blob@> check reads the
    # decompressed head of each new object).
    big = list(range(3000))
    bref = c.execute("SELECT oas.oas_blob_put(%s::text, %s, %s)", [json.dumps(big), zs.name, zs.schema]).fetchone()[0]
    assert bref["compression"] == "zstd"
    assert c.execute("SELECT oas.oas_blob_get(%s)", [json.dumps(bref)]).fetchone()[0] == big
    aref = c.execute("SELECT oas.oas_attach_put('trace.bin', %s, %s, %s)", [TRACE, zs.name, zs.schema]).fetchone()[0]
    assert aref["compression"] == "zstd" and aref["size"] == len(attach)
    assert c.execute("SELECT * FROM oas.oas_attach_get(%s)", [json.dumps(aref)]).fetchone()[1] == TRACE
    t = f"{zs.schema}.t"
    c.execute(f"INSERT INTO {t} VALUES (1, oas.oas_hash(%s), oas.oas_blob(%s::float8[]), oas.oas_attach('x.bin', %s),"
              " oas.oas_npy(%s::float8[]), oas.oas_object(%s, '.bin'))",
              [TRACE, [1.5] * 2000, TRACE, [2.5] * 2000, TRACE])
    h, b, a, n, o = c.execute(f"SELECT h, b, a, n, o FROM {t} WHERE k = 1").fetchone()
    for r in (h, b, a):
        assert r["compression"] == "zstd" and r["path"].endswith(r["hash"] + ".zst"), r
    assert bytes(c.execute(f"SELECT oas.oas_hash_get(h) FROM {t}").fetchone()[0]) == TRACE
    assert c.execute(f"SELECT oas.oas_blob_get(b) FROM {t}").fetchone()[0] == [1.5] * 2000
    # <npy@> is never compressed; an <object@> file is, and reads back whole.
    assert "compression" not in n and zs.raw(n["path"])[:6] == b"\x93NUMPY"
    assert o["compression"] == "zstd" and o["path"].endswith(".bin.zst") and o["ext"] == ".bin"
    assert o["size"] == len(TRACE) and zs.raw(o["path"])[:4] == b"\x28\xb5\x2f\xfd"
    assert bytes(c.execute(f"SELECT oas.oas_read(o, 0, %s) FROM {t}", [len(TRACE)]).fetchone()[0]) == TRACE
    assert c.execute(f"SELECT oas.oas_npy_shape(n) FROM {t}").fetchone()[0] == [2000]
    # A value that is not a blob is still refused by a <blob@> column.
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        c.execute(f"INSERT INTO {t} (k, b) VALUES (2, oas.oas_hash_put(%s, %s, %s))", [TRACE, zs.name, zs.schema])
    assert c.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [zs.name]).fetchone()[0] == 0


def test_turning_compression_off_and_on_deduplicates_in_each_form(zs):
    data = os.urandom(1000) * 50
    raw = zs.put(data)
    zs.compress("zstd:1")
    z = zs.put(data)
    assert z["path"] == raw["path"] + ".zst" and zs.exists(raw["path"]) and zs.exists(z["path"])
    # A raw copy at the hash path is never taken for the compressed one, nor the other way round.
    zs.compress("none")
    assert zs.put(data) == raw
    zs.compress("zstd:1")
    assert zs.put(data) == z
    # Another level writes the same reference; the object is replaced by the new level's frame.
    zs.compress("zstd:19")
    assert zs.put(data) == z
    for r in (raw, z):
        assert bytes(zs.conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(r)]).fetchone()[0]) == data


def test_ranged_reads_and_presigned_urls_of_compressed_objects_are_refused(zs):
    zs.compress("zstd")
    ref = json.dumps(zs.put(TRACE))
    c = zs.conn
    for query in ("SELECT oas.oas_read(%s, 10, 100)", "SELECT oas.oas_read(%s, 0, 100)",
                  "SELECT oas.oas_presign_url(%s)"):
        e = sql_error(c, query, [ref])
        assert e.sqlstate == "0A000" and "zstd-compressed" in str(e), e
        assert "oas_hash_get" in (e.diag.message_hint or "")
    # From offset 0 for at least its size: the whole object, decompressed.
    assert bytes(c.execute("SELECT oas.oas_read(%s, 0, %s)", [ref, len(TRACE)]).fetchone()[0]) == TRACE
    assert c.execute("SELECT oas.oas_object_size(%s)", [ref]).fetchone()[0] == len(TRACE)


def test_a_damaged_compressed_object_is_an_error_not_garbage(zs):
    zs.compress("zstd")
    ref = zs.put(TRACE)
    stored = bytearray(zs.raw(ref["path"]))
    stored[len(stored) // 2] ^= 0x20
    zs.overwrite(ref["path"], bytes(stored))
    for verify in ("on", "off"):
        zs.conn.execute(f"SET oas.verify_reads = {verify}")
        e = sql_error(zs.conn, "SELECT oas.oas_hash_get(%s)", [json.dumps(ref)])
        assert e.sqlstate == "XX001" and "compressed object" in str(e), e
    zs.conn.execute(f"INSERT INTO {zs.schema}.t (k, h) VALUES (1, %s)", [json.dumps(ref)])
    problems = zs.conn.execute("SELECT problem FROM oas.oas_verify(only_store => %s)", [zs.name]).fetchall()
    assert len(problems) == 1, problems
    # Raw bytes where the compressed object should be: not a frame, never returned as content.
    zs.overwrite(ref["path"], TRACE[: len(stored) + 7])  # another size: the next put repairs it
    e = sql_error(zs.conn, "SELECT oas.oas_hash_get(%s)", [json.dumps(ref)])
    assert e.sqlstate == "XX001", e
    # The next put of the same content repairs it.
    assert zs.put(TRACE) == ref
    assert bytes(zs.conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)]).fetchone()[0]) == TRACE


def test_a_decompression_bomb_stops_at_the_declared_size(zs):
    zs.compress("zstd:19")
    zeros = bytes(50 << 20)  # 50 MB of zeros: a few KB compressed
    ref = zs.put(zeros)
    assert len(zs.raw(ref["path"])) < 10_000
    forged = dict(ref, size=5000)
    e = sql_error(zs.conn, "SELECT oas.oas_hash_get(%s)", [json.dumps(forged)])
    assert e.sqlstate == "XX001" and "more than the 5000 bytes" in str(e), e
    tiny = dict(ref, size=10)  # smaller than the object could be: refused before reading
    e = sql_error(zs.conn, "SELECT oas.oas_hash_get(%s)", [json.dumps(tiny)])
    assert e.sqlstate == "XX001" and "more than zstd makes" in str(e), e


def test_a_read_only_compressed_store_refuses_writes_and_reads(zs):
    zs.compress("zstd")
    ref = zs.put(TRACE)
    zs.conn.execute("SELECT oas.oas_store_read_only(%s, true)", [zs.name])
    e = sql_error(zs.conn, "SELECT oas.oas_hash_put(%s, %s, %s)", [b"new" * 1000, zs.name, zs.schema])
    assert e.sqlstate == "25006", e
    assert bytes(zs.conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)]).fetchone()[0]) == TRACE
    # Its compression can still be changed (no object is written by that).
    assert zs.compress("none") == "none"


def collect_one(zs, keep, drop):
    """Two collector runs trash `drop` (no longer referenced) and keep `keep`; oas_verify is clean."""
    for _ in range(2):
        report = zs.conn.execute("SELECT trashed, skipped FROM oas.oas_gc(false, store => %s, grace => '0')",
                                 [zs.name]).fetchone()
    assert report == (1, 0), report
    assert zs.exists(keep["path"]) and not zs.exists(drop["path"])
    assert zs.conn.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s)", [zs.name]).fetchone()[0] == 0


def test_the_collector_keeps_and_collects_compressed_objects(zs):
    zs.compress("zstd")
    t = f"{zs.schema}.t"
    zs.conn.execute(f"INSERT INTO {t} (k, h) VALUES (1, oas.oas_hash(%s)), (2, oas.oas_hash(%s))",
                    [TRACE, TRACE[::-1]])
    keep, drop = (r[0] for r in zs.conn.execute(f"SELECT h FROM {t} ORDER BY k").fetchall())
    zs.conn.execute(f"DELETE FROM {t} WHERE k = 2")
    collect_one(zs, keep, drop)
    # Put back from trash when referenced again.
    zs.conn.execute(f"INSERT INTO {t} (k, h) VALUES (3, %s)", [json.dumps(drop)])
    assert bytes(zs.conn.execute(f"SELECT oas.oas_hash_get(h) FROM {t} WHERE k = 3").fetchone()[0]) == TRACE[::-1]


def test_values_in_parts_to_a_cloud_store_are_compressed(zs):
    if zs.kind != "s3":
        pytest.skip("only cloud stores upload a single value in parts")
    zs.compress("zstd:1")
    zs.conn.execute("SET oas.upload_part_size = '5MB'")
    data = np.tile(np.frombuffer(TRACE, dtype=np.uint8), 60).tobytes()  # 24 MB
    ref = zs.put(data)
    assert ref["compression"] == "zstd" and ref["size"] == len(data)
    assert len(zs.raw(ref["path"])) < len(data) * 0.9
    assert bytes(zs.conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(ref)]).fetchone()[0]) == data
    assert zs.put(data) == ref


def test_uploads_in_parts_stay_uncompressed(zs):
    """`oas_upload_*` writes <npy@> and <object@> values part by part: never compressed (no marker)."""
    zs.compress("zstd")
    c, t = zs.conn, f"{zs.schema}.t"
    c.execute("BEGIN")
    up = c.execute("SELECT oas.oas_upload_begin(%s, 'o', '{\"k\": 7}', '.bin')", [t]).fetchone()[0]
    c.execute("SELECT oas.oas_upload_part(%s, %s)", [up, TRACE])
    ref = c.execute("SELECT oas.oas_upload_finish(%s)", [up]).fetchone()[0]
    c.execute(f"INSERT INTO {t} (k, o) VALUES (7, %s)", [json.dumps(ref)])
    c.execute("COMMIT")
    assert "compression" not in ref and ref["size"] == len(TRACE)
    assert zs.raw(ref["path"]) == TRACE
    assert bytes(c.execute(f"SELECT oas.oas_read(o, 10, 20) FROM {t} WHERE k = 7").fetchone()[0]) == TRACE[10:30]


def test_a_datajoint_client_fails_loudly_on_a_compressed_reference(zs, dj_config, servers):
    """DataJoint 2.3.5 reads the path a reference names and checks the MD5 of what it read against
    the reference's hash: the `.zst` object's bytes fail that check, so every hash-addressed shape
    (`<hash@>`, `<blob@>`, `<attach@>`) raises "Hash mismatch" instead of returning bytes."""
    dj = pytest.importorskip("datajoint")
    from datajoint.hash_registry import get_hash

    spec = {"protocol": "file", "location": str(zs.loc)} if zs.kind == "file" else \
        s3_spec(servers, location=zs.prefix.split("/", 1)[1])
    dj_config.stores[zs.name] = spec
    plain = zs.put(TRACE)
    assert get_hash(plain, config=dj_config) == TRACE  # the same client reads an uncompressed one
    zs.compress("zstd")
    for ref in (zs.put(TRACE), zs.conn.execute("SELECT oas.oas_blob_put(%s::text, %s, %s)",
                                               [json.dumps(list(range(3000))), zs.name, zs.schema]).fetchone()[0]):
        with pytest.raises(dj.DataJointError, match="Hash mismatch"):
            get_hash(ref, config=dj_config)

def object_refs(zs, k, data, ext="'.bin'"):
    t = f"{zs.schema}.t"
    zs.conn.execute(f"INSERT INTO {t} (k, o) VALUES (%s, oas.oas_object(%s, {ext}))", [k, data])
    return zs.conn.execute(f"SELECT o FROM {t} WHERE k = %s", [k]).fetchone()[0]


def test_object_files_are_compressed_with_the_uncompressed_shape(zs):
    c, t = zs.conn, f"{zs.schema}.t"
    plain = object_refs(zs, 1, TRACE)
    zs.compress("zstd")
    ref = object_refs(zs, 2, TRACE)
    # DataJoint's shape (size and ext of the file as given), plus the marker; the path gets .zst.
    same = ("store", "size", "ext", "is_dir", "item_count")
    assert {k: ref[k] for k in same} == {k: plain[k] for k in same}
    assert set(ref) - set(plain) == {"compression"} and ref["compression"] == "zstd"
    assert plain["path"].endswith(".bin") and ref["path"].endswith(".bin.zst")
    assert ref["path"].rsplit("/", 1)[0] == plain["path"].rsplit("/", 1)[0].replace("k=1", "k=2")
    stored = zs.raw(ref["path"])
    assert len(stored) < len(TRACE) * 0.7 and stored[:4] == b"\x28\xb5\x2f\xfd", len(stored)
    assert not zs.exists(ref["path"][: -len(".zst")])
    # Read whole (from offset 0 for at least its size), its size the uncompressed one.
    for length in (len(TRACE), len(TRACE) + 100):
        got = c.execute(f"SELECT oas.oas_read(o, 0, %s) FROM {t} WHERE k = 2", [length]).fetchone()[0]
        assert bytes(got) == TRACE
    assert c.execute(f"SELECT oas.oas_object_size(o) FROM {t} WHERE k = 2").fetchone()[0] == len(TRACE)
    # Ranged reads and presigned URLs are refused with a hint; a folder path below a file too.
    for query in ("SELECT oas.oas_read(o, 10, 100) FROM {t} WHERE k = 2",
                  "SELECT oas.oas_read(o, 0, 100) FROM {t} WHERE k = 2",
                  "SELECT oas.oas_presign_url(o) FROM {t} WHERE k = 2"):
        e = sql_error(c, query.format(t=t))
        assert e.sqlstate == "0A000" and "zstd-compressed" in str(e), e
        assert "oas_read from offset 0" in (e.diag.message_hint or ""), e
    e = sql_error(c, f"SELECT oas.oas_object_file_read(o, 'a') FROM {t} WHERE k = 2")
    assert e.sqlstate == "22023" and "not a folder" in str(e), e
    # An empty file and one with no extension.
    empty = object_refs(zs, 3, b"", "NULL")
    assert empty["compression"] == "zstd" and empty["ext"] is None and empty["size"] == 0
    assert bytes(c.execute(f"SELECT oas.oas_read(o, 0, 0) FROM {t} WHERE k = 3").fetchone()[0]) == b""
    # A marker that disagrees with the path is refused.
    for forged in (dict(ref, path=plain["path"]), dict(plain, compression="zstd")):
        e = sql_error(c, "SELECT oas.oas_read(%s, 0, 10)", [json.dumps(forged)])
        assert e.sqlstate == "22023", e
    # Folders stay uncompressed in a compressed store, their files read by name.
    c.execute(f"INSERT INTO {t} (k, o) VALUES (4, oas.oas_object_folder(ARRAY['a.bin', 's/b.bin'], ARRAY[%s, %s]))",
              [TRACE, b"xyz"])
    d = c.execute(f"SELECT o FROM {t} WHERE k = 4").fetchone()[0]
    assert "compression" not in d and d["is_dir"] and zs.raw(d["path"] + "/a.bin") == TRACE
    assert bytes(c.execute(f"SELECT oas.oas_object_file_read(o, 's/b.bin', 1) FROM {t} WHERE k = 4").fetchone()[0]) == b"yz"
    for check in ("false", "true"):
        n = c.execute(f"SELECT count(*) FROM oas.oas_verify(only_store => %s, check_content => {check})",
                      [zs.name]).fetchone()[0]
        assert n == 0, check
    # The same after compression is turned off: the reference says what the object is.
    zs.compress("none")
    assert bytes(c.execute(f"SELECT oas.oas_read(o, 0, %s) FROM {t} WHERE k = 2", [len(TRACE)]).fetchone()[0]) == TRACE


def test_a_damaged_compressed_object_file_is_an_error(zs):
    zs.compress("zstd")
    ref = object_refs(zs, 1, TRACE)
    stored = bytearray(zs.raw(ref["path"]))
    stored[len(stored) // 2] ^= 0x20
    zs.overwrite(ref["path"], bytes(stored))
    for verify in ("on", "off"):
        zs.conn.execute(f"SET oas.verify_reads = {verify}")
        e = sql_error(zs.conn, "SELECT oas.oas_read(%s, 0, %s)", [json.dumps(ref), len(TRACE)])
        assert e.sqlstate == "XX001" and "compressed object" in str(e), e
    problems = zs.conn.execute("SELECT problem FROM oas.oas_verify(only_store => %s, check_content => true)",
                               [zs.name]).fetchall()
    assert len(problems) == 1, problems
    # A frame of another content size: the header says so, without reading it all.
    zs.overwrite(ref["path"], bytes(zs.raw(object_refs(zs, 2, TRACE[:1000])["path"])))
    problems = zs.conn.execute("SELECT problem FROM oas.oas_verify(only_store => %s, check_content => false)",
                               [zs.name]).fetchall()
    assert len(problems) == 1 and "frame records 1000 bytes" in problems[0][0], problems
    # Raw bytes where the frame should be: never returned as content.
    zs.overwrite(ref["path"], TRACE[:5000])
    e = sql_error(zs.conn, "SELECT oas.oas_read(%s, 0, %s)", [json.dumps(ref), len(TRACE)])
    assert e.sqlstate == "XX001", e


def test_the_collector_keeps_and_collects_compressed_object_files(zs):
    zs.compress("zstd")
    keep, drop = object_refs(zs, 1, TRACE), object_refs(zs, 2, TRACE[::-1])
    zs.conn.execute(f"DELETE FROM {zs.schema}.t WHERE k = 2")
    collect_one(zs, keep, drop)
    assert bytes(zs.conn.execute("SELECT oas.oas_read(%s, 0, %s)", [json.dumps(keep), len(TRACE)]).fetchone()[0]) == TRACE


def test_a_compressed_object_file_is_copied_to_another_store_as_its_frame(zs):
    c, t = zs.conn, f"{zs.schema}.t"
    zs.compress("zstd")
    ref = object_refs(zs, 1, TRACE)
    dst = unique("zsdst")
    loc = RUN_DIR / f"{dst}-store"
    loc.mkdir()
    chown_postgres(loc)
    c.execute("SELECT oas.oas_store_create(%s, %s)", [dst, json.dumps({"protocol": "file", "location": str(loc)})])
    try:
        c.execute(f"UPDATE {t} SET o = oas._copy_to_store(o, %s) WHERE k = 1", [dst])
        moved = c.execute(f"SELECT o FROM {t} WHERE k = 1").fetchone()[0]
        assert moved == dict(ref, store=dst)
        assert (loc / ref["path"]).read_bytes() == zs.raw(ref["path"])
        got = c.execute(f"SELECT oas.oas_read(o, 0, %s) FROM {t} WHERE k = 1", [len(TRACE)]).fetchone()[0]
        assert bytes(got) == TRACE
        assert c.execute("SELECT count(*) FROM oas.oas_verify(only_store => %s, check_content => true)",
                         [dst]).fetchone()[0] == 0
    finally:
        c.execute(f"DELETE FROM {t}")
        with contextlib.suppress(psycopg.Error):
            c.execute("SELECT oas.oas_store_drop(%s)", [dst])
        shutil.rmtree(loc, ignore_errors=True)


def test_a_datajoint_client_reads_a_compressed_object_file_as_its_frame(zs, servers):
    """DataJoint 2.3.5's `<object@>` handle (`ObjectRef`) reads the path the reference names and
    checks nothing on `read()`: it returns the zstd frame, not the file (documented in README).
    Its `verify()` fails loudly: the stored size is not the size the reference records."""
    pytest.importorskip("datajoint")
    from datajoint.errors import DataJointError
    from datajoint.objectref import ObjectRef
    from datajoint.storage import StorageBackend

    spec = {"protocol": "file", "location": str(zs.loc)} if zs.kind == "file" else \
        s3_spec(servers, location=zs.prefix.split("/", 1)[1])
    plain = ObjectRef.from_json(object_refs(zs, 1, TRACE), backend=StorageBackend(spec))
    assert plain.read() == TRACE and plain.verify()
    zs.compress("zstd")
    ref = object_refs(zs, 2, TRACE)
    handle = ObjectRef.from_json(ref, backend=StorageBackend(spec))
    frame = handle.read()
    assert frame == zs.raw(ref["path"]) and frame[:4] == b"\x28\xb5\x2f\xfd" and frame != TRACE
    with pytest.raises(DataJointError, match="Size mismatch"):
        handle.verify()


@pytest.mark.parametrize("n", [995, 1000, 1001, 1010, 5000])
def test_blob_pack_follows_datajoints_compression_rule(conn, n):
    """DataJoint compresses a blob over 1000 bytes when zlib makes it smaller (`ZL123\\0`)."""
    djblob = pytest.importorskip("datajoint.blob")
    for value in ("a" * n, os.urandom(n).hex()[:n]):
        ours = bytes(conn.execute("SELECT oas.oas_blob_pack(%s::text)", [json.dumps(value)]).fetchone()[0])
        assert ours == djblob.pack(value), (n, ours[:8])
