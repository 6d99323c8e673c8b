//! The two managed sections of a store and the rules that read a path back: which section it lies
//! in, which schema it belongs to, and which reference entry owns it. One home for each rule: the
//! collector, the read check and the writers all use these.

use super::MANIFEST_SUFFIX;
use crate::error::OasError;

/// The two managed sections of a store. `<filepath@>` content is in neither and never listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `{hash_prefix}/{schema}/[folds/]{hash}`: one object per reference, exact paths.
    Hash,
    /// `{schema_prefix}/[partitions/]{schema}/{table}/{pk=v}/.../{field}_{token}{ext}`: a
    /// reference covers its path, everything under it (folders) and its `.manifest.json`.
    Schema,
}

/// The reference path that owns a schema-addressed object in DataJoint's layout: after
/// `schema_prefix`, partition folders (`attr=v`), then schema and table, then the primary key
/// folders (`attr=v`), then the field's own entry `{field}_{token}{ext}`; a manifest belongs to
/// the entry it describes. Keys that do not follow the layout own themselves.
pub fn owner_path<'a>(section: Section, schema_prefix: &str, key: &'a str) -> &'a str {
    if section == Section::Hash {
        return key;
    }
    let rest_start = if schema_prefix.is_empty() {
        0
    } else {
        match key
            .strip_prefix(schema_prefix)
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(r) => key.len() - r.len(),
            None => return key,
        }
    };
    let mut end = rest_start;
    let mut stage = 0; // 0: partitions, 1: table, 2: key folders
    for comp in key[rest_start..].split('/') {
        let comp_end = end + comp.len();
        match stage {
            0 if comp.contains('=') => {}
            0 => stage = 1, // the schema
            1 => stage = 2, // the table
            _ if comp.contains('=') => {}
            _ => {
                let owner = &key[..comp_end];
                // A manifest (the last component) belongs to the entry it describes; an entry
                // with files under it is a folder, whatever its name ends with.
                if comp_end < key.len() {
                    return owner;
                }
                return owner.strip_suffix(MANIFEST_SUFFIX).unwrap_or(owner);
            }
        }
        end = comp_end + 1;
    }
    key
}

/// The schema a listed object belongs to: the first path segment after the section prefix that
/// is not a partition folder.
pub fn schema_of<'a>(section: Section, prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let mut comps = rest.split('/');
    match section {
        Section::Hash => comps.next(),
        Section::Schema => comps.find(|c| !c.contains('=')),
    }
}

/// Which section a path of a store lies in. The one home of the rule: the collector (what it
/// lists, counts, locks and records as an object's owner), the read check and the writers use it.
///
/// - under `hash_prefix` (when not empty): the hash section;
/// - under `schema_prefix` (when not empty): the schema section;
/// - elsewhere, the section whose prefix is empty: with an empty `hash_prefix` the hash section,
///   with an empty `schema_prefix` the schema section;
/// - with both prefixes empty the layout cannot tell the sections apart; a path named by a
///   content hash is taken for a hash object, any other for a schema-addressed one.
pub fn section_of(hash_prefix: &str, schema_prefix: &str, key: &str) -> Section {
    let under = |prefix: &str| {
        !prefix.is_empty()
            && key
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if under(hash_prefix) {
        Section::Hash
    } else if under(schema_prefix) {
        Section::Schema
    } else if hash_prefix.is_empty() && (!schema_prefix.is_empty() || is_hash_object(key)) {
        Section::Hash
    } else {
        Section::Schema
    }
}

/// What the collector makes of an object it listed (see [`Layout::sight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Not this listing's to count: `_oas/`, `filepath_prefix` content, an object of the other
    /// section (counted where that section is listed, if this database knows its schema), or a
    /// partition of a schema this database does not know.
    Ignore,
    /// In the hash section but not named by a content hash: counted as skipped and left alone
    /// (DataJoint collects only files named by a hash).
    Skip,
    /// An object of this section the collector manages.
    Managed(Section),
}

