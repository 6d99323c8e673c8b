//! NumPy arrays in stores (`<npy@>`, as DataJoint writes them). Ranged reads of any object, and
//! the files of folder objects, are in `object.rs`.
//!
//! Shape, dtype, ndim, size and nbytes come from the reference JSON, with no store I/O. A slice
//! reads the array's header once per backend (objects under DataJoint's random-token paths never
//! change), then the byte ranges the cost model of the store chooses (`oas_core::npy::choose`),
//! streamed into the result. What each read took teaches this backend's model of the store.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use oas_core::backend::Store;
use oas_core::codec::ObjectRef;
use oas_core::npy::{
    choose, dtype_itemsize, parse_selection, plan, Cost, Fetch, Header, Observed, Plan,
};
use oas_core::ops::{read_npy_header, read_spans, RANGE_PART};
use oas_core::reference::NpyRef;
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use super::bytea::Bytea;
use super::MAX_BYTEA;
use crate::catalog;
use crate::error::{raise, OrRaise};
use crate::runtime::block_on;

/// Most separate byte ranges one slice may need (a column of a very tall C-order array is one
/// range per row).
const MAX_RUNS: usize = 1 << 20;
/// Headers kept per backend.
const HEADER_CACHE_ENTRIES: usize = 4096;

/// A store as this backend knows it: name and catalog version.
type StoreKey = (String, i64);

thread_local! {
    static HEADERS: RefCell<HashMap<(String, i64, String), Header>> = RefCell::new(HashMap::new());
    /// What reads from each store cost, learned from this backend's slices.
    static COSTS: RefCell<HashMap<StoreKey, Cost>> = RefCell::new(HashMap::new());
}

fn shape_of(reference: &Value) -> Option<Vec<i64>> {
    NpyRef::shape_of(reference).or_raise()
}

/// Number of elements of a shape (saturating: it only feeds BI-style metadata).
fn element_count(shape: &[i64]) -> i64 {
    shape
        .iter()
        .try_fold(1i64, |a, &d| a.checked_mul(d))
        .unwrap_or(i64::MAX)
}

/// The array's shape, from the reference (NULL when the reference has none).
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_npy_shape(reference: JsonB) -> Option<Vec<i64>> {
    shape_of(&reference.0)
}

/// The dtype as DataJoint records it (`str(arr.dtype)`, e.g. `float32`, `>i8`).
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_npy_dtype(reference: JsonB) -> Option<String> {
    NpyRef::dtype_of(&reference.0).map(str::to_string)
}

/// The number of dimensions of an `<npy@>` array, from the reference (no store access).
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_npy_ndim(reference: JsonB) -> Option<i32> {
    shape_of(&reference.0).map(|s| s.len() as i32)
}

/// Number of elements.
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_npy_size(reference: JsonB) -> Option<i64> {
    shape_of(&reference.0).map(|s| element_count(&s))
}

/// Bytes of array data (size × item size); NULL for a dtype it does not know.
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_npy_nbytes(reference: JsonB) -> Option<i64> {
    let size = element_count(&shape_of(&reference.0)?);
    let item = dtype_itemsize(NpyRef::dtype_of(&reference.0)?)? as i64;
    Some(size.saturating_mul(item))
}

/// A slice planned: where the array is, which bytes form the result, and how to fetch them.
struct Slice {
    store: Arc<Store>,
    store_key: StoreKey,
    path: String,
    header: Header,
    plan: Plan,
    fetch: Fetch,
}

