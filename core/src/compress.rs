//! zstd-compressed stores (`oas_store_compression`): the method a store is marked with, the
//! marker a compressed object carries in its reference and its path, the bound on a compressed
//! object's size, and compression and bounded decompression. Pure: the store I/O is in
//! `ops/compressed.rs`.
//!
//! A compressed hash-addressed object keeps DataJoint's reference shape, with the same `hash`
//! (MD5 of the uncompressed bytes) and `size` (uncompressed), plus `"compression": "zstd"`; it
//! lies at the hash path followed by [`SUFFIX`]. So whether an object is compressed is read from
//! its reference (or its path), never guessed from its bytes, and a raw copy and a compressed
//! copy of the same content never share a path: turning a store's compression off and on again
//! never makes a reference name an object of the other form. An `<object@>` file of such a store
//! carries the same marker and suffix (`crate::reference::ObjectValueRef::compressed`).

use crate::error::OasError;
use crate::hash::is_content_hash;

/// The reference key, and its one value, of a compressed object.
pub const KEY: &str = "compression";
pub const MARKER: &str = "zstd";
/// What a compressed object's path ends with: `{hash_prefix}/{schema}/[folds/]{hash}.zst`.
pub const SUFFIX: &str = ".zst";
/// The level of a store marked `'zstd'` without one (zstd's own default).
pub const DEFAULT_LEVEL: i32 = 3;

/// How a store compresses the hash-addressed objects and `<object@>` files written into it while
/// it is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zstd {
    pub level: i32,
}

/// Parse a store's compression method: `'none'` (`None`), `'zstd'` (level 3) or `'zstd:N'`
/// with N in 1..=19.
pub fn parse_method(method: &str) -> Result<Option<Zstd>, OasError> {
    let bad = || {
        OasError::invalid_argument_hint(
            format!("unknown compression method \"{method}\""),
            "use 'none', 'zstd' (level 3) or 'zstd:N' with a level N from 1 to 19",
        )
    };
    match method.trim().to_ascii_lowercase().as_str() {
        "none" | "" => Ok(None),
        "zstd" => Ok(Some(Zstd {
            level: DEFAULT_LEVEL,
        })),
        m => {
            let level: i32 = m
                .strip_prefix("zstd:")
                .and_then(|l| l.parse().ok())
                .ok_or_else(bad)?;
            if !(1..=19).contains(&level) {
                return Err(bad());
            }
            Ok(Some(Zstd { level }))
        }
    }
}

/// The method as the catalog keeps it (`oas.store.compression`): `none` or `zstd:N`.
pub fn method_name(z: Option<Zstd>) -> String {
    match z {
        None => "none".into(),
        Some(z) => format!("{MARKER}:{}", z.level),
    }
}

/// The name of a hash-addressed object: its hash, with [`SUFFIX`] when compressed.
pub fn object_name(hash: &str, compressed: bool) -> String {
    if compressed {
        format!("{hash}{SUFFIX}")
    } else {
        hash.to_string()
    }
}

/// The content hash a hash-addressed object's name (the path's last segment) carries, and
/// whether the name marks it compressed; `None` for a name that is neither form.
pub fn parse_object_name(name: &str) -> Option<(&str, bool)> {
    if is_content_hash(name) {
        return Some((name, false));
    }
    name.strip_suffix(SUFFIX)
        .filter(|h| is_content_hash(h))
        .map(|h| (h, true))
}

/// Read a reference's `compression` key: absent or null is uncompressed, `"zstd"` compressed.
pub fn marker_of(value: Option<&serde_json::Value>) -> Result<bool, OasError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::String(s)) if s == MARKER => Ok(true),
        Some(v) => Err(OasError::invalid_argument(format!(
            "invalid reference: unknown \"{KEY}\" {v} (pg_oas writes \"{MARKER}\" or leaves the key out)"
        ))),
    }
}

/// The refusal of `what` (a ranged read, a presigned URL) of the compressed object at `path`.
pub fn unsupported(path: &str, what: &str) -> OasError {
    OasError::Unsupported {
        message: format!("\"{path}\" is stored zstd-compressed (a store marked with oas_store_compression): {what} of it is not supported"),
        hint: Some("read it whole, decompressed: oas_hash_get, oas_blob_get or oas_attach_get (or oas_read from offset 0 for at least its size)".into()),
    }
}

