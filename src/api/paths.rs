//! Schema-addressed paths: rendering primary-key values as DataJoint does.

use oas_core::objpath::{encode_pk_text, PkType};
use oas_core::OasError;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use crate::error::OrRaise;

fn pk_type(ty: Oid) -> Result<PkType, OasError> {
    Ok(match ty {
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => PkType::Int,
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => PkType::Float,
        pg_sys::NUMERICOID => PkType::Numeric,
        pg_sys::BOOLOID => PkType::Bool,
        pg_sys::DATEOID => PkType::Date,
        pg_sys::TIMESTAMPOID => PkType::Timestamp,
        pg_sys::TIMESTAMPTZOID => PkType::TimestampTz,
        pg_sys::TIMEOID => PkType::Time,
        pg_sys::UUIDOID => PkType::Uuid,
        pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID | pg_sys::NAMEOID => PkType::Text,
        other => {
            // Enums arrive in Python as strings; domains render as their base type.
            let (typtype, base) = Spi::get_two_with_args::<String, Oid>(
                "SELECT t.typtype::pg_catalog.text, t.typbasetype FROM pg_catalog.pg_type t
                  WHERE t.oid OPERATOR(pg_catalog.=) $1",
                &[other.into()],
            )
            .or_else(|e| match e {
                pgrx::spi::SpiError::InvalidPosition => Ok((None, None)),
                e => Err(e),
            })
            .or_raise();
            match (typtype.as_deref(), base) {
                (Some("e"), _) => PkType::Text,
                (Some("d"), Some(base)) => pk_type(base)?,
                _ => {
                    return Err(OasError::invalid_argument_hint(
                        format!("primary-key type {} cannot be part of an object path", type_name(other)),
                        "DataJoint renders ints, floats, decimals, booleans, dates, timestamps, times, UUIDs and strings",
                    ))
                }
            }
        }
    })
}

/// A type's SQL name, for messages.
pub(crate) fn type_name(ty: Oid) -> String {
    Spi::get_one_with_args::<String>("SELECT format_type($1, NULL)", &[ty.into()])
        .or_raise()
        .unwrap_or_default()
}

/// Render `value` (PostgreSQL's text output of a value of type `ty`, DateStyle ISO) as
/// DataJoint's `encode_pk_value` renders it in object paths. See `oas_encode_pk_value`.
#[pg_extern(stable, strict, parallel_safe)]
fn oas_encode_pk_text(ty: Oid, value: &str) -> String {
    encode_pk_text(pk_type(ty).or_raise(), value).or_raise()
}
