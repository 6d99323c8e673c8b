//! NumPy `.npy` files: the header, NumPy's basic slice syntax, and which bytes a slice needs.
//!
//! This is the pure half of ranged array reads: given the first bytes of a file (the header) and a
//! slice such as `"10:20, ::2, -1"`, [`plan()`] says exactly which byte ranges of the file hold the
//! selected elements and in what order they form the result; [`choose`] decides, by a cost model
//! of the store, which ranges a reader fetches (those alone, or the gaps between them too), and
//! [`Plan::scatter`] places the fetched bytes into the result as they arrive. [`write_header`] writes headers byte-identical
//! to `np.save` (NumPy 2.x).
//!
//! Format: `\x93NUMPY`, major, minor, header length (u16 LE in 1.0, u32 LE in 2.0 and 3.0), then a
//! Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with
//! spaces and `\n` so the data starts on a 64-byte boundary.

mod convert;
mod dtype;
mod fetch;
mod header;
mod plan;
mod selection;

pub use convert::{numeric_to_f64, to_f64_c_order};
pub use dtype::{dtype_itemsize, numpy_dtype_name, ByteOrder, Dtype};
pub use fetch::{choose, Cost, Fetch, FetchKind, Observed};
pub use header::{header_len, parse_header, write_header, Header, HEADER_PROBE, MAGIC};
pub use plan::{plan, Plan, Run, Scatter};
pub use selection::{parse_selection, Sel};

use crate::error::OasError;

fn bad(msg: impl Into<String>) -> OasError {
    OasError::invalid_argument(msg)
}

/// Helpers the tests of several files share.
#[cfg(test)]
mod test_support {
    use super::*;

    pub(super) fn header_of(descr: &str, fortran: bool, shape: &[u64]) -> Header {
        parse_header(&write_header(descr, fortran, shape)).unwrap()
    }
    pub(super) fn sel(expr: &str, shape: &[u64]) -> Vec<Sel> {
        parse_selection(expr, shape).unwrap()
    }
}