/// The largest a compressed object of `size` uncompressed bytes can be (zstd's compress bound,
/// which one frame never exceeds). A larger object is refused before anything is read.
pub fn max_stored_size(size: u64) -> u64 {
    match usize::try_from(size) {
        Ok(s) => zstd::zstd_safe::compress_bound(s) as u64,
        Err(_) => u64::MAX,
    }
}

/// Compress `data` as one zstd frame at `level` (see [`Deflater`]).
pub fn compress(data: &[u8], level: i32) -> Result<Vec<u8>, OasError> {
    let mut d = Deflater::new(level, data.len() as u64)?;
    d.feed(data)?;
    d.finish()
}

/// One zstd frame of `size` bytes fed piece by piece, recording the content size and a checksum
/// (so a damaged object fails to decompress even when reads do not check MD5); single-threaded.
/// Only the compressed bytes are held, and how the input is cut does not change them.
pub struct Deflater(zstd::stream::write::Encoder<'static, Vec<u8>>);

fn deflate_failed(e: std::io::Error) -> OasError {
    OasError::Internal(format!("zstd compression failed: {e}"))
}

impl Deflater {
    pub fn new(level: i32, size: u64) -> Result<Self, OasError> {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), level).map_err(deflate_failed)?;
        e.include_checksum(true).map_err(deflate_failed)?;
        e.include_contentsize(true).map_err(deflate_failed)?;
        e.set_pledged_src_size(Some(size)).map_err(deflate_failed)?;
        Ok(Deflater(e))
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<(), OasError> {
        std::io::Write::write_all(&mut self.0, data).map_err(deflate_failed)
    }

    /// The frame; an error when the bytes fed were not the size given to [`Deflater::new`].
    pub fn finish(self) -> Result<Vec<u8>, OasError> {
        self.0.finish().map_err(deflate_failed)
    }
}

/// A zstd frame decompressed piece by piece into a buffer of the declared size: the output can
/// never grow beyond it (a decompression bomb is an error, not an allocation), and the frame must
/// fill it exactly.
pub struct Inflater {
    decoder: zstd::stream::raw::Decoder<'static>,
    filled: usize,
    done: bool,
}

impl Inflater {
    pub fn new() -> Result<Self, String> {
        Ok(Inflater {
            decoder: zstd::stream::raw::Decoder::new().map_err(|e| e.to_string())?,
            filled: 0,
            done: false,
        })
    }

    /// Decompress `chunk`, the next compressed bytes, into `out` after what is already there.
    /// `Err(reason)` for a damaged frame, output beyond `out.len()`, or bytes after the frame.
    pub fn feed(&mut self, chunk: &[u8], out: &mut [u8]) -> Result<(), String> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let mut input = InBuffer::around(chunk);
        let more =
            |n: usize| format!("decompresses to more than the {n} bytes the reference records");
        loop {
            if self.done {
                return if input.pos() < chunk.len() {
                    Err("bytes follow the end of the zstd frame".into())
                } else {
                    Ok(())
                };
            }
            let before = (input.pos(), self.filled);
            let mut output = OutBuffer::around_pos(&mut out[..], self.filled);
            let hint = self
                .decoder
                .run(&mut input, &mut output)
                .map_err(|e| format!("not a valid zstd frame: {e}"))?;
            self.filled = output.pos();
            if hint == 0 {
                self.done = true;
                continue;
            }
            if self.filled == out.len() && self.overflows()? {
                return Err(more(out.len()));
            }
            if self.done || (input.pos(), self.filled) != before {
                continue;
            }
            // No progress: all input taken (wait for more), or a full buffer the frame exceeds.
            return if input.pos() == chunk.len() {
                Ok(())
            } else if self.filled == out.len() {
                Err(more(out.len()))
            } else {
                Err("the zstd decoder made no progress".into())
            };
        }
    }

    /// Whether the decoder has output beyond a full buffer (tried on a one-byte scratch buffer).
    fn overflows(&mut self) -> Result<bool, String> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let mut scratch = [0u8; 1];
        let mut output = OutBuffer::around(&mut scratch[..]);
        let hint = self
            .decoder
            .run(&mut InBuffer::around(&[]), &mut output)
            .map_err(|e| format!("not a valid zstd frame: {e}"))?;
        if output.pos() > 0 {
            return Ok(true);
        }
        if hint == 0 {
            self.done = true;
        }
        Ok(false)
    }

    /// After the last chunk: the frame ended and filled `out_len` bytes exactly.
    pub fn finish(mut self, out: &mut [u8]) -> Result<(), String> {
        if !self.done {
            self.feed(&[], out)?;
        }
        if !self.done {
            return Err(format!(
                "truncated: the zstd frame ends early ({} of {} bytes decompressed)",
                self.filled,
                out.len()
            ));
        }
        if self.filled != out.len() {
            return Err(format!(
                "decompresses to {} bytes, the reference records {}",
                self.filled,
                out.len()
            ));
        }
        Ok(())
    }

    /// Bytes decompressed so far.
    pub fn filled(&self) -> usize {
        self.filled
    }
}

