//! Errors on bad input and edge cases of the blob codec. Parity with DataJoint is proven by
//! core/tests/blob_parity.rs.

use ndarray::{ArrayD, IxDyn};
use num_bigint::BigInt;

use super::*;
use crate::OasError;

fn assert_invalid(bytes: &[u8], needle: &str) {
    match unpack(bytes) {
        Err(OasError::InvalidArgument { message, .. }) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected InvalidArgument containing {needle:?}, got {other:?}"),
    }
}

fn fixtures() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/blob");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "blob"))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

#[test]
fn every_truncation_of_every_fixture_is_an_error() {
    for blob in fixtures() {
        for n in 0..blob.len() {
            assert!(
                matches!(unpack(&blob[..n]), Err(OasError::InvalidArgument { .. })),
                "prefix {n} of {blob:?}"
            );
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    for blob in fixtures().into_iter().filter(|b| b.len() < 400) {
        for i in 0..blob.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = blob.clone();
                bad[i] ^= flip;
                let _ = unpack(&bad);
            }
        }
    }
}

#[test]
fn unknown_headers_and_codes() {
    assert_invalid(b"", "NUL");
    assert_invalid(b"xyz\0\xff", "unknown protocol");
    assert_invalid(b"mYm\0Z", "unknown data structure code 0x5a");
    assert_invalid(b"dj0\0P", "sparse");
    assert_invalid(b"dj0\0\xff\xff", "length check failed");
    assert_invalid(
        b"dj0\0A\0\0\0\0\0\0\0\0\x11\0\0\0\0\0\0\0",
        "unknown array type id 17",
    );
}

#[test]
fn absurd_lengths_are_checked_before_allocating() {
    let mut list = b"dj0\0\x02".to_vec();
    list.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_invalid(&list, "truncated");
    let mut array = b"mYm\0A".to_vec();
    array.extend_from_slice(&2u64.to_le_bytes());
    array.extend_from_slice(&(1u64 << 30).to_le_bytes());
    array.extend_from_slice(&(1u64 << 30).to_le_bytes());
    array.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
    assert_invalid(&array, "truncated");
    let mut dims = b"mYm\0A".to_vec();
    dims.extend_from_slice(&(1u64 << 61).to_le_bytes());
    assert_invalid(&dims, "dimensions");
    let mut overflow = b"mYm\0C".to_vec();
    overflow.extend_from_slice(&2u64.to_le_bytes());
    overflow.extend_from_slice(&u64::MAX.to_le_bytes());
    overflow.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_invalid(&overflow, "overflows");
}

#[test]
fn compression_header_is_checked() {
    let raw = pack_with(&BlobValue::Str("a".repeat(2000)), false).unwrap();
    let packed = pack(&BlobValue::Str("a".repeat(2000))).unwrap();
    assert!(packed.len() < raw.len() && packed.starts_with(COMPRESSION_PREFIX));
    let mut lying = packed.clone();
    lying[6..14].copy_from_slice(&(u64::MAX).to_le_bytes());
    assert_invalid(&lying, "size mismatch");
    let mut short = packed.clone();
    short[6..14].copy_from_slice(&10u64.to_le_bytes());
    assert_invalid(&short, "size mismatch");
    assert_invalid(b"ZL123\0\x01", "compression header");
    assert_invalid(b"ZL123\0\x05\0\0\0\0\0\0\0garbage", "zlib");
}

#[test]
fn bad_dates_and_times() {
    let datetime = |date: i32, time: i64| {
        let mut b = b"dj0\0t".to_vec();
        b.extend_from_slice(&date.to_le_bytes());
        b.extend_from_slice(&time.to_le_bytes());
        b
    };
    assert_invalid(&datetime(20240230, -1), "bad date");
    assert_invalid(&datetime(0, -1), "bad date");
    assert_invalid(&datetime(-1, 250000000000), "bad time");
    assert_eq!(unpack(&datetime(-1, -1)).unwrap(), BlobValue::None);
}

