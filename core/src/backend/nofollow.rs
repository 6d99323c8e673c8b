//! `file` stores that never follow a symbolic link below their root.
//!
//! object_store's [`LocalFileSystem`] follows symbolic links everywhere: for reads, writes,
//! renames and listings. Anyone who may write into a store's directory could then plant
//! `_hash/lab/<hash>` → `/etc/passwd` and read it through pg_oas, plant a directory link and have
//! pg_oas write outside the store, or have the collector move outside files into its trash.
//! [`NoFollow`] wraps the client of a `file` store so that no operation goes through a link.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, Metadata};
use std::io;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use walkdir::WalkDir;

/// The hint shown with a refused link.
pub const SYMLINK_HINT: &str = "pg_oas does not follow symbolic links inside a file store; replace the link with a directory or file";

/// What a refused operation fails with, as the source of an
/// [`object_store::Error::PermissionDenied`]; [`crate::backend::Store::error`] turns it into
/// [`crate::OasError::StoreForbidden`] with [`SYMLINK_HINT`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{link}\" is a symbolic link inside the store")]
pub struct SymlinkRefused {
    /// The link, relative to the store's location.
    pub link: String,
}

impl SymlinkRefused {
    fn into_error(self, location: &str) -> object_store::Error {
        object_store::Error::PermissionDenied {
            path: location.to_string(),
            source: Box::new(self),
        }
    }
}

/// Look at each existing component of `parts` below `root` with `lstat`, from the top, and refuse
/// the first symbolic link. `root` itself is trusted (it may be a link). The walk stops at the
/// first component that is missing (a write creates it as a directory; nothing below it exists
/// yet), that is not a directory (nothing can be below it; the operation fails on its own) or that
/// cannot be looked at (the operation meets the same error).
pub fn check_below<'a>(
    root: &FsPath,
    parts: impl IntoIterator<Item = &'a str>,
) -> Result<(), SymlinkRefused> {
    let mut path = root.to_path_buf();
    let mut rel = String::new();
    for part in parts {
        path.push(part);
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(SymlinkRefused { link: rel }),
            Ok(m) if m.is_dir() => {}
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// The parts of an object path, as the file and directory names [`LocalFileSystem`] uses (it
/// does not decode or encode them on the way to the file system).
fn parts(location: &Path) -> impl Iterator<Item = &str> {
    location.as_ref().split('/').filter(|p| !p.is_empty())
}

fn check(root: &FsPath, location: &Path) -> Result<()> {
    check_below(root, parts(location)).map_err(|e| e.into_error(location.as_ref()))
}

/// A `file` store's client that refuses to go through a symbolic link below the store's root.
///
/// - Every operation that names objects (get, get_range(s), head, put, put_multipart, copy,
///   rename, the `_if_not_exists` forms and delete) first checks each existing component of
///   each path with `lstat` ([`check_below`]) and fails with [`SymlinkRefused`] (inside an
///   [`object_store::Error::PermissionDenied`]) if one is a link. The object itself may not be a
///   link either. Missing components are fine: writes create them as directories.
/// - Listings ([`ObjectStore::list`], [`ObjectStore::list_with_delimiter`]) refuse a prefix
///   that goes through a link, and walk without following links: an entry that is a link, and
///   anything below a directory link, is skipped. Each directory is read once, and each file
///   costs one `lstat` (object_store's own listing costs several `stat`s per file).
/// - Reads (`get`, `head`, `get_range`, `get_ranges`) open the file one component at a time
///   (`openat` with `O_NOFOLLOW` from the root down), so they never go through a link, even one
///   swapped in while they run, and read from that descriptor.
///
/// # Race windows
///
/// Everything but reads is check-then-act: the check runs, then [`LocalFileSystem`] resolves
/// the path again by name. Whoever can write into the store's directory and replaces a checked
/// directory with a link in between (microseconds; for a multipart upload, between the last
/// check at `complete` and its rename) still gets a write, rename or delete through it. Closing
/// that would need every operation done with `*at()` calls relative to directory descriptors,
/// which object_store does not offer. The root itself is resolved once, when the store's client
/// is built.
#[derive(Debug, Clone)]
pub struct NoFollow {
    inner: LocalFileSystem,
    /// The directory `inner` maps paths into (the canonical location).
    root: Arc<PathBuf>,
}

impl NoFollow {
    pub fn new(inner: LocalFileSystem) -> Result<Self> {
        // The root exactly as `inner` maps paths: the parent of any top-level object.
        let probe = inner.path_to_filesystem(&Path::from("probe"))?;
        let root = probe
            .parent()
            .ok_or_else(|| generic("the store's root has no parent of a file"))?
            .to_path_buf();
        Ok(NoFollow {
            inner,
            root: Arc::new(root),
        })
    }

    /// The directory the store's objects are in (the location, with links resolved).
    pub fn root(&self) -> &FsPath {
        &self.root
    }

    /// The wrapped client. Whatever goes through it follows links.
    pub fn inner(&self) -> &LocalFileSystem {
        &self.inner
    }

    /// The file an object path names, as [`LocalFileSystem::path_to_filesystem`].
    pub fn path_to_filesystem(&self, location: &Path) -> Result<PathBuf> {
        self.inner.path_to_filesystem(location)
    }

    fn check(&self, location: &Path) -> Result<()> {
        check(&self.root, location)
    }
}

impl fmt::Display for NoFollow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoFollow({})", self.inner)
    }
}

