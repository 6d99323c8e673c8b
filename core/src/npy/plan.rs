//! Which byte runs of the file a selection needs, merged into ranges to fetch, and the result
//! assembled from what was fetched.

use super::{bad, write_header, Dtype, Header, Sel};
use crate::error::OasError;

/// A run of bytes to copy: `len` bytes at file offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub offset: u64,
    pub len: u64,
}

/// Which bytes a selection needs, and how they form the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Shape of the result (axes selected by an integer are dropped).
    pub shape: Vec<u64>,
    /// The result keeps the source's memory order.
    pub fortran_order: bool,
    pub dtype: Dtype,
    /// Byte runs of the file, in the order they appear in the result's data.
    pub runs: Vec<Run>,
    /// Bytes of result data: the sum of the runs.
    pub nbytes: u64,
}

/// Plan the read of `sel` from an array with `header`. Fails when the selection would need more
/// than `max_runs` separate runs (a caller then reads a covering range instead).
pub fn plan(header: &Header, sel: &[Sel], max_runs: usize) -> Result<Plan, OasError> {
    let n = header.shape.len();
    if sel.len() != n {
        return Err(bad("selection does not match the array's dimensions"));
    }
    let item = header.dtype.itemsize as u64;
    // Axes from the fastest-varying in storage to the slowest.
    let fast_to_slow: Vec<usize> = if header.fortran_order {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    };
    let mut stride = vec![0u64; n];
    let mut acc = 1u64;
    for &a in &fast_to_slow {
        stride[a] = acc;
        acc = acc.saturating_mul(header.shape[a]);
    }
    let shape: Vec<u64> = sel
        .iter()
        .filter(|s| matches!(s, Sel::Range { .. }))
        .map(|s| s.count())
        .collect();
    let count: u64 = sel.iter().map(|s| s.count()).product();
    let dtype = header.dtype.clone();
    let fortran_order = header.fortran_order;
    if count == 0 {
        return Ok(Plan {
            shape,
            fortran_order,
            dtype,
            runs: Vec::new(),
            nbytes: 0,
        });
    }
    // Fully selected fast axes form one contiguous block; the next axis joins it when its step is 1.
    let mut k = 0;
    let mut block = 1u64;
    while k < n && sel[fast_to_slow[k]].is_full(header.shape[fast_to_slow[k]]) {
        block *= header.shape[fast_to_slow[k]];
        k += 1;
    }
    let mut base = 0u64;
    if k < n {
        let a = fast_to_slow[k];
        match sel[a] {
            Sel::Range {
                start,
                step: 1,
                len,
            } => {
                block *= len;
                base += start * stride[a];
                k += 1;
            }
            Sel::Index(i) => {
                base += i * stride[a];
                k += 1;
            }
            Sel::Range { .. } => {}
        }
    }
    // The remaining axes are iterated, slowest outermost, each run `block` elements long.
    let outer: Vec<usize> = fast_to_slow[k..].iter().rev().copied().collect();
    let n_runs: u64 = outer.iter().map(|&a| sel[a].count()).product();
    if n_runs > max_runs as u64 {
        return Err(OasError::TooLarge {
            message: format!(
                "the slice touches {n_runs} separate ranges of the file (the limit is {max_runs})"
            ),
            hint: Some("read a larger, contiguous block and slice it locally".into()),
        });
    }
    let mut runs: Vec<Run> = Vec::with_capacity(n_runs as usize);
    let mut idx = vec![0u64; outer.len()];
    loop {
        let elem = base
            + outer
                .iter()
                .zip(&idx)
                .map(|(&a, &j)| sel[a].position(j) * stride[a])
                .sum::<u64>();
        let run = Run {
            offset: header.data_offset + elem * item,
            len: block * item,
        };
        match runs.last_mut() {
            Some(last) if last.offset + last.len == run.offset => last.len += run.len,
            _ => runs.push(run),
        }
        // Advance the odometer, fastest of the outer axes (the last) first.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return Ok(Plan {
                    shape,
                    fortran_order,
                    dtype,
                    runs,
                    nbytes: count * item,
                });
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < sel[outer[d]].count() {
                break;
            }
            idx[d] = 0;
        }
    }
}

