//! Schema-addressed object paths (`<npy@>`, `<object@>`), exactly as DataJoint builds them:
//!
//! `{schema_prefix}/[{pattr}={v}/...]{schema}/{table}/{pk1}={v1}/.../{field}_{token}{ext}`
//!
//! Primary-key values are rendered as DataJoint's `encode_pk_value` renders the Python value
//! psycopg2 gives it for the PostgreSQL value: [`encode_pk_text`] takes PostgreSQL's text output
//! of the value (with `DateStyle = ISO`) and its type, and reproduces Python's `str()`, `repr()`
//! of floats, `Decimal.__str__`, `isoformat()` and `strftime` as DataJoint uses them.

use md5::{Digest, Md5};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::OasError;

/// DataJoint's token alphabet (`storage.TOKEN_ALPHABET`): URL-safe, 64 symbols.
pub const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The PostgreSQL types a primary-key value may have, as far as rendering goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkType {
    Int,
    Float,
    Numeric,
    Bool,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Uuid,
    /// text, varchar, char(n), name, enums: Python gets a `str`.
    Text,
}

/// A random token of `length` characters (clamped to 4..=16 as DataJoint does).
pub fn generate_token(length: u32, random: &mut impl FnMut() -> u8) -> String {
    let n = length.clamp(4, 16) as usize;
    // 256 is a multiple of 64: the low six bits of a uniform byte are uniform.
    (0..n)
        .map(|_| TOKEN_ALPHABET[(random() & 63) as usize] as char)
        .collect()
}

/// A fresh random token from the operating system's generator, as DataJoint's
/// `secrets.choice` draws them.
pub fn random_token(length: u32) -> Result<String, OasError> {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf)
        .map_err(|e| OasError::invalid_argument(format!("no random numbers: {e}")))?;
    let mut bytes = buf.into_iter();
    Ok(generate_token(length, &mut || bytes.next().unwrap_or(0)))
}

/// Render a primary-key value given as PostgreSQL's text output (DateStyle ISO) of `ty`.
pub fn encode_pk_text(ty: PkType, text: &str) -> Result<String, OasError> {
    let unsupported = || {
        OasError::invalid_argument(format!(
            "cannot render primary-key value \"{text}\" of this type in an object path"
        ))
    };
    Ok(match ty {
        PkType::Int => text.to_string(),
        PkType::Float => python_float_repr(text.parse::<f64>().map_err(|_| unsupported())?),
        PkType::Numeric => python_decimal_str(text).ok_or_else(unsupported)?,
        PkType::Bool => match text {
            "t" | "true" => "True".into(),
            "f" | "false" => "False".into(),
            _ => return Err(unsupported()),
        },
        PkType::Date => {
            if text.ends_with(" BC") || text.contains("infinity") {
                return Err(unsupported());
            }
            text.to_string()
        }
        PkType::Timestamp | PkType::TimestampTz => {
            // "2024-01-15 12:30:45.123456+01" -> "2024-01-15T12-30-45" (strftime drops the rest).
            let b = text.as_bytes();
            if b.len() < 19 || b[10] != b' ' || text.ends_with(" BC") || !text.is_char_boundary(19)
            {
                return Err(unsupported());
            }
            format!("{}T{}", &text[..10], text[11..19].replace(':', "-"))
        }
        PkType::Time => {
            // Python's time.isoformat(): microseconds shown (as 6 digits) only when non-zero.
            let (hms, frac) = text.split_once('.').unwrap_or((text, ""));
            if hms.len() != 8 || frac.bytes().any(|c| !c.is_ascii_digit()) || frac.len() > 6 {
                return Err(unsupported());
            }
            if frac.bytes().all(|c| c == b'0') {
                hms.to_string()
            } else {
                format!("{hms}.{frac:0<6}")
            }
        }
        PkType::Uuid => text.to_string(),
        PkType::Text => encode_string(text),
    })
}

/// DataJoint's rule for strings: URL-quote (`quote(s, safe="")`) when the string has any of
/// `/\:*?"<>|` or more than 100 characters; long ones are first cut to 50 characters plus `_`
/// and the first 8 hex digits of their MD5.
fn encode_string(s: &str) -> String {
    let chars = s.chars().count();
    if !(chars > 100 || s.contains(['/', '\\', ':', '*', '?', '"', '<', '>', '|'])) {
        return s.to_string();
    }
    let cut = if chars > 100 {
        let digest = Md5::digest(s.as_bytes());
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{}_{hex}", s.chars().take(50).collect::<String>())
    } else {
        s.to_string()
    };
    url_quote(&cut)
}

/// What Python's `urllib.parse.quote(s, safe="")` leaves as it is: letters, digits and `_.-~`
/// (every other byte of the UTF-8 text, non-ASCII included, becomes `%XX`).
const QUOTE_SAFE_NONE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// `urllib.parse.quote(s, safe="")`, as DataJoint quotes key strings.
fn url_quote(s: &str) -> String {
    utf8_percent_encode(s, QUOTE_SAFE_NONE).to_string()
}

