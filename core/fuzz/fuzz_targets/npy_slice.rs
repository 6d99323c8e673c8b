//! A slice of an array, end to end: header written and parsed, selection parsed, ranges planned,
//! fetched from a synthetic file and assembled, result written as `.npy`; each step either fails
//! with an error or keeps its invariants.
//!
//! Input (text, so seeds and crashes are readable):
//!
//! ```text
//! <descr> <C|F> <shape> [max_gap]
//! <selection>
//! ```
//!
//! e.g. `<f4 C 3,4,5 64` then `1:, ::-2`; the shape `()` is a scalar. Everything after the first
//! newline is the selection, passed on as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oas_core::npy::{parse_header, parse_selection, plan, write_header, Dtype, Sel};
use oas_core::OasError;

/// Most runs a plan may have (the extension allows 1 << 20; smaller keeps iterations fast).
const MAX_RUNS: usize = 4096;
/// Arrays up to this many data bytes are materialized, fetched and assembled.
const MAX_FILE_DATA: u64 = 1 << 16;

fn parse_input(text: &str) -> Option<(&str, bool, Vec<u64>, u64, &str)> {
    let (head, expr) = text.split_once('\n').unwrap_or((text, ""));
    let mut words = head.split_ascii_whitespace();
    let descr = words.next()?;
    let fortran = match words.next()? {
        "C" => false,
        "F" => true,
        _ => return None,
    };
    let dims = words.next()?;
    let dims = dims.strip_prefix('(').unwrap_or(dims);
    let dims = dims.strip_suffix(')').unwrap_or(dims);
    let shape = dims
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    if shape.len() > 32 {
        return None;
    }
    let max_gap = match words.next() {
        Some(w) => w.parse().ok()?,
        None => 0,
    };
    Some((descr, fortran, shape, max_gap, expr))
}