/// Resolve a reference to its store and (cached) `.npy` header, plan `slice` and choose its
/// fetch. A slice whose `.npy` would not fit in a `bytea` is refused.
fn plan_slice(reference: &Value, slice: &str) -> Result<Slice, OasError> {
    let r = ObjectRef::from_json(reference)?;
    let (row, store) = catalog::store_to_read(r.store.as_deref(), &r.path)?;
    let store_key = (row.name, row.version);
    let header = cached_header(&store, &store_key, &r.path)?;
    let sel = parse_selection(slice, &header.shape)?;
    let plan = plan(&header, &sel, MAX_RUNS)?;
    if plan.nbytes + plan.npy_header().len() as u64 > MAX_BYTEA {
        return Err(OasError::TooLarge {
            message: format!(
                "the slice has {} bytes, more than a bytea value can hold (1 GB)",
                plan.nbytes
            ),
            hint: Some("select a smaller part of the array".into()),
        });
    }
    let cost = COSTS
        .with_borrow(|c| c.get(&store_key).copied())
        .unwrap_or_else(|| Cost::for_protocol(store.spec.protocol));
    let fetch = choose(&plan, &cost, crate::guc::npy_merge_gap(), RANGE_PART);
    Ok(Slice {
        store,
        store_key,
        path: r.path,
        header,
        plan,
        fetch,
    })
}

/// The `.npy` header of the object at `path`, read once per backend.
fn cached_header(store: &Store, store_key: &StoreKey, path: &str) -> Result<Header, OasError> {
    let key = (store_key.0.clone(), store_key.1, path.to_string());
    if let Some(h) = HEADERS.with_borrow(|h| h.get(&key).cloned()) {
        return Ok(h);
    }
    let h = block_on(read_npy_header(store, path))?;
    HEADERS.with_borrow_mut(|c| {
        if c.len() >= HEADER_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(key, h.clone());
    });
    Ok(h)
}

impl Slice {
    /// Fetch the slice's data into `out` (exactly its size), each chunk placed as it arrives,
    /// and teach the store's cost model what the read took.
    fn fetch_into(&self, out: &mut [u8]) -> Result<(), OasError> {
        let mut scatter = self.plan.scatter();
        let f = &self.fetch;
        let started = Instant::now();
        let requests = block_on(read_spans(
            &self.store,
            &self.path,
            &f.ranges,
            f.part,
            f.in_flight(),
            &mut |at, bytes| scatter.place(out, at, bytes),
        ))?;
        scatter.finish()?;
        let seen = Observed {
            requests,
            bytes: f.bytes,
            seconds: started.elapsed().as_secs_f64(),
        };
        let protocol = self.store.spec.protocol;
        COSTS.with_borrow_mut(|c| {
            c.entry(self.store_key.clone())
                .or_insert_with(|| Cost::for_protocol(protocol))
                .learn(&seen)
        });
        Ok(())
    }
}

/// A slice of an `.npy` array, in NumPy's basic slice syntax (`'10:20, ::2, -1'`, `'...'`,
/// `''` for all), as `.npy` bytes. Reads the byte ranges the slice needs, or through the gaps
/// between them where the store's cost model says that is faster (`oas_npy_slice_stats` tells
/// which; `oas.npy_merge_gap` fixes the choice).
#[pg_extern(volatile, parallel_unsafe)]
fn oas_npy_slice(reference: JsonB, slice: default!(&str, "''")) -> Bytea {
    let s = plan_slice(&reference.0, slice).or_raise();
    let header = s.plan.npy_header();
    // Within MAX_BYTEA (plan_slice).
    let mut out = Bytea::zeroed(header.len() + s.plan.nbytes as usize);
    let (head, data) = out.split_at_mut(header.len());
    head.copy_from_slice(&header);
    s.fetch_into(data).or_raise();
    out
}

