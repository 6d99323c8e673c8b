//! The `.npy` header: its length, parsing the dict literal, and writing it as `np.save` does.

use super::{bad, Dtype};
use crate::error::OasError;

pub const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// NumPy aligns the start of the data to this many bytes.
const ALIGN: usize = 64;
/// NumPy leaves room for the growth axis to reach this many digits (`GROWTH_AXIS_MAX_DIGITS`).
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
/// Enough bytes to hold any header NumPy writes for arrays of up to a few dozen dimensions.
pub const HEADER_PROBE: usize = 4096;

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: (u8, u8),
    /// Offset of the first data byte.
    pub data_offset: u64,
    pub dtype: Dtype,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// Number of elements.
    pub count: u64,
    /// Bytes of data: `count * itemsize`.
    pub nbytes: u64,
}

/// How much of the file [`parse_header`] needs, from its first 12 bytes.
pub fn header_len(prefix: &[u8]) -> Result<u64, OasError> {
    if prefix.len() < 10 || &prefix[..6] != MAGIC {
        return Err(bad("not a .npy file (bad magic string)"));
    }
    match prefix[6] {
        1 => Ok(10 + u64::from(u16::from_le_bytes([prefix[8], prefix[9]]))),
        2 | 3 if prefix.len() >= 12 => Ok(12
            + u64::from(u32::from_le_bytes([
                prefix[8], prefix[9], prefix[10], prefix[11],
            ]))),
        2 | 3 => Err(bad("truncated .npy header")),
        v => Err(bad(format!(
            "unsupported .npy format version {v}.{}",
            prefix[7]
        ))),
    }
}

/// Parse the header at the start of `buf` (which must hold at least [`header_len`] bytes).
pub fn parse_header(buf: &[u8]) -> Result<Header, OasError> {
    let total = header_len(buf)?;
    let start = if buf[6] == 1 { 10 } else { 12 };
    let total_usize = usize::try_from(total).map_err(|_| bad("oversized .npy header"))?;
    if buf.len() < total_usize {
        return Err(bad(format!(
            "truncated .npy header: {} of {total} bytes",
            buf.len()
        )));
    }
    let text = std::str::from_utf8(&buf[start..total_usize])
        .map_err(|_| bad(".npy header is not text"))?;
    if buf[6] < 3 && !text.is_ascii() {
        return Err(bad(".npy header of format 1.0/2.0 must be ASCII"));
    }
    let dict = parse_dict(text)?;
    let dtype = Dtype::parse(&dict.descr)?;
    let count = dict
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d));
    // The data's end (`data_offset + nbytes`) must fit too: readers and plans add them.
    let nbytes = count
        .and_then(|c| c.checked_mul(dtype.itemsize as u64))
        .filter(|n| n.checked_add(total).is_some());
    let (Some(count), Some(nbytes)) = (count, nbytes) else {
        return Err(OasError::TooLarge {
            message: format!(
                "array shape {:?} of dtype {} overflows: its size in bytes does not fit in 64 bits",
                dict.shape, dtype.descr
            ),
            hint: None,
        });
    };
    Ok(Header {
        version: (buf[6], buf[7]),
        data_offset: total,
        dtype,
        fortran_order: dict.fortran_order,
        shape: dict.shape,
        count,
        nbytes,
    })
}

struct HeaderDict {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// The restricted Python literal NumPy writes: exactly the keys descr, fortran_order, shape.
fn parse_dict(text: &str) -> Result<HeaderDict, OasError> {
    let mut p = Lexer {
        s: text.trim_end().as_bytes(),
        i: 0,
    };
    let err = |m: &str| bad(format!("malformed .npy header: {m}"));
    p.expect(b'{').ok_or_else(|| err("expected '{'"))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| err("expected a quoted key"))?;
        p.expect(b':').ok_or_else(|| err("expected ':'"))?;
        p.skip_ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err(OasError::invalid_argument_hint(
                        "structured dtypes are not supported",
                        "store each field as its own array",
                    ));
                }
                descr = Some(p.string().ok_or_else(|| err("descr must be a string"))?);
            }
            "fortran_order" => {
                fortran = Some(
                    p.boolean()
                        .ok_or_else(|| err("fortran_order must be True or False"))?,
                )
            }
            "shape" => {
                shape = Some(
                    p.int_tuple()
                        .ok_or_else(|| err("shape must be a tuple of non-negative integers"))?,
                )
            }
            other => return Err(err(&format!("unexpected key '{other}'"))),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.skip_ws();
            p.expect(b'}').ok_or_else(|| err("expected ',' or '}'"))?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(err("text after the closing '}'"));
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(HeaderDict {
            descr,
            fortran_order,
            shape,
        }),
        _ => Err(err("descr, fortran_order and shape are all required")),
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        self.eat(c).then_some(())
    }
    fn string(&mut self) -> Option<String> {
        self.skip_ws();
        let q = self.peek().filter(|&q| q == b'\'' || q == b'"')?;
        self.i += 1;
        let start = self.i;
        while self.peek()? != q {
            if self.peek()? == b'\\' {
                return None;
            }
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .to_string();
        self.i += 1;
        Some(s)
    }
    fn boolean(&mut self) -> Option<bool> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Some(v);
            }
        }
        None
    }
    fn int(&mut self) -> Option<u64> {
        self.skip_ws();
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let v = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()?;
        self.eat(b'L'); // Python 2 longs
        Some(v)
    }
    fn int_tuple(&mut self) -> Option<Vec<u64>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Some(out);
            }
            out.push(self.int()?);
            self.skip_ws();
            if !self.eat(b',') {
                self.skip_ws();
                return self.eat(b')').then_some(out);
            }
        }
    }
}