/// Python's `repr(float)` (which `str()` uses): the shortest round-tripping digits, in fixed
/// notation when the decimal exponent is in -4..16, scientific (`1e-05`, `1e+16`) otherwise.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let s = format!("{x:e}");
    let (mantissa, exp) = s.split_once('e').expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1;
    let body = if -4 < decpt && decpt <= 16 {
        let n = digits.len() as i32;
        if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..decpt as usize],
                &digits[decpt as usize..]
            )
        }
    } else {
        let rest = &digits[1..];
        let e = decpt - 1;
        format!(
            "{}{}{}e{}{:02}",
            &digits[..1],
            if rest.is_empty() { "" } else { "." },
            rest,
            if e < 0 { "-" } else { "+" },
            e.abs()
        )
    };
    format!("{sign}{body}")
}

/// Python's `str(Decimal(text))` for PostgreSQL's numeric output (`1.50`, `0.0000001`, `NaN`).
fn python_decimal_str(text: &str) -> Option<String> {
    match text {
        "NaN" => return Some("NaN".into()),
        "Infinity" => return Some("Infinity".into()),
        "-Infinity" => return Some("-Infinity".into()),
        _ => {}
    }
    let (sign, t) = match text.strip_prefix('-') {
        Some(t) => ("-", t),
        None => ("", text),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let all: String = format!("{int}{frac}");
    let coeff = all.trim_start_matches('0');
    let coeff = if coeff.is_empty() { "0" } else { coeff };
    let exp = -(frac.len() as i64);
    let adjusted = exp + coeff.len() as i64 - 1;
    let body = if exp <= 0 && adjusted >= -6 {
        if exp == 0 {
            coeff.to_string()
        } else {
            let point = coeff.len() as i64 + exp;
            if point > 0 {
                format!("{}.{}", &coeff[..point as usize], &coeff[point as usize..])
            } else {
                format!("0.{}{coeff}", "0".repeat((-point) as usize))
            }
        }
    } else {
        let rest = &coeff[1..];
        format!(
            "{}{}{}E{}{}",
            &coeff[..1],
            if rest.is_empty() { "" } else { "." },
            rest,
            if adjusted < 0 { "-" } else { "+" },
            adjusted.abs()
        )
    };
    Some(format!("{sign}{body}"))
}

/// Where a schema-addressed object belongs: the store's layout settings and the column.
#[derive(Debug, Clone, Copy)]
pub struct ObjectSite<'a> {
    /// The store's `schema_prefix` (`_schema` by default; `""` is DataJoint's legacy layout).
    pub schema_prefix: &'a str,
    /// The store's `partition_pattern`, `{attr}` placeholders.
    pub partition_pattern: Option<&'a str>,
    pub schema: &'a str,
    /// The table's name as it is in the database (with DataJoint's tier prefix).
    pub table: &'a str,
    pub field: &'a str,
    /// File extension, with or without the dot.
    pub ext: Option<&'a str>,
}

/// DataJoint's `build_object_path`, given primary-key values already rendered (in table order)
/// and the token. Partition attributes named in the pattern that are in the key move in front of
/// the schema, in the pattern's order.
pub fn build_object_path(site: &ObjectSite<'_>, key: &[(&str, String)], token: &str) -> String {
    let partition_attrs: Vec<&str> = site.partition_pattern.map(placeholders).unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    let prefix = site.schema_prefix.trim_matches('/');
    if !prefix.is_empty() {
        parts.push(prefix.to_string());
    }
    for attr in &partition_attrs {
        if let Some((name, v)) = key.iter().find(|(name, _)| name == attr) {
            parts.push(format!("{name}={v}"));
        }
    }
    parts.push(site.schema.to_string());
    parts.push(site.table.to_string());
    for (name, v) in key {
        if !partition_attrs.contains(name) {
            parts.push(format!("{name}={v}"));
        }
    }
    let mut file = format!("{}_{token}", site.field);
    if let Some(ext) = site.ext.filter(|e| !e.is_empty()) {
        if !ext.starts_with('.') {
            file.push('.');
        }
        file.push_str(ext);
    }
    parts.push(file);
    parts.join("/")
}

