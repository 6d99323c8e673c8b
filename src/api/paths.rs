//! Schema-addressed paths: rendering primary-key values as DataJoint does.
//!
//! A key is rendered in one pass: one catalog query per call gives the table's key columns and
//! their types; each value's text then goes through its type's input function (as the cast
//! `value::type` does) and output function (as `format('%s', value)` does, with DateStyle ISO
//! and extra_float_digits 1) in this backend, and [`encode_pk_text`] renders the result. Nothing
//! calls back into SQL per column.

use std::ffi::{CStr, CString};

use oas_core::objpath::{encode_pk_text, PkType};
use oas_core::OasError;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::error::OrRaise;

/// How a value of type `ty` renders. Enums arrive in Python as strings; domains render as their
/// base type.
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
            // SAFETY: syscache lookups of a type by oid (an unknown oid answers 0 / itself).
            let (typtype, base) =
                unsafe { (pg_sys::get_typtype(other), pg_sys::getBaseType(other)) };
            match typtype as u8 {
                b'e' => PkType::Text,
                b'd' if base != other => pk_type(base)?,
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
    // SAFETY: format_type_be returns a palloc'd C string (`???` for an unknown oid).
    unsafe { CStr::from_ptr(pg_sys::format_type_be(ty)) }
        .to_string_lossy()
        .into_owned()
}

/// Render `value` (PostgreSQL's text output of a value of type `ty`, DateStyle ISO) as
/// DataJoint's `encode_pk_value` renders it in object paths. See `oas_encode_pk_value`.
#[pg_extern(stable, strict, parallel_safe)]
fn oas_encode_pk_text(ty: Oid, value: &str) -> String {
    pk_type(ty)
        .and_then(|t| encode_pk_text(t, value))
        .or_raise()
}

/// One primary-key column, in key order.
struct KeyColumn {
    name: String,
    ty: Oid,
    typmod: i32,
}

/// A table's schema, name and primary-key columns.
struct KeyedTable {
    schema: String,
    name: String,
    columns: Vec<KeyColumn>,
}

fn keyed_table(table: Oid) -> Result<KeyedTable, OasError> {
    let (schema, name, columns) = Spi::get_three_with_args::<String, String, JsonB>(
        "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
                (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(a.attname, a.atttypid::pg_catalog.int8, a.atttypmod)
                                  ORDER BY pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum))
                 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
                   ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey)
                 WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisprimary)
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[table.into()],
    )
    .or_raise();
    let columns = columns.map(|c| c.0).unwrap_or(Value::Null);
    let columns: Vec<KeyColumn> = columns
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| KeyColumn {
                    name: c[0].as_str().unwrap_or_default().to_string(),
                    ty: Oid::from(c[1].as_u64().unwrap_or_default() as u32),
                    typmod: c[2].as_i64().unwrap_or(-1) as i32,
                })
                .collect()
        })
        .unwrap_or_default();
    let name = name.unwrap_or_default();
    if columns.is_empty() {
        return Err(OasError::invalid_argument(format!(
            "table \"{name}\" has no primary key"
        )));
    }
    Ok(KeyedTable {
        schema: schema.unwrap_or_default(),
        name,
        columns,
    })
}

