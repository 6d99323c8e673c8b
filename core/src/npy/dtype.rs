//! Dtypes: the `descr` string of a header, item sizes, and the names DataJoint records.

use super::bad;
use crate::error::OasError;

/// Byte order of a dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
    /// One-byte types (`|b1`, `|u1`, `|S5`).
    NotApplicable,
}

/// A fixed-size, non-structured dtype, as its `descr` string says (`<f4`, `>i8`, `|b1`, `<U10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtype {
    pub descr: String,
    pub order: ByteOrder,
    /// NumPy's kind character: `b` bool, `i` int, `u` unsigned, `f` float, `c` complex,
    /// `S` bytes, `U` unicode, `V` void, `M` datetime, `m` timedelta.
    pub kind: char,
    pub itemsize: usize,
}

impl Dtype {
    pub fn parse(descr: &str) -> Result<Self, OasError> {
        let mut chars = descr.chars();
        let order = match chars.next() {
            Some('<') => ByteOrder::Little,
            Some('>') => ByteOrder::Big,
            Some('|') => ByteOrder::NotApplicable,
            // Native order: this code runs on little-endian machines only.
            Some('=') => ByteOrder::Little,
            _ => {
                return Err(bad(format!(
                    "unsupported dtype \"{descr}\": no byte order character"
                )))
            }
        };
        let kind = chars
            .next()
            .ok_or_else(|| bad(format!("unsupported dtype \"{descr}\"")))?;
        let rest: String = chars.collect();
        if kind == 'O' {
            return Err(OasError::invalid_argument_hint(
                "object arrays (dtype 'O') cannot be stored or sliced",
                "DataJoint's <npy@> codec rejects them too; convert to a fixed-size dtype",
            ));
        }
        if !"biufcSUVMm".contains(kind) {
            return Err(bad(format!("unsupported dtype \"{descr}\"")));
        }
        // Datetimes may carry a unit: `<M8[ns]`, `<m8[10ms]`; nothing else has a suffix. The
        // descr goes back into result headers as it is, so it must be what NumPy writes.
        let (digits, unit) = match rest.find('[') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest.as_str(), None),
        };
        let unit_ok = match unit {
            None => true,
            Some(u) => matches!(kind, 'M' | 'm') && datetime_unit_ok(u),
        };
        let n: usize = Some(digits)
            .filter(|d| unit_ok && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad(format!("unsupported dtype \"{descr}\"")))?;
        let itemsize = if kind == 'U' {
            n.checked_mul(4)
        } else {
            Some(n)
        }
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            bad(format!(
                "unsupported dtype \"{descr}\": zero or oversized item"
            ))
        })?;
        let valid = match kind {
            'b' => itemsize == 1,
            'i' | 'u' => matches!(itemsize, 1 | 2 | 4 | 8),
            'f' => matches!(itemsize, 2 | 4 | 8 | 16),
            'c' => matches!(itemsize, 8 | 16 | 32),
            'M' | 'm' => itemsize == 8,
            _ => true,
        };
        if !valid {
            return Err(bad(format!("unsupported dtype \"{descr}\"")));
        }
        Ok(Dtype {
            descr: descr.to_string(),
            order,
            kind,
            itemsize,
        })
    }
}

/// A datetime unit as NumPy writes it in a descr: `[ns]`, `[10ms]`, `[D]`.
fn datetime_unit_ok(unit: &str) -> bool {
    let Some(inner) = unit.strip_prefix('[').and_then(|u| u.strip_suffix(']')) else {
        return false;
    };
    let name = inner.trim_start_matches(|c: char| c.is_ascii_digit());
    matches!(
        name,
        "Y" | "M" | "W" | "D" | "h" | "m" | "s" | "ms" | "us" | "ns" | "ps" | "fs" | "as"
    )
}

