//! Jobs that rewrite one column of one table in keyset batches (`oas_migrate_column`,
//! `oas_move`): the decisions that need no database. Which migration a call asks for, the names
//! and comments of the columns it adds and keeps, the size of a batch, and the progress line.
//!
//! A migration moves a `bytea` column (DataJoint's `<blob>`, `<attach>`, or `bytes`) into an
//! object-store codec column (`<blob@store>`, `<attach@store>`, `<hash@store>`), or back.

use crate::codec::{parse_marker, ColumnCodec, ObjectRef};
use crate::error::OasError;

/// What an in-table `bytea` column holds, from its DataJoint comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InTable {
    /// `:<blob>:` — DataJoint's serialized blob.
    Blob,
    /// `:<attach>:` — `filename\0contents`.
    Attach,
    /// `:bytes:` or no marker — plain bytes.
    Bytes,
}

impl InTable {
    /// The object-store codec that holds the same bytes as objects.
    pub fn store_codec(self) -> &'static str {
        match self {
            InTable::Blob => "blob",
            InTable::Attach => "attach",
            InTable::Bytes => "hash",
        }
    }

    /// The type DataJoint records in the comment (`:<blob>:`, `:<attach>:`, `:bytes:`).
    pub fn marker(self) -> &'static str {
        match self {
            InTable::Blob => "<blob>",
            InTable::Attach => "<attach>",
            InTable::Bytes => "bytes",
        }
    }

    fn from_store_codec(codec: &str) -> Option<Self> {
        match codec {
            "blob" => Some(InTable::Blob),
            "attach" => Some(InTable::Attach),
            "hash" => Some(InTable::Bytes),
            _ => None,
        }
    }

    fn from_spec(spec: &str) -> Option<Self> {
        let s = spec.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s);
        match s {
            "blob" => Some(InTable::Blob),
            "attach" => Some(InTable::Attach),
            "bytes" | "bytea" => Some(InTable::Bytes),
            _ => None,
        }
    }
}

/// The user's part of a `bytea` column's comment and what it holds: `:<blob>:text` is
/// `(Blob, "text")`; a comment without a `:type:` marker is plain bytes with the whole comment.
pub fn in_table_of(comment: &str) -> (InTable, String) {
    if let Some(rest) = comment.strip_prefix(':') {
        if let Some(end) = rest.find(':') {
            let (ty, user) = (&rest[..end], &rest[end + 1..]);
            let kind = match ty {
                "<blob>" => InTable::Blob,
                "<attach>" => InTable::Attach,
                _ => InTable::Bytes,
            };
            return (kind, user.to_string());
        }
    }
    (InTable::Bytes, comment.to_string())
}

/// Which way a migration goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    /// `bytea` → `jsonb` references in `to` (its store: `None` for the default store).
    Forward { from: InTable, to: ColumnCodec },
    /// `jsonb` references of codec `from` → `bytea` holding `to`.
    Reverse { from: ColumnCodec, to: InTable },
}

impl Migration {
    /// The comment of the column that will hold the migrated values.
    pub fn new_comment(&self) -> String {
        match self {
            Migration::Forward { to, .. } => to.to_comment(),
            Migration::Reverse { from, to } => format!(":{}:{}", to.marker(), from.comment),
        }
    }

    /// The SQL type of the column that will hold the migrated values.
    pub fn new_type(&self) -> &'static str {
        match self {
            Migration::Forward { .. } => "jsonb",
            Migration::Reverse { .. } => "bytea",
        }
    }

    /// The codec as the job records it (`blob@main`, `blob`).
    pub fn target(&self) -> String {
        match self {
            Migration::Forward { to, .. } => {
                format!("{}@{}", to.codec, to.store.as_deref().unwrap_or(""))
            }
            Migration::Reverse { to, .. } => to.marker().trim_matches(['<', '>']).to_string(),
        }
    }
}

