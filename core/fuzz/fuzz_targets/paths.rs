//! The path builders and the rules that read paths back, on structured input (`arbitrary`): a
//! store spec's layout keys, a schema, table, field, extension, primary-key values and content.
//!
//! - `encode_pk_text` never panics and fails only with `InvalidArgument`; values of each type as
//!   PostgreSQL writes them render (floats and decimals to the same value, strings without a path
//!   separator);
//! - `hash_path` and `build_object_path` give canonical relative paths (no empty, `.` or `..`
//!   segment, no backslash, no control character, no leading `/`) whenever their parts are
//!   valid, and `hash_path` errors (never panics) otherwise;
//! - the readers agree with the builders: `section_of`, `owner_schema` and `owner_path` give back
//!   the section, schema and entry a path was built for, and the parsers accept built paths;
//!   `require_read_back`, the writers' check of that, refuses exactly the paths DataJoint's
//!   layout makes ambiguous (`=` in a schema, field or extension; a `.manifest.json`
//!   extension; a prefix collision);
//! - `untrash_key(trash_key(p)) == Some(p)`, and for any key the readers do not panic and give
//!   slices of it.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use oas_core::codec::ObjectRef;
use oas_core::gc::{
    is_hash_object, owner_path, owner_schema, reference_paths, require_read_back, schema_of,
    section_of, trash_key, untrash_key, Section,
};
use oas_core::hash::content_hash;
use oas_core::objpath::{build_object_path, encode_pk_text, generate_token, ObjectSite, PkType};
use oas_core::path::{hash_path, validate_schema_name};
use oas_core::reference::HashRef;
use oas_core::spec::StoreSpec;
use oas_core::OasError;
use serde_json::{json, Value};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// `None`: the key is not in the spec (DataJoint's default).
    hash_prefix: Option<&'a str>,
    schema_prefix: Option<&'a str>,
    partition_pattern: Option<&'a str>,
    subfolding: Option<Vec<u8>>,
    schema: &'a str,
    table: &'a str,
    field: &'a str,
    ext: Option<&'a str>,
    key: Vec<(&'a str, Pk<'a>)>,
    token_length: u8,
    token_bytes: &'a [u8],
    /// Content whose hash is stored, or a string given as a hash.
    content: &'a [u8],
    raw_hash: &'a str,
    /// A listed key, for the readers.
    listed: &'a str,
}

