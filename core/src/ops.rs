//! Object operations, written once for every backend. Async, no PostgreSQL: the extension drives
//! them through its cancellable `block_on`, and the unit tests drive them on a local store.

use std::time::Instant;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::backend::Store;
use crate::error::OasError;
use crate::hash::ContentHasher;
use crate::path::hash_path;
use crate::reference::HashRef;

/// How a hash-addressed put ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Uploaded,
    /// An object with this hash and size was already there; nothing was sent.
    Deduplicated,
    /// An object was at the path with the wrong size (a damaged copy); it was replaced.
    Repaired,
}

/// Store `data` as a hash-addressed object of `schema` (DataJoint's `put_hash`): the path is derived
/// from the content, so equal bytes are stored once per schema and store.
///
/// Writes use conditional create where the backend has it, so a concurrent writer of the same
/// content never sees a partial object and no write overwrites a good copy.
pub async fn put_hash(
    store: &Store,
    schema: &str,
    data: Bytes,
) -> Result<(HashRef, PutOutcome), OasError> {
    let hash = content_hash_yielding(&data).await;
    let path = hash_path(
        &store.spec.hash_prefix,
        schema,
        &hash,
        store.spec.subfolding.as_deref(),
    )?;
    let key = store.key(&path)?;
    let size = data.len() as u64;
    let reference = HashRef {
        hash,
        path: path.clone(),
        schema: schema.to_string(),
        store: Some(store.name.clone()),
        size,
    };

    let mut outcome = PutOutcome::Uploaded;
    match store.client().head(&key).await {
        Ok(meta) if meta.size == size => return Ok((reference, PutOutcome::Deduplicated)),
        Ok(_) => outcome = PutOutcome::Repaired,
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => {
            return Err(store
                .diagnose_forbidden(store.error(e, "head", &path))
                .await)
        }
    }

    let payload = PutPayload::from_bytes(data);
    if outcome == PutOutcome::Uploaded {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match store.client().put_opts(&key, payload.clone(), opts).await {
            Ok(_) => return Ok((reference, outcome)),
            // Someone stored the same content between our head and our put.
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                return Ok((reference, PutOutcome::Deduplicated))
            }
            // Backends without conditional create: a plain put of identical content is harmless.
            Err(object_store::Error::NotImplemented { .. }) => {}
            Err(e) => return Err(store.error(e, "put", &path)),
        }
    }
    store
        .client()
        .put(&key, payload)
        .await
        .map_err(|e| store.error(e, "put", &path))?;
    Ok((reference, outcome))
}

/// Bytes hashed between two yields: a few milliseconds of work, so a waiting caller (the query
/// cancel watch in the extension) gets to run while a large payload is hashed.
const HASH_SLICE: usize = 4 << 20;

/// [`crate::hash::content_hash`], yielding to the runtime every [`HASH_SLICE`] bytes.
pub async fn content_hash_yielding(data: &[u8]) -> String {
    let mut hasher = ContentHasher::new();
    for chunk in data.chunks(HASH_SLICE) {
        hasher.update(chunk);
        if data.len() > HASH_SLICE {
            tokio::task::yield_now().await;
        }
    }
    hasher.finish()
}

/// Read a hash-addressed object and check it against its reference: size always, MD5 when `verify`.
pub async fn get_hash(store: &Store, r: &HashRef, verify: bool) -> Result<Bytes, OasError> {
    let key = store.key(&r.path)?;
    let data = store
        .client()
        .get(&key)
        .await
        .map_err(|e| store.error(e, "get", &r.path))?
        .bytes()
        .await
        .map_err(|e| store.error(e, "get", &r.path))?;
    if data.len() as u64 != r.size {
        return Err(OasError::IntegrityMismatch {
            store: store.name.clone(),
            path: r.path.clone(),
            reason: format!(
                "size is {} bytes, the reference records {}",
                data.len(),
                r.size
            ),
        });
    }
    if verify {
        let actual = content_hash_yielding(&data).await;
        if actual != r.hash {
            return Err(OasError::IntegrityMismatch {
                store: store.name.clone(),
                path: r.path.clone(),
                reason: format!("content hash is {actual}, the reference records {}", r.hash),
            });
        }
    }
    Ok(data)
}