/// A slice of an `<npy@>` array as a PostgreSQL `double precision[]` with the slice's dimensions
/// (numeric and bool dtypes; integers beyond 2^53 are refused rather than rounded). A 0-d result
/// is a one-element array, an empty slice the empty array.
#[pg_extern(volatile, parallel_unsafe)]
pub(crate) fn oas_npy_slice_array(reference: JsonB, slice: default!(&str, "''")) -> Float8Array {
    let s = plan_slice(&reference.0, slice).or_raise();
    let p = &s.plan;
    // The limit of the text form this array once went through; kept, so the same slices pass.
    const MAX_ELEMENTS: u64 = 30_000_000;
    let elements: u64 = p.shape.iter().product();
    if elements > MAX_ELEMENTS {
        raise(OasError::TooLarge {
            message: format!(
                "a slice of {elements} elements is too large for a PostgreSQL array here (at most {MAX_ELEMENTS})"
            ),
            hint: Some("take smaller slices, or read the .npy bytes with oas_npy_slice".into()),
        });
    }
    let mut data = vec![0; p.nbytes as usize];
    s.fetch_into(&mut data).or_raise();
    let values =
        oas_core::npy::to_f64_c_order(&p.dtype, p.fortran_order, &p.shape, &data).or_raise();
    Float8Array::new(values, &p.shape)
}

/// A `double precision[]` of any dimensions (lower bounds 1), built from values in C order with
/// PostgreSQL's `construct_md_array`.
pub(crate) struct Float8Array {
    values: Vec<f64>,
    /// Empty for the empty array.
    dims: Vec<i32>,
}

impl Float8Array {
    /// `values` in C order for `shape`: a 0-d shape is one element, a shape with a 0 the empty
    /// array. More than 6 dimensions are refused by PostgreSQL when the array is made.
    pub(crate) fn new(values: Vec<f64>, shape: &[u64]) -> Self {
        let dims = if shape.is_empty() {
            vec![1]
        } else if shape.contains(&0) {
            Vec::new()
        } else {
            // The element count is bounded far below i32::MAX, and so is every dimension.
            shape.iter().map(|&d| d as i32).collect()
        };
        Float8Array { values, dims }
    }
}

impl IntoDatum for Float8Array {
    fn into_datum(mut self) -> Option<pg_sys::Datum> {
        // SAFETY: float8 is passed by value (8 bytes, 'd' alignment); the element datums, the
        // dimensions and lower bounds live until construct_md_array has copied them into a new
        // array in the current memory context. It raises its own error for too many dimensions.
        let array = unsafe {
            if self.dims.is_empty() || self.values.is_empty() {
                pg_sys::construct_empty_array(pg_sys::FLOAT8OID)
            } else {
                let mut elems: Vec<pg_sys::Datum> = self
                    .values
                    .iter()
                    .map(|v| pg_sys::Datum::from(v.to_bits()))
                    .collect();
                let mut lbs = vec![1i32; self.dims.len()];
                pg_sys::construct_md_array(
                    elems.as_mut_ptr(),
                    std::ptr::null_mut(),
                    self.dims.len() as i32,
                    self.dims.as_mut_ptr(),
                    lbs.as_mut_ptr(),
                    pg_sys::FLOAT8OID,
                    8,
                    true,
                    b'd' as std::ffi::c_char,
                )
            }
        };
        Some(pg_sys::Datum::from(array))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::FLOAT8ARRAYOID
    }
}

super::returned_as!(Float8Array, "double precision[]");

/// What reading a slice costs, without reading it (the same choice `oas_npy_slice` makes next in
/// this session): bytes of data it needs, bytes it would fetch, in how many ranges and requests,
/// the header's size, the result's shape, the plan of the fetch (`exact`: only the bytes needed,
/// `coalesced`: some gaps read through, `sequential`: one range from the first byte to the last,
/// `nothing`: an empty slice), the largest gap read through and the time the store's cost model
/// expects.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)] // pgrx needs the row type spelled out here
fn oas_npy_slice_stats(
    reference: JsonB,
    slice: default!(&str, "''"),
) -> TableIterator<
    'static,
    (
        name!(bytes_needed, i64),
        name!(bytes_fetched, i64),
        name!(ranges, i64),
        name!(header_bytes, i64),
        name!(shape, Vec<i64>),
        name!(requests, i64),
        name!(plan, String),
        name!(merge_gap, i64),
        name!(estimated_ms, f64),
    ),
