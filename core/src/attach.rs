//! DataJoint's attachment layout (`<attach>` in a `bytea` column, `<attach@store>` as a
//! hash-addressed object): the file name in UTF-8, one NUL byte, the file's bytes.
//!
//! DataJoint takes the name from `Path(value).name` when it writes, and on fetch writes the
//! contents to `download_path / name`. A stored name with `/` or `..` would write outside that
//! folder, so pg_oas refuses such a name when it writes (DataJoint could never have produced it)
//! and reports it when it reads.

use crate::OasError;

/// `filename \0 contents`, after checking that `filename` is a plain file name.
pub fn pack(filename: &str, contents: &[u8]) -> Result<Vec<u8>, OasError> {
    check_filename(filename)?;
    let mut out = Vec::with_capacity(filename.len() + 1 + contents.len());
    out.extend_from_slice(filename.as_bytes());
    out.push(0);
    out.extend_from_slice(contents);
    Ok(out)
}

/// The file name and contents of a packed attachment (split at the first NUL, as DataJoint does).
/// A value without a NUL, a name that is not UTF-8, or a name that is not a plain file name is
/// refused: DataJoint's fetch would fail on the first two and write outside its download folder
/// on the last.
pub fn unpack(value: &[u8]) -> Result<(&str, &[u8]), OasError> {
    let nul = value.iter().position(|&b| b == 0).ok_or_else(|| {
        OasError::invalid_argument_hint(
            "not a DataJoint attachment: no NUL byte after a file name",
            "an attachment is filename\\0contents, as oas_attach_pack or DataJoint's <attach> writes it",
        )
    })?;
    let name = std::str::from_utf8(&value[..nul]).map_err(|_| {
        OasError::invalid_argument("not a DataJoint attachment: the file name is not UTF-8")
    })?;
    check_filename(name)?;
    Ok((name, &value[nul + 1..]))
}

/// A plain file name: not empty, not `.` or `..`, no `/` and no NUL.
fn check_filename(name: &str) -> Result<(), OasError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(OasError::invalid_argument_hint(
            format!("invalid attachment file name {name:?}"),
            "give the file's name alone (as Path(file).name), without a folder, \"/\" or NUL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_as_datajoint_does() {
        // Python: "résumé.pdf".encode("utf-8") + b"\x00" + b"%PDF\x00x"
        let v = pack("résumé.pdf", b"%PDF\x00x").unwrap();
        assert_eq!(v, b"r\xc3\xa9sum\xc3\xa9.pdf\x00%PDF\x00x");
        assert_eq!(unpack(&v).unwrap(), ("résumé.pdf", &b"%PDF\x00x"[..]));
        assert_eq!(
            unpack(&pack("empty", b"").unwrap()).unwrap(),
            ("empty", &b""[..])
        );
    }

    #[test]
    fn names_that_would_escape_a_folder_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "/etc/passwd", "a\0b"] {
            assert!(pack(bad, b"x").is_err(), "{bad:?}");
        }
        assert!(unpack(b"../../x\0data").is_err());
        assert!(unpack(b"no separator").is_err());
        assert!(unpack(b"\xff\xfe\0data").is_err());
        // A backslash is an ordinary character of a POSIX file name.
        assert!(pack("a\\b.txt", b"x").is_ok());
    }
}