/// One step of [`verify_store`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeStep {
    pub step: &'static str,
    pub ok: bool,
    pub millis: f64,
    pub detail: String,
}

/// Write, read back, range-read, list and delete a probe object, reporting each step. Stops at the
/// first failing step that later steps depend on; always tries to delete the probe.
pub async fn verify_store(store: &Store, probe_name: &str) -> Vec<ProbeStep> {
    let path = format!("_oas/verify/{probe_name}");
    let mut steps = Vec::new();
    let key = match store.key(&path) {
        Ok(k) => k,
        Err(e) => {
            steps.push(ProbeStep {
                step: "path",
                ok: false,
                millis: 0.0,
                detail: e.to_string(),
            });
            return steps;
        }
    };
    let body: Bytes =
        Bytes::from(format!("pg_oas verify probe 0123456789abcdef {probe_name}").into_bytes());
    let c = store.client();

    macro_rules! step {
        ($name:literal, $fut:expr, |$v:ident| $check:expr) => {{
            let t = Instant::now();
            let r = $fut.await;
            let millis = (t.elapsed().as_secs_f64() * 1e6).round() / 1e3;
            let (ok, detail) = match r {
                Ok($v) => $check,
                Err(e) => (false, store.error(e, $name, &path).to_string()),
            };
            steps.push(ProbeStep {
                step: $name,
                ok,
                millis,
                detail,
            });
            ok
        }};
    }

    let written = step!(
        "put",
        c.put(&key, PutPayload::from_bytes(body.clone())),
        |_r| (true, format!("{} bytes", body.len()))
    );
    if written {
        step!("head", c.head(&key), |m| (
            m.size == body.len() as u64,
            format!("size {}", m.size)
        ));
        step!("get", async { c.get(&key).await?.bytes().await }, |b| (
            b == body,
            if b == body {
                "content matches".to_string()
            } else {
                "content differs".to_string()
            }
        ));
        step!("get_range", c.get_range(&key, 6..14), |b| (
            b[..] == body[6..14],
            format!("bytes 6..14 = {:?}", String::from_utf8_lossy(&b))
        ));
        step!(
            "conditional_put",
            async {
                match c.put_opts(&key, PutPayload::from_bytes(body.clone()), PutMode::Create.into()).await {
                    Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok("refused to overwrite: conditional create works"),
                    Err(object_store::Error::NotImplemented { .. }) => Ok("not supported by this backend (dedup falls back to head + put)"),
                    Ok(_) => Ok("overwrote an existing object: conditional create is not honoured (dedup falls back to head + put)"),
                    Err(e) => Err(e),
                }
            },
            |msg| (true, msg.to_string())
        );
        step!("list", list_contains(c.as_ref(), &key), |found| (
            found,
            if found {
                "probe listed".into()
            } else {
                "probe not in listing".to_string()
            }
        ));
        step!("delete", c.delete(&key), |_r| (true, "deleted".to_string()));
        step!(
            "head_after_delete",
            async {
                match c.head(&key).await {
                    Err(object_store::Error::NotFound { .. }) => Ok(true),
                    Ok(_) => Ok(false),
                    Err(e) => Err(e),
                }
            },
            |gone| (
                gone,
                if gone {
                    "gone".to_string()
                } else {
                    "still present after delete".to_string()
                }
            )
        );
    }
    steps
}