/// A deterministic, irregular byte pattern for the synthetic file.
fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((descr, fortran, shape, max_gap, expr)) = parse_input(text) else {
        return;
    };

    // Header: a valid dtype and a shape whose byte size fits make a header that parses back.
    let Ok(dtype) = Dtype::parse(descr) else {
        return;
    };
    let item = dtype.itemsize as u64;
    let file_header = write_header(descr, fortran, &shape);
    let nbytes = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .and_then(|c| c.checked_mul(item))
        .filter(|n| n.checked_add(file_header.len() as u64).is_some());
    let h = match parse_header(&file_header) {
        Ok(h) => h,
        Err(OasError::TooLarge { .. }) => return,
        Err(e) => panic!("the writer's header for {descr:?} {shape:?} does not parse: {e}"),
    };
    assert_eq!(Some(h.nbytes), nbytes);
    assert_eq!(
        (&h.dtype, h.fortran_order, &h.shape),
        (&dtype, fortran, &shape)
    );
    assert_eq!(h.data_offset, file_header.len() as u64);

    // Selection: one entry per axis, every selected position inside its axis.
    let sel = match parse_selection(expr, &h.shape) {
        Ok(s) => s,
        Err(OasError::InvalidArgument { .. }) => return,
        Err(e) => panic!("unexpected error kind for [{expr}]: {e:?}"),
    };
    assert_eq!(sel.len(), shape.len());
    let mut result_shape = Vec::new();
    for (s, &dim) in sel.iter().zip(&shape) {
        match *s {
            Sel::Index(i) => assert!(i < dim, "index {i} on an axis of {dim}"),
            Sel::Range { start, step, len } => {
                assert_ne!(step, 0);
                if len > 0 {
                    let last = i128::from(start) + i128::from(step) * i128::from(len - 1);
                    assert!(
                        u128::from(start) < u128::from(dim),
                        "start {start} of {dim}"
                    );
                    assert!((0..i128::from(dim)).contains(&last), "last {last} of {dim}");
                }
                result_shape.push(len);
            }
        }
    }

    // Plan: the result's shape and size, runs inside the data, in bounds and disjoint.
    let p = match plan(&h, &sel, MAX_RUNS) {
        Ok(p) => p,
        Err(OasError::TooLarge { .. }) => return,
        Err(e) => panic!("plan failed for [{expr}] on {shape:?}: {e:?}"),
    };
    assert_eq!(p.shape, result_shape);
    let count = result_shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .expect("result count fits");
    assert_eq!(Some(p.nbytes), count.checked_mul(item));
    let data_start = h.data_offset;
    let data_end = data_start + h.nbytes;
    let mut total = 0u64;
    for r in &p.runs {
        assert!(r.len > 0 && r.len % item == 0, "run {r:?}");
        assert!(
            (r.offset - data_start) % item == 0,
            "run {r:?} not on an item"
        );
        let end = r.offset.checked_add(r.len).expect("run end fits");
        assert!(
            data_start <= r.offset && end <= data_end,
            "run {r:?} outside the data"
        );
        total += r.len;
    }
    assert_eq!(total, p.nbytes);
    let mut spans: Vec<(u64, u64)> = p
        .runs
        .iter()
        .map(|r| (r.offset, r.offset + r.len))
        .collect();
    spans.sort_unstable();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "runs overlap");

    // Fetch ranges: sorted, apart by more than the gap, inside the data, covering every run.
    let ranges = p.fetch_ranges(max_gap);
    for w in ranges.windows(2) {
        assert!(
            w[0].end < w[1].start && w[1].start - w[0].end > max_gap,
            "{ranges:?}"
        );
    }
    for r in &ranges {
        assert!(
            data_start <= r.start && r.start < r.end && r.end <= data_end,
            "{r:?}"
        );
    }
    for (s, e) in &spans {
        assert!(
            ranges.iter().any(|r| r.start <= *s && *e <= r.end),
            "run {s}..{e} uncovered"
        );
    }

    // Nothing fetched: an error (or the empty result), whatever the slice's size.
    match p.assemble(&[]) {
        Ok(d) => assert!(p.runs.is_empty() && d.is_empty()),
        Err(e) => assert!(!p.runs.is_empty(), "{e}"),
    }

    if h.nbytes > MAX_FILE_DATA {
        return;
    }
    // Assemble from a synthetic file and compare with an element-by-element reference.
    let mut file = file_header.clone();
    file.extend(pattern(h.nbytes as usize));
    let fetched: Vec<(std::ops::Range<u64>, &[u8])> = ranges
        .iter()
        .map(|r| (r.clone(), &file[r.start as usize..r.end as usize]))
        .collect();
    let got = p
        .assemble(&fetched)
        .expect("assemble from the ranges it asked for");
    assert_eq!(
        got,
        reference(&file, data_start, &shape, fortran, &sel, item)
    );
    if !p.runs.is_empty() {
        assert!(
            p.assemble(&fetched[1..]).is_err(),
            "assembled without a range"
        );
    }
    let npy = p.to_npy(&got);
    let back = parse_header(&npy).expect("the result's header parses");
    assert_eq!(
        (&back.dtype, back.fortran_order, &back.shape),
        (&h.dtype, fortran, &p.shape)
    );
    assert_eq!(&npy[back.data_offset as usize..], &got[..]);
});

/// The selected elements' bytes, element by element, in the result's storage order.
fn reference(
    file: &[u8],
    data_start: u64,
    shape: &[u64],
    fortran: bool,
    sel: &[Sel],
    item: u64,
) -> Vec<u8> {
    let n = shape.len();
    // Axes from the slowest-varying in storage to the fastest.
    let order: Vec<usize> = if fortran {
        (0..n).rev().collect()
    } else {
        (0..n).collect()
    };
    let mut strides = vec![0u64; n];
    let mut acc = 1u64;
    for &a in order.iter().rev() {
        strides[a] = acc;
        acc = acc.saturating_mul(shape[a]);
    }
    let counts: Vec<u64> = sel
        .iter()
        .map(|s| match *s {
            Sel::Index(_) => 1,
            Sel::Range { len, .. } => len,
        })
        .collect();
    let mut out = Vec::new();
    if counts.contains(&0) {
        return out;
    }
    let position = |s: Sel, j: u64| -> u64 {
        match s {
            Sel::Index(i) => i,
            Sel::Range { start, step, .. } => {
                (i128::from(start) + i128::from(step) * i128::from(j)) as u64
            }
        }
    };
    let mut idx = vec![0u64; n];
    'outer: loop {
        let e: u64 = (0..n).map(|a| position(sel[a], idx[a]) * strides[a]).sum();
        let at = (data_start + e * item) as usize;
        out.extend_from_slice(&file[at..at + item as usize]);
        for &a in order.iter().rev() {
            idx[a] += 1;
            if idx[a] < counts[a] {
                continue 'outer;
            }
            idx[a] = 0;
        }
        return out;
    }
}