impl Plan {
    /// Ranges to fetch: the runs, sorted and merged where they touch or lie at most `max_gap`
    /// bytes apart.
    pub fn fetch_ranges(&self, max_gap: u64) -> Vec<std::ops::Range<u64>> {
        let mut spans: Vec<(u64, u64)> = self
            .runs
            .iter()
            .map(|r| (r.offset, r.offset + r.len))
            .collect();
        spans.sort_unstable();
        let mut out: Vec<std::ops::Range<u64>> = Vec::new();
        for (s, e) in spans {
            match out.last_mut() {
                Some(last) if s <= last.end.saturating_add(max_gap) => last.end = last.end.max(e),
                _ => out.push(s..e),
            }
        }
        out
    }

    /// Build the result's data from fetched ranges (each `(range, bytes)`), in result order.
    pub fn assemble(&self, fetched: &[(std::ops::Range<u64>, &[u8])]) -> Result<Vec<u8>, OasError> {
        // Room for what came back at most: a plan's size alone may be anything the header says.
        let fetched_bytes: usize = fetched.iter().map(|(_, b)| b.len()).sum();
        let nbytes = usize::try_from(self.nbytes).map_err(|_| bad("result too large"))?;
        let mut out = Vec::with_capacity(nbytes.min(fetched_bytes));
        for run in &self.runs {
            let i = fetched.partition_point(|(r, _)| r.end <= run.offset);
            let (r, bytes) = fetched
                .get(i)
                .filter(|(r, _)| r.start <= run.offset && run.offset + run.len <= r.end)
                .ok_or_else(|| bad("fetched ranges do not cover the slice"))?;
            let from = (run.offset - r.start) as usize;
            let part = bytes
                .get(from..from + run.len as usize)
                .ok_or_else(|| bad("a fetched range came back short"))?;
            out.extend_from_slice(part);
        }
        Ok(out)
    }