/// The layout of a store's managed sections, as the collector lists them.
#[derive(Debug, Clone)]
pub struct Layout {
    hash_prefix: String,
    schema_prefix: String,
    /// `{filepath_prefix}/`, never listed.
    filepath: Option<String>,
    partitioned: bool,
}

impl Layout {
    pub fn new(spec: &crate::spec::StoreSpec) -> Self {
        Layout {
            hash_prefix: spec.hash_prefix.clone(),
            schema_prefix: spec.schema_prefix.clone(),
            filepath: spec.filepath_prefix.as_ref().map(|p| format!("{p}/")),
            partitioned: spec
                .partition_pattern
                .as_deref()
                .is_some_and(|p| !p.is_empty()),
        }
    }

    /// The prefixes to list for the `schemas` this database knows, each once, with the sections
    /// whose objects may lie under it (both, when the two prefixes are empty); and a warning when
    /// schema-addressed objects cannot be collected (partitions with an empty `schema_prefix`).
    pub fn listings(
        &self,
        schemas: &[&str],
    ) -> (Vec<(String, Vec<Section>)>, Option<&'static str>) {
        let mut wanted: Vec<(Section, String)> = schemas
            .iter()
            .map(|s| (Section::Hash, section_prefix(&self.hash_prefix, Some(s))))
            .collect();
        let mut warning = None;
        if !self.partitioned {
            wanted.extend(schemas.iter().map(|s| {
                (
                    Section::Schema,
                    section_prefix(&self.schema_prefix, Some(s)),
                )
            }));
        } else if !self.schema_prefix.is_empty() {
            wanted.push((Section::Schema, section_prefix(&self.schema_prefix, None)));
        } else {
            warning = Some(
                "partition_pattern with an empty schema_prefix: schema-addressed objects are not collected",
            );
        }
        let mut out: Vec<(String, Vec<Section>)> = Vec::new();
        for (section, prefix) in wanted {
            match out.iter_mut().find(|(p, _)| *p == prefix) {
                Some((_, sections)) => sections.push(section),
                None => out.push((prefix, vec![section])),
            }
        }
        (out, warning)
    }

    /// Which section `key` lies in ([`section_of`]).
    pub fn section_of(&self, key: &str) -> Section {
        section_of(&self.hash_prefix, &self.schema_prefix, key)
    }

    /// What to make of `key`, listed under a prefix that holds `listed_as` (see
    /// [`Layout::listings`]); `known` says whether this database knows a schema.
    pub fn sight(
        &self,
        listed_as: &[Section],
        key: &str,
        known: impl Fn(&str) -> bool,
    ) -> Sighting {
        if key.starts_with("_oas/") || self.filepath.as_deref().is_some_and(|f| key.starts_with(f))
        {
            return Sighting::Ignore;
        }
        let section = self.section_of(key);
        if !listed_as.contains(&section) {
            return Sighting::Ignore;
        }
        match section {
            Section::Hash if !is_hash_object(key) => Sighting::Skip,
            Section::Schema
                if self.partitioned
                    && !schema_of(section, &self.schema_prefix, key).is_some_and(&known) =>
            {
                Sighting::Ignore
            }
            s => Sighting::Managed(s),
        }
    }
}

/// The schema whose section `key` lies in (see [`section_of`] and [`schema_of`]).
pub fn owner_schema<'a>(hash_prefix: &str, schema_prefix: &str, key: &'a str) -> Option<&'a str> {
    match section_of(hash_prefix, schema_prefix, key) {
        Section::Hash => schema_of(Section::Hash, hash_prefix, key),
        Section::Schema => schema_of(Section::Schema, schema_prefix, key),
    }
}

