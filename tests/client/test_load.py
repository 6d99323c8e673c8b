"""A short run of the load (`make load`, bench/load.py): several clients inserting, reading,
slicing, updating, deleting and rolling back on SeaweedFS while the collector loops with grace 0,
then the load's integrity check. The full run (32 clients, a minute) is `make load`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from conftest import PORT, ROOT, connect, new_database, s3_spec, unique

sys.path.insert(0, str(ROOT / "bench"))
import load  # noqa: E402
from common import store_specs  # noqa: E402


@pytest.fixture
def load_db(servers, s3fs_client):
    """A database of its own with store `s3` at a new location (the collector claims a location
    per database), dropped with the location afterwards."""
    name, location = unique("oas_load"), unique("load")
    new_database(name)
    with connect(name) as c:
        c.execute("SELECT oas.oas_store_create('s3', %s, true)", [json.dumps(s3_spec(servers, location=location))])
    yield name, f"{servers['OAS_S3_BUCKET']}/{location}"
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if s3fs_client.exists(f"{servers['OAS_S3_BUCKET']}/{location}"):
        s3fs_client.rm(f"{servers['OAS_S3_BUCKET']}/{location}", recursive=True)


def test_short_load_leaves_rows_ledger_and_store_in_agreement(load_db, s3fs_client, servers):
    name, where = load_db
    dsn = f"host=127.0.0.1 port={PORT} user=postgres dbname={name}"
    run = subprocess.run([sys.executable, str(ROOT / "bench/load.py"), "--dsn", dsn, "--clients", "8",
                          "--seconds", "8", "--targets", "oas"], capture_output=True, text=True, timeout=600)
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "**integrity: clean**" in run.stdout
    for op in ("insert", "read", "slice", "update", "delete", "rollback", "collect"):
        assert f"| pg_oas → S3 | {op} |" in run.stdout, f"no {op} ran"

    # The check is not blind: an object nothing references, where the collector never looks,
    # is reported (and the run would exit non-zero).
    s3fs_client.pipe(f"{where}/not-ours/stray.bin", b"stray")
    with connect(name) as c:
        spec = store_specs(c)["s3"]
    problems, _ = load.check_integrity(argparse.Namespace(dsn=dsn), spec)
    assert any("1 unreferenced" in p for p in problems), problems
