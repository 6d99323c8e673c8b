//! A `bytea` result built in place: allocated in PostgreSQL's memory at its final size and
//! filled there, so a large object is never copied from a Rust buffer into the result.

use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

use pgrx::{pg_sys, IntoDatum};

use super::MAX_BYTEA;

/// A `bytea` value in the current memory context (header set, bytes zeroed until filled).
pub struct Bytea {
    varlena: std::ptr::NonNull<pg_sys::varlena>,
    len: usize,
}

impl Bytea {
    /// `len` zero bytes; `len` must not exceed [`MAX_BYTEA`] (PostgreSQL raises otherwise).
    pub fn zeroed(len: usize) -> Self {
        debug_assert!(len as u64 <= MAX_BYTEA);
        let total = len + pg_sys::VARHDRSZ;
        // SAFETY: palloc0 returns `total` zeroed bytes or raises; the 4-byte header is set
        // as SET_VARSIZE does, and the value lives as long as the current memory context.
        unsafe {
            let ptr = pg_sys::palloc0(total).cast::<pg_sys::varlena>();
            pgrx::set_varsize_4b(ptr, total as i32);
            Bytea {
                varlena: std::ptr::NonNull::new_unchecked(ptr),
                len,
            }
        }
    }

    /// `len` bytes written in place by `fill`, which gets them uninitialized (never zeroed) and
    /// returns them initialized, all of them: a `fill` that returns anything else is a bug and
    /// panics. An error leaves the allocation to its memory context.
    pub fn filled<E>(
        len: usize,
        fill: impl for<'b> FnOnce(&'b mut [MaybeUninit<u8>]) -> Result<&'b mut [u8], E>,
    ) -> Result<Self, E> {
        debug_assert!(len as u64 <= MAX_BYTEA);
        let total = len + pg_sys::VARHDRSZ;
        // SAFETY: palloc returns `total` bytes or raises; the 4-byte header is set as SET_VARSIZE
        // does; the value lives as long as the current memory context.
        let value = unsafe {
            let ptr = pg_sys::palloc(total).cast::<pg_sys::varlena>();
            pgrx::set_varsize_4b(ptr, total as i32);
            Bytea {
                varlena: std::ptr::NonNull::new_unchecked(ptr),
                len,
            }
        };
        // SAFETY: `len` bytes after the header, owned by `value`, seen as not yet initialized.
        let data = unsafe {
            std::slice::from_raw_parts_mut(value.data().cast::<MaybeUninit<u8>>(), value.len)
        };
        let start = data.as_ptr().cast::<u8>();
        let filled = fill(data)?;
        assert!(
            std::ptr::eq(filled.as_ptr(), start) && filled.len() == len,
            "a bytea was not filled whole"
        );
        Ok(value)
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data start right after the 4-byte header of this allocation.
        unsafe { self.varlena.as_ptr().cast::<u8>().add(pg_sys::VARHDRSZ) }
    }
}

impl Deref for Bytea {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` initialized bytes after the header, owned by this value.
        unsafe { std::slice::from_raw_parts(self.data(), self.len) }
    }
}

impl DerefMut for Bytea {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.data(), self.len) }
    }
}

impl IntoDatum for Bytea {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.varlena.as_ptr()))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::BYTEAOID
    }
}

super::returned_as!(Bytea, "bytea");