/// Refuse to write `path` as an object of `schema` in `section` unless the rules that read paths
/// back ([`section_of`], [`owner_schema`], [`owner_path`]) give the same answers: the read check
/// lets a schema's rows vouch only for objects in its part of the section, and the collector
/// locks a schema-addressed object through its owner entry. DataJoint's layout cannot tell apart
/// everything its builders make:
///
/// - with an empty `hash_prefix`, the hash objects of a schema named like the first segment of
///   `schema_prefix` lie in the schema section (their owner would be a fold or the hash);
/// - with an empty `schema_prefix`, the schema-addressed objects of a schema named like the
///   first segment of `hash_prefix` lie in the hash section (their owner would be the table);
/// - a schema named with `=` reads as a partition folder (the owner would be the table);
/// - a field or extension with `=` reads as a primary-key folder (a folder's files would own
///   themselves);
/// - an extension ending with `.manifest.json` reads as the manifest of another entry.
pub fn require_read_back(
    hash_prefix: &str,
    schema_prefix: &str,
    section: Section,
    schema: &str,
    path: &str,
) -> Result<(), OasError> {
    let found = section_of(hash_prefix, schema_prefix, path);
    let owner = owner_schema(hash_prefix, schema_prefix, path);
    let entry = match section {
        Section::Hash => true,
        Section::Schema => {
            owner_path(section, schema_prefix, path) == path
                && owner_path(section, schema_prefix, &format!("{path}/x")) == path
        }
    };
    // With both prefixes empty the layout cannot tell the sections apart (every path reads as
    // hash-addressed); the owner schema still reads back, which is what the read check needs.
    let same_section = found == section || (hash_prefix.is_empty() && schema_prefix.is_empty());
    if same_section && owner == Some(schema) && entry {
        return Ok(());
    }
    Err(OasError::invalid_argument_hint(
        format!(
            "object path \"{}\" of schema \"{}\" would not read back as that schema's: \
             it lies in the {} section and names {} as its schema{}",
            path.escape_default(),
            schema.escape_default(),
            match found {
                Section::Hash => "hash",
                Section::Schema => "schema-addressed",
            },
            owner.map_or("nothing".into(), |o| format!("\"{}\"", o.escape_default())),
            if entry {
                ""
            } else {
                ", and it does not read back as its own entry"
            },
        ),
        "schema names must not contain '=' nor equal the first segment of the other section's \
         prefix when a store's hash_prefix or schema_prefix is empty; column names and extensions \
         of schema-addressed objects must not contain '=', nor extensions end with .manifest.json",
    ))
}

/// Is `key` named like a hash-addressed object (DataJoint only collects files named by a hash;
/// pg_oas also by a hash followed by `.zst`, a compressed object, [`crate::compress`])?
pub fn is_hash_object(key: &str) -> bool {
    crate::compress::parse_object_name(key.rsplit('/').next().unwrap_or(key)).is_some()
}

