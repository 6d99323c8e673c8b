//! Array elements as PostgreSQL numbers: `f64` in C order, and PostgreSQL `numeric` values as
//! the float64 elements NumPy would store.

use super::{bad, ByteOrder, Dtype};
use crate::error::OasError;

/// The elements of an array's data (`data`, in the array's own order) as `f64` in C order, for
/// a PostgreSQL `double precision[]`. Numeric and bool dtypes only; integers beyond 2^53 are
/// refused rather than rounded.
pub fn to_f64_c_order(
    dtype: &Dtype,
    fortran_order: bool,
    shape: &[u64],
    data: &[u8],
) -> Result<Vec<f64>, OasError> {
    let size = dtype.itemsize;
    // The dtype decides, not the slice: an empty slice of a complex array is refused too.
    if !matches!(
        (dtype.kind, size),
        ('b', 1) | ('u' | 'i', 1 | 2 | 4 | 8) | ('f', 2 | 4 | 8)
    ) {
        return Err(OasError::invalid_argument_hint(
            format!("dtype \"{}\" has no PostgreSQL number array", dtype.descr),
            "oas_npy_slice returns the .npy bytes of any dtype",
        ));
    }
    let count = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad("shape too large"))?;
    if (data.len() as u64) != count.saturating_mul(size as u64) {
        return Err(bad("array data does not match its shape"));
    }
    let big = dtype.order == ByteOrder::Big;
    let word = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        if big {
            for &x in b {
                v = (v << 8) | u64::from(x);
            }
        } else {
            for &x in b.iter().rev() {
                v = (v << 8) | u64::from(x);
            }
        }
        v
    };
    // Integers up to 2^53 in magnitude are exactly a double; compared as integers (2^53 + 1 as
    // a double is 2^53, so a comparison of doubles would let it through, rounded).
    const EXACT: u64 = 1 << 53;
    let decode = |b: &[u8]| -> Result<f64, OasError> {
        let w = word(b);
        Ok(match (dtype.kind, size) {
            ('b', 1) => f64::from(u8::from(w != 0)),
            ('u', 1 | 2 | 4 | 8) => {
                let v = w as f64;
                if w > EXACT {
                    return Err(bad(format!(
                        "integer {w} cannot be a double precision exactly"
                    )));
                }
                v
            }
            ('i', 1 | 2 | 4 | 8) => {
                let shift = 64 - 8 * size as u32;
                let v = ((w << shift) as i64) >> shift;
                if v.unsigned_abs() > EXACT {
                    return Err(bad(format!(
                        "integer {v} cannot be a double precision exactly"
                    )));
                }
                v as f64
            }
            ('f', 2) => f16_to_f64(w as u16),
            ('f', 4) => f64::from(f32::from_bits(w as u32)),
            ('f', 8) => f64::from_bits(w),
            _ => {
                return Err(OasError::invalid_argument_hint(
                    format!("dtype \"{}\" has no PostgreSQL number array", dtype.descr),
                    "oas_npy_slice returns the .npy bytes of any dtype",
                ))
            }
        })
    };
    let n = count as usize;
    let mut out = Vec::with_capacity(n);
    if !fortran_order || shape.len() < 2 {
        for chunk in data.chunks_exact(size.max(1)).take(n) {
            out.push(decode(chunk)?);
        }
        return Ok(out);
    }
    // Fortran order: walk the C-order index and find each element's Fortran offset.
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let mut strides = vec![1usize; dims.len()];
    for k in 1..dims.len() {
        strides[k] = strides[k - 1] * dims[k - 1];
    }
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(decode(&data[off * size..(off + 1) * size])?);
        for k in (0..dims.len()).rev() {
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(out)
}

/// A PostgreSQL `numeric` (its text form, as `numeric_out` writes it: no exponent) as the float64 NumPy stores
/// for the same Python float: the nearest double, as `float('0.1')` rounds (a DataJoint user's
/// `[[1.5, 2.5], [3.5, 4.5]]` is a list of Python floats). Refused rather than changed: a value
/// beyond float64's range (it would become infinite, or a non-zero value zero), and one beyond
/// 2^53 in magnitude that is not exactly a double (`9007199254740993`: integers there are not
/// rounded, as `oas_npy_slice_array` refuses them). `NaN` and the infinities carry over.
pub fn numeric_to_f64(text: &str) -> Result<f64, OasError> {
    let refused = |why: &str| {
        OasError::invalid_argument_hint(
            format!("numeric value {text} {why}"),
            "cast the array to ::bigint[] to keep integers exactly (int64), or to \
             ::float8[] to store rounded float64 values",
        )
    };
    let v: f64 = text
        .parse()
        .map_err(|_| bad(format!("\"{text}\" is not a numeric value")))?;
    let digits = text.trim_start_matches(['-', '+']);
    let special = digits.eq_ignore_ascii_case("nan") || digits.eq_ignore_ascii_case("infinity");
    if special {
        return Ok(v);
    }
    if v.is_infinite() {
        return Err(refused("is beyond the range of float64"));
    }
    let nonzero = digits.bytes().any(|b| matches!(b, b'1'..=b'9'));
    if v == 0.0 && nonzero {
        return Err(refused("is too small for float64 (it would become 0)"));
    }
    const EXACT: u64 = 1 << 53;
    if v.abs() >= EXACT as f64 {
        // Every double from 2^53 on is an integer: a value beyond 2^53 is kept only if it is
        // exactly that integer (one just below 2^53 may round up to it, as a Python float does).
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let int = int.trim_start_matches('0');
        let fraction = frac.bytes().any(|b| b != b'0');
        let limit = EXACT.to_string();
        let beyond = (int.len(), int) > (limit.len(), limit.as_str()) || (int == limit && fraction);
        if beyond && (fraction || int != format!("{:.0}", v.abs())) {
            return Err(refused("is beyond 2^53 and not exactly a float64"));
        }
    }
    Ok(v)
}