async fn list_contains(
    c: &dyn ObjectStore,
    key: &object_store::path::Path,
) -> object_store::Result<bool> {
    use futures::TryStreamExt;
    let parent: object_store::path::Path = key.parts().take(key.parts().count() - 1).collect();
    let found = c
        .list(Some(&parent))
        .try_filter(|m| futures::future::ready(&m.location == key))
        .try_next()
        .await?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ClientSettings;
    use crate::spec::StoreSpec;
    use serde_json::json;

    fn local_store(dir: &std::path::Path, extra: serde_json::Value) -> Store {
        let mut spec = json!({"protocol": "file", "location": dir.to_str().unwrap()});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        Store::build(
            "main",
            StoreSpec::from_json(&spec).unwrap(),
            &ClientSettings::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn put_get_dedup_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let (r, o) = put_hash(&store, "lab", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(o, PutOutcome::Uploaded);
        assert_eq!(r.path, "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi");
        assert_eq!(std::fs::read(dir.path().join(&r.path)).unwrap(), b"hello");
        let (r2, o2) = put_hash(&store, "lab", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!((r2, o2), (r.clone(), PutOutcome::Deduplicated));
        assert_eq!(
            get_hash(&store, &r, true).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        // Another schema is another namespace: stored again.
        let (r3, o3) = put_hash(&store, "other", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            (r3.path.as_str(), o3),
            (
                "_hash/other/lvauakv4jmvhnolrtwiraf6fsi",
                PutOutcome::Uploaded
            )
        );
    }

    #[tokio::test]
    async fn subfolding_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(
            dir.path(),
            json!({"subfolding": [2, 2], "hash_prefix": "objs"}),
        );
        let (r, _) = put_hash(&store, "lab", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(r.path, "objs/lab/lv/au/lvauakv4jmvhnolrtwiraf6fsi");
        assert!(dir
            .path()
            .join("objs/lab/lv/au/lvauakv4jmvhnolrtwiraf6fsi")
            .is_file());
    }

    #[tokio::test]
    async fn corruption_and_loss_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let (r, _) = put_hash(&store, "lab", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        let file = dir.path().join(&r.path);
        std::fs::write(&file, b"hellO world").unwrap();
        let e = get_hash(&store, &r, true).await.unwrap_err();
        assert!(matches!(e, OasError::IntegrityMismatch { .. }), "{e}");
        assert!(e.to_string().contains(&r.path) && e.to_string().contains("\"main\""));
        // Without MD5 verification, a same-size change goes unseen; a size change never does.
        assert!(get_hash(&store, &r, false).await.is_ok());
        std::fs::write(&file, b"short").unwrap();
        assert!(matches!(
            get_hash(&store, &r, false).await.unwrap_err(),
            OasError::IntegrityMismatch { .. }
        ));
        // A damaged copy (wrong size) is replaced by the next put of the same content.
        let (_, o) = put_hash(&store, "lab", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        assert_eq!(o, PutOutcome::Repaired);
        assert_eq!(
            get_hash(&store, &r, true).await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        std::fs::remove_file(&file).unwrap();
        let e = get_hash(&store, &r, true).await.unwrap_err();
        assert!(matches!(e, OasError::ObjectMissing { .. }), "{e}");
    }

    #[tokio::test]
    async fn verify_probe_passes_on_a_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let steps = verify_store(&store, "t1").await;
        let names: Vec<_> = steps.iter().map(|s| s.step).collect();
        assert_eq!(
            names,
            [
                "put",
                "head",
                "get",
                "get_range",
                "conditional_put",
                "list",
                "delete",
                "head_after_delete"
            ]
        );
        assert!(steps.iter().all(|s| s.ok), "{steps:?}");
        assert!(
            steps[4].detail.contains("conditional create works"),
            "{:?}",
            steps[4]
        );
        assert!(!dir.path().join("_oas/verify/t1").exists());
    }

    #[test]
    fn missing_local_directory_is_a_spec_error() {
        let spec =
            StoreSpec::from_json(&json!({"protocol": "file", "location": "/nonexistent/oas"}))
                .unwrap();
        let e = Store::build("x", spec, &ClientSettings::default()).unwrap_err();
        assert!(
            e.to_string().contains("inaccessible local directory"),
            "{e}"
        );
    }
}
