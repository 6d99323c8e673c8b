"""The object stores of the GC benchmark (bench_gc.py): a local folder laid out as DataJoint lays
it out, and an S3 bucket, each filled with hash-addressed objects and emptied again."""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import pwd
import random
import shutil
import subprocess
import time
from pathlib import Path

from common import log

CHUNK = 10_000  # objects per generation job / upload batch


def content_hash(data: bytes) -> str:
    """DataJoint's and pg_oas's content hash: MD5, base32, lowercase, no padding (26 characters)."""
    return base64.b32encode(hashlib.md5(data).digest()).decode().lower().rstrip("=")


def payloads(schema, start, end, seed, lo, hi):
    """Objects start..end-1 of a schema: (index, bytes), unique (the index is in the bytes)."""
    rng = random.Random(f"{seed}/{schema}/{start}")
    for i in range(start, end):
        head = f"gcbench/{schema}/{i}/".encode()
        n = max(rng.randint(lo, hi), len(head) + 8)
        yield i, head + rng.randbytes(n - len(head))


def write_local_chunk(job):
    """Worker: write objects start..end-1 as files owned by uid:gid; returns [(hash, size)]."""
    directory, schema, start, end, seed, lo, hi, uid, gid = job
    out = []
    for _, data in payloads(schema, start, end, seed, lo, hi):
        h = content_hash(data)
        fd = os.open(f"{directory}/{h}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o660)
        try:
            os.write(fd, data)
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
        out.append((h, len(data)))
    return start, out


# ---------------------------------------------------------------------------------- stores
class LocalStore:
    kind = "local"

    def __init__(self, spec):
        self.root = Path(spec["location"])
        pw = pwd.getpwnam("postgres")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    def hash_dir(self, schema):
        return self.root / "_hash" / schema

    def trash_dir(self, schema):
        return self.root / "_oas" / "trash" / "_hash" / schema

    def make_dirs(self, schema):
        # Owned by postgres and group-writable, like a store directory shared with DataJoint's client.
        for d in (self.root / "_hash", self.hash_dir(schema)):
            d.mkdir(exist_ok=True)
            os.chown(d, self.uid, self.gid)
            d.chmod(0o2775)

    def write(self, schema, n, seed, lo, hi, workers):
        jobs = [(str(self.hash_dir(schema)), schema, s, min(s + CHUNK, n), seed, lo, hi, self.uid, self.gid)
                for s in range(0, n, CHUNK)]
        objs = [None] * n
        ctx = multiprocessing.get_context("fork")
        done = 0
        with ctx.Pool(workers) as pool:
            for start, out in pool.imap_unordered(write_local_chunk, jobs):
                objs[start:start + len(out)] = out
                done += len(out)
                if done % (10 * CHUNK) == 0 or done == n:
                    log(f"    {done:,} / {n:,} objects written")
        return objs

    def names(self, schema, trash=False):
        d = self.trash_dir(schema) if trash else self.hash_dir(schema)
        try:
            return set(os.listdir(d))
        except FileNotFoundError:
            return set()

    def baselines(self, schema):
        d = str(self.hash_dir(schema))
        out = []
        for label, cmd in (("`find -type f` (names)", ["find", d, "-type", "f"]),
                           ("`find -printf '%s %T@'` (stat per file)", ["find", d, "-type", "f", "-printf", "%s %T@\n"])):
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, check=True)
            dt = time.perf_counter() - t0
            out.append((label, res.stdout.count(b"\n"), dt))
        t0 = time.perf_counter()
        n = 0
        for _root, _dirs, files in os.walk(d):
            n += len(files)
        out.append(("Python `os.walk` (names)", n, time.perf_counter() - t0))
        return out

    def untrash(self, schema):
        """Move what is left in trash back into place (when oas_gc_restore was stopped)."""
        src, dst = self.trash_dir(schema), self.hash_dir(schema)
        names = self.names(schema, trash=True)
        for name in names:
            os.rename(src / name, dst / name)
        return len(names)

    def remove(self, schema):
        for d in (self.hash_dir(schema), self.trash_dir(schema)):
            shutil.rmtree(d, ignore_errors=True)


class S3Store:
    kind = "s3"

    def __init__(self, spec, concurrency):
        self.spec = spec
        self.concurrency = concurrency
        self.base = f"{spec['bucket']}/{spec['location'].strip('/')}"

    def fs(self, fresh=False):
        import s3fs

        scheme = "https" if self.spec.get("secure") else "http"
        return s3fs.S3FileSystem(key=self.spec["access_key"], secret=self.spec["secret_key"],
                                 client_kwargs={"endpoint_url": f"{scheme}://{self.spec['endpoint']}",
                                                "region_name": self.spec.get("region", "us-east-1")},
                                 skip_instance_cache=fresh, use_listings_cache=not fresh)

    def hash_prefix(self, schema):
        return f"{self.base}/_hash/{schema}"

    def make_dirs(self, schema):
        pass

    def write(self, schema, n, seed, lo, hi, workers):
        fs = self.fs(fresh=True)
        objs = []
        for s in range(0, n, CHUNK):
            batch = {}
            for _, data in payloads(schema, s, min(s + CHUNK, n), seed, lo, hi):
                h = content_hash(data)
                batch[f"{self.hash_prefix(schema)}/{h}"] = data
                objs.append((h, len(data)))
            fs.pipe(batch, batch_size=self.concurrency)
            if (s + CHUNK) % (5 * CHUNK) == 0 or s + CHUNK >= n:
                log(f"    {min(s + CHUNK, n):,} / {n:,} objects uploaded")
        return objs

    def _find(self, prefix):
        """Keys under prefix/ (s3fs also returns an empty folder SeaweedFS keeps as the prefix itself)."""
        fs = self.fs(fresh=True)
        try:
            return [k for k in fs.find(prefix) if k.startswith(prefix + "/")]
        except FileNotFoundError:
            return []

    def names(self, schema, trash=False):
        prefix = f"{self.base}/_oas/trash/_hash/{schema}" if trash else self.hash_prefix(schema)
        return {p.rsplit("/", 1)[1] for p in self._find(prefix)}

    def baselines(self, schema):
        t0 = time.perf_counter()
        n = len(self._find(self.hash_prefix(schema)))
        return [("s3fs `find` (ListObjectsV2, 1,000 keys a page)", n, time.perf_counter() - t0)]

    def untrash(self, schema):
        """Move what is left in trash back into place (when oas_gc_restore was stopped)."""
        fs = self.fs(fresh=True)
        src = f"{self.base}/_oas/trash/_hash/{schema}"
        keys = self._find(src)
        for i in range(0, len(keys), 5_000):
            part = keys[i:i + 5_000]
            fs.copy(part, [self.hash_prefix(schema) + k[len(src):] for k in part], batch_size=self.concurrency)
            fs.rm(part)
        return len(keys)

    def remove(self, schema):
        fs = self.fs(fresh=True)
        for prefix in (self.hash_prefix(schema), f"{self.base}/_oas/trash/_hash/{schema}"):
            keys = self._find(prefix)
            for i in range(0, len(keys), 10_000):
                fs.rm(keys[i:i + 10_000])


# ---------------------------------------------------------------------- DataJoint (child)
