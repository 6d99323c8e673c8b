//! The JSON a row keeps for an object, in DataJoint's shapes (digest §1): one type per shape.
//!
//! | type | codec | JSON |
//! |---|---|---|
//! | [`HashRef`] | `<hash@>`, `<blob@>`, `<attach@>` | `{"hash","path","schema","store","size"}` |
//! | [`NpyRef`] | `<npy@>` | `{"path","store","dtype","shape"}` |
//! | [`ObjectValueRef`] | `<object@>`, a file or a folder | `{"path","store","size","ext","is_dir","item_count","timestamp"}` |
//! | [`FilepathRef`] | `<filepath@>`, a user-managed file or folder | `{"path","store","size","is_dir","timestamp"}` |
//! | [`Pending`] | a value of `oas_npy()`, `oas_object()`, `oas_object_folder()` before its row stores it | `{"oas_pending","kind",...}` |
//!
//! Any codec's reference, read for its path and store whatever its shape, is
//! [`crate::codec::ObjectRef`].
//!
//! Fields are declared in DataJoint's key order, so `serde_json::to_string` of a reference is the
//! text DataJoint's `json.dumps` writes (with compact separators). `to_json` gives the
//! `serde_json::Value` handed to PostgreSQL, whose keys are sorted; a `jsonb` column stores keys
//! in its own order either way. Every key is always written, `null` where there is no value.

mod filepath;
mod hash;
mod npy;
mod object;
mod pending;

pub use filepath::{registrable_path, FilepathRef};
pub use hash::HashRef;
pub use npy::NpyRef;
pub use object::{ObjectKind, ObjectValueRef};
pub use pending::{Pending, PendingValue};

use serde::Serialize;
use serde_json::Value;

/// A reference as the JSON value handed to PostgreSQL.
fn to_json(r: &impl Serialize) -> Value {
    serde_json::to_value(r).expect("references are plain structs of strings and numbers")
}

/// The store a reference names, `None` meaning the default store: DataJoint writes `null` (or
/// `""` for a bare `@`) there; pg_oas always writes the resolved name.
pub fn store_name(store: Option<&str>) -> Option<&str> {
    store.filter(|s| !s.is_empty())
}