> {
    let s = plan_slice(&reference.0, slice).or_raise();
    let (p, f) = (&s.plan, &s.fetch);
    TableIterator::once((
        p.nbytes as i64,
        f.bytes as i64,
        f.ranges.len() as i64,
        s.header.data_offset as i64,
        p.shape.iter().map(|&d| d as i64).collect(),
        f.requests as i64,
        f.kind.as_str().to_string(),
        i64::try_from(f.gap).unwrap_or(i64::MAX),
        f.seconds * 1000.0,
    ))
}

/// A PostgreSQL array (bool, smallint, integer, bigint, real, double precision, numeric; any
/// number of dimensions) as `.npy` bytes, exactly as `np.save` writes the equivalent NumPy array
/// (C order, little-endian; the array's bounds are dropped, `'{}'` becomes shape `(0,)`).
/// `numeric` becomes float64, each value the nearest double as for a Python float; a value beyond
/// float64's range, or beyond 2^53 and not exactly a double, is refused (cast to `::bigint[]` or
/// `::float8[]`). NULL elements have no NumPy equivalent and are refused.
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_npy_from_array(values: pgrx::AnyArray) -> Vec<u8> {
    npy_from_array(values)
}

/// The body of [`oas_npy_from_array`], shared with `oas_npy(anyarray)`.
pub(crate) fn npy_from_array(values: pgrx::AnyArray) -> Vec<u8> {
    let (mut raw, shape) = array_shape(&values).or_raise();
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    if raw.oid() == pg_sys::NUMERICOID {
        // numeric has no NumPy dtype: float64, the nearest double to each value, as NumPy stores
        // the same Python floats (`oas_core::npy::numeric_to_f64` says which values it refuses).
        let numbers = pgrx::AnyArray::into::<pgrx::Array<pgrx::AnyNumeric>>(&values)
            .expect("a numeric array");
        let mut out = oas_core::npy::write_header("<f8", false, &shape);
        out.reserve(numbers.len() * 8);
        for n in numbers.iter().flatten() {
            let v = oas_core::npy::numeric_to_f64(&n.to_string()).or_raise();
            out.extend_from_slice(&v.to_le_bytes());
        }
        return out;
    }
    let (descr, item) = match raw.oid() {
        pg_sys::BOOLOID => ("|b1", 1),
        pg_sys::INT2OID => ("<i2", 2),
        pg_sys::INT4OID => ("<i4", 4),
        pg_sys::INT8OID => ("<i8", 8),
        pg_sys::FLOAT4OID => ("<f4", 4),
        pg_sys::FLOAT8OID => ("<f8", 8),
        other => {
            raise(OasError::invalid_argument_hint(
                format!(
                    "arrays of type {} cannot become NumPy arrays",
                    super::paths::type_name(other)
                ),
                "use boolean, smallint, integer, bigint, real, double precision or numeric arrays",
            ));
        }
    };
    let len = raw.len();
    // SAFETY: the element type's fixed width is `item` (checked above), so the data area holds
    // `len * item` bytes, in C order, in this machine's (little-endian) byte order.
    let data =
        unsafe { std::slice::from_raw_parts(raw.data::<u8>().as_ptr() as *const u8, len * item) };
    let mut out = oas_core::npy::write_header(descr, false, &shape);
    out.extend_from_slice(data);
    out
}

