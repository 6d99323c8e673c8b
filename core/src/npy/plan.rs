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

    /// Build the result's data from fetched ranges (each `(range, bytes)`, sorted and disjoint),
    /// in result order. The one-buffer form of [`Plan::scatter`].
    pub fn assemble(&self, fetched: &[(std::ops::Range<u64>, &[u8])]) -> Result<Vec<u8>, OasError> {
        // Room for what came back at most: a plan's size alone may be anything the header says.
        let fetched_bytes: u64 = fetched.iter().map(|(_, b)| b.len() as u64).sum();
        if fetched_bytes < self.nbytes {
            return Err(bad("fetched ranges do not cover the slice"));
        }
        let mut out = vec![0; usize::try_from(self.nbytes).map_err(|_| bad("result too large"))?];
        let mut scatter = self.scatter();
        let mut end = 0;
        for (r, bytes) in fetched {
            if r.start < end {
                return Err(bad("fetched ranges overlap"));
            }
            if bytes.len() as u64 != r.end - r.start {
                return Err(bad("a fetched range came back short"));
            }
            scatter.place(&mut out, r.start, bytes)?;
            end = r.end;
        }
        scatter.finish()?;
        Ok(out)
    }

    /// Where fetched bytes go in the result: see [`Scatter`].
    pub fn scatter(&self) -> Scatter {
        let mut runs = Vec::with_capacity(self.runs.len());
        let mut dest = 0;
        for r in &self.runs {
            runs.push((*r, dest));
            dest += r.len;
        }
        if !runs.is_sorted_by_key(|(r, _)| r.offset) {
            runs.sort_unstable_by_key(|(r, _)| r.offset);
        }
        Scatter {
            runs,
            placed: 0,
            nbytes: self.nbytes,
        }
    }

    /// The `.npy` header of the result.
    pub fn npy_header(&self) -> Vec<u8> {
        write_header(&self.dtype.descr, self.fortran_order, &self.shape)
    }

    /// The result as a complete `.npy` file.
    pub fn to_npy(&self, data: &[u8]) -> Vec<u8> {
        let mut out = self.npy_header();
        out.extend_from_slice(data);
        out
    }
}

/// Places bytes of the file into the result's data as they arrive, in any order: each chunk
/// (its file offset and bytes) is copied to where the runs it overlaps belong, the bytes between
/// runs are dropped. The readers hand over each byte of the file at most once; [`Scatter::finish`]
/// then checks that every byte of the result came.
#[derive(Debug, Clone)]
pub struct Scatter {
    /// The plan's runs sorted by file offset, each with its offset in the result.
    runs: Vec<(Run, u64)>,
    placed: u64,
    nbytes: u64,
}

impl Scatter {
    /// Copy what `bytes`, found at file offset `offset`, holds of the slice into `out` (the
    /// result's data, `nbytes` long).
    pub fn place(&mut self, out: &mut [u8], offset: u64, bytes: &[u8]) -> Result<(), OasError> {
        let end = offset + bytes.len() as u64;
        let first = self
            .runs
            .partition_point(|(r, _)| r.offset + r.len <= offset);
        for &(run, dest) in self.runs[first..]
            .iter()
            .take_while(|(r, _)| r.offset < end)
        {
            let from = run.offset.max(offset);
            let to = (run.offset + run.len).min(end);
            let at = (dest + from - run.offset) as usize;
            let n = (to - from) as usize;
            let src = &bytes[(from - offset) as usize..][..n];
            out.get_mut(at..at + n)
                .ok_or_else(|| bad("the result buffer is shorter than the slice"))?
                .copy_from_slice(src);
            self.placed += n as u64;
        }
        Ok(())
    }

    /// Every byte of the result was placed.
    pub fn finish(&self) -> Result<(), OasError> {
        if self.placed == self.nbytes {
            Ok(())
        } else {
            Err(bad("fetched ranges do not cover the slice"))
        }
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

    #[test]
    fn chunks_placed_in_any_order_give_the_assembled_result() {
        let shape = [6u64, 5, 4];
        for fortran in [false, true] {
            let h = header_of("<i2", fortran, &shape);
            let file: Vec<u8> = write_header("<i2", fortran, &shape)
                .into_iter()
                .chain((0..240u32).map(|i| (i * 7 % 256) as u8))
                .collect();
            for expr in [
                "",
                ":, 2",
                "::-2, 1:4, 3",
                "4, ::-1",
                "..., 0",
                "1:1",
                "3, 2, 1",
            ] {
                let p = plan(&h, &sel(expr, &shape), 1 << 20).unwrap();
                let want: Vec<u8> = p
                    .runs
                    .iter()
                    .flat_map(|r| file[r.offset as usize..(r.offset + r.len) as usize].to_vec())
                    .collect();
                for gap in [0, 3, 10, 1000] {
                    // Every fetched range cut into chunks of 1, 2, 3, ... bytes, placed last first.
                    let mut chunks = Vec::new();
                    for r in p.fetch_ranges(gap) {
                        let (mut at, mut n) = (r.start, 1);
                        while at < r.end {
                            let end = (at + n).min(r.end);
                            chunks.push(at..end);
                            (at, n) = (end, n + 1);
                        }
                    }
                    chunks.reverse();
                    let mut out = vec![0; p.nbytes as usize];
                    let mut s = p.scatter();
                    for c in &chunks {
                        s.place(&mut out, c.start, &file[c.start as usize..c.end as usize])
                            .unwrap();
                    }
                    s.finish().unwrap();
                    assert_eq!(out, want, "fortran={fortran} [{expr}] gap {gap}");
                    // One chunk missing: not covered.
                    if chunks.len() > 1 {
                        let mut s = p.scatter();
                        let mut out = vec![0; p.nbytes as usize];
                        for c in &chunks[1..] {
                            s.place(&mut out, c.start, &file[c.start as usize..c.end as usize])
                                .unwrap();
                        }
                        if p.nbytes > 0 && gap == 0 {
                            assert!(s.finish().is_err());
                        }
                    }
                }
                // Too small a buffer is an error, not a panic.
                if p.nbytes > 0 {
                    let r = p.fetch_ranges(0)[0].clone();
                    let mut s = p.scatter();
                    let bytes = &file[r.start as usize..r.end as usize];
                    assert!(s.place(&mut [], r.start, bytes).is_err());
                }
            }
        }
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