/// A primary-key value: typed ones are rendered as PostgreSQL's text output of such a value
/// (DateStyle ISO); `Raw` is any text claimed to be of any type.
#[derive(Arbitrary, Debug)]
enum Pk<'a> {
    Int(i64),
    Float(f64, bool),
    Numeric(bool, &'a [u8], &'a [u8]),
    Bool(bool, bool),
    Date(u16, u8, u8),
    Timestamp(u16, u8, u8, u8, u8, u8, u32, Option<i8>),
    Time(u8, u8, u8, u32),
    Uuid([u8; 16]),
    Text(&'a str),
    Raw(u8, &'a str),
}

const TYPES: [PkType; 10] = [
    PkType::Int,
    PkType::Float,
    PkType::Numeric,
    PkType::Bool,
    PkType::Date,
    PkType::Timestamp,
    PkType::TimestampTz,
    PkType::Time,
    PkType::Uuid,
    PkType::Text,
];

/// What `validate_relative_path` promises, written out independently of it.
fn canonical(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

fn assert_canonical(what: &str, path: &str) {
    assert!(
        canonical(path),
        "{what} built a non-canonical path {path:?}"
    );
}

/// One path segment: canonical and without `/`.
fn segment(s: &str) -> bool {
    !s.contains('/') && canonical(s)
}

/// Text a primary-key value may render to and stay inside its `name=value` segment.
fn value_text(s: &str) -> bool {
    !s.contains(['/', '\\']) && !s.chars().any(char::is_control)
}

fn assert_invalid_argument(what: &str, e: &OasError) {
    assert!(
        matches!(e, OasError::InvalidArgument { .. }),
        "{what}: unexpected error kind {e:?}"
    );
}

/// A decimal's sign, coefficient digits (no leading zeros) and exponent, from PostgreSQL's
/// `numeric` text or Python's `str(Decimal)`.
fn decimal_value(s: &str) -> Option<(bool, String, i64)> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (mantissa, exp) = match s.split_once('E') {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let coeff = digits.trim_start_matches('0');
    let coeff = if coeff.is_empty() { "0" } else { coeff };
    Some((neg, coeff.to_string(), exp - frac.len() as i64))
}

/// Render a typed value as PostgreSQL does, call `encode_pk_text` and check what it gives.
fn render(pk: &Pk<'_>) -> Option<String> {
    let ok = |ty: PkType, text: &str| -> String {
        encode_pk_text(ty, text)
            .unwrap_or_else(|e| panic!("{ty:?} value {text:?} as PostgreSQL writes it: {e}"))
    };
    let out = match *pk {
        Pk::Int(i) => {
            let s = ok(PkType::Int, &i.to_string());
            assert_eq!(s, i.to_string());
            s
        }
        Pk::Float(x, sci) => {
            let text = if x.is_nan() {
                "NaN".to_string()
            } else if x.is_infinite() {
                if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
            } else if sci {
                format!("{x:e}")
            } else {
                format!("{x}")
            };
            let s = ok(PkType::Float, &text);
            // Python's repr round-trips.
            let back: f64 = s
                .parse()
                .unwrap_or_else(|_| panic!("{s:?} from {text:?} is no float"));
            assert!(
                back.to_bits() == x.to_bits() || (x.is_nan() && back.is_nan()),
                "{text:?} rendered as {s:?}"
            );
            s
        }
        Pk::Numeric(neg, int, frac) => {
            let digits = |b: &[u8]| -> String {
                b.iter()
                    .take(40)
                    .map(|d| char::from(b'0' + d % 10))
                    .collect()
            };
            let int = digits(int);
            let int = if int.is_empty() { "0".to_string() } else { int };
            let mut text = format!("{}{int}", if neg { "-" } else { "" });
            if !frac.is_empty() {
                text = format!("{text}.{}", digits(frac));
            }
            let s = ok(PkType::Numeric, &text);
            assert_eq!(
                decimal_value(&s),
                decimal_value(&text),
                "{text:?} rendered as {s:?}"
            );
            s
        }
        Pk::Bool(b, long) => {
            let text = match (b, long) {
                (true, false) => "t",
                (true, true) => "true",
                (false, false) => "f",
                (false, true) => "false",
            };
            let s = ok(PkType::Bool, text);
            assert_eq!(s, if b { "True" } else { "False" });
            s
        }
        Pk::Date(y, m, d) => {
            let text = format!("{:04}-{:02}-{:02}", y % 10000, m % 12 + 1, d % 28 + 1);
            let s = ok(PkType::Date, &text);
            assert_eq!(s, text);
            s
        }
        Pk::Timestamp(y, mo, d, h, mi, sec, micros, tz) => {
            let hms = format!("{:02}:{:02}:{:02}", h % 24, mi % 60, sec % 60);
            let date = format!("{:04}-{:02}-{:02}", y % 10000, mo % 12 + 1, d % 28 + 1);
            let mut text = format!("{date} {hms}");
            if micros % 1_000_000 != 0 {
                text.push_str(format!(".{:06}", micros % 1_000_000).trim_end_matches('0'));
            }
            let ty = match tz {
                Some(z) => {
                    text.push_str(&format!("{:+03}", z % 15));
                    PkType::TimestampTz
                }
                None => PkType::Timestamp,
            };
            let s = ok(ty, &text);
            assert_eq!(s, format!("{date}T{}", hms.replace(':', "-")));
            s
        }
        Pk::Time(h, mi, sec, micros) => {
            let hms = format!("{:02}:{:02}:{:02}", h % 24, mi % 60, sec % 60);
            let micros = micros % 1_000_000;
            let text = if micros == 0 {
                hms.clone()
            } else {
                format!("{hms}{}", format!(".{micros:06}").trim_end_matches('0'))
            };
            let s = ok(PkType::Time, &text);
            let want = if micros == 0 {
                hms
            } else {
                format!("{hms}.{micros:06}")
            };
            assert_eq!(s, want);
            s
        }
        Pk::Uuid(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            let text = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            let s = ok(PkType::Uuid, &text);
            assert_eq!(s, text);
            s
        }
        Pk::Text(t) => {
            let s = ok(PkType::Text, t);
            // DataJoint's rule: quoted when it has one of these or more than 100 characters.
            assert!(
                !s.contains(['/', '\\', ':', '*', '?', '"', '<', '>', '|']),
                "{t:?} rendered as {s:?}"
            );
            if t.chars().count() > 100 {
                assert!(
                    s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-~%".contains(&b)),
                    "{s:?}"
                );
                assert!(s.len() <= 3 * (50 * 4 + 9), "{} bytes", s.len());
            }
            s
        }
        Pk::Raw(ty, text) => {
            let ty = TYPES[ty as usize % TYPES.len()];
            match encode_pk_text(ty, text) {
                Ok(s) => {
                    if ty == PkType::Text {
                        assert!(!s.contains(['/', '\\']), "{text:?} rendered as {s:?}");
                    }
                    return None;
                }
                Err(e) => {
                    assert_invalid_argument("encode_pk_text", &e);
                    return None;
                }
            }
        }
    };
    Some(out)
}

fn spec_of(input: &Input<'_>) -> Option<StoreSpec> {
    let mut spec = json!({"protocol": "file", "location": "/store"});
    let m = spec.as_object_mut().expect("an object");
    if let Some(p) = input.hash_prefix {
        m.insert("hash_prefix".into(), p.into());
    }
    if let Some(p) = input.schema_prefix {
        m.insert("schema_prefix".into(), p.into());
    }
    if let Some(p) = input.partition_pattern {
        m.insert("partition_pattern".into(), p.into());
    }
    if let Some(f) = &input.subfolding {
        m.insert("subfolding".into(), Value::from(f.clone()));
    }
    match StoreSpec::from_json(&spec) {
        Ok(s) => Some(s),
        Err(OasError::InvalidSpec { .. }) => None,
        Err(e) => panic!("a spec's error is InvalidSpec, not {e:?}"),
    }
}

/// Hash-addressed paths: built from the spec, read back by the section rules and the parser.
fn check_hash(input: &Input<'_>, spec: Option<&StoreSpec>) {
    // Any prefix and folds: an error or a canonical path, never a panic.
    let raw_prefix = input.hash_prefix.unwrap_or("_hash");
    let raw_folds: Option<Vec<usize>> = input
        .subfolding
        .as_ref()
        .map(|f| f.iter().map(|&n| usize::from(n)).collect());
    for hash in [content_hash(input.content).as_str(), input.raw_hash] {
        match hash_path(raw_prefix, input.schema, hash, raw_folds.as_deref()) {
            Ok(p) => assert_canonical("hash_path", &p),
            Err(e) => assert_invalid_argument("hash_path", &e),
        }
    }
    if let Ok(p) = hash_path("_hash", input.schema, input.raw_hash, None) {
        assert_eq!(p.rsplit('/').next(), Some(input.raw_hash));
        assert!(
            is_hash_object(&p),
            "{:?} accepted as a hash",
            input.raw_hash
        );
    }

    let Some(spec) = spec else { return };
    let h = content_hash(input.content);
    let built = hash_path(
        &spec.hash_prefix,
        input.schema,
        &h,
        spec.subfolding.as_deref(),
    );
    let p = match built {
        Ok(p) => p,
        Err(e) => {
            assert_invalid_argument("hash_path", &e);
            assert!(
                validate_schema_name(input.schema).is_err(),
                "hash_path refused schema {:?} that validate_schema_name accepts: {e}",
                input.schema
            );
            return;
        }
    };
    assert!(validate_schema_name(input.schema).is_ok());
    assert_canonical("hash_path", &p);
    assert_eq!(p.rsplit('/').next(), Some(h.as_str()));
    assert!(is_hash_object(&p));
    if !spec.hash_prefix.is_empty() {
        assert!(p.starts_with(&format!("{}/", spec.hash_prefix)));
    }
    // The readers: the section, the schema that owns it, the path itself as its owner. The
    // writers refuse (`require_read_back`) exactly the paths DataJoint's layout cannot tell
    // apart: with no hash prefix, a hash path inside the schema-addressed section.
    let (hp, sp) = (spec.hash_prefix.as_str(), spec.schema_prefix.as_str());
    let ambiguous = hp.is_empty() && !sp.is_empty() && p.starts_with(&format!("{sp}/"));
    match require_read_back(hp, sp, Section::Hash, input.schema, &p) {
        Ok(()) => assert!(!ambiguous, "{p:?} ({hp:?}, {sp:?}) accepted"),
        Err(e) => {
            assert_invalid_argument("require_read_back", &e);
            assert!(ambiguous, "{p:?} ({hp:?}, {sp:?}) refused: {e}");
            return;
        }
    }
    assert_eq!(
        section_of(hp, sp, &p),
        Section::Hash,
        "{p:?} ({hp:?}, {sp:?})"
    );
    assert_eq!(owner_schema(hp, sp, &p), Some(input.schema), "{p:?}");
    assert_eq!(schema_of(Section::Hash, hp, &p), Some(input.schema));
    assert_eq!(owner_path(Section::Hash, sp, &p), p);
    // The reference the row keeps parses back to itself, as a hash and as an object reference.
    let r = HashRef {
        hash: h.clone(),
        path: p.clone(),
        schema: input.schema.to_string(),
        store: Some("main".into()),
        size: input.content.len() as u64,
    };
    assert_eq!(
        HashRef::from_json(&r.to_json()).expect("a built reference"),
        r
    );
    let o = ObjectRef::from_json(&r.to_json()).expect("a built reference");
    assert_eq!((o.path, o.hash), (p.clone(), Some(h)));
    check_trash(&p);
}

/// Schema-addressed paths.
fn check_object(input: &Input<'_>, spec: Option<&StoreSpec>) {
    let rendered: Vec<(&str, String)> = input
        .key
        .iter()
        .take(8)
        .filter_map(|(name, pk)| Some((*name, render(pk)?)))
        .collect();
    let token = {
        let mut bytes = input.token_bytes.iter().copied();
        generate_token(u32::from(input.token_length), &mut || {
            bytes.next().unwrap_or(0)
        })
    };
    let (schema_prefix, partition_pattern) = match spec {
        Some(s) => (s.schema_prefix.as_str(), s.partition_pattern.as_deref()),
        None => (
            input.schema_prefix.unwrap_or("_schema"),
            input.partition_pattern,
        ),
    };
    let site = ObjectSite {
        schema_prefix,
        partition_pattern,
        schema: input.schema,
        table: input.table,
        field: input.field,
        ext: input.ext,
    };
    let p = build_object_path(&site, &rendered, &token);
    let Some(spec) = spec else { return };

    let parts_valid = segment(input.schema)
        && segment(input.table)
        && segment(input.field)
        && input
            .ext
            .is_none_or(|e| !e.contains('/') && canonical(&format!("x{e}")))
        && rendered.iter().all(|(n, v)| segment(n) && value_text(v));
    if !parts_valid {
        return;
    }
    assert_canonical("build_object_path", &p);
    let o = ObjectRef::from_json(&json!({"path": p, "store": "main"})).expect("a built path");
    assert_eq!(o.path, p);
    check_trash(&p);

    // The readers. The writers' check (`require_read_back`) refuses exactly what DataJoint's
    // layout cannot tell apart: a path in the hash section (under the hash prefix), a schema
    // named with `=` (a partition folder's mark), a field or extension with `=` (a key
    // folder's), an extension that makes the entry a manifest. With both prefixes empty every
    // path reads as hash-addressed; only its owner schema is checked then.
    let (hp, sp) = (spec.hash_prefix.as_str(), spec.schema_prefix.as_str());
    let no_prefixes = hp.is_empty() && sp.is_empty();
    let in_hash_section = !hp.is_empty() && p.starts_with(&format!("{hp}/"));
    // With both prefixes empty, a partition folder before the schema reads as the owner.
    let partition_first = no_prefixes && p.split('/').next().is_some_and(|c| c.contains('='));
    let ambiguous = in_hash_section
        || partition_first
        || input.schema.contains('=')
        || input.field.contains('=')
        || input.ext.is_some_and(|e| e.contains('='))
        || p.ends_with(".manifest.json");
    match require_read_back(hp, sp, Section::Schema, input.schema, &p) {
        Ok(()) => assert!(!ambiguous, "{p:?} ({hp:?}, {sp:?}) accepted"),
        Err(e) => {
            assert_invalid_argument("require_read_back", &e);
            assert!(ambiguous, "{p:?} ({hp:?}, {sp:?}) refused: {e}");
            return;
        }
    }
    if !no_prefixes {
        assert_eq!(
            section_of(hp, sp, &p),
            Section::Schema,
            "{p:?} ({hp:?}, {sp:?})"
        );
    }
    assert_eq!(owner_schema(hp, sp, &p), Some(input.schema), "{p:?}");
    assert_eq!(owner_path(Section::Schema, sp, &p), p);
    let inside = format!("{p}/sub/f.tif");
    assert_eq!(owner_path(Section::Schema, sp, &inside), p);
    assert!(reference_paths(&inside).any(|r| r == p));
    let manifest = format!("{p}.manifest.json");
    assert_eq!(owner_path(Section::Schema, sp, &manifest), p);
    assert!(reference_paths(&manifest).any(|r| r == p));
}

/// Trash keys round-trip.
fn check_trash(p: &str) {
    let t = trash_key(p);
    assert_canonical("trash_key", &t);
    assert_eq!(untrash_key(&t), Some(p));
}

/// Any listed key: the readers do not panic and give slices of it.
fn check_listed(input: &Input<'_>, spec: Option<&StoreSpec>) {
    let key = input.listed;
    if !key.is_empty() {
        assert_eq!(untrash_key(&trash_key(key)), Some(key));
    }
    if let Some(p) = untrash_key(key) {
        assert_eq!(trash_key(p), key);
    }
    let (hp, sp) = match spec {
        Some(s) => (s.hash_prefix.as_str(), s.schema_prefix.as_str()),
        None => (
            input.hash_prefix.unwrap_or("_hash"),
            input.schema_prefix.unwrap_or("_schema"),
        ),
    };
    let section = section_of(hp, sp, key);
    if let Some(s) = owner_schema(hp, sp, key) {
        assert!(!s.contains('/') && key.contains(s));
    }
    for sec in [Section::Hash, Section::Schema] {
        let _ = schema_of(sec, hp, key);
        let _ = schema_of(sec, sp, key);
        let owner = owner_path(sec, sp, key);
        assert!(key.starts_with(owner), "owner {owner:?} of {key:?}");
    }
    // The owner the collector locks is one of the paths whose references cover the key.
    let owner = owner_path(section, sp, key);
    assert!(
        reference_paths(key).any(|r| r == owner),
        "owner {owner:?} of {key:?} does not cover it"
    );
}

fuzz_target!(|input: Input<'_>| {
    let spec = spec_of(&input);
    check_hash(&input, spec.as_ref());
    check_object(&input, spec.as_ref());
    check_listed(&input, spec.as_ref());
});