#[test]
fn nesting_is_limited() {
    let mut deep = BlobValue::None;
    for _ in 0..MAX_DEPTH + 5 {
        deep = BlobValue::List(vec![deep]);
    }
    assert!(matches!(pack(&deep), Err(OasError::InvalidArgument { .. })));
    let mut blob = b"dj0\0".to_vec();
    for _ in 0..MAX_DEPTH + 5 {
        blob.extend_from_slice(b"\x02\x01\0\0\0\0\0\0\0");
        blob.extend_from_slice(&[0xff; 8]); // item length, never reached
    }
    assert_invalid(&blob, "nested deeper");
    let json = "[".repeat(100) + &"]".repeat(100);
    assert!(from_json_str(&json).is_ok());
    assert!(from_json_str(&("[".repeat(10_000) + &"]".repeat(10_000))).is_err());
    assert!(from_json_str("{nope").is_err());
}

#[test]
fn ints_use_blob_py_widths() {
    let width = |i: i128| pack(&BlobValue::Int(BigInt::from(i))).unwrap()[5];
    assert_eq!(
        [width(0), width(127), width(128), width(-128), width(-129)],
        [1, 1, 2, 2, 2]
    );
    let huge = BigInt::from(1) << (8 * 65535);
    assert!(pack(&BlobValue::Int(huge)).is_err());
}

#[test]
fn json_mapping_choices() {
    let value = BlobValue::Dict(vec![
        (BlobValue::Str("b".into()), BlobValue::Bytes(vec![0, 255])),
        (BlobValue::Int(1.into()), BlobValue::Float(f64::NAN)),
        (BlobValue::None, BlobValue::Float(f64::NEG_INFINITY)),
        (
            BlobValue::Str("i".into()),
            BlobValue::Int(BigInt::from(u64::MAX) * 2),
        ),
    ]);
    assert_eq!(
        to_json(&value).to_string(),
        r#"{"1":"NaN","b":{"bytes":"AP8="},"i":"36893488147419103230","null":"-Infinity"}"#
    );
    let text = r#"{"z": 1, "a": [1.5, null, "s"], "z": 2}"#;
    assert_eq!(
        from_json_str(text).unwrap(),
        BlobValue::Dict(vec![
            (BlobValue::Str("z".into()), BlobValue::Int(2.into())),
            (
                BlobValue::Str("a".into()),
                BlobValue::List(vec![
                    BlobValue::Float(1.5),
                    BlobValue::None,
                    BlobValue::Str("s".into())
                ])
            ),
        ])
    );
    assert_eq!(
        from_json(&serde_json::json!([1, 2.0])).unwrap(),
        from_json_str("[1, 2.0]").unwrap()
    );
}

#[test]
fn encode_rejects_inconsistent_values() {
    let recarray = BlobValue::Recarray(vec![
        (
            "a".into(),
            BlobValue::Array(Array::Int8(ArrayD::zeros(IxDyn(&[2])))),
        ),
        (
            "b".into(),
            BlobValue::Array(Array::Int8(ArrayD::zeros(IxDyn(&[3])))),
        ),
    ]);
    assert!(pack(&recarray).is_err());
    assert!(pack(&BlobValue::Recarray(vec![])).is_err());
    let record = BlobValue::Struct {
        fields: vec!["a".into(), "b".into()],
        elements: ArrayD::from_elem(IxDyn(&[1]), vec![BlobValue::None]),
    };
    assert!(pack(&record).is_err());
}

#[test]
fn fuzz_empty_array_with_huge_dimensions() {
    // Found by the fuzzer (a timeout): an empty array with a huge dimension made `to_json` build
    // one empty list per row.
    let crash = data_encoding::HEXLOWER
        .decode(b"6d596d00410200000000000000000000030000000000000000000000000800000001040205")
        .unwrap();
    let started = std::time::Instant::now();
    let _ = unpack(&crash).map(|v| to_json(&v));
    assert!(started.elapsed().as_secs() < 2);
    let mut huge = b"mYm\0A".to_vec();
    for v in [2u64, 1 << 56, 0] {
        huge.extend_from_slice(&v.to_le_bytes());
    }
    huge.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
    assert_invalid(&huge, "larger than the blob");
    let mut fine = b"mYm\0A".to_vec();
    for v in [2u64, 3, 0] {
        fine.extend_from_slice(&v.to_le_bytes());
    }
    fine.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        to_json(&unpack(&fine).unwrap()),
        serde_json::json!([[], [], []])
    );
}
