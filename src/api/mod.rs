//! The SQL functions, one file per topic. Each function parses its arguments, calls into
//! `oas_core` (through [`crate::runtime::block_on`] when it talks to a store) and raises errors
//! with [`crate::error::OrRaise`].

pub mod hash;
pub mod store;
pub mod tracking;
