"""The real DataJoint 2.3.5 client and pg_oas share one store: each reads what the other wrote,
and both produce the same reference JSON for the same bytes."""

from __future__ import annotations

import json
import os

import pytest

from conftest import s3_spec, unique

dj = pytest.importorskip("datajoint")
from datajoint import hash_registry  # noqa: E402


@pytest.fixture
def dj_config(servers, store_dir):
    cfg = dj.config
    saved = dict(cfg.stores)
    cfg.stores.clear()
    cfg.stores.update({
        "default": "file",
        "file": {"protocol": "file", "location": str(store_dir)},
        "s3": s3_spec(servers),
    })
    yield cfg
    cfg.stores.clear()
    cfg.stores.update(saved)


@pytest.mark.parametrize("store", ["file", "s3"])
def test_datajoint_reads_what_pg_oas_wrote(conn, dj_config, store):
    schema = unique("dj")
    data = os.urandom(123_457)
    ref = conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, store, schema], binary=True).fetchone()[0]
    assert hash_registry.get_hash(ref, config=dj_config) == data


@pytest.mark.parametrize("store", ["file", "s3"])
def test_pg_oas_reads_what_datajoint_wrote_and_agrees_on_the_reference(conn, dj_config, store):
    schema = unique("dj")
    data = os.urandom(98_765)
    dj_ref = hash_registry.put_hash(data, schema, store, config=dj_config)
    back = conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(dj_ref)], binary=True).fetchone()[0]
    assert back == data
    ours = conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, store, schema], binary=True).fetchone()[0]
    assert ours == dj_ref


def test_datajoint_default_store_reference_reads_from_our_default(conn, dj_config):
    schema = unique("dj")
    data = b"written by DataJoint to its default store"
    dj_ref = hash_registry.put_hash(data, schema, None, config=dj_config)
    assert dj_ref["store"] is None
    back = conn.execute("SELECT oas.oas_hash_get(%s)", [json.dumps(dj_ref)], binary=True).fetchone()[0]
    assert back == data


def test_subfolded_paths_agree(conn, dj_config, store_dir):
    name = unique("fold")
    spec = {"protocol": "file", "location": str(store_dir), "subfolding": [2, 3]}
    conn.execute("SELECT oas.oas_store_create(%s, %s)", [name, json.dumps(spec)])
    dj_config.stores[name] = spec
    schema = unique("dj")
    data = os.urandom(777)
    dj_ref = hash_registry.put_hash(data, schema, name, config=dj_config)
    ours = conn.execute("SELECT oas.oas_hash_put(%b, %s, %s)", [data, name, schema], binary=True).fetchone()[0]
    assert ours == dj_ref
