//! DataJoint's folder manifest: `{path}.manifest.json` beside a folder object, written exactly as
//! DataJoint's `put_folder` writes it (`json.dumps(manifest, indent=2)`).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestFile {
    /// Relative to the folder, `/`-separated.
    pub path: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub files: Vec<ManifestFile>,
    pub total_size: u64,
    pub item_count: u64,
    /// ISO 8601 with microseconds and `+00:00`, as Python's `datetime.now(timezone.utc).isoformat()`.
    pub created: String,
}

impl Manifest {
    pub fn new(files: Vec<ManifestFile>, created: String) -> Self {
        let total_size = files.iter().map(|f| f.size).sum();
        let item_count = files.len() as u64;
        Manifest {
            files,
            total_size,
            item_count,
            created,
        }
    }

    /// The manifest's bytes: Python's `json.dumps(manifest, indent=2)` (keys in this order,
    /// two-space indent, non-ASCII escaped as `\uXXXX`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let pretty = serde_json::to_string_pretty(self).unwrap_or_default();
        let mut out = String::with_capacity(pretty.len());
        for c in pretty.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_as_python_json_dumps_indent_2() {
        let m = Manifest::new(
            vec![
                ManifestFile {
                    path: "a.tif".into(),
                    size: 3,
                },
                ManifestFile {
                    path: "sub/b é.bin".into(),
                    size: 10,
                },
            ],
            "2026-11-24T04:50:00.123456+00:00".into(),
        );
        // python3 -c 'import json; print(json.dumps({"files": [{"path": "a.tif", "size": 3},
        //   {"path": "sub/b \u00e9.bin", "size": 10}], "total_size": 13, "item_count": 2,
        //   "created": "2026-11-24T04:50:00.123456+00:00"}, indent=2))'
        let expected = "{\n  \"files\": [\n    {\n      \"path\": \"a.tif\",\n      \"size\": 3\n    },\n    {\n      \"path\": \"sub/b \\u00e9.bin\",\n      \"size\": 10\n    }\n  ],\n  \"total_size\": 13,\n  \"item_count\": 2,\n  \"created\": \"2026-11-24T04:50:00.123456+00:00\"\n}";
        assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), expected);
        let empty = Manifest::new(vec![], "t".into());
        assert_eq!(
            String::from_utf8(empty.to_bytes()).unwrap(),
            "{\n  \"files\": [],\n  \"total_size\": 0,\n  \"item_count\": 0,\n  \"created\": \"t\"\n}"
        );
    }
}
