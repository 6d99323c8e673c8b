//! Object paths inside a store, exactly as DataJoint builds them.
//!
//! Paths are relative to the store's `location` and always use `/`. The path a reference records
//! is the one used to read it back, so later changes of subfolding or prefixes never break rows.

use crate::error::OasError;
use crate::hash::is_content_hash;

/// DataJoint's `_subfold`: consecutive slices of the hash, one per level.
fn subfold<'a>(hash: &'a str, folds: &[usize]) -> Vec<&'a str> {
    let mut rest = hash;
    let mut out = Vec::with_capacity(folds.len());
    for &n in folds {
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// `{hash_prefix}/{schema}/[{fold}/...]{hash}`; with an empty `hash_prefix`, `{schema}/...`.
pub fn hash_path(
    hash_prefix: &str,
    schema: &str,
    hash: &str,
    subfolding: Option<&[usize]>,
) -> Result<String, OasError> {
    if !is_content_hash(hash) {
        return Err(OasError::invalid_argument(format!(
            "invalid content hash \"{hash}\" (expected 26 lowercase base32 characters)"
        )));
    }
    validate_schema_name(schema)?;
    let mut path = String::with_capacity(hash_prefix.len() + schema.len() + 2 * hash.len());
    if !hash_prefix.is_empty() {
        path.push_str(hash_prefix);
        path.push('/');
    }
    path.push_str(schema);
    path.push('/');
    for fold in subfold(hash, subfolding.unwrap_or(&[])) {
        path.push_str(fold);
        path.push('/');
    }
    path.push_str(hash);
    // The prefix and the folds come from a store spec: whatever they are, what comes out is a
    // path the store may be asked for (a zero or overlong fold would leave an empty segment).
    validate_relative_path(&path)?;
    Ok(path)
}

/// A schema name becomes one path segment, so it must be one.
pub fn validate_schema_name(schema: &str) -> Result<(), OasError> {
    if schema.is_empty()
        || schema == "."
        || schema == ".."
        || schema.contains('/')
        || schema.contains('\\')
        || schema.chars().any(char::is_control)
    {
        return Err(OasError::invalid_argument_hint(
            format!("invalid schema name \"{}\" for an object path", schema.escape_default()),
            "a schema name becomes one path segment: it must be non-empty and contain no '/', '\\' or control characters",
        ));
    }
    Ok(())
}

/// Check a relative object path recorded in a reference before it is used to touch the store:
/// no absolute paths, no empty, `.` or `..` segments (DataJoint does not check; we do).
pub fn validate_relative_path(path: &str) -> Result<(), OasError> {
    if path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || path.contains('\\')
        || path.chars().any(char::is_control)
    {
        return Err(OasError::invalid_argument(format!(
            "invalid object path \"{}\": must be relative, with no empty, \".\" or \"..\" segments",
            path.escape_default()
        )));
    }
    Ok(())
}

/// The path of the file `subpath` inside the folder object at `folder`: `subpath` must stay inside
/// it (relative, with no empty, `.` or `..` segment, as [`validate_relative_path`] checks).
pub fn file_in_folder(folder: &str, subpath: &str) -> Result<String, OasError> {
    validate_relative_path(subpath).map_err(|_| {
        OasError::invalid_argument_hint(
            format!("invalid path \"{}\" inside folder \"{folder}\"", subpath.escape_default()),
            "name a file below the folder as its manifest does (e.g. 'sub/b.tif'): relative, with no empty, '.' or '..' segment",
        )
    })?;
    Ok(format!("{folder}/{subpath}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "lvauakv4jmvhnolrtwiraf6fsi";

    #[test]
    fn flat_and_subfolded_paths_match_datajoint() {
        assert_eq!(
            hash_path("_hash", "lab", H, None).unwrap(),
            "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi"
        );
        assert_eq!(
            hash_path("_hash", "lab", H, Some(&[2, 2])).unwrap(),
            "_hash/lab/lv/au/lvauakv4jmvhnolrtwiraf6fsi"
        );
        assert_eq!(
            hash_path("_hash", "lab", H, Some(&[1, 3])).unwrap(),
            "_hash/lab/l/vau/lvauakv4jmvhnolrtwiraf6fsi"
        );
        assert_eq!(
            hash_path("objs", "my schema", H, Some(&[])).unwrap(),
            "objs/my schema/lvauakv4jmvhnolrtwiraf6fsi"
        );
        assert_eq!(
            hash_path("", "lab", H, None).unwrap(),
            "lab/lvauakv4jmvhnolrtwiraf6fsi"
        );
    }

    #[test]
    fn bad_hashes_and_schemas_are_rejected() {
        assert!(hash_path("_hash", "lab", "abc", None).is_err());
        assert!(hash_path("_hash", "a/b", H, None).is_err());
        assert!(hash_path("_hash", "..", H, None).is_err());
        assert!(hash_path("_hash", "", H, None).is_err());
    }

    /// Found by the `paths` fuzz target: the prefix and the folds were not checked, so a
    /// prefix with a control character, a leading `/` or a `..` segment, or a fold of 0 (an
    /// empty segment) made a path no reference could be checked against.
    #[test]
    fn fuzz_prefixes_and_folds_cannot_bend_hash_paths() {
        for prefix in ["\u{e}", "/abs", "../up", "a//b", "a/./b", "a\\b", "a/"] {
            assert!(hash_path(prefix, "lab", H, None).is_err(), "{prefix:?}");
        }
        assert!(hash_path("_hash", "lab", H, Some(&[0])).is_err());
        assert!(hash_path("_hash", "lab", H, Some(&[26, 1])).is_err());
        assert!(hash_path("raw/objs", "lab", H, Some(&[25])).is_ok());
    }

    #[test]
    fn files_of_a_folder_stay_inside_it() {
        let f = "_schema/lab/t/id=1/d_tok";
        assert_eq!(
            file_in_folder(f, "sub/b.tif").unwrap(),
            format!("{f}/sub/b.tif")
        );
        for bad in [
            "",
            "../d_other/x",
            "sub/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
        ] {
            assert!(file_in_folder(f, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_paths_are_canonical() {
        assert!(validate_relative_path("_hash/lab/x").is_ok());
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/./b",
            "x/../_hash/y",
            "a/",
            "a\\b",
            "a\nb",
        ] {
            assert!(validate_relative_path(bad).is_err(), "{bad:?}");
        }
    }
}