/// The detoasted array and its shape (`'{}'` is shape `(0,)`, as NumPy's empty array); an array
/// with a NULL element is refused, NumPy having no equivalent.
pub(crate) fn array_shape(
    values: &pgrx::AnyArray,
) -> Result<(pgrx::array::RawArray, Vec<usize>), OasError> {
    // SAFETY: `values` is a non-NULL array datum; detoasting gives a readable ArrayType that lives
    // in the current memory context for the rest of this call.
    let raw = unsafe {
        let ptr = pg_sys::pg_detoast_datum(values.datum().cast_mut_ptr()) as *mut pg_sys::ArrayType;
        pgrx::array::RawArray::from_ptr(std::ptr::NonNull::new(ptr).expect("detoasted array"))
    };
    // SAFETY: reads the null bitmap of the array above.
    if unsafe { raw.any_nulls() } {
        return Err(OasError::invalid_argument_hint(
            "NULL elements cannot be stored in a NumPy array",
            "replace them first, e.g. with 'NaN' for floating-point arrays",
        ));
    }
    let mut shape: Vec<usize> = raw.dims().iter().map(|&d| d as usize).collect();
    if shape.is_empty() {
        shape.push(0);
    }
    Ok((raw, shape))
}

/// Store `npy` (the bytes of a `.npy` file, e.g. from `oas_npy_from_array`) as the `<npy@>` value
/// of `field` for the row of `table` whose primary key is `key`, at DataJoint's key-based path
/// with a fresh token, and return DataJoint's reference: `{"path","store","dtype","shape"}`.
/// The store is the column's (`:<npy@store>:` in its comment). Use it in the INSERT or UPDATE
/// of that row; the object of a value that is not kept is garbage for the collector.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_npy_put(table: &str, field: &str, key: JsonB, npy: &[u8]) -> JsonB {
    let header = oas_core::npy::parse_header(npy).or_raise();
    if (npy.len() as u64) < header.data_offset + header.nbytes {
        raise(OasError::invalid_argument(format!(
            "truncated .npy value: {} bytes, the header describes {}",
            npy.len(),
            header.data_offset + header.nbytes
        )));
    }
    // Lookups through the read-only client: no transaction id before the write checks (a hot
    // standby refuses one; crate::spi).
    let (store_name, codec) = Spi::connect(|c| {
        c.select(
            "SELECT resolved_store, codec FROM oas.tracked_columns WHERE table_oid = $1::regclass AND column_name = $2",
            Some(1),
            &[table.into(), field.into()],
        )?
        .first()
        .get_two::<String, String>()
    })
    .or_else(|e| match e {
        pgrx::spi::SpiError::InvalidPosition => Ok((None, None)),
        e => Err(e),
    })
    .or_raise();
    if codec.as_deref() != Some("npy") {
        raise(OasError::invalid_argument_hint(
            format!("column \"{field}\" of \"{table}\" is not an <npy@> column"),
            format!("declare it with SELECT oas.oas_declare_column('{table}', '{field}', 'npy@<store>')"),
        ));
    }
    let rel = crate::spi::read_one::<pg_sys::Oid>(
        "SELECT $1::pg_catalog.regclass::pg_catalog.oid",
        &[table.into()],
    )
    .or_raise()
    .unwrap_or(pg_sys::InvalidOid);
    crate::privilege::require_table_write(rel, table).or_raise();
    let store = catalog::store_to_write(store_name.as_deref()).or_raise();
    let key = super::paths::render_key(rel, &super::paths::KeySource::Json(&key.0)).or_raise();
    let path = super::write::schema_object_path(
        &store,
        &key.schema,
        &key.table,
        field,
        Some(".npy"),
        &key.values,
    );
    let payload = bytes::Bytes::copy_from_slice(npy);
    // The upload may finish with the statement (`crate::write_behind`); a file store that
    // fsyncs is synced when the transaction commits (`crate::durability`).
    let target = crate::durability::target(&store);
    let reference = NpyRef::new(path.clone(), &store.name, &header).to_json();
    let upload = crate::write_behind::Upload {
        store,
        paths: vec![path.clone()],
        bytes: payload.len(),
        restore: None,
    };
    crate::write_behind::submit(upload, async move {
        oas_core::ops::put_new(&target, &path, payload).await
    })
    .or_raise();
    JsonB(reference)
}
