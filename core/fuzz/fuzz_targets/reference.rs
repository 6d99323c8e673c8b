//! Arbitrary bytes as the JSON a row holds for an object: `HashRef::from_json` and
//! `ObjectRef::from_json` either fail with `InvalidArgument` or give a reference whose path is
//! canonical (relative, no empty, `.` or `..` segment, no backslash, no control character), whose
//! hash is a content hash, and that survives a round trip: written back as JSON, it parses to the
//! same value. A hash reference is also an object reference with the same path, store, size and
//! hash, and its path's last segment is its hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oas_core::codec::ObjectRef;
use oas_core::reference::HashRef;
use oas_core::OasError;
use serde_json::{json, Value};

/// What `validate_relative_path` promises, written out independently of it.
fn assert_canonical(path: &str) {
    assert!(!path.is_empty(), "empty path accepted");
    assert!(!path.starts_with('/'), "absolute path {path:?} accepted");
    assert!(!path.contains('\\'), "backslash in {path:?} accepted");
    assert!(
        !path.chars().any(char::is_control),
        "control character in {path:?} accepted"
    );
    for seg in path.split('/') {
        assert!(
            !seg.is_empty() && seg != "." && seg != "..",
            "segment {seg:?} of {path:?} accepted"
        );
    }
}

/// 26 characters of lowercase RFC 4648 base32, written out independently of `is_content_hash`.
fn assert_content_hash(hash: &str) {
    assert!(
        hash.len() == 26
            && hash
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{hash:?} accepted as a content hash"
    );
}

fn assert_invalid_argument(e: &OasError) {
    assert!(
        matches!(e, OasError::InvalidArgument { .. }),
        "unexpected error kind {e:?}"
    );
}

/// An object reference written back as JSON, the fields `ObjectRef` reads.
fn object_json(r: &ObjectRef) -> Value {
    json!({"path": r.path, "store": r.store, "size": r.size, "hash": r.hash, "is_dir": r.is_dir})
}

fn check(v: &Value) {
    let object = ObjectRef::from_json(v);
    match &object {
        Ok(r) => {
            assert_canonical(&r.path);
            if let Some(h) = &r.hash {
                assert_content_hash(h);
            }
            assert_ne!(r.store.as_deref(), Some(""), "\"\" is the default store");
            let back = ObjectRef::from_json(&object_json(r))
                .unwrap_or_else(|e| panic!("{r:?} written back does not parse: {e}"));
            assert_eq!(&back, r);
        }
        Err(e) => assert_invalid_argument(e),
    }

    match HashRef::from_json(v) {
        Ok(r) => {
            assert_canonical(&r.path);
            assert_content_hash(&r.hash);
            assert_eq!(
                r.path.rsplit('/').next(),
                Some(r.hash.as_str()),
                "the path's last segment is not the hash"
            );
            let back = HashRef::from_json(&r.to_json())
                .unwrap_or_else(|e| panic!("{r:?} written back does not parse: {e}"));
            assert_eq!(back, r);
            assert_eq!(back.store_name(), r.store_name());
            if let Some(s) = r.store_name() {
                assert!(!s.is_empty());
            }
            // Every hash reference is an object reference, naming the same thing.
            let o = object
                .as_ref()
                .unwrap_or_else(|e| panic!("a hash reference is no object reference: {e}"));
            assert_eq!(
                (
                    o.path.as_str(),
                    o.store.as_deref(),
                    o.size,
                    o.hash.as_deref()
                ),
                (
                    r.path.as_str(),
                    r.store_name(),
                    Some(r.size),
                    Some(r.hash.as_str())
                )
            );
        }
        Err(e) => assert_invalid_argument(&e),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check(&v);
    // Nested values too, so that one input can carry several candidate references.
    match &v {
        Value::Array(items) => items.iter().for_each(check),
        Value::Object(map) => map.values().filter(|x| x.is_object()).for_each(check),
        _ => {}
    }
});
