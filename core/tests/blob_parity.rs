//! oas_core::blob against blobs written by DataJoint itself (core/tests/data/blob/, made by
//! make_fixtures.py there): decode matches DataJoint's value, encode gives the same bytes,
//! and decode(encode(v)) == v.

use std::path::PathBuf;

use oas_core::blob::{from_json_str, pack, pack_with, to_json, unpack};
use serde_json::Value;

fn fixtures() -> Vec<(String, Vec<u8>, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/blob");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "blob") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let blob = std::fs::read(&path).unwrap();
            let desc = std::fs::read_to_string(path.with_extension("json")).unwrap();
            out.push((name, blob, serde_json::from_str(&desc).unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() > 100, "fixtures missing from {}", dir.display());
    out
}

#[test]
fn decode_matches_datajoint() {
    for (name, blob, desc) in fixtures() {
        let value = unpack(&blob).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            value.type_name(),
            desc["type"].as_str().unwrap(),
            "{name}: type"
        );
        assert_eq!(to_json(&value), desc["value"], "{name}: value");
    }
}

#[test]
fn encode_gives_datajoint_bytes() {
    let mut checked = 0;
    for (name, blob, desc) in fixtures() {
        if desc.get("repack") == Some(&Value::Bool(false)) {
            continue;
        }
        let value = unpack(&blob).unwrap();
        assert_eq!(pack(&value).unwrap(), blob, "{name}: bytes");
        checked += 1;
    }
    assert!(checked > 100);
}

#[test]
fn decode_of_encode_is_identity() {
    for (name, blob, _) in fixtures() {
        let value = unpack(&blob).unwrap();
        for compress in [true, false] {
            let again = unpack(&pack_with(&value, compress).unwrap()).unwrap();
            assert_eq!(
                pack_with(&again, compress).unwrap(),
                pack_with(&value, compress).unwrap(),
                "{name}"
            );
            // Debug text, so that NaN equals NaN.
            assert_eq!(format!("{again:?}"), format!("{value:?}"), "{name}");
        }
    }
}

#[test]
fn json_text_packs_as_datajoint_packs_json_loads() {
    let mut checked = 0;
    for (name, blob, desc) in fixtures() {
        if let Some(text) = desc.get("json_text").and_then(Value::as_str) {
            let value = from_json_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(pack(&value).unwrap(), blob, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} JSON fixtures");
}

#[test]
fn compression_follows_the_size_rule() {
    let fixtures = fixtures();
    let get = |n: &str| &fixtures.iter().find(|f| f.0 == n).unwrap().1;
    assert!(get("array_big_compressible").starts_with(b"ZL123\0"));
    assert!(get("list_big").starts_with(b"ZL123\0"));
    // Longer than 1000 bytes, but zlib does not make it shorter: kept raw.
    assert!(get("array_big_incompressible").starts_with(b"mYm\0"));
    assert!(get("array_1d").starts_with(b"mYm\0"));
    assert!(get("array_0d_float").starts_with(b"dj0\0"));
    assert!(get("cell").starts_with(b"dj0\0"));
}
