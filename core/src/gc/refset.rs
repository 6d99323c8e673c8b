//! The referenced paths of a store, and DataJoint's rule for which listed objects they cover.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::{Section, MANIFEST_SUFFIX};

/// The set of referenced paths of one store, with the size each reference records. Paths are
/// kept as 64-bit hashes, so a million references take tens of megabytes. A collision can only
/// make an unreferenced object look referenced, which keeps it: the safe direction.
#[derive(Debug, Default, Clone)]
pub struct RefSet {
    sizes: HashMap<u64, u64>,
}

fn path_hash(path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

impl RefSet {
    pub fn insert(&mut self, path: &str, size: Option<u64>) {
        let e = self.sizes.entry(path_hash(path)).or_insert(0);
        *e = (*e).max(size.unwrap_or(0));
    }

    pub fn contains(&self, path: &str) -> bool {
        self.sizes.contains_key(&path_hash(path))
    }

    /// Distinct referenced paths.
    pub fn len(&self) -> u64 {
        self.sizes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The sizes the references record, summed once per distinct path (0 where none is recorded).
    pub fn bytes(&self) -> u64 {
        self.sizes.values().sum()
    }

    /// Is the listed object `key` of `section` referenced? Hash objects must be named exactly.
    /// Schema objects follow DataJoint's coverage rule: the key itself, any folder above it, or,
    /// for a manifest, the object it describes.
    pub fn covers(&self, section: Section, key: &str) -> bool {
        match section {
            Section::Hash => self.contains(key),
            Section::Schema => reference_paths(key).any(|p| self.contains(p)),
        }
    }
}

/// Every reference path that would cover the schema-addressed object `key`: the key, each
/// folder above it, and the key without `.manifest.json`.
pub fn reference_paths(key: &str) -> impl Iterator<Item = &str> {
    let manifest = key.strip_suffix(MANIFEST_SUFFIX).filter(|p| !p.is_empty());
    let ancestors = key.match_indices('/').map(move |(i, _)| &key[..i]);
    std::iter::once(key).chain(manifest).chain(ancestors)
}

#[cfg(test)]
mod tests {
    use super::*;
    const H: &str = "lvauakv4jmvhnolrtwiraf6fsi";

    #[test]
    fn hash_objects_are_covered_exactly() {
        let mut refs = RefSet::default();
        refs.insert(&format!("_hash/lab/{H}"), Some(10));
        assert!(refs.covers(Section::Hash, &format!("_hash/lab/{H}")));
        assert!(!refs.covers(Section::Hash, &format!("_hash/lab/{H}/x")));
        assert!(!refs.covers(Section::Hash, &format!("_hash/other/{H}")));
        assert_eq!(refs.len(), 1);
        assert_eq!(refs.bytes(), 10);
        refs.insert(&format!("_hash/lab/{H}"), Some(10));
        assert_eq!((refs.len(), refs.bytes()), (1, 10));
    }

    #[test]
    fn schema_objects_follow_datajoint_coverage() {
        let mut refs = RefSet::default();
        refs.insert("_schema/lab/rec/id=1/traces_abcd1234.npy", None);
        refs.insert("_schema/lab/rec/id=1/movie_zz99zz99", None);
        let live = |k: &str| refs.covers(Section::Schema, k);
        assert!(live("_schema/lab/rec/id=1/traces_abcd1234.npy"));
        assert!(live("_schema/lab/rec/id=1/movie_zz99zz99/frame0.tif"));
        assert!(live("_schema/lab/rec/id=1/movie_zz99zz99/sub/dir/f"));
        assert!(live("_schema/lab/rec/id=1/movie_zz99zz99.manifest.json"));
        assert!(!live("_schema/lab/rec/id=1/traces_abcd1235.npy"));
        assert!(!live("_schema/lab/rec/id=1/movie_zz99zz99x/frame0.tif"));
        assert!(!live("_schema/lab/rec/id=2/traces_abcd1234.npy"));
    }
}