/// The migration that turns a column of type `column_type` (`bytea` or `jsonb`) with `comment`
/// into `target` (`'blob@main'`, `'<attach@>'`, `'hash@raw'`; or back: `'blob'`, `'attach'`,
/// `'bytes'`). The codecs must correspond: `<blob>` ↔ `<blob@>`, `<attach>` ↔ `<attach@>`,
/// plain bytes ↔ `<hash@>`.
pub fn plan_migration(
    column: &str,
    column_type: &str,
    comment: &str,
    target: &str,
) -> Result<Migration, OasError> {
    let bad = |message: String, hint: &str| Err(OasError::invalid_argument_hint(message, hint));
    match column_type {
        "bytea" => {
            let (from, user) = in_table_of(comment);
            let Ok(mut to) = crate::codec::parse_codec_spec(target) else {
                return bad(
                    format!("\"{target}\" is not an object-store codec to migrate column \"{column}\" into"),
                    "a bytea column migrates into 'blob@store' (<blob> values), 'attach@store' (<attach> values) or 'hash@store' (plain bytes)",
                );
            };
            if to.codec != from.store_codec() {
                return bad(
                    format!(
                        "column \"{column}\" holds {} values: it migrates into <{}@store>, not <{}@>",
                        from.marker(),
                        from.store_codec(),
                        to.codec
                    ),
                    "<blob> goes to <blob@store>, <attach> to <attach@store>, plain bytes to <hash@store>",
                );
            }
            to.comment = user;
            Ok(Migration::Forward { from, to })
        }
        "jsonb" => {
            let Some(from) = parse_marker(comment) else {
                return bad(
                    format!("column \"{column}\" is not an object-store column"),
                    "a jsonb column migrates back into the table when its comment is :<blob@store>:, :<attach@store>: or :<hash@store>:",
                );
            };
            let Some(to) = InTable::from_spec(target) else {
                return bad(
                    format!("\"{target}\" is not an in-table codec to migrate column \"{column}\" into"),
                    "an object-store column migrates back into 'blob', 'attach' or 'bytes' (a bytea column)",
                );
            };
            if InTable::from_store_codec(&from.codec) != Some(to) {
                return bad(
                    format!(
                        "column \"{column}\" is a <{}@> column: it migrates back into {}, not {}",
                        from.codec,
                        InTable::from_store_codec(&from.codec)
                            .map(InTable::marker)
                            .unwrap_or("nothing"),
                        to.marker()
                    ),
                    "<blob@> goes back to <blob>, <attach@> to <attach>, <hash@> to bytes",
                );
            }
            Ok(Migration::Reverse { from, to })
        }
        other => bad(
            format!("column \"{column}\" is of type {other}: only bytea (into object storage) and jsonb (back) columns migrate"),
            "migrate a bytea column holding <blob>, <attach> or plain bytes, or an object-store jsonb column",
        ),
    }
}

/// PostgreSQL's limit on a name (NAMEDATALEN - 1 bytes).
const MAX_NAME: usize = 63;

/// `prefix` + `column` + `suffix`, shortened (at a character boundary) to fit a PostgreSQL name.
fn derived_name(prefix: &str, column: &str, suffix: &str) -> String {
    let room = MAX_NAME - prefix.len() - suffix.len();
    let mut end = column.len().min(room);
    while !column.is_char_boundary(end) {
        end -= 1;
    }
    format!("{prefix}{}{suffix}", &column[..end])
}

/// The column a migration fills while it runs. Its name starts with `_`, so DataJoint hides it
/// (a hidden attribute) and its clients keep working on the table meanwhile.
pub fn new_column_name(column: &str) -> String {
    derived_name("_", column, "_migrating")
}

/// The name the old column keeps after a migration that does not drop it (hidden from
/// DataJoint, nullable so its inserts still work).
pub fn old_column_name(column: &str) -> String {
    derived_name("_", column, "_premigration")
}

/// A comment with the store of its codec marker replaced by `to_store` (`:<blob@hot>:x` →
/// `:<blob@cold>:x`), for a column whose objects moved; `None` for a comment without a marker.
pub fn comment_with_store(comment: &str, to_store: &str) -> Option<String> {
    let mut codec = parse_marker(comment)?;
    codec.store = Some(to_store.to_string());
    Some(codec.to_comment())
}

/// Does a move to `to` (from `from`, or from any other store) retarget a column whose comment
/// names `comment_store` (`None`: the default store)? With `from` named, only a comment naming
/// it; otherwise any comment not already naming `to`. A whole-store move also starts only for
/// such columns (and those with references to move).
pub fn move_retargets(comment_store: Option<&str>, to: &str, from: Option<&str>) -> bool {
    match from {
        Some(from) => comment_store == Some(from),
        None => comment_store != Some(to),
    }
}