/// The prefix to list for a section: `{prefix}/` (or the store root when `prefix` is empty)
/// followed by `schema/` when given.
pub fn section_prefix(prefix: &str, schema: Option<&str>) -> String {
    let mut p = String::new();
    if !prefix.is_empty() {
        p.push_str(prefix);
        p.push('/');
    }
    if let Some(s) = schema {
        p.push_str(s);
        p.push('/');
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::reference_paths;

    const H: &str = "lvauakv4jmvhnolrtwiraf6fsi";

    #[test]
    fn sections_and_owner_schemas() {
        // DataJoint's defaults: _hash for hash objects, the root for schema-addressed ones.
        assert_eq!(section_of("_hash", "", "_hash/lab/abc"), Section::Hash);
        assert_eq!(
            section_of("_hash", "", "lab/rec/id=1/f_x.npy"),
            Section::Schema
        );
        assert_eq!(owner_schema("_hash", "", "_hash/lab/abc"), Some("lab"));
        assert_eq!(
            owner_schema("_hash", "", "lab/rec/id=1/f_x.npy"),
            Some("lab")
        );
        // A schema named like the hash prefix does not own the hash section.
        assert_eq!(
            owner_schema("_hash", "", "_hash/victim/abc"),
            Some("victim")
        );
        // Partition folders are skipped in the schema section.
        assert_eq!(
            owner_schema("_hash", "obj", "obj/year=2024/lab/rec/f"),
            Some("lab")
        );
        // An empty hash prefix: everything outside the schema prefix is hash-addressed.
        assert_eq!(section_of("", "obj", "lab/abc"), Section::Hash);
        assert_eq!(section_of("", "obj", "obj/lab/rec/f"), Section::Schema);
        assert_eq!(owner_schema("", "obj", "lab/abc"), Some("lab"));
        assert_eq!(owner_schema("", "obj", "obj/lab/rec/f"), Some("lab"));
        // Both empty: every path is hash-addressed, its first segment the schema.
        assert_eq!(owner_schema("", "", "lab/abc"), Some("lab"));
        assert_eq!(owner_schema("_hash", "obj", "elsewhere/x"), None);
    }

    #[test]
    fn fuzz_writes_must_read_back_as_their_schemas() {
        let hash = format!("g/{H}");
        assert_eq!(owner_schema("", "g", &hash), Some(H));
        let e = require_read_back("", "g", Section::Hash, "g", &hash).unwrap_err();
        assert!(e.to_string().contains("schema-addressed section"), "{e}");
        assert!(require_read_back("", "g", Section::Hash, "lab", &format!("lab/{H}")).is_ok());
        assert!(
            require_read_back("_hash", "g", Section::Hash, "g", &format!("_hash/g/{H}")).is_ok()
        );
        // Schema-addressed objects of a schema named like the hash prefix, with an empty
        // schema_prefix, lie in the hash section.
        assert!(
            require_read_back("_hash", "", Section::Schema, "_hash", "_hash/t/id=1/f_tok").is_err()
        );
        assert!(require_read_back("_hash", "", Section::Schema, "lab", "lab/t/id=1/f_tok").is_ok());
        // Both prefixes empty: the sections cannot be told apart, the owner schema still can.
        assert!(require_read_back("", "", Section::Schema, "lab", "lab/t/id=1/f_tok").is_ok());
        assert!(require_read_back("", "", Section::Schema, "lab", "other/t/id=1/f_tok").is_err());
        // With the usual prefixes, a schema-addressed path of schema (first) reads back as its
        // own (second) or not. '=' in a schema name reads as a partition folder; in a field, as
        // a key folder; an extension ending like a manifest as the manifest of another entry.
        // Partition folders and '=' in a table name are fine.
        for (schema, path, ok) in [
            ("a=b", "_schema/a=b/t/id=1/f_tok", false),
            ("lab", "_schema/lab/t/id=1/f=x_tok", false),
            ("lab", "_schema/lab/t/id=1/f_tok.a=b", false),
            ("lab", "_schema/lab/t/id=1/f_tok.manifest.json", false),
            ("lab", "_schema/s=1/lab/t/id=1/f_tok.npy", true),
            ("lab", "_schema/lab/a=b/id=1/f_tok", true),
            ("lab", "_schema/lab/t/f_tok", true),
        ] {
            let got = require_read_back("_hash", "_schema", Section::Schema, schema, path);
            assert_eq!(got.is_ok(), ok, "{schema} {path}: {got:?}");
        }
    }

    #[test]
    fn fuzz_a_folder_named_like_a_manifest_owns_its_files() {
        let key = "_schema/lab/t/id=1/f_x.manifest.json/inner.tif";
        let owner = owner_path(Section::Schema, "_schema", key);
        assert_eq!(owner, "_schema/lab/t/id=1/f_x.manifest.json");
        assert!(reference_paths(key).any(|p| p == owner));
        let key = "//.manifest.json/";
        let owner = owner_path(Section::Schema, "", key);
        assert_eq!(owner, "//.manifest.json");
        assert!(reference_paths(key).any(|p| p == owner));
        // The manifest beside the folder still belongs to the folder.
        assert_eq!(
            owner_path(
                Section::Schema,
                "_schema",
                "_schema/lab/t/id=1/f_x.manifest.json.manifest.json"
            ),
            "_schema/lab/t/id=1/f_x.manifest.json"
        );
    }

    #[test]
    fn owners_of_schema_objects() {
        let o = |k| owner_path(Section::Schema, "_schema", k);
        assert_eq!(
            o("_schema/lab/rec/id=1/traces_abcd1234.npy"),
            "_schema/lab/rec/id=1/traces_abcd1234.npy"
        );
        assert_eq!(
            o("_schema/lab/rec/id=1/s=a/movie_zz/frame0.tif"),
            "_schema/lab/rec/id=1/s=a/movie_zz"
        );
        assert_eq!(
            o("_schema/lab/rec/id=1/movie_zz.manifest.json"),
            "_schema/lab/rec/id=1/movie_zz"
        );
        // Partition folders come before the schema.
        assert_eq!(
            o("_schema/subject=m1/lab/rec/id=1/movie_zz/a/b"),
            "_schema/subject=m1/lab/rec/id=1/movie_zz"
        );
        // Keys off the layout own themselves.
        assert_eq!(o("_schema/lab/rec"), "_schema/lab/rec");
        assert_eq!(o("elsewhere/x"), "elsewhere/x");
        assert_eq!(
            owner_path(Section::Schema, "", "lab/rec/id=1/f_t/x"),
            "lab/rec/id=1/f_t"
        );
        assert_eq!(owner_path(Section::Hash, "_hash", "_hash/a/b"), "_hash/a/b");
    }

    #[test]
    fn schemas_of_listed_objects() {
        assert_eq!(
            schema_of(Section::Hash, "_hash", &format!("_hash/lab/{H}")),
            Some("lab")
        );
        assert_eq!(
            schema_of(
                Section::Schema,
                "_schema",
                "_schema/subject=m1/lab/rec/id=1/f_t"
            ),
            Some("lab")
        );
        assert_eq!(
            schema_of(Section::Schema, "", "lab/rec/id=1/f_t"),
            Some("lab")
        );
        assert_eq!(schema_of(Section::Hash, "_hash", "_hashx/lab"), None);
        assert!(is_hash_object(&format!("_hash/lab/ab/{H}")));
        assert!(!is_hash_object(&format!("_hash/lab/{H}.saving")));
        // A compressed object (a store marked by oas_store_compression) is one too.
        assert!(is_hash_object(&format!("_hash/lab/ab/{H}.zst")));
        assert!(!is_hash_object(&format!("_hash/lab/{H}.zst.zst")));
        assert_eq!(section_prefix("_hash", Some("lab")), "_hash/lab/");
        assert_eq!(section_prefix("", Some("lab")), "lab/");
        assert_eq!(section_prefix("_hash", None), "_hash/");
    }

    #[test]
    fn one_section_rule_for_empty_prefixes() {
        // An empty hash_prefix: the hash section is everything not under schema_prefix.
        assert_eq!(section_of("", "data", &format!("lab/{H}")), Section::Hash);
        assert_eq!(section_of("", "data", "lab/notahash"), Section::Hash);
        assert_eq!(
            section_of("", "data", "data/lab/t/id=1/f_tok"),
            Section::Schema
        );
        // ... also when a schema is named like schema_prefix: its hash section "data/" holds
        // every schema's schema-addressed objects, which stay schema-addressed.
        assert_eq!(
            section_of("", "data", &format!("data/lab/t/id=1/f_tok/{H}")),
            Section::Schema
        );
        assert_eq!(section_of("", "data", "datax/y"), Section::Hash);
        // An empty schema_prefix: the mirror image.
        assert_eq!(section_of("_hash", "", "lab/t/id=1/f"), Section::Schema);
        assert_eq!(
            section_of("_hash", "", &format!("_hash/lab/{H}")),
            Section::Hash
        );
        // Both empty: the name decides.
        assert_eq!(section_of("", "", &format!("lab/{H}")), Section::Hash);
        assert_eq!(section_of("", "", &format!("lab/ab/cd/{H}")), Section::Hash);
        assert_eq!(
            section_of("", "", "lab/t/id=1/f_tok/x.bin"),
            Section::Schema
        );
        assert_eq!(section_of("", "", "lab/t/id=1/f_tok.npy"), Section::Schema);
    }

    fn layout(spec: serde_json::Value) -> Layout {
        let mut spec = spec;
        spec["protocol"] = "file".into();
        spec["location"] = "/d".into();
        Layout::new(&crate::spec::StoreSpec::from_json(&spec).unwrap())
    }

    #[test]
    fn listings_list_each_prefix_once() {
        let l = layout(serde_json::json!({"hash_prefix": "", "schema_prefix": ""}));
        let (ls, warning) = l.listings(&["lab"]);
        assert_eq!(
            ls,
            vec![("lab/".to_string(), vec![Section::Hash, Section::Schema])]
        );
        assert_eq!(warning, None);
        let l = layout(serde_json::json!({"hash_prefix": "", "schema_prefix": "data"}));
        let (ls, _) = l.listings(&["data", "lab"]);
        assert_eq!(
            ls,
            vec![
                ("data/".to_string(), vec![Section::Hash]),
                ("lab/".to_string(), vec![Section::Hash]),
                ("data/data/".to_string(), vec![Section::Schema]),
                ("data/lab/".to_string(), vec![Section::Schema]),
            ]
        );
        let l = layout(serde_json::json!({"schema_prefix": "", "partition_pattern": "{subject}"}));
        let (ls, warning) = l.listings(&["lab"]);
        assert_eq!(ls, vec![("_hash/lab/".to_string(), vec![Section::Hash])]);
        assert!(warning.is_some());
    }

    #[test]
    fn what_a_listing_makes_of_each_object() {
        let known = |s: &str| s == "lab";
        // Empty hash_prefix, a schema named like schema_prefix: its hash listing "data/" sees
        // the schema-addressed objects of every schema, another database's included; they are
        // not its to count (they were counted, and collected when named like a hash).
        let l = layout(
            serde_json::json!({"hash_prefix": "", "schema_prefix": "data", "filepath_prefix": "files"}),
        );
        let hash = [Section::Hash];
        assert_eq!(
            l.sight(&hash, &format!("data/other/t/id=1/f_tok/{H}"), known),
            Sighting::Ignore
        );
        assert_eq!(
            l.sight(&hash, "data/other/t/id=1/g_tok.npy", known),
            Sighting::Ignore
        );
        assert_eq!(
            l.sight(&hash, &format!("lab/{H}"), known),
            Sighting::Managed(Section::Hash)
        );
        assert_eq!(
            l.sight(&hash, &format!("lab/{H}.zst"), known),
            Sighting::Managed(Section::Hash)
        );
        assert_eq!(l.sight(&hash, "lab/notes.txt", known), Sighting::Skip);
        assert_eq!(l.sight(&hash, "lab/notes.zst", known), Sighting::Skip);
        assert_eq!(
            l.sight(&hash, &format!("files/{H}"), known),
            Sighting::Ignore
        );
        assert_eq!(l.sight(&hash, "_oas/trash/x", known), Sighting::Ignore);
        let schema = [Section::Schema];
        assert_eq!(
            l.sight(&schema, &format!("data/lab/t/id=1/f_tok/{H}"), known),
            Sighting::Managed(Section::Schema)
        );
        // Both empty, one listing for both sections: each object counted once, by its name.
        let l = layout(serde_json::json!({"hash_prefix": "", "schema_prefix": ""}));
        let both = [Section::Hash, Section::Schema];
        assert_eq!(
            l.sight(&both, &format!("lab/{H}"), known),
            Sighting::Managed(Section::Hash)
        );
        assert_eq!(
            l.sight(&both, "lab/t/id=1/f_tok/x.bin", known),
            Sighting::Managed(Section::Schema)
        );
        // Partitions: the schema section is listed whole and filtered by schema.
        let l = layout(serde_json::json!({"partition_pattern": "{subject}"}));
        assert_eq!(
            l.sight(&schema, "_schema/subject=m1/lab/t/id=1/f_tok", known),
            Sighting::Managed(Section::Schema)
        );
        assert_eq!(
            l.sight(&schema, "_schema/subject=m1/other/t/id=1/f_tok", known),
            Sighting::Ignore
        );
    }
}
