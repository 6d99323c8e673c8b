//! `COMMENT ON FUNCTION` for every SQL function made from Rust, taken from its doc comment, so
//! `\df+ oas.*` in psql explains each one. `build.rs` collects the doc comments at build time;
//! CREATE EXTENSION and every upgrade script call [`_comment_functions`] at their end. Functions
//! written in SQL carry their `COMMENT ON` beside their definition in `sql/`.

use pgrx::prelude::*;
use pgrx::spi::quote_literal;

use crate::error::OrRaise;

include!(concat!(env!("OUT_DIR"), "/function_docs.rs"));

/// Comment every function of the extension's schema that has a Rust doc comment (all overloads
/// of a name share it). Run by CREATE EXTENSION and upgrades; returns how many it commented.
#[pg_extern(volatile, parallel_unsafe, name = "_comment_functions")]
fn comment_functions() -> i64 {
    let names: Vec<&str> = FUNCTION_DOCS.iter().map(|(name, _)| *name).collect();
    crate::privilege::pinned(|| {
        // Every overload of every documented name in the extension's schema, in one query.
        let found: Vec<(String, String)> = Spi::connect(|client| {
            client
                .select(
                    "SELECT p.proname::pg_catalog.text, p.oid::pg_catalog.regprocedure::pg_catalog.text
                       FROM pg_catalog.pg_proc p
                       JOIN pg_catalog.pg_extension e ON e.extname OPERATOR(pg_catalog.=) 'pg_oas'
                      WHERE p.pronamespace OPERATOR(pg_catalog.=) e.extnamespace
                        AND p.proname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
                    None,
                    &[names.into()],
                )?
                .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default())))
                .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
        .or_raise();
        for (name, signature) in &found {
            let doc = FUNCTION_DOCS
                .iter()
                .find_map(|(n, d)| (*n == name.as_str()).then_some(*d))
                .unwrap_or_default();
            Spi::run(&format!(
                "COMMENT ON FUNCTION {signature} IS {}",
                quote_literal(doc)
            ))
            .or_raise();
        }
        found.len() as i64
    })
}