/// Item size of a dtype as DataJoint records it in `<npy@>` references (`str(arr.dtype)`:
/// `float32`, `int64`, `bool`, `complex128`, `datetime64[ns]`, or a descr such as `>i8`, `<U5`,
/// `|S3`). `None` for names it does not know.
pub fn dtype_itemsize(name: &str) -> Option<usize> {
    let fixed = match name {
        "bool" | "int8" | "uint8" => Some(1),
        "int16" | "uint16" | "float16" => Some(2),
        "int32" | "uint32" | "float32" => Some(4),
        "int64" | "uint64" | "float64" | "complex64" => Some(8),
        "complex128" | "longdouble" | "float128" => Some(16),
        "complex256" | "clongdouble" => Some(32),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    if name.starts_with("datetime64") || name.starts_with("timedelta64") {
        return Some(8);
    }
    Dtype::parse(name).ok().map(|d| d.itemsize)
}

/// `str(np.dtype(descr))`: what DataJoint records as an `<npy@>` reference's `dtype`. Native
/// (little-endian or byte-order-free) numeric types get their names (`float64`, `int32`, `bool`,
/// `datetime64[ns]`); everything else keeps its descr (`>f8`, `<U5`, `|S3`).
pub fn numpy_dtype_name(d: &Dtype) -> String {
    let native = d.order != ByteOrder::Big;
    // Saturating: `|S`, `<U` and `|V` items may be of any size (the bits name only the numeric
    // kinds, whose sizes `Dtype::parse` bounds).
    let bits = d.itemsize.saturating_mul(8);
    match (native, d.kind) {
        (true, 'b') => "bool".into(),
        (true, 'i') => format!("int{bits}"),
        (true, 'u') => format!("uint{bits}"),
        (true, 'f') => format!("float{bits}"),
        (true, 'c') => format!("complex{bits}"),
        (true, 'M') | (true, 'm') => {
            let unit = d.descr.find('[').map(|i| &d.descr[i..]).unwrap_or("");
            format!(
                "{}{unit}",
                if d.kind == 'M' {
                    "datetime64"
                } else {
                    "timedelta64"
                }
            )
        }
        _ => d.descr.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::parse_header;

    #[test]
    fn itemsizes_of_the_names_datajoint_records() {
        for (name, size) in [
            ("float32", 4),
            ("int64", 8),
            ("bool", 1),
            ("complex128", 16),
            ("uint16", 2),
            ("datetime64[ns]", 8),
            (">i8", 8),
            ("<U5", 20),
            ("|S3", 3),
            ("<f2", 2),
        ] {
            assert_eq!(dtype_itemsize(name), Some(size), "{name}");
        }
        assert_eq!(dtype_itemsize("object"), None);
        assert_eq!(dtype_itemsize("[('a', '<i4')]"), None);
    }

    #[test]
    fn dtype_names_are_numpys() {
        // str(np.dtype(descr)) from NumPy 2.4.6.
        for (descr, name) in [
            ("<f8", "float64"),
            ("<f2", "float16"),
            ("|i1", "int8"),
            ("<u4", "uint32"),
            ("|b1", "bool"),
            ("<c16", "complex128"),
            (">f8", ">f8"),
            (">i4", ">i4"),
            ("<U5", "<U5"),
            ("|S3", "|S3"),
            ("<M8[ns]", "datetime64[ns]"),
            ("<m8[s]", "timedelta64[s]"),
            ("|V4", "|V4"),
            (">u2", ">u2"),
        ] {
            assert_eq!(
                numpy_dtype_name(&Dtype::parse(descr).unwrap()),
                name,
                "{descr}"
            );
        }
    }

    /// `npy_header`: a void dtype of about 2^63 bytes made `numpy_dtype_name` overflow on `itemsize * 8`.
    #[test]
    fn fuzz_huge_void_itemsize_names_without_overflow() {
        let d = Dtype::parse("<V9222333269248377777").unwrap();
        assert_eq!(d.itemsize, 9222333269248377777);
        assert_eq!(numpy_dtype_name(&d), "<V9222333269248377777");
    }
    /// `npy_header`: a 3.0 header with the descr `'<M8[nN,\u{b9792}<i8'`. Anything after `[` was
    /// taken as a datetime unit, so the descr was accepted, and the header written for a slice of
    /// it (format 1.0, ASCII only) did not parse.
    #[test]
    fn fuzz_datetime_unit_garbage_is_an_unsupported_dtype() {
        let mut b = b"\x93NUMPY\x03\x00t\x00\x00\x00{'descr': '<M8[nN,\xf2\xb9\x9e\x92<i8', \
            'fortran_order': False, 'shape': (7,), }"
            .to_vec();
        b.resize(138, b' ');
        b.push(b'\n');
        let e = parse_header(&b).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype"), "{e}");
        for descr in [
            "<f4[ns]", "<M8[ns", "<M8[x]", "<M8[]", "<i+8", "<f 4", "|S-1",
        ] {
            assert!(Dtype::parse(descr).is_err(), "{descr}");
        }
        for descr in ["<M8[ns]", "<m8[10ms]", ">M8[D]", "<M8", "<f4", "|S3"] {
            assert!(Dtype::parse(descr).is_ok(), "{descr}");
        }
    }
}
