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
    crate::privilege::pinned(|| {
        let mut done = 0;
        for (name, doc) in FUNCTION_DOCS {
            let signatures: Vec<String> = Spi::connect(|client| {
                client
                    .select(
                        "SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text
                           FROM pg_catalog.pg_proc p
                           JOIN pg_catalog.pg_extension e ON e.extname OPERATOR(pg_catalog.=) 'pg_oas'
                          WHERE p.pronamespace OPERATOR(pg_catalog.=) e.extnamespace
                            AND p.proname OPERATOR(pg_catalog.=) $1",
                        None,
                        &[(*name).into()],
                    )?
                    .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                    .collect::<Result<Vec<_>, _>>()
            })
            .or_raise();
            for signature in signatures {
                Spi::run(&format!(
                    "COMMENT ON FUNCTION {signature} IS {}",
                    quote_literal(doc)
                ))
                .or_raise();
                done += 1;
            }
        }
        done
    })
}