fn generic(msg: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: msg.into().into(),
    }
}

fn io_error(what: &str, path: &FsPath, e: io::Error) -> object_store::Error {
    if e.kind() == io::ErrorKind::NotFound {
        return object_store::Error::NotFound {
            path: path.display().to_string(),
            source: Box::new(e),
        };
    }
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("{what} {}: {e}", path.display()).into(),
    }
}

/// `f` on tokio's blocking pool when there is a runtime, else here.
async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt.spawn_blocking(f).await?,
        Err(_) => f(),
    }
}

#[async_trait]
impl ObjectStore for NoFollow {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CheckedUpload {
            inner: upload,
            root: self.root.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let path = self.inner.path_to_filesystem(location)?;
        let (root, location) = (self.root.clone(), location.clone());
        blocking(move || {
            let file = open_nofollow(&root, &location, &path)?;
            let metadata = file_metadata(&file, &path)?;
            let meta = object_meta(&metadata, location);
            options.check_preconditions(&meta)?;
            let range = match options.range {
                Some(r) => r
                    .as_range(meta.size)
                    .map_err(|e| object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    })?,
                None => 0..meta.size,
            };
            Ok(GetResult {
                payload: object_store::GetResultPayload::File(file, path),
                meta,
                range,
                attributes: Default::default(),
                extensions: Default::default(),
            })
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = self.inner.path_to_filesystem(location)?;
        let (root, location) = (self.root.clone(), location.clone());
        let ranges = ranges.to_vec();
        blocking(move || {
            let file = open_nofollow(&root, &location, &path)?;
            let size = file_metadata(&file, &path)?.len();
            ranges
                .iter()
                .map(|r| read_range(&file, &path, size, r.clone()))
                .collect()
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let root = self.root.clone();
        let checked = locations
            .map(move |r| r.and_then(|loc| check(&root, &loc).map(|()| loc)))
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        list(self.root.clone(), prefix.cloned().unwrap_or_default(), None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        list(
            self.root.clone(),
            prefix.cloned().unwrap_or_default(),
            Some(offset.clone()),
        )
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let prefix = prefix.cloned().unwrap_or_default();
        self.check(&prefix)?;
        let root = self.root.clone();
        blocking(move || list_one_level(&root, &prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload that checks its destination again before it publishes the file.
#[derive(Debug)]
struct CheckedUpload {
    inner: Box<dyn MultipartUpload>,
    root: Arc<PathBuf>,
    location: Path,
}

#[async_trait]
impl MultipartUpload for CheckedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        check(&self.root, &self.location)?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

// ---- reads: open without following links -------------------------------------------------------

/// Open the object `location` (the file `path`) for reading, one component at a time from the
/// root with `openat(O_NOFOLLOW)`: a link anywhere below the root fails the open, however late it
/// was put there.
fn open_nofollow(root: &FsPath, location: &Path, path: &FsPath) -> Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let names: Vec<&str> = parts(location).collect();
    let Some(last) = names.len().checked_sub(1) else {
        return Err(generic("no object path to open"));
    };
    let mut dir: OwnedFd = File::open(root)
        .map_err(|e| io_error("cannot open the store's directory", root, e))?
        .into();
    let refused_or = |dir: &OwnedFd, depth: usize, name: &std::ffi::CStr, e: io::Error| {
        // O_NOFOLLOW fails with ELOOP on a link (ENOTDIR with O_DIRECTORY on some systems):
        // look at what is there before saying why.
        // SAFETY: `st` is written by fstatat before it is read; the fd and name are valid.
        let is_link = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            ) == 0
                && (st.st_mode & libc::S_IFMT) == libc::S_IFLNK
        };
        if is_link {
            SymlinkRefused {
                link: names[..=depth].join("/"),
            }
            .into_error(location.as_ref())
        } else if e.raw_os_error() == Some(libc::ENOTDIR) {
            // A file where a folder should be: there is no such object.
            object_store::Error::NotFound {
                path: path.display().to_string(),
                source: Box::new(e),
            }
        } else {
            io_error("cannot open", path, e)
        }
    };
    let open_at = |dir: &OwnedFd, depth: usize, flags: libc::c_int| -> Result<OwnedFd> {
        let name = std::ffi::CString::new(names[depth].as_bytes())
            .map_err(|_| generic(format!("invalid file name in \"{location}\"")))?;
        // SAFETY: a valid directory fd and a NUL-terminated name; the result is checked.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(refused_or(dir, depth, &name, io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    for depth in 0..last {
        dir = open_at(&dir, depth, libc::O_RDONLY | libc::O_DIRECTORY)?;
    }
    Ok(File::from(open_at(
        &dir,
        last,
        libc::O_RDONLY | libc::O_NOCTTY,
    )?))
}

/// The metadata of an opened object; a directory is no object.
fn file_metadata(file: &File, path: &FsPath) -> Result<Metadata> {
    let m = file
        .metadata()
        .map_err(|e| io_error("cannot stat", path, e))?;
    if m.is_dir() {
        return Err(object_store::Error::NotFound {
            path: path.display().to_string(),
            source: "is a directory".into(),
        });
    }
    Ok(m)
}

/// `range` of the opened file of `size` bytes: the range must start inside the file and is cut
/// at its end, as [`LocalFileSystem`] reads ranges.
fn read_range(file: &File, path: &FsPath, size: u64, range: Range<u64>) -> Result<Bytes> {
    use std::os::unix::fs::FileExt;
    if range.start > range.end {
        return Err(generic(format!(
            "invalid range {}..{} of {}",
            range.start,
            range.end,
            path.display()
        )));
    }
    if range.is_empty() {
        return Ok(Bytes::new());
    }
    if range.start >= size {
        return Err(generic(format!(
            "range {}..{} starts beyond the end of {} ({size} bytes)",
            range.start,
            range.end,
            path.display()
        )));
    }
    let end = range.end.min(size);
    let mut buf = vec![0u8; (end - range.start) as usize];
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], range.start + done as u64) {
            Ok(0) => {
                return Err(generic(format!(
                    "{} ended at {} bytes, reading {}..{end}",
                    path.display(),
                    range.start + done as u64,
                    range.start
                )))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("cannot read", path, e)),
        }
    }
    Ok(buf.into())
}

// ---- listing without following links ----------------------------------------------------------

/// A listed file's metadata, as [`LocalFileSystem`] reports it (same ETag scheme).
fn object_meta(m: &Metadata, location: Path) -> ObjectMeta {
    use std::os::unix::fs::MetadataExt;
    let modified = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let micros = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    ObjectMeta {
        location,
        last_modified: modified.into(),
        size: m.len(),
        e_tag: Some(format!("\"{:x}-{micros:x}-{:x}\"", m.ino(), m.len())),
        version: None,
    }
}

/// [`LocalFileSystem`] hides files named `...#<digits>`: its uploads in progress.
fn is_listed_name(name: &str) -> bool {
    match name.split_once('#') {
        Some((_, suffix)) if !suffix.is_empty() => !suffix.bytes().all(|b| b.is_ascii_digit()),
        _ => true,
    }
}

/// The object path of a file below `root`.
fn location_of(root: &FsPath, file: &FsPath) -> Result<Path> {
    let rel = file
        .strip_prefix(root)
        .map_err(|_| generic(format!("{} is outside the store", file.display())))?;
    let mut s = String::new();
    for c in rel.components() {
        let name = c
            .as_os_str()
            .to_str()
            .ok_or_else(|| generic(format!("file name is not valid UTF-8: {}", file.display())))?;
        if !s.is_empty() {
            s.push('/');
        }
        s.push_str(name);
    }
    Ok(Path::parse(s)?)
}

fn walk_error(e: walkdir::Error) -> Option<object_store::Error> {
    match e.io_error().map(io::Error::kind) {
        // Removed while we walked: it is simply not listed.
        Some(io::ErrorKind::NotFound) => None,
        _ => Some(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        }),
    }
}

/// Every file below `prefix` (after `offset`, if given), walking without following links.
fn list(
    root: Arc<PathBuf>,
    prefix: Path,
    offset: Option<Path>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    if let Err(e) = check(&root, &prefix) {
        return stream::once(async move { Err(e) }).boxed();
    }
    let mut start = root.to_path_buf();
    start.extend(parts(&prefix));
    let walk = WalkDir::new(start)
        .min_depth(1)
        .follow_links(false)
        .follow_root_links(false);
    let files = walk.into_iter().filter_map(move |entry| {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return walk_error(e).map(Err),
        };
        // Links (to files or directories) are neither listed nor walked into.
        if !entry.file_type().is_file() {
            return None;
        }
        let location = match location_of(&root, entry.path()) {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        if !location.filename().is_some_and(is_listed_name) {
            return None;
        }
        if offset.as_ref().is_some_and(|o| location <= *o) {
            return None;
        }
        match entry.metadata() {
            Ok(m) => Some(Ok(object_meta(&m, location))),
            Err(e) => walk_error(e).map(Err),
        }
    });
    in_batches(files)
}

/// Stream `items`, produced on tokio's blocking pool a batch at a time when there is a runtime.
fn in_batches<I>(items: I) -> BoxStream<'static, Result<ObjectMeta>>
where
    I: Iterator<Item = Result<ObjectMeta>> + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return stream::iter(items).boxed();
    }
    const BATCH: usize = 1024;
    stream::unfold(
        (Some(items), VecDeque::new()),
        |(mut items, mut buf)| async move {
            if buf.is_empty() {
                let mut it = items.take()?;
                let filled = tokio::task::spawn_blocking(move || {
                    let mut buf = VecDeque::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        match it.next() {
                            Some(r) => buf.push_back(r),
                            None => return (None, buf),
                        }
                    }
                    (Some(it), buf)
                })
                .await;
                match filled {
                    Ok((it, b)) => (items, buf) = (it, b),
                    Err(e) => return Some((Err(e.into()), (None, VecDeque::new()))),
                }
            }
            let item = buf.pop_front()?;
            Some((item, (items, buf)))
        },
    )
    .boxed()
}