    /// The result as a complete `.npy` file.
    pub fn to_npy(&self, data: &[u8]) -> Vec<u8> {
        let mut out = write_header(&self.dtype.descr, self.fortran_order, &self.shape);
        out.extend_from_slice(data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::test_support::{header_of, sel};
    use crate::npy::{parse_header, parse_selection};

    /// Reference implementation: the selected elements' byte offsets, element by element, in the
    /// result's storage order.
    fn naive(h: &Header, sel: &[Sel]) -> Vec<u64> {
        let n = h.shape.len();
        let order: Vec<usize> = if h.fortran_order {
            (0..n).rev().collect()
        } else {
            (0..n).collect()
        };
        let mut strides = vec![1u64; n];
        let mut acc = 1;
        for &a in order.iter().rev() {
            strides[a] = acc;
            acc *= h.shape[a];
        }
        let mut out = Vec::new();
        let counts: Vec<u64> = sel.iter().map(|s| s.count()).collect();
        if counts.contains(&0) {
            return out;
        }
        let mut idx = vec![0u64; n];
        'outer: loop {
            let e: u64 = (0..n).map(|a| sel[a].position(idx[a]) * strides[a]).sum();
            out.push(h.data_offset + e * h.dtype.itemsize as u64);
            for &a in order.iter().rev() {
                idx[a] += 1;
                if idx[a] < counts[a] {
                    continue 'outer;
                }
                idx[a] = 0;
            }
            break;
        }
        out
    }

    #[test]
    fn plans_equal_element_by_element_reference() {
        let shapes: [&[u64]; 4] = [&[7], &[4, 5], &[3, 4, 5], &[2, 1, 3, 4]];
        let exprs = [
            "", "1", "-1", "1:3", "::2", "::-1", "2:0:-1", "..., 1", "1, ::-2", ":, 2:4", "0, 0",
            "3:1", "..., ::3",
        ];
        for shape in shapes {
            for fortran in [false, true] {
                for descr in ["<f4", "|u1", "<c16"] {
                    let h = header_of(descr, fortran, shape);
                    for expr in exprs {
                        let Ok(s) = parse_selection(expr, shape) else {
                            continue;
                        };
                        let p = plan(&h, &s, 1 << 20).unwrap();
                        let item = h.dtype.itemsize as u64;
                        let flat: Vec<u64> = p
                            .runs
                            .iter()
                            .flat_map(|r| (0..r.len / item).map(move |j| r.offset + j * item))
                            .collect();
                        assert_eq!(
                            flat,
                            naive(&h, &s),
                            "{descr} {shape:?} fortran={fortran} [{expr}]"
                        );
                        assert_eq!(p.nbytes, flat.len() as u64 * item);
                    }
                }
            }
        }
    }

    #[test]
    fn runs_are_as_few_as_the_layout_allows() {
        let h = header_of("<f4", false, &[1000, 256]);
        // One row: one run of 1 KiB.
        let p = plan(&h, &sel("7", &h.shape), 1 << 20).unwrap();
        assert_eq!(
            p.runs,
            [Run {
                offset: h.data_offset + 7 * 1024,
                len: 1024
            }]
        );
        // A block of rows: one run.
        assert_eq!(
            plan(&h, &sel("100:200", &h.shape), 1 << 20)
                .unwrap()
                .runs
                .len(),
            1
        );
        // A column: one 4-byte run per row, fetched without the rows in between.
        let p = plan(&h, &sel(":, 3", &h.shape), 1 << 20).unwrap();
        assert_eq!((p.runs.len(), p.nbytes), (1000, 4000));
        let fetch = p.fetch_ranges(0);
        assert_eq!(fetch.iter().map(|r| r.end - r.start).sum::<u64>(), 4000);
        // Merging ranges 1020 bytes apart reads the whole column span.
        assert_eq!(p.fetch_ranges(1024).len(), 1);
        // Too fragmented for the caller's limit.
        assert!(matches!(
            plan(&h, &sel(":, 3", &h.shape), 999),
            Err(OasError::TooLarge { .. })
        ));
    }

    #[test]
    fn assemble_builds_the_result_from_fetched_ranges() {
        let shape = [4u64, 3];
        let h = header_of("|u1", false, &shape);
        let file: Vec<u8> = write_header("|u1", false, &shape)
            .into_iter()
            .chain(0u8..12)
            .collect();
        let p = plan(&h, &sel("::-2, 1:", &shape), 100).unwrap();
        let fetched: Vec<(std::ops::Range<u64>, &[u8])> = p
            .fetch_ranges(0)
            .into_iter()
            .map(|r| (r.clone(), &file[r.start as usize..r.end as usize]))
            .collect();
        let data = p.assemble(&fetched).unwrap();
        assert_eq!(data, [10, 11, 4, 5]);
        let npy = p.to_npy(&data);
        let back = parse_header(&npy).unwrap();
        assert_eq!(back.shape, [2, 2]);
        assert_eq!(&npy[back.data_offset as usize..], &[10, 11, 4, 5]);
        assert!(p.assemble(&fetched[..0]).is_err());
    }

    /// `npy_slice` input `"<f4 C 955160140"` (the whole array, then assembled from nothing):
    /// `assemble` reserved the plan's 3.8 GB before finding that nothing covered it.
    #[test]
    fn fuzz_assemble_reserves_no_more_than_was_fetched() {
        let h = header_of("<f4", false, &[955160140]);
        let p = plan(&h, &sel("", &h.shape), 1).unwrap();
        assert_eq!(p.nbytes, 3820640560);
        let e = p.assemble(&[]).unwrap_err().to_string();
        assert!(e.contains("do not cover"), "{e}");
        let h = header_of("|u1", false, &[1 << 62]);
        let p = plan(&h, &sel("", &h.shape), 1).unwrap();
        assert!(p.assemble(&[]).is_err());
    }
}