/// Rows per batch: at least 1, at most 100 000.
pub fn batch_rows(requested: i64) -> Result<i64, OasError> {
    if !(1..=100_000).contains(&requested) {
        return Err(OasError::invalid_argument_hint(
            format!("batch_rows must be between 1 and 100000, not {requested}"),
            "a batch is one transaction: a few hundred rows of a few MB each is a good size",
        ));
    }
    Ok(requested)
}

/// The values over `max_bytes` refuse a reverse migration: how many, and the largest.
pub fn check_sizes(too_large: i64, largest: i64, max_bytes: i64) -> Result<(), OasError> {
    if too_large == 0 {
        return Ok(());
    }
    Err(OasError::TooLarge {
        message: format!(
            "{too_large} value(s) are larger than max_bytes ({max_bytes} bytes), the largest {largest} bytes: the column stays in object storage"
        ),
        hint: Some("raise max_bytes (at most 1 GB, a bytea's limit), or leave the column in object storage".into()),
    })
}

/// The progress line a job shows after each batch.
pub fn progress_text(
    what: &str,
    rows_done: i64,
    rows_total: i64,
    bytes: i64,
    seconds: f64,
) -> String {
    let mb = bytes as f64 / 1e6;
    let rate = if seconds > 0.0 { mb / seconds } else { 0.0 };
    let pct = if rows_total > 0 {
        (rows_done as f64 * 100.0 / rows_total as f64).min(100.0)
    } else {
        100.0
    };
    format!("{what}: {rows_done}/{rows_total} rows ({pct:.1}%), {mb:.1} MB, {rate:.1} MB/s")
}

/// The content hash (DataJoint's base32 MD5) of bytes whose MD5 PostgreSQL gave as hex
/// (`md5(bytea)`).
pub fn hash_of_md5_hex(hex: &str) -> Option<String> {
    let digest = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .ok()?;
    (digest.len() == 16).then(|| {
        let mut s = data_encoding::BASE32_NOPAD.encode(&digest);
        s.make_ascii_lowercase();
        s
    })
}

