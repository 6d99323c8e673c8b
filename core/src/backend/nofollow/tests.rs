//! Tests of [`NoFollow`](super::NoFollow), the `file` store client that never follows a link.

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
        compression: None,
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
    let mut w = WriteMultipart::new_with_chunk_size(c.put_multipart(&big).await.unwrap(), 1 << 20);
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
                std::fs::write(dir.join(format!("lvauakv4jmvhnolrtwiraf{f:04}")), b"x").unwrap();
            }
        }
    }
    println!("created 100000 files in {:.2?}", t.elapsed());
    let plain = LocalFileSystem::new_with_prefix(root.path()).unwrap();
    let wrapped = NoFollow::new(LocalFileSystem::new_with_prefix(root.path()).unwrap()).unwrap();
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
