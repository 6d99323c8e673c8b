//! DataJoint's content hash: MD5 of the exact stored bytes, base32 (RFC 4648), lowercase, no padding.
//!
//! 16 bytes of MD5 give 26 base32 characters from `[a-z2-7]`; `md5(b"hello")` is
//! `lvauakv4jmvhnolrtwiraf6fsi`. DataJoint uses the same string as the object name, so it must
//! match to the byte for deduplication to work across clients.

use md5::{Digest, Md5};

/// Length of an encoded content hash.
pub const HASH_LEN: usize = 26;

/// Streaming hasher, for payloads that arrive in chunks.
#[derive(Default, Clone)]
pub struct ContentHasher(Md5);

impl ContentHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    pub fn finish(self) -> String {
        encode_digest(&self.0.finalize())
    }
}

/// The content hash of `data`.
pub fn content_hash(data: &[u8]) -> String {
    encode_digest(&Md5::digest(data))
}

fn encode_digest(digest: &[u8]) -> String {
    let mut s = data_encoding::BASE32_NOPAD.encode(digest);
    s.make_ascii_lowercase();
    s
}

/// True when `s` is a well-formed content hash: 26 characters of lowercase base32.
pub fn is_content_hash(s: &str) -> bool {
    s.len() == HASH_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_match_datajoint() {
        // Values computed with DataJoint's `compute_hash` (base64.b32encode(md5).rstrip("=").lower()).
        assert_eq!(content_hash(b"hello"), "lvauakv4jmvhnolrtwiraf6fsi");
        assert_eq!(content_hash(b""), "2qoyzwmpaczaj2mabgmoz6ccpy");
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = ContentHasher::new();
        for chunk in data.chunks(4093) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), content_hash(&data));
    }

    #[test]
    fn hash_shape_is_validated() {
        assert!(is_content_hash("lvauakv4jmvhnolrtwiraf6fsi"));
        assert!(!is_content_hash("lvauakv4jmvhnolrtwiraf6fs")); // 25
        assert!(!is_content_hash("LVAUAKV4JMVHNOLRTWIRAF6FSI")); // upper
        assert!(!is_content_hash("lvauakv4jmvhnolrtwiraf6fs1")); // '1' is not base32
        assert!(!is_content_hash("lvauakv4jmvhnolrtwiraf6fs/"));
        assert!(is_content_hash(&content_hash(b"x")));
    }
}
