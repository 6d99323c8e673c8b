//! Pure logic of pg_oas, with no PostgreSQL dependency: everything here is tested by plain
//! `cargo test -p oas_core`.
//!
//! | module | what it holds |
//! |---|---|
//! | [`spec`] | DataJoint store specs: parsing, validation, secret splitting |
//! | [`hash`] | the content hash (MD5 → base32, 26 chars) |
//! | [`npy`] | `.npy` headers, NumPy slice syntax, the byte ranges a slice needs |
//! | [`path`] | object paths inside a store |
//! | [`reference`](mod@reference) | the JSON a row keeps for an object: one type per shape (hash, npy, object, pending) |
//! | [`manifest`] | DataJoint's folder manifest (`.manifest.json`) |
//! | [`attach`] | DataJoint's attachment layout, `filename\0contents` |
//! | [`objpath`] | schema-addressed paths and primary-key rendering, as DataJoint builds them |
//! | [`codec`] | DataJoint codec markers in column comments; reference shapes of every codec |
//! | [`blob`] | DataJoint's `<blob>` serialization, byte for byte; its JSON mapping |
//! | [`backend`] | store clients per protocol, error mapping and credential masking |
//! | [`stage`] | hashing and staging a large payload on two threads |
//! | [`ops`] | put/get/verify, async, backend-independent |
//! | [`gc`] | what references cover, trash keys, list/move/delete for the collector |
//! | [`presign`] | presigned GET URLs (`file://` paths for local stores) |
//! | [`interval`] | PostgreSQL intervals as seconds |
//! | [`job`] | jobs that rewrite a column in batches (migrations, moves): plans, names, checks, progress |
//! | [`error`] | the error type |

pub mod attach;
pub mod backend;
pub mod blob;
pub mod codec;
pub mod compress;
pub mod error;
pub mod gc;
pub mod hash;
pub mod interval;
pub mod job;
pub mod manifest;
pub mod npy;
pub mod objpath;
pub mod ops;
pub mod path;
pub mod presign;
pub mod reference;
pub mod spec;
pub mod stage;
#[cfg(test)]
mod test_support;

pub use error::OasError;
