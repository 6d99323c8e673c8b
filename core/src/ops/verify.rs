//! Verification: is a reference's object there and intact, and does a store do what pg_oas needs.

use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::backend::Store;
use crate::codec::ObjectRef;
use crate::error::OasError;
use crate::reference::HashRef;

use super::{existing_size, get_hash};

/// Check that the object a reference names is there and intact: it exists (a folder: has at
/// least one object under it), its size matches where the reference records one, and, when
/// `check_content` and the reference records a hash, its MD5 matches. `Ok(None)` when intact,
/// `Ok(Some(problem))` when not; `Err` when the store could not be asked.
pub async fn check_reference(
    store: &Store,
    r: &ObjectRef,
    check_content: bool,
) -> Result<Option<String>, OasError> {
    let key = store.key(&r.path)?;
    if r.is_dir {
        let mut listing = store.client().list(Some(&key));
        return match listing.try_next().await {
            Ok(Some(_)) => Ok(None),
            Ok(None) => Ok(Some("missing: no objects under this folder".into())),
            Err(e) => Err(store.error(e, "list", &r.path)),
        };
    }
    let size = match existing_size(store, &key, &r.path).await? {
        None => return Ok(Some("missing".into())),
        Some(s) => s,
    };
    if r.compressed {
        let hash = r.hash.as_deref();
        return super::compressed::check(store, &r.path, hash, r.size, size, check_content).await;
    }
    if let Some(expected) = r.size {
        if size != expected {
            return Ok(Some(format!(
                "size is {size} bytes, the reference records {expected}"
            )));
        }
    }
    if let (true, Some(hash)) = (check_content, &r.hash) {
        let as_hash_ref = HashRef {
            hash: hash.clone(),
            path: r.path.clone(),
            schema: String::new(),
            store: r.store.clone(),
            size,
            compression: None,
        };
        return match get_hash(store, &as_hash_ref, true).await {
            Ok(_) => Ok(None),
            Err(OasError::IntegrityMismatch { reason, .. }) => Ok(Some(reason)),
            Err(OasError::ObjectMissing { .. }) => Ok(Some("missing".into())),
            Err(e) => Err(e),
        };
    }
    Ok(None)
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
    use crate::ops::put_hash;
    use crate::test_support::local_store;
    use serde_json::json;

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

    #[tokio::test]
    async fn reference_checks_find_every_kind_of_damage() {
        use crate::codec::ObjectRef;
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let (r, _) = put_hash(&store, "lab", Bytes::from_static(b"intact object"))
            .await
            .unwrap();
        let obj = ObjectRef::from_json(&r.to_json()).unwrap();
        assert_eq!(check_reference(&store, &obj, true).await.unwrap(), None);
        let file = dir.path().join(&r.path);
        std::fs::write(&file, b"INTACT OBJECT").unwrap();
        assert_eq!(
            check_reference(&store, &obj, false).await.unwrap(),
            None,
            "same size, content not checked"
        );
        assert!(check_reference(&store, &obj, true)
            .await
            .unwrap()
            .unwrap()
            .starts_with("content hash is"));
        std::fs::write(&file, b"short").unwrap();
        assert_eq!(
            check_reference(&store, &obj, false).await.unwrap().unwrap(),
            "size is 5 bytes, the reference records 13"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            check_reference(&store, &obj, true).await.unwrap().unwrap(),
            "missing"
        );
        // A folder object: present while anything is under it.
        std::fs::create_dir_all(dir.path().join("_schema/lab/t/id=1/d_x")).unwrap();
        std::fs::write(dir.path().join("_schema/lab/t/id=1/d_x/a.bin"), b"a").unwrap();
        let folder = ObjectRef::from_json(&json!({"path": "_schema/lab/t/id=1/d_x", "store": "main", "is_dir": true, "size": null})).unwrap();
        assert_eq!(check_reference(&store, &folder, true).await.unwrap(), None);
        std::fs::remove_file(dir.path().join("_schema/lab/t/id=1/d_x/a.bin")).unwrap();
        assert!(check_reference(&store, &folder, true)
            .await
            .unwrap()
            .unwrap()
            .starts_with("missing"));
    }
}