/// The header `np.save` writes for an array of `descr`, order and `shape` (format 1.0, or 2.0
/// when the header does not fit 1.0), byte for byte.
pub fn write_header(descr: &str, fortran_order: bool, shape: &[u64]) -> Vec<u8> {
    let shape_repr = match shape {
        [] => "()".to_string(),
        [one] => format!("({one},)"),
        many => format!(
            "({})",
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_repr}, }}",
        if fortran_order { "True" } else { "False" }
    );
    if let Some(growth) = if fortran_order {
        shape.last()
    } else {
        shape.first()
    } {
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(growth.to_string().len())));
    }
    let hlen = dict.len() + 1;
    let (version, len_bytes) = if (MAGIC.len() + 4 + hlen).next_multiple_of(ALIGN) < 65536 {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let padlen = ALIGN - ((MAGIC.len() + 2 + len_bytes + hlen) % ALIGN);
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + len_bytes + hlen + padlen);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    let total = (hlen + padlen) as u32;
    if version == 1 {
        out.extend_from_slice(&(total as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&total.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padlen));
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::test_support::header_of;

    #[test]
    fn headers_match_np_save_byte_for_byte() {
        // From NumPy 2.4.6: np.save(BytesIO(), np.zeros((3, 4), '<f4')) and friends.
        let cases: [(&str, bool, &[u64], &str); 4] = [
            (
                "<f4",
                false,
                &[3, 4],
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
            ),
            (
                ">i8",
                false,
                &[5],
                "{'descr': '>i8', 'fortran_order': False, 'shape': (5,), }",
            ),
            (
                "|b1",
                false,
                &[],
                "{'descr': '|b1', 'fortran_order': False, 'shape': (), }",
            ),
            (
                "<f8",
                true,
                &[2, 3, 4],
                "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 4), }",
            ),
        ];
        for (descr, fortran, shape, dict) in cases {
            let h = write_header(descr, fortran, shape);
            assert_eq!(&h[..10], b"\x93NUMPY\x01\x00v\x00", "{dict}");
            assert_eq!(h.len(), 128);
            let text = std::str::from_utf8(&h[10..]).unwrap();
            assert!(text.starts_with(dict) && text.ends_with('\n'), "{text:?}");
            assert!(text[dict.len()..text.len() - 1].bytes().all(|b| b == b' '));
            let parsed = parse_header(&h).unwrap();
            assert_eq!(
                (
                    parsed.dtype.descr.as_str(),
                    parsed.fortran_order,
                    parsed.shape.as_slice()
                ),
                (descr, fortran, shape)
            );
            assert_eq!(parsed.data_offset, 128);
        }
    }

    #[test]
    fn header_sizes_and_dtypes() {
        let h = header_of("<c16", false, &[2, 3]);
        assert_eq!(
            (h.count, h.nbytes, h.dtype.kind, h.dtype.itemsize),
            (6, 96, 'c', 16)
        );
        assert_eq!(header_of("<U5", false, &[2]).dtype.itemsize, 20);
        assert_eq!(header_of("<M8[ns]", false, &[2]).dtype.itemsize, 8);
        assert_eq!(header_of("<u2", false, &[0, 7]).nbytes, 0);
        // Version 2.0 and 3.0 headers (4-byte length) parse too.
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        let dict = b"{'descr': '<i4', 'fortran_order': False, 'shape': (7,), }\n";
        v2.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        v2.extend_from_slice(dict);
        let h = parse_header(&v2).unwrap();
        assert_eq!(
            (h.version, h.shape.as_slice(), h.data_offset),
            ((2, 0), &[7u64][..], (12 + dict.len()) as u64)
        );
    }

    #[test]
    fn bad_headers_are_clear_errors() {
        let good = write_header("<f4", false, &[3]);
        let e = |buf: &[u8]| parse_header(buf).unwrap_err().to_string();
        assert!(e(b"not numpy at all").contains("magic"));
        assert!(e(&good[..50]).contains("truncated"));
        assert!(e(&[&good[..6], &[4u8, 0], &good[8..]].concat()).contains("version 4"));
        let with = |dict: &str| {
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            b.extend_from_slice(dict.as_bytes());
            parse_header(&b)
        };
        assert!(
            with("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }")
                .unwrap_err()
                .to_string()
                .contains("object")
        );
        assert!(
            with("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (3,), }")
                .unwrap_err()
                .to_string()
                .contains("structured")
        );
        assert!(with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1), }").is_err());
        assert!(with("{'descr': '<f4', 'fortran_order': False}").is_err());
        assert!(with("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}").is_err());
        assert!(with("{'descr': '<f3', 'fortran_order': False, 'shape': (3,), }").is_err());
        assert!(with("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3,), }").is_err());
        let big = with("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }");
        assert!(matches!(big, Err(OasError::TooLarge { .. })));
    }

    // Regressions: inputs the fuzz targets in core/fuzz found (scripts/fuzz.sh), each as it
    // crashed, with the error it gives now.

    /// `npy_slice` input `"|u2 C 9223372036854775807\n-1:0:-9223372036854775807"`: the data's
    /// size fit in u64 but its end (header + data) did not, so every range of it overflowed.
    #[test]
    fn fuzz_data_end_past_u64_is_too_large() {
        let h = parse_header(&write_header("|u2", false, &[9223372036854775807]));
        let Err(OasError::TooLarge { message, .. }) = h else {
            panic!("{h:?}");
        };
        assert!(message.contains("does not fit in 64 bits"), "{message}");
    }
}