/// IEEE half precision to double.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_as_doubles_in_c_order() {
        let le = |d: &str| Dtype::parse(d).unwrap();
        let data: Vec<u8> = [1i16, -2, 3, 4, 5, 6]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            to_f64_c_order(&le("<i2"), false, &[2, 3], &data).unwrap(),
            vec![1.0, -2.0, 3.0, 4.0, 5.0, 6.0]
        );
        // The same bytes as a Fortran-order (2, 3) array: columns first.
        assert_eq!(
            to_f64_c_order(&le("<i2"), true, &[2, 3], &data).unwrap(),
            vec![1.0, 3.0, 5.0, -2.0, 4.0, 6.0]
        );
        let be: Vec<u8> = [1.5f64, -0.25]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(
            to_f64_c_order(&le(">f8"), false, &[2], &be).unwrap(),
            vec![1.5, -0.25]
        );
        assert_eq!(
            to_f64_c_order(
                &le("<f2"),
                false,
                &[3],
                &[0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c]
            )
            .unwrap(),
            vec![1.0, -2.0, f64::INFINITY]
        );
        assert_eq!(
            to_f64_c_order(&le("|b1"), false, &[2], &[0, 1]).unwrap(),
            vec![0.0, 1.0]
        );
        assert_eq!(
            to_f64_c_order(&le("<u1"), false, &[], &[200]).unwrap(),
            vec![200.0]
        );
        let huge = (1i64 << 60).to_le_bytes();
        assert!(to_f64_c_order(&le("<i8"), false, &[1], &huge).is_err());
        // 2^53 is exact; 2^53 + 1 would round to 2^53 and is refused, either sign, signed or not.
        for (dtype, v, ok) in [
            ("<i8", (1i64 << 53).to_le_bytes(), true),
            ("<i8", (-(1i64 << 53)).to_le_bytes(), true),
            ("<i8", ((1i64 << 53) + 1).to_le_bytes(), false),
            ("<i8", (-(1i64 << 53) - 1).to_le_bytes(), false),
            ("<u8", ((1i64 << 53) + 1).to_le_bytes(), false),
            ("<i8", i64::MIN.to_le_bytes(), false),
        ] {
            assert_eq!(
                to_f64_c_order(&le(dtype), false, &[1], &v).is_ok(),
                ok,
                "{dtype} {v:?}"
            );
        }
        assert!(to_f64_c_order(&le("<U2"), false, &[1], &[0; 8]).is_err());
        assert!(to_f64_c_order(&le("<c8"), false, &[1], &[0; 8]).is_err());
        assert!(to_f64_c_order(&le("<c8"), false, &[0], &[]).is_err());
        assert!(to_f64_c_order(&le("<i4"), false, &[2], &[0; 4]).is_err());
    }

    #[test]
    fn numeric_values_as_numpy_stores_python_floats() {
        let ok = |t: &str| numeric_to_f64(t).unwrap();
        assert_eq!(ok("1.5"), 1.5);
        assert_eq!(ok("-2.50"), -2.5);
        assert_eq!(ok("0.1"), 0.1); // the nearest double, as float('0.1')
        assert_eq!(ok("0"), 0.0);
        assert_eq!(ok("-0.000"), 0.0);
        assert_eq!(ok("9007199254740992"), 9007199254740992.0);
        assert_eq!(ok("-9007199254740992.000"), -9007199254740992.0);
        assert_eq!(ok("18014398509481984"), 18014398509481984.0); // 2^54, exact
        assert_eq!(ok(&format!("0.{}5", "0".repeat(320))), 5e-321); // subnormal, not zero
        assert_eq!(ok("9007199254740991.7"), 9007199254740992.0); // below 2^53: rounds
        assert_eq!(ok("Infinity"), f64::INFINITY);
        assert_eq!(ok("-Infinity"), f64::NEG_INFINITY);
        assert!(ok("NaN").is_nan());
        let big = format!("1{}", "0".repeat(400));
        let tiny = format!("0.{}1", "0".repeat(400));
        for (t, why) in [
            ("9007199254740993", "not exactly a float64"),
            ("-9007199254740993", "not exactly a float64"),
            ("9007199254740992.5", "not exactly a float64"),
            (big.as_str(), "beyond the range of float64"),
            (tiny.as_str(), "too small for float64"),
        ] {
            let e = numeric_to_f64(t).unwrap_err();
            assert!(e.to_string().contains(why), "{t}: {e}");
            assert!(format!("{e:?}").contains("::float8[]"), "{t}: {e:?}");
        }
        assert!(numeric_to_f64("abc").is_err());
    }
}