/// `text::type`: the type's input function, then its length coercion for a typmod such as
/// `varchar(20)` or `numeric(10,2)` (what an explicit cast of a text parameter does), and the
/// value's text output as `format('%s', value)` gives it. Errors of the input function (an
/// invalid value) are PostgreSQL's own.
fn canonical_text(ty: Oid, typmod: i32, text: &str) -> Result<String, OasError> {
    let input = CString::new(text).map_err(|_| {
        OasError::invalid_argument("a primary-key value cannot contain a NUL character")
    })?;
    // SAFETY: the type's I/O functions looked up in the syscache and called as fmgr calls them;
    // the length coercion function (if any) takes (value, typmod, is_explicit); the output is a
    // palloc'd C string.
    unsafe {
        let (mut typinput, mut typioparam) = (Oid::INVALID, Oid::INVALID);
        pg_sys::getTypeInputInfo(ty, &mut typinput, &mut typioparam);
        let mut datum =
            pg_sys::OidInputFunctionCall(typinput, input.as_ptr().cast_mut(), typioparam, -1);
        if typmod >= 0 {
            let mut coerce = Oid::INVALID;
            if pg_sys::find_typmod_coercion_function(ty, &mut coerce)
                == pg_sys::CoercionPathType::COERCION_PATH_FUNC
            {
                datum = pg_sys::OidFunctionCall3Coll(
                    coerce,
                    Oid::INVALID,
                    datum,
                    pg_sys::Datum::from(typmod),
                    pg_sys::Datum::from(true),
                );
            }
        }
        let (mut typoutput, mut varlena) = (Oid::INVALID, false);
        pg_sys::getTypeOutputInfo(ty, &mut typoutput, &mut varlena);
        let out = pg_sys::OidOutputFunctionCall(typoutput, datum);
        Ok(CStr::from_ptr(out).to_string_lossy().into_owned())
    }
}

/// A row's key as its object paths show it.
pub(crate) struct RenderedKey {
    pub schema: String,
    pub table: String,
    /// (column, rendered value), in key order.
    pub values: Vec<(String, String)>,
}

/// Where a row's primary-key values come from.
pub(crate) enum KeySource<'a> {
    /// A key given as JSON (`oas_npy_put`, `oas_upload_begin`): each value is read as its
    /// column's type, as a cast would.
    Json(&'a Value),
    /// The row itself (the row trigger's tuple): each value's own text, exactly.
    Tuple {
        tuple: pg_sys::HeapTuple,
        desc: pg_sys::TupleDesc,
    },
}

impl KeySource<'_> {
    /// The text of `column`'s value (None when NULL or absent), under the settings
    /// `render_key` sets.
    fn text(&self, col: &KeyColumn) -> Result<Option<String>, OasError> {
        match self {
            KeySource::Json(key) => match key.get(&col.name) {
                Some(Value::Null) | None => Ok(None),
                Some(Value::String(s)) => canonical_text(col.ty, col.typmod, s).map(Some),
                Some(v) => canonical_text(col.ty, col.typmod, &v.to_string()).map(Some),
            },
            KeySource::Tuple { tuple, desc } => {
                let name = CString::new(col.name.as_str())
                    .map_err(|_| OasError::invalid_argument("a column name with a NUL byte"))?;
                // SAFETY: the trigger's tuple and its relation's descriptor, valid for the call;
                // SPI_getvalue runs the column type's output function (palloc'd result or NULL).
                unsafe {
                    let attnum = pg_sys::SPI_fnumber(*desc, name.as_ptr());
                    if attnum <= 0 {
                        return Ok(None);
                    }
                    let out = pg_sys::SPI_getvalue(*tuple, *desc, attnum);
                    Ok(
                        (!out.is_null())
                            .then(|| CStr::from_ptr(out).to_string_lossy().into_owned()),
                    )
                }
            }
        }
    }
}

/// The table's schema and name, and its primary-key values from `key` rendered as DataJoint
/// renders them, in key order.
pub(crate) fn render_key(table: Oid, key: &KeySource) -> Result<RenderedKey, OasError> {
    let t = keyed_table(table)?;
    // The settings of oas_encode_pk_value, for every column at once.
    let rendered = crate::guc::scoped(
        &[(c"datestyle", "ISO, YMD"), (c"extra_float_digits", "1")],
        || {
            t.columns
                .iter()
                .map(|col| {
                    let Some(text) = key.text(col)? else {
                        return Err(OasError::invalid_argument_hint(
                            format!("the key has no value for primary-key column \"{}\"", col.name),
                            "give every primary-key column of the row, e.g. '{\"subject\": 1, \"session\": \"a\"}'",
                        ));
                    };
                    let rendered = encode_pk_text(pk_type(col.ty)?, &text)?;
                    Ok((col.name.clone(), rendered))
                })
                .collect::<Result<Vec<_>, OasError>>()
        },
    )?;
    Ok(RenderedKey {
        schema: t.schema,
        table: t.name,
        values: rendered,
    })
}