/// The files and folders directly in `prefix`; links are left out.
fn list_one_level(root: &FsPath, prefix: &Path) -> Result<ListResult> {
    let mut dir = root.to_path_buf();
    dir.extend(parts(prefix));
    let mut result = ListResult {
        common_prefixes: Vec::new(),
        objects: Vec::new(),
        extensions: Default::default(),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        // Nothing there (or a file): nothing under it.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(result)
        }
        Err(e) => return Err(io_error("cannot list", &dir, e)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("cannot list", &dir, e)),
        };
        let (kind, path) = match entry.file_type() {
            Ok(t) => (t, entry.path()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("cannot stat", &entry.path(), e)),
        };
        if kind.is_dir() {
            result.common_prefixes.push(location_of(root, &path)?);
        } else if kind.is_file() {
            let location = location_of(root, &path)?;
            if !location.filename().is_some_and(is_listed_name) {
                continue;
            }
            match entry.metadata() {
                Ok(m) => result.objects.push(object_meta(&m, location)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("cannot stat", &path, e)),
            }
        }
    }
    result.common_prefixes.sort();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ClientSettings, Store};
    use crate::error::OasError;
    use crate::spec::StoreSpec;
    use futures::TryStreamExt;
    use object_store::{ObjectStoreExt, WriteMultipart};
    use std::os::unix::fs::symlink;

    fn store_at(location: &FsPath, fsync: bool) -> Store {
        let spec = StoreSpec::from_json(
            &serde_json::json!({"protocol": "file", "location": location.to_str().unwrap()}),
        )
        .unwrap();
        let settings = ClientSettings {
            file_fsync: fsync,
            ..ClientSettings::default()
        };
        Store::build("main", spec, &settings).unwrap()
    }

    fn key(p: &str) -> Path {
        Path::parse(p).unwrap()
    }

    /// The link an error refused, if it is a refusal.
    fn refused_link(e: &object_store::Error) -> Option<&str> {
        match e {
            object_store::Error::PermissionDenied { source, .. } => source
                .downcast_ref::<SymlinkRefused>()
                .map(|r| r.link.as_str()),
            _ => None,
        }
    }

    #[track_caller]
    fn assert_refused<T: fmt::Debug>(r: Result<T>, link: &str) {
        match r {
            Err(e) => assert_eq!(refused_link(&e), Some(link), "{e}"),
            Ok(v) => panic!("expected {link} to be refused, got {v:?}"),
        }
    }

    async fn listed(c: &dyn ObjectStore, prefix: Option<&str>) -> Vec<String> {
        let prefix = prefix.map(key);
        let mut v: Vec<String> = c
            .list(prefix.as_ref())
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_file_link_is_refused_for_every_operation() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("passwd");
        std::fs::write(&secret, b"root:x:0:0").unwrap();
        std::fs::create_dir_all(root.path().join("_hash/lab")).unwrap();
        symlink(&secret, root.path().join("_hash/lab/abc")).unwrap();
        std::fs::write(root.path().join("_hash/lab/ok"), b"ok").unwrap();
        let store = store_at(root.path(), true);
        let c = store.client();
        let (link, ok, other) = (key("_hash/lab/abc"), key("_hash/lab/ok"), key("elsewhere"));
        let l = "_hash/lab/abc";

        assert_refused(c.get(&link).await, l);
        assert_refused(c.head(&link).await, l);
        assert_refused(c.get_range(&link, 0..4).await, l);
        assert_refused(c.get_ranges(&link, &[0..1, 2..4]).await, l);
        assert_refused(c.delete(&link).await, l);
        assert_refused(c.copy(&link, &other).await, l);
        assert_refused(c.copy_if_not_exists(&link, &other).await, l);
        assert_refused(c.rename(&link, &other).await, l);
        assert_refused(c.rename_if_not_exists(&link, &other).await, l);
        // As a destination too: nothing is written over (or through) the link.
        assert_refused(c.put(&link, PutPayload::from_static(b"new")).await, l);
        assert_refused(c.copy(&ok, &link).await, l);
        assert_refused(c.rename(&ok, &link).await, l);
        assert_refused(c.put_multipart(&link).await.map(|_| ()), l);
        // The collector's client, which renames without fsync, refuses the same.
        let unsynced = store.unsynced().unwrap();
        assert_refused(unsynced.rename(&link, &other).await, l);

        // Nothing moved, nothing deleted, nothing written.
        assert_eq!(std::fs::read(&secret).unwrap(), b"root:x:0:0");
        assert!(root.path().join("_hash/lab/abc").is_symlink());
        assert!(root.path().join("_hash/lab/ok").is_file());
        assert!(!root.path().join("elsewhere").exists());
        // The link is not listed; the file beside it is.
        assert_eq!(listed(c.as_ref(), None).await, ["_hash/lab/ok"]);
        let one = c
            .list_with_delimiter(Some(&key("_hash/lab")))
            .await
            .unwrap();
        let names: Vec<_> = one.objects.iter().map(|m| m.location.as_ref()).collect();
        assert_eq!(names, ["_hash/lab/ok"]);
    }

    #[tokio::test]
    async fn a_refused_link_is_store_forbidden_with_a_hint() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), b"0123456789").unwrap();
        std::fs::create_dir_all(root.path().join("_hash")).unwrap();
        symlink(outside.path(), root.path().join("_hash/lab")).unwrap();
        let store = store_at(root.path(), false);
        let path = "_hash/lab/f";
        let e = store.client().get(&key(path)).await.unwrap_err();
        let e = store.error(e, "get", path);
        match &e {
            OasError::StoreForbidden {
                store, op, path: p, ..
            } => assert_eq!((store.as_str(), *op, p.as_str()), ("main", "get", path)),
            other => panic!("expected StoreForbidden, got {other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "store \"main\" denied get \"_hash/lab/f\": \"_hash/lab\" is a symbolic link inside the store"
        );
        assert_eq!(e.hint().as_deref(), Some(SYMLINK_HINT));

        // Through the operations the extension calls.
        let r = crate::reference::HashRef {
            hash: "x".into(),
            path: path.into(),
            schema: "lab".into(),
            store: Some("main".into()),
            size: 10,
        };
        let forbidden = |e: OasError| matches!(e, OasError::StoreForbidden { hint: Some(_), .. });
        assert!(forbidden(
            crate::ops::get_hash(&store, &r, false).await.unwrap_err()
        ));
        // A refused head stays refused (no credentials to diagnose).
        assert!(forbidden(
            crate::ops::object_size(&store, path).await.unwrap_err()
        ));
        assert!(forbidden(
            crate::ops::read_range(&store, path, 0..4)
                .await
                .unwrap_err()
        ));
        assert!(forbidden(
            crate::gc::delete_object(&store, path).await.unwrap_err()
        ));
        assert!(forbidden(
            crate::gc::exists(&store, path).await.unwrap_err()
        ));
        let mut listing = crate::gc::list(&store, "_hash/lab/");
        assert!(forbidden(listing.next().await.unwrap().unwrap_err()));
        // Other refusals keep the advice about credentials.
        let plain = OasError::StoreForbidden {
            store: "s".into(),
            op: "get",
            path: "p".into(),
            detail: "403".into(),
            hint: None,
        };
        assert!(plain.hint().unwrap().contains("credentials"));
    }

    #[tokio::test]
    async fn a_directory_link_is_neither_written_read_listed_nor_renamed_through() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("deep")).unwrap();
        std::fs::write(outside.path().join("x"), b"outside").unwrap();
        std::fs::write(outside.path().join("deep/y"), b"outside").unwrap();
        std::fs::create_dir_all(root.path().join("_hash")).unwrap();
        symlink(outside.path(), root.path().join("_hash/lab")).unwrap();
        std::fs::write(root.path().join("_hash/mine"), b"mine").unwrap();
        let store = store_at(root.path(), true);
        let c = store.client();
        let l = "_hash/lab";

        // put: refused, nothing created outside (neither the file nor its folders).
        assert_refused(
            c.put(&key("_hash/lab/new"), PutPayload::from_static(b"n"))
                .await,
            l,
        );
        assert_refused(
            c.put(&key("_hash/lab/sub/dir/new"), PutPayload::from_static(b"n"))
                .await,
            l,
        );
        assert_refused(c.put_multipart(&key("_hash/lab/big")).await.map(|_| ()), l);
        let mut outside_now: Vec<_> = std::fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        outside_now.sort();
        assert_eq!(outside_now, ["deep", "x"]);
        // get, head, range reads.
        assert_refused(c.get(&key("_hash/lab/x")).await, l);
        assert_refused(c.head(&key("_hash/lab/deep/y")).await, l);
        assert_refused(c.get_range(&key("_hash/lab/x"), 0..2).await, l);
        // Rename into and out of it, and delete in it.
        assert_refused(
            c.rename(&key("_hash/mine"), &key("_hash/lab/mine")).await,
            l,
        );
        assert_refused(
            c.rename_if_not_exists(&key("_hash/mine"), &key("_hash/lab/mine"))
                .await,
            l,
        );
        assert_refused(c.rename(&key("_hash/lab/x"), &key("_hash/stolen")).await, l);
        assert_refused(c.copy(&key("_hash/lab/x"), &key("_hash/stolen")).await, l);
        assert_refused(c.delete(&key("_hash/lab/x")).await, l);
        assert!(root.path().join("_hash/mine").is_file());
        assert!(!root.path().join("_hash/stolen").exists());
        assert_eq!(std::fs::read(outside.path().join("x")).unwrap(), b"outside");
        // The collector moving it to trash, through its unsynced client.
        let mut syncs = crate::gc::FolderSyncs::default();
        let moves = vec![(
            "_hash/lab/x".to_string(),
            crate::gc::trash_key("_hash/lab/x"),
        )];
        let results = crate::gc::move_objects(&store, &moves, 4, &mut syncs)
            .await
            .unwrap();
        assert!(
            matches!(&results[0], Err(OasError::StoreForbidden { .. })),
            "{results:?}"
        );
        assert!(outside.path().join("x").is_file());

        // Listing: nothing below the link appears; listing through it is refused.
        assert_eq!(listed(c.as_ref(), None).await, ["_hash/mine"]);
        assert_eq!(listed(c.as_ref(), Some("_hash")).await, ["_hash/mine"]);
        let through: Vec<_> = c.list(Some(&key("_hash/lab"))).collect().await;
        assert_eq!(through.len(), 1);
        assert_refused(through.into_iter().next().unwrap(), l);
        let one = c.list_with_delimiter(Some(&key("_hash"))).await.unwrap();
        assert!(one.common_prefixes.is_empty(), "{one:?}");
        assert_eq!(one.objects.len(), 1);
        assert_refused(c.list_with_delimiter(Some(&key("_hash/lab/deep"))).await, l);
        // The collector's listing of the whole store.
        let all: Vec<String> = crate::gc::list(&store, "")
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all, ["_hash/mine"]);
    }

    #[tokio::test]
    async fn a_link_deeper_down_is_found_and_named() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        symlink(outside.path(), root.path().join("a/b/c")).unwrap();
        let c = store_at(root.path(), false).client().clone();
        assert_refused(
            c.put(&key("a/b/c/d/e"), PutPayload::from_static(b"x"))
                .await,
            "a/b/c",
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // A missing folder below an existing one is fine: it is created.
        c.put(&key("a/b/new/d/e"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert!(root.path().join("a/b/new/d/e").is_file());
        // A dangling link is refused as well, and not listed.
        symlink(root.path().join("nowhere"), root.path().join("a/dangling")).unwrap();
        assert_refused(c.head(&key("a/dangling")).await, "a/dangling");
        assert_refused(
            c.put(&key("a/dangling/f"), PutPayload::from_static(b"x"))
                .await,
            "a/dangling",
        );
        assert!(!root.path().join("nowhere").exists());
        assert_eq!(listed(c.as_ref(), Some("a")).await, ["a/b/new/d/e"]);
    }

    #[tokio::test]
    async fn the_location_itself_may_be_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("store");
        symlink(&real, &link).unwrap();
        let store = store_at(&link, true);
        let c = store.client();
        c.put(&key("_hash/lab/a"), PutPayload::from_static(b"aaa"))
            .await
            .unwrap();
        assert_eq!(
            c.get(&key("_hash/lab/a"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            &b"aaa"[..]
        );
        assert_eq!(listed(c.as_ref(), None).await, ["_hash/lab/a"]);
        assert_eq!(listed(c.as_ref(), Some("_hash")).await, ["_hash/lab/a"]);
        c.rename(&key("_hash/lab/a"), &key("_hash/lab/b"))
            .await
            .unwrap();
        store
            .unsynced()
            .unwrap()
            .rename(&key("_hash/lab/b"), &key("_oas/trash/_hash/lab/b"))
            .await
            .unwrap();
        assert!(real.join("_oas/trash/_hash/lab/b").is_file());
        c.delete(&key("_oas/trash/_hash/lab/b")).await.unwrap();
        assert!(listed(c.as_ref(), None).await.is_empty());
    }

    /// Without links, the wrapper answers exactly as object_store's own client.
    #[tokio::test]
    async fn ordinary_paths_work_as_before() {
        let root = tempfile::tempdir().unwrap();
        let inner = LocalFileSystem::new_with_prefix(root.path()).unwrap();
        let c = NoFollow::new(LocalFileSystem::new_with_prefix(root.path()).unwrap()).unwrap();
        let names = [
            "_hash/lab/aa/bb/lvauakv4jmvhnolrtwiraf6fsi",
            "_hash/lab/aa/cc/x",
            "_schema/lab/t/name=a%3Ab #1/é~[x].npy",
            "_schema/lab/t/id=1/f.manifest.json",
            "top",
        ];
        for (i, n) in names.iter().enumerate() {
            c.put(
                &key(n),
                PutPayload::from(format!("content {i}").into_bytes()),
            )
            .await
            .unwrap();
            assert!(root.path().join(n).is_file(), "{n}");
        }
        // An upload in progress (`name#1`) is hidden, as object_store hides it.
        std::fs::write(root.path().join("_hash/lab/aa/cc/y#1"), b"partial").unwrap();
        // Reads: same bytes and metadata as the plain client.
        for n in names {
            let k = key(n);
            let mine = c.get(&k).await.unwrap();
            let theirs = inner.get(&k).await.unwrap();
            assert_eq!(mine.meta, theirs.meta);
            assert_eq!(mine.range, theirs.range);
            assert_eq!(mine.bytes().await.unwrap(), theirs.bytes().await.unwrap());
            assert_eq!(c.head(&k).await.unwrap(), inner.head(&k).await.unwrap());
            assert_eq!(
                c.get_range(&k, 2..5).await.unwrap(),
                inner.get_range(&k, 2..5).await.unwrap()
            );
            let ranges = [0..3, 1..2, 5..9, 0..0];
            assert_eq!(
                c.get_ranges(&k, &ranges).await.unwrap(),
                inner.get_ranges(&k, &ranges).await.unwrap()
            );
            // A range past the end is cut there, as `get_range` cuts it (object_store's
            // `get_ranges` fails instead); one that starts past the end is an error.
            assert_eq!(
                c.get_ranges(&k, &[8..100, 0..1]).await.unwrap(),
                [
                    inner.get_range(&k, 8..100).await.unwrap(),
                    inner.get_range(&k, 0..1).await.unwrap()
                ]
            );
            assert!(c.get_ranges(&k, &[0..1, 100..200]).await.is_err());
            assert!(inner.get_ranges(&k, &[0..1, 100..200]).await.is_err());
            let opts = GetOptions::new().with_range(Some(3..6));
            assert_eq!(
                c.get_opts(&k, opts.clone())
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap(),
                inner
                    .get_opts(&k, opts)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            );
        }
        // Missing objects and folders are NotFound, as before.
        for missing in ["nope", "_hash/lab/nope", "_hash/lab/aa", "top/below"] {
            let k = key(missing);
            assert!(
                matches!(c.head(&k).await, Err(object_store::Error::NotFound { .. })),
                "{missing}: {:?}",
                c.head(&k).await
            );
            assert!(matches!(
                c.get_range(&k, 0..1).await,
                Err(object_store::Error::NotFound { .. })
            ));
        }
        // Listings: the same objects (with the same ETags) as the plain client.
        for prefix in [
            None,
            Some("_hash"),
            Some("_hash/lab/aa"),
            Some("_schema/lab/t"),
        ] {
            let p = prefix.map(key);
            let sorted = |mut v: Vec<ObjectMeta>| {
                v.sort_by(|a, b| a.location.cmp(&b.location));
                v
            };
            let mine = sorted(c.list(p.as_ref()).try_collect().await.unwrap());
            let theirs = sorted(inner.list(p.as_ref()).try_collect().await.unwrap());
            assert_eq!(mine, theirs, "{prefix:?}");
            let mine = c.list_with_delimiter(p.as_ref()).await.unwrap();
            let theirs = inner.list_with_delimiter(p.as_ref()).await.unwrap();
            assert_eq!(mine.common_prefixes, theirs.common_prefixes, "{prefix:?}");
            assert_eq!(sorted(mine.objects), sorted(theirs.objects), "{prefix:?}");
        }
        let after: Vec<String> = c
            .list_with_offset(Some(&key("_hash")), &key("_hash/lab/aa/bb/zzz"))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(after, ["_hash/lab/aa/cc/x"]);
        // A prefix that does not exist (or is a file) lists nothing.
        assert!(listed(&c, Some("nothing/here")).await.is_empty());
        assert!(listed(&c, Some("top")).await.is_empty());
        let none = c.list_with_delimiter(Some(&key("nothing"))).await.unwrap();
        assert!(none.objects.is_empty() && none.common_prefixes.is_empty());

        // Writes, copies, renames, deletes.
        let (a, b) = (key("_hash/lab/aa/cc/x"), key("moved/deeper/x"));
        c.rename(&a, &b).await.unwrap();
        assert!(root.path().join("moved/deeper/x").is_file());
        assert!(matches!(
            c.rename(&a, &b).await,
            Err(object_store::Error::NotFound { .. })
        ));
        c.copy(&b, &a).await.unwrap();
        assert!(matches!(
            c.copy_if_not_exists(&b, &a).await,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            c.rename_if_not_exists(&b, &a).await,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        c.rename_if_not_exists(&b, &key("moved/y")).await.unwrap();
        assert!(matches!(
            c.put_opts(
                &a,
                PutPayload::from_static(b"z"),
                object_store::PutMode::Create.into()
            )
            .await,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        c.delete(&key("moved/y")).await.unwrap();
        assert!(matches!(
            c.delete(&key("moved/y")).await,
            Err(object_store::Error::NotFound { .. })
        ));

        // The multipart path.
        let big = key("_schema/lab/t/id=2/movie_zz/frame0.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w =
            WriteMultipart::new_with_chunk_size(c.put_multipart(&big).await.unwrap(), 1 << 20);
        w.write(&data);
        w.finish().await.unwrap();
        assert_eq!(c.get(&big).await.unwrap().bytes().await.unwrap(), data);
        let mut up = c.put_multipart(&key("aborted")).await.unwrap();
        up.put_part(PutPayload::from_static(b"x")).await.unwrap();
        up.abort().await.unwrap();
        assert!(!root.path().join("aborted").exists());
    }

    #[tokio::test]
    async fn a_multipart_upload_checks_again_before_it_publishes() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let c = NoFollow::new(LocalFileSystem::new_with_prefix(root.path()).unwrap()).unwrap();
        let mut up = c.put_multipart(&key("d/f")).await.unwrap();
        up.put_part(PutPayload::from_static(b"data")).await.unwrap();
        // The folder is swapped for a link while the upload runs.
        std::fs::rename(root.path().join("d"), root.path().join("d_real")).unwrap();
        symlink(outside.path(), root.path().join("d")).unwrap();
        assert_refused(up.complete().await, "d");
        assert!(!outside.path().join("f").exists());
    }

    /// The staging file of a large put (written beside object_store, see `crate::stage`) is
    /// not written through a link either.
    #[test]
    fn staging_does_not_write_through_a_link() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.path().join("_oas")).unwrap();
        let store = store_at(root.path(), false);
        let data = vec![7u8; 2 << 20];
        let e = crate::stage::prepare(&store, &data, false, &|| false).unwrap_err();
        match &e {
            OasError::StoreForbidden {
                store, op, detail, ..
            } => {
                assert_eq!((store.as_str(), *op), ("main", "stage"));
                assert!(detail.contains("\"_oas\" is a symbolic link"), "{detail}");
            }
            other => panic!("expected StoreForbidden, got {other:?}"),
        }
        assert_eq!(e.hint().as_deref(), Some(SYMLINK_HINT));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    /// Listing 100 000 files in a two-level tree (100 × 10 folders of 100 files), and 10 000
    /// heads, with object_store's client and with the wrapper:
    /// `cargo test -p oas_core listing_overhead -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore]
    async fn listing_overhead() {
        use std::time::Instant;
        let root = tempfile::tempdir().unwrap();
        let t = Instant::now();
        for a in 0..100 {
            for b in 0..10 {
                let dir = root.path().join(format!("{a:02x}/{b:02x}"));
                std::fs::create_dir_all(&dir).unwrap();
                for f in 0..100 {
                    std::fs::write(dir.join(format!("lvauakv4jmvhnolrtwiraf{f:04}")), b"x")
                        .unwrap();
                }
            }
        }
        println!("created 100000 files in {:.2?}", t.elapsed());
        let plain = LocalFileSystem::new_with_prefix(root.path()).unwrap();
        let wrapped =
            NoFollow::new(LocalFileSystem::new_with_prefix(root.path()).unwrap()).unwrap();
        async fn count(c: &dyn ObjectStore) -> usize {
            c.list(None)
                .try_fold(0, |n, _| async move { Ok(n + 1) })
                .await
                .unwrap()
        }
        // Warm the cache, then alternate.
        assert_eq!(count(&plain).await, 100_000);
        assert_eq!(count(&wrapped).await, 100_000);
        for round in 1..=3 {
            let t = Instant::now();
            count(&plain).await;
            let p = t.elapsed();
            let t = Instant::now();
            count(&wrapped).await;
            let w = t.elapsed();
            println!("round {round}: LocalFileSystem {p:.2?}, NoFollow {w:.2?}");
        }
        // Point operations: 10 000 heads (NoFollow opens one component at a time).
        let keys: Vec<Path> = (0..10_000)
            .map(|i| {
                let (a, b, f) = (i % 100, (i / 100) % 10, i / 1000);
                key(&format!("{a:02x}/{b:02x}/lvauakv4jmvhnolrtwiraf{f:04}"))
            })
            .collect();
        for round in 1..=2 {
            let t = Instant::now();
            for k in &keys {
                plain.head(k).await.unwrap();
            }
            let p = t.elapsed();
            let t = Instant::now();
            for k in &keys {
                wrapped.head(k).await.unwrap();
            }
            let w = t.elapsed();
            println!("heads round {round}: LocalFileSystem {p:.2?}, NoFollow {w:.2?}");
        }
    }
}
