//! Is an object a DataJoint blob? Decided from its first bytes, so a `<blob@>` column can refuse
//! a reference to other bytes without reading the whole object.
//!
//! `blob.unpack` returns `None`, with no error, for bytes whose protocol header (after the
//! optional `ZL123\0` wrapper) is neither `mYm\0` nor `dj0\0`: DataJoint's fetch of such a row
//! silently gives `None`. Corruption after the header makes DataJoint raise, so the header is what
//! must be checked. An object no longer than [`HEAD_LEN`] is read whole and fully unpacked.

use super::{unpack, COMPRESSION_PREFIX};
use crate::OasError;

/// How many leading bytes [`check_head`] needs (fewer if the object is shorter).
pub const HEAD_LEN: usize = 4096;

fn not_a_blob(why: impl std::fmt::Display) -> OasError {
    OasError::invalid_argument_hint(
        format!("not a DataJoint blob: {why}"),
        "a <blob@> column holds references to DataJoint blobs: write values with oas_blob(value) (or oas_blob_put), never raw bytes; DataJoint's fetch would return None for these bytes",
    )
}

/// Check that an object of `size` bytes whose first bytes are `head` (all of them when
/// `size <= HEAD_LEN`, else at least `HEAD_LEN`) is a DataJoint blob.
///
/// The error never shows the object's bytes: the check runs for roles that may not read them.
pub fn check_head(head: &[u8], size: u64) -> Result<(), OasError> {
    if size as usize == head.len() {
        return unpack(head)
            .map(|_| ())
            .map_err(|_| not_a_blob("it does not unpack as one"));
    }
    let inner: Vec<u8>;
    let mut data = head;
    if let Some(rest) = head.strip_prefix(COMPRESSION_PREFIX) {
        let compressed = rest
            .get(8..)
            .ok_or_else(|| not_a_blob("truncated compression header"))?;
        inner = inflate_start(compressed, 4)?;
        data = &inner;
    }
    if data.starts_with(b"mYm\0") || data.starts_with(b"dj0\0") {
        Ok(())
    } else {
        Err(not_a_blob(
            "its protocol header is not \"mYm\\0\" or \"dj0\\0\"",
        ))
    }
}

/// The first `want` bytes `compressed` (the start of a zlib stream) inflates to.
fn inflate_start(compressed: &[u8], want: usize) -> Result<Vec<u8>, OasError> {
    let mut out = vec![0u8; want];
    let mut z = flate2::Decompress::new(true);
    let mut filled = 0;
    while filled < want {
        let before = (z.total_in(), z.total_out());
        let status = z
            .decompress(
                &compressed[z.total_in() as usize..],
                &mut out[filled..],
                flate2::FlushDecompress::None,
            )
            .map_err(|_| not_a_blob("its zlib stream is corrupt"))?;
        filled = z.total_out() as usize;
        if status == flate2::Status::StreamEnd || (z.total_in(), z.total_out()) == before {
            break;
        }
    }
    out.truncate(filled);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{from_json_str, pack};

    fn blob(json: &str) -> Vec<u8> {
        pack(&from_json_str(json).unwrap()).unwrap()
    }

    #[test]
    fn blobs_pass_whole_and_by_their_head() {
        let small = blob(r#"{"a": [1, 2, 3]}"#);
        check_head(&small, small.len() as u64).unwrap();
        // Compressed (over 1000 bytes, repetitive) and longer than the head.
        let values: Vec<String> = (0..5000).map(|i| (i % 7).to_string()).collect();
        let big = blob(&format!("[{}]", values.join(",")));
        assert!(big.starts_with(COMPRESSION_PREFIX));
        let big_raw = blob(&format!(
            "\"{}\"",
            (0..6000u32)
                .map(|i| char::from(b'a' + (i * 7919 % 26) as u8))
                .collect::<String>()
        ));
        for b in [&big, &big_raw] {
            let n = b.len().min(HEAD_LEN);
            check_head(&b[..n], b.len() as u64).unwrap();
        }
    }

    #[test]
    fn other_bytes_are_refused() {
        let e = check_head(b"hello", 5).unwrap_err();
        assert!(matches!(e, OasError::InvalidArgument { hint: Some(_), .. }));
        assert!(e.to_string().contains("not a DataJoint blob"), "{e}");
        // Right header, corrupt body: refused when the object is read whole.
        assert!(check_head(b"dj0\0\x99", 5).is_err());
        // A long object is judged by its header alone.
        let mut long = b"dj0\0".to_vec();
        long.resize(HEAD_LEN, 0);
        check_head(&long, 10_000_000).unwrap();
        let mut other = b"PK\x03\x04".to_vec();
        other.resize(HEAD_LEN, 0);
        let e = check_head(&other, 10_000_000).unwrap_err();
        // The object's bytes are never shown (the check runs for roles that may not read them).
        assert!(!e.to_string().contains("PK"), "{e}");
        let e = check_head(b"secret\0", 7).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        // A zlib wrapper around something else.
        let mut z = COMPRESSION_PREFIX.to_vec();
        z.extend_from_slice(&100u64.to_le_bytes());
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &[b'x'; 5000]).unwrap();
        z.extend_from_slice(&enc.finish().unwrap());
        z.resize(HEAD_LEN.max(z.len()), 0);
        assert!(check_head(&z[..HEAD_LEN], 1_000_000).is_err());
        assert!(check_head(b"ZL123\0\x01", 1_000_000).is_err());
        assert!(check_head(b"ZL123\0\x01\0\0\0\0\0\0\0garbage-not-zlib", 1_000_000).is_err());
    }
}
