//! Arbitrary bytes as a DataJoint blob: `blob::unpack` either fails with `InvalidArgument` or
//! gives a value that packs again (compressed or not) and unpacks to the same value. The one
//! value that may not pack is an integer wider than blob.py's 65535-byte limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oas_core::blob::{pack_with, to_json, unpack};
use oas_core::OasError;

fuzz_target!(|data: &[u8]| {
    let value = match unpack(data) {
        Ok(value) => value,
        Err(OasError::InvalidArgument { .. }) => return,
        Err(other) => panic!("unpack failed with {other:?}"),
    };
    let _ = to_json(&value);
    for compress in [true, false] {
        let packed = match pack_with(&value, compress) {
            Ok(packed) => packed,
            Err(OasError::InvalidArgument { message, .. }) if message.contains("65535 bytes") => return,
            Err(other) => panic!("pack failed with {other:?}"),
        };
        let again = unpack(&packed).unwrap_or_else(|e| panic!("repacked blob unreadable: {e}"));
        // Debug text, so that NaN equals NaN.
        assert_eq!(format!("{again:?}"), format!("{value:?}"));
        assert_eq!(pack_with(&again, compress).unwrap(), packed);
    }
});