/// Compressed bytes fetched to read an object's first bytes: zstd's largest frame header and
/// first block (128 KiB), which hold them.
pub const HEAD_FETCH: u64 = (128 << 10) + 64;

/// The uncompressed size a frame's header records (pg_oas always records it), from its first
/// bytes (18 at most); `None` when they are not a frame header that records one.
pub fn frame_content_size(head: &[u8]) -> Option<u64> {
    zstd::zstd_safe::get_frame_content_size(head).ok().flatten()
}

/// The first `n` uncompressed bytes (fewer when the frame is shorter) of a frame whose first
/// bytes (at least [`HEAD_FETCH`] of them, or all) are `prefix`, and the size its header records.
pub fn decompress_head(prefix: &[u8], n: usize) -> Result<(Vec<u8>, u64), String> {
    use std::io::Read;
    let size =
        frame_content_size(prefix).ok_or("not a zstd frame that records its size".to_string())?;
    let want = n.min(usize::try_from(size).unwrap_or(usize::MAX));
    let mut d = zstd::stream::read::Decoder::with_buffer(prefix).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; want];
    d.read_exact(&mut out)
        .map_err(|e| format!("not a valid zstd frame: {e}"))?;
    Ok((out, size))
}

/// Decompress a whole frame into a buffer of `size` bytes (see [`Inflater`]).
pub fn decompress(frame: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; size];
    let mut inf = Inflater::new()?;
    inf.feed(frame, &mut out)?;
    inf.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i / 7) % 13) as u8).collect()
    }

    #[test]
    fn methods_parse_and_print() {
        assert_eq!(parse_method("none").unwrap(), None);
        assert_eq!(parse_method("zstd").unwrap(), Some(Zstd { level: 3 }));
        assert_eq!(parse_method(" ZSTD:9 ").unwrap(), Some(Zstd { level: 9 }));
        for bad in ["gzip", "zstd:0", "zstd:20", "zstd:", "zstd:x", "zstd3"] {
            assert!(parse_method(bad).is_err(), "{bad}");
        }
        assert_eq!(method_name(None), "none");
        assert_eq!(method_name(Some(Zstd { level: 9 })), "zstd:9");
        assert_eq!(
            parse_method(&method_name(Some(Zstd { level: 1 }))).unwrap(),
            Some(Zstd { level: 1 })
        );
    }

    #[test]
    fn names_and_markers() {
        let h = "lvauakv4jmvhnolrtwiraf6fsi";
        assert_eq!(object_name(h, false), h);
        assert_eq!(object_name(h, true), format!("{h}.zst"));
        assert_eq!(parse_object_name(h), Some((h, false)));
        assert_eq!(parse_object_name(&format!("{h}.zst")), Some((h, true)));
        assert_eq!(parse_object_name("x.zst"), None);
        assert_eq!(parse_object_name(&format!("{h}.zst.zst")), None);
        assert_eq!(parse_object_name(&format!("{h}.npy")), None);
        assert!(!marker_of(None).unwrap());
        assert!(!marker_of(Some(&serde_json::Value::Null)).unwrap());
        assert!(marker_of(Some(&serde_json::json!("zstd"))).unwrap());
        assert!(marker_of(Some(&serde_json::json!("gzip"))).is_err());
        assert!(marker_of(Some(&serde_json::json!(true))).is_err());
    }

    #[test]
    fn round_trips_and_shrinks() {
        for n in [0, 1, 1000, 300_000] {
            let data = sample(n);
            let z = compress(&data, 3).unwrap();
            assert!(z.len() as u64 <= max_stored_size(n as u64));
            if n >= 1000 {
                assert!(z.len() < data.len() / 4, "{n}: {}", z.len());
            }
            assert_eq!(decompress(&z, n).unwrap(), data);
        }
        // Random bytes do not shrink, and stay within the bound.
        let mut x = 0x1234_5678u32;
        let random: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let z = compress(&random, 19).unwrap();
        assert!(z.len() as u64 <= max_stored_size(random.len() as u64));
        assert_eq!(decompress(&z, random.len()).unwrap(), random);
    }

    #[test]
    fn heads_and_sizes_from_the_first_bytes() {
        let data = sample(1_000_000);
        let z = compress(&data, 3).unwrap();
        assert_eq!(frame_content_size(&z[..18]), Some(1_000_000));
        assert_eq!(frame_content_size(&data[..18]), None);
        let prefix = &z[..z.len().min(HEAD_FETCH as usize)];
        let (head, size) = decompress_head(prefix, 20).unwrap();
        assert_eq!((head.as_slice(), size), (&data[..20], 1_000_000));
        let (head, size) = decompress_head(&compress(b"abc", 3).unwrap(), 20).unwrap();
        assert_eq!((head.as_slice(), size), (&b"abc"[..], 3));
        assert!(decompress_head(&data[..100], 20).is_err());
    }

    #[test]
    fn frames_do_not_depend_on_how_the_input_is_cut() {
        let data = sample(700_000);
        let whole = compress(&data, 3).unwrap();
        let mut d = Deflater::new(3, data.len() as u64).unwrap();
        for c in data.chunks(65_537) {
            d.feed(c).unwrap();
        }
        assert_eq!(d.finish().unwrap(), whole);
        // A size other than the one pledged is an error, not a frame that lies about its size.
        let mut d = Deflater::new(3, 10).unwrap();
        d.feed(b"too short").unwrap();
        assert!(d.finish().is_err());
    }

    #[test]
    fn fed_in_small_chunks() {
        let data = sample(1_000_000);
        let z = compress(&data, 1).unwrap();
        let mut out = vec![0u8; data.len()];
        let mut inf = Inflater::new().unwrap();
        for c in z.chunks(7) {
            inf.feed(c, &mut out).unwrap();
        }
        inf.finish(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn bombs_truncation_damage_and_trailing_bytes_are_errors() {
        let data = sample(1_000_000);
        let z = compress(&data, 3).unwrap();
        // Declared smaller than the frame: never written past the buffer.
        let e = decompress(&z, 1000).unwrap_err();
        assert!(e.contains("more than the 1000 bytes"), "{e}");
        for chunk in [1, 100, z.len()] {
            let mut out = vec![0u8; 10];
            let mut inf = Inflater::new().unwrap();
            let r = z
                .chunks(chunk)
                .try_for_each(|c| inf.feed(c, &mut out))
                .and_then(|()| inf.finish(&mut out));
            assert!(r.is_err());
        }
        // Declared larger: the frame ends early.
        let e = decompress(&z, data.len() + 1).unwrap_err();
        assert!(e.contains("decompresses to 1000000 bytes"), "{e}");
        // Truncated.
        let e = decompress(&z[..z.len() / 2], data.len()).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        // A flipped byte in the middle: the frame's checksum (or its structure) fails.
        let mut bad = z.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        assert!(decompress(&bad, data.len()).is_err());
        let mut bad = z.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decompress(&bad, data.len()).is_err());
        // Raw bytes are not a frame.
        assert!(decompress(&data[..1000], 1000).is_err());
        // Bytes after the frame.
        let mut more = z.clone();
        more.extend_from_slice(b"xx");
        let e = decompress(&more, data.len()).unwrap_err();
        assert!(e.contains("follow"), "{e}");
    }
}