/// `re.findall(r"\{(\w+)\}", pattern)`.
fn placeholders(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find(|c: char| !(c.is_alphanumeric() || c == '_')) {
            Some(end) if end > 0 && after[end..].starts_with('}') => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_render_like_python_repr() {
        // Expected values are Python's repr().
        for (x, py) in [
            (2.5, "2.5"),
            (-5.0, "-5.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e300, "1.5e+300"),
            (123456789.125, "123456789.125"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
            (1.0 / 3.0, "0.3333333333333333"),
        ] {
            assert_eq!(python_float_repr(x), py, "{x}");
        }
    }

    #[test]
    fn numerics_render_like_python_decimal() {
        for (pg, py) in [
            ("1.50", "1.50"),
            ("100", "100"),
            ("0.0000001", "1E-7"),
            ("0.00", "0.00"),
            ("-0.5", "-0.5"),
            ("0.000001", "0.000001"),
            ("12345.678", "12345.678"),
            ("NaN", "NaN"),
            ("0", "0"),
        ] {
            assert_eq!(python_decimal_str(pg).unwrap(), py, "{pg}");
        }
    }

    #[test]
    fn values_of_every_type() {
        let e = |t, s: &str| encode_pk_text(t, s).unwrap();
        assert_eq!(e(PkType::Int, "-5"), "-5");
        assert_eq!(e(PkType::Bool, "t"), "True");
        assert_eq!(e(PkType::Date, "2024-01-15"), "2024-01-15");
        assert_eq!(
            e(PkType::Timestamp, "2024-01-15 12:30:45.123456"),
            "2024-01-15T12-30-45"
        );
        assert_eq!(
            e(PkType::TimestampTz, "2024-01-15 12:30:45+01"),
            "2024-01-15T12-30-45"
        );
        assert_eq!(e(PkType::Time, "12:30:45"), "12:30:45");
        assert_eq!(e(PkType::Time, "12:30:45.5"), "12:30:45.500000");
        assert_eq!(
            e(PkType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(e(PkType::Text, "mouse 7 = ok%"), "mouse 7 = ok%");
        assert_eq!(e(PkType::Text, "a/b:c"), "a%2Fb%3Ac");
        assert_eq!(e(PkType::Text, "é/x"), "%C3%A9%2Fx");
        let long = "x".repeat(120);
        // Python: s[:50] + "_" + md5(s).hexdigest()[:8], then quote(safe="").
        assert_eq!(
            e(PkType::Text, &long),
            format!("{}_fb98667f", "x".repeat(50))
        );
        assert!(encode_pk_text(PkType::Date, "0044-03-15 BC").is_err());
        assert!(encode_pk_text(PkType::Bool, "maybe").is_err());
    }

    #[test]
    fn url_quoting_matches_python() {
        // Python 3.11: urllib.parse.quote(s, safe="") for each s.
        for (s, py) in [
            ("a/b:c", "a%2Fb%3Ac"),
            ("é/x", "%C3%A9%2Fx"),
            (
                " !\"#$%&'()*+,/:;<=>?@[\\]^`{|}",
                "%20%21%22%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D",
            ),
            ("~_.-AZaz09", "~_.-AZaz09"),
            ("tab\there|", "tab%09here%7C"),
            ("\x7f\x01/", "%7F%01%2F"),
            ("日本/語", "%E6%97%A5%E6%9C%AC%2F%E8%AA%9E"),
            ("emoji😀?", "emoji%F0%9F%98%80%3F"),
            ("%2F/", "%252F%2F"),
            ("a+b=c&d", "a%2Bb%3Dc%26d"),
        ] {
            assert_eq!(url_quote(s), py, "{s:?}");
            // Each has a character DataJoint deems unsafe, or none to quote.
            if s.contains(['/', '\\', ':', '*', '?', '"', '<', '>', '|']) {
                assert_eq!(encode_pk_text(PkType::Text, s).unwrap(), py, "{s:?}");
            }
        }
    }

    #[test]
    fn paths_match_datajoint() {
        // From DataJoint 2.3.5's build_object_path with the token fixed.
        let key = [
            ("subject_id", "42".to_string()),
            ("session_date", "2024-01-15".to_string()),
            ("sid", "1".to_string()),
        ];
        let site = |schema_prefix, partition_pattern, schema, table, field, ext| ObjectSite {
            schema_prefix,
            partition_pattern,
            schema,
            table,
            field,
            ext,
        };
        let analysis = site(
            "_schema",
            Some("{subject_id}/{session_date}"),
            "sch",
            "__analysis",
            "results",
            Some(".zarr"),
        );
        assert_eq!(
            build_object_path(&analysis, &key, "D0MPPVe2"),
            "_schema/subject_id=42/session_date=2024-01-15/sch/__analysis/sid=1/results_D0MPPVe2.zarr"
        );
        let lookup = site("_schema", None, "lab", "#lookup", "traces", Some("npy"));
        assert_eq!(
            build_object_path(&lookup, &key[2..], "AbCd"),
            "_schema/lab/#lookup/sid=1/traces_AbCd.npy"
        );
        // DataJoint's brace-less example pattern matches nothing; the legacy layout has no prefix.
        let legacy = site("", Some("subject_id/x"), "lab", "t", "f", None);
        assert_eq!(build_object_path(&legacy, &[], "tok0"), "lab/t/f_tok0");
    }

    #[test]
    fn tokens_use_datajoints_alphabet_and_length() {
        let mut n = 0u8;
        let mut next = || {
            n = n.wrapping_add(37);
            n
        };
        let t = generate_token(8, &mut next);
        assert_eq!(t.len(), 8);
        assert!(t.bytes().all(|b| TOKEN_ALPHABET.contains(&b)));
        assert_eq!(generate_token(2, &mut next).len(), 4);
        assert_eq!(generate_token(40, &mut next).len(), 16);
    }
}
