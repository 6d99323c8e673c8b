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
mod tests;