/// What a batch checks of each value it wrote: the reference (`reference`, of the row `row`)
/// names the store `store` (when given), and the bytes on the table's side have its hash and
/// size (`md5_hex`, `size`, when given).
pub fn check_value(
    row: &str,
    reference: &ObjectRef,
    store: Option<&str>,
    md5_hex: Option<&str>,
    size: Option<i64>,
) -> Result<(), OasError> {
    let mismatch = |reason: String| OasError::IntegrityMismatch {
        store: reference.store.clone().unwrap_or_default(),
        path: reference.path.clone(),
        reason: format!("row {row}: {reason}"),
    };
    if let (Some(want), Some(have)) = (store, reference.store.as_deref()) {
        if want != have {
            return Err(mismatch(format!(
                "the reference names store \"{have}\", not \"{want}\""
            )));
        }
    }
    if let Some(size) = size {
        if reference.size != Some(size as u64) {
            return Err(mismatch(format!(
                "{size} bytes in the table, the reference records {:?}",
                reference.size
            )));
        }
    }
    if let Some(hex) = md5_hex {
        let hash = hash_of_md5_hex(hex).ok_or_else(|| mismatch(format!("bad MD5 \"{hex}\"")))?;
        if reference.hash.as_deref() != Some(hash.as_str()) {
            return Err(mismatch(format!(
                "the table's bytes hash to {hash}, the reference records {:?}",
                reference.hash
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_table_comments() {
        assert_eq!(
            in_table_of(":<blob>:trace"),
            (InTable::Blob, "trace".into())
        );
        assert_eq!(in_table_of(":<attach>:"), (InTable::Attach, String::new()));
        assert_eq!(in_table_of(":bytes:raw"), (InTable::Bytes, "raw".into()));
        assert_eq!(
            in_table_of("just text"),
            (InTable::Bytes, "just text".into())
        );
        assert_eq!(in_table_of(""), (InTable::Bytes, String::new()));
    }

    #[test]
    fn forward_plans() {
        let m = plan_migration("x", "bytea", ":<blob>:trace data", "blob@main").unwrap();
        assert_eq!(m.new_comment(), ":<blob@main>:trace data");
        assert_eq!(m.new_type(), "jsonb");
        assert_eq!(m.target(), "blob@main");
        let m = plan_migration("x", "bytea", ":<attach>:", "<attach@>").unwrap();
        assert_eq!(m.new_comment(), ":<attach@>:");
        let m = plan_migration("x", "bytea", "", "hash@raw").unwrap();
        assert_eq!(m.new_comment(), ":<hash@raw>:");
        assert!(plan_migration("x", "bytea", ":<blob>:", "hash@raw").is_err());
        assert!(plan_migration("x", "bytea", ":<blob>:", "blob").is_err());
        assert!(plan_migration("x", "integer", "", "blob@main").is_err());
    }

    #[test]
    fn reverse_plans() {
        let m = plan_migration("x", "jsonb", ":<blob@main>:trace", "blob").unwrap();
        assert_eq!(m.new_comment(), ":<blob>:trace");
        assert_eq!(m.new_type(), "bytea");
        assert_eq!(m.target(), "blob");
        let m = plan_migration("x", "jsonb", ":<hash@main>:", "bytes").unwrap();
        assert_eq!(m.new_comment(), ":bytes:");
        assert!(plan_migration("x", "jsonb", ":<blob@main>:", "attach").is_err());
        assert!(plan_migration("x", "jsonb", ":<npy@main>:", "blob").is_err());
        assert!(plan_migration("x", "jsonb", "no marker", "blob").is_err());
    }

    #[test]
    fn names_fit() {
        assert_eq!(new_column_name("trace"), "_trace_migrating");
        assert_eq!(old_column_name("trace"), "_trace_premigration");
        let long = "é".repeat(40);
        assert!(new_column_name(&long).len() <= 63);
        assert!(old_column_name(&long).len() <= 63);
    }

    #[test]
    fn comments_move() {
        assert_eq!(
            comment_with_store(":<blob@hot>:x", "cold").as_deref(),
            Some(":<blob@cold>:x")
        );
        assert_eq!(comment_with_store("plain", "cold"), None);
    }

    #[test]
    fn which_comments_a_move_retargets() {
        assert!(move_retargets(Some("hot"), "cold", Some("hot")));
        assert!(!move_retargets(Some("warm"), "cold", Some("hot")));
        assert!(!move_retargets(None, "cold", Some("hot")));
        assert!(move_retargets(Some("hot"), "cold", None));
        assert!(move_retargets(None, "cold", None));
        assert!(!move_retargets(Some("cold"), "cold", None));
    }

    #[test]
    fn limits() {
        assert!(batch_rows(0).is_err());
        assert_eq!(batch_rows(500).unwrap(), 500);
        assert!(check_sizes(0, 0, 10).is_ok());
        let e = check_sizes(3, 5000, 1000).unwrap_err().to_string();
        assert!(e.contains("3 value(s)") && e.contains("5000"), "{e}");
    }

    #[test]
    fn values_checked() {
        // md5(b"hello") = 5d41402abc4b2a76b9719d911017c592
        let hex = "5d41402abc4b2a76b9719d911017c592";
        assert_eq!(
            hash_of_md5_hex(hex).unwrap(),
            crate::hash::content_hash(b"hello")
        );
        assert_eq!(hash_of_md5_hex("zz"), None);
        let r = ObjectRef::from_json(&serde_json::json!({
            "hash": crate::hash::content_hash(b"hello"), "path": "_hash/s/x", "size": 5, "store": "main"
        }))
        .unwrap();
        assert!(check_value("id=1", &r, Some("main"), Some(hex), Some(5)).is_ok());
        assert!(check_value("id=1", &r, None, None, None).is_ok());
        let e = check_value("id=1", &r, Some("cold"), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row id=1") && e.contains("cold"), "{e}");
        assert!(check_value("id=1", &r, None, None, Some(6)).is_err());
        let other = "00000000000000000000000000000000";
        assert!(check_value("id=1", &r, None, Some(other), Some(5)).is_err());
    }

    #[test]
    fn progress() {
        assert_eq!(
            progress_text("migrated", 50, 200, 10_000_000, 2.0),
            "migrated: 50/200 rows (25.0%), 10.0 MB, 5.0 MB/s"
        );
        assert_eq!(
            progress_text("moved", 0, 0, 0, 0.0),
            "moved: 0/0 rows (100.0%), 0.0 MB, 0.0 MB/s"
        );
    }
}
