//! NumPy's basic slice syntax, normalized against an array's shape.

use super::bad;
use crate::error::OasError;

/// The selection along one axis, normalized against its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sel {
    /// An integer index: selects one position and drops the axis.
    Index(u64),
    /// `len` positions `start, start + step, ...` (step may be negative, never zero).
    Range { start: u64, step: i64, len: u64 },
}

impl Sel {
    pub(super) fn count(self) -> u64 {
        match self {
            Sel::Index(_) => 1,
            Sel::Range { len, .. } => len,
        }
    }
    pub(super) fn position(self, j: u64) -> u64 {
        match self {
            Sel::Index(i) => i,
            Sel::Range { start, step, .. } => (start as i64 + step * j as i64) as u64,
        }
    }
    pub(super) fn is_full(self, dim: u64) -> bool {
        matches!(self, Sel::Range { start: 0, step: 1, len } if len == dim)
    }
}

/// Parse NumPy's basic slice syntax against `shape`: comma-separated items, each an integer
/// (negative counts from the end; drops the axis), a slice `start:stop:step` (any part may be
/// left out; negative steps allowed), or one `...`. Missing trailing axes are taken whole.
pub fn parse_selection(expr: &str, shape: &[u64]) -> Result<Vec<Sel>, OasError> {
    let items: Vec<&str> = if expr.trim().is_empty() {
        Vec::new()
    } else {
        expr.split(',').map(str::trim).collect()
    };
    if items.iter().any(|s| s.is_empty()) {
        return Err(bad(format!("invalid slice \"{expr}\": empty item")));
    }
    let ellipses = items.iter().filter(|s| **s == "...").count();
    if ellipses > 1 {
        return Err(bad(format!(
            "invalid slice \"{expr}\": an index can only have a single ellipsis ('...')"
        )));
    }
    let explicit = items.len() - ellipses;
    if explicit > shape.len() {
        return Err(bad(format!(
            "too many indices for array: array is {}-dimensional, but {explicit} were indexed",
            shape.len()
        )));
    }
    let mut out = Vec::with_capacity(shape.len());
    let full = |dim: u64| Sel::Range {
        start: 0,
        step: 1,
        len: dim,
    };
    for item in &items {
        if *item == "..." {
            for _ in 0..shape.len() - explicit {
                out.push(full(shape[out.len()]));
            }
            continue;
        }
        let axis = out.len();
        out.push(parse_item(item, shape[axis], axis)?);
    }
    while out.len() < shape.len() {
        out.push(full(shape[out.len()]));
    }
    Ok(out)
}

fn parse_int(s: &str, expr_item: &str) -> Result<Option<i64>, OasError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<i64>().map(Some).map_err(|_| {
        bad(format!(
            "invalid slice item \"{expr_item}\": \"{s}\" is not an integer"
        ))
    })
}

fn parse_item(item: &str, dim: u64, axis: usize) -> Result<Sel, OasError> {
    let dim_i = i64::try_from(dim).map_err(|_| bad("axis too long"))?;
    let parts: Vec<&str> = item.split(':').collect();
    if parts.len() == 1 {
        let i = parse_int(parts[0], item)?.expect("non-empty item");
        let pos = if i < 0 { i + dim_i } else { i };
        if pos < 0 || pos >= dim_i {
            return Err(bad(format!(
                "index {i} is out of bounds for axis {axis} with size {dim}"
            )));
        }
        return Ok(Sel::Index(pos as u64));
    }
    if parts.len() > 3 {
        return Err(bad(format!(
            "invalid slice item \"{item}\": at most start:stop:step"
        )));
    }
    let start = parse_int(parts[0], item)?;
    let stop = parse_int(parts[1], item)?;
    let step = if parts.len() == 3 {
        parse_int(parts[2], item)?
    } else {
        None
    }
    .unwrap_or(1);
    if step == 0 {
        return Err(bad(format!(
            "invalid slice item \"{item}\": slice step cannot be zero"
        )));
    }
    // CPython's PySlice_AdjustIndices.
    let adjust = |v: Option<i64>, default: i64, lo: i64, hi: i64| match v {
        None => default,
        Some(v) => {
            let v = if v < 0 { v.saturating_add(dim_i) } else { v };
            v.clamp(lo, hi)
        }
    };
    let (start, stop) = if step > 0 {
        (adjust(start, 0, 0, dim_i), adjust(stop, dim_i, 0, dim_i))
    } else {
        (
            adjust(start, dim_i - 1, -1, dim_i - 1),
            adjust(stop, -1, -1, dim_i - 1),
        )
    };
    // In u64: `-step` overflows for i64::MIN.
    let len = if step > 0 && stop > start {
        (stop - start - 1) as u64 / step.unsigned_abs() + 1
    } else if step < 0 && start > stop {
        (start - stop - 1) as u64 / step.unsigned_abs() + 1
    } else {
        0
    };
    Ok(Sel::Range {
        start: if len == 0 { 0 } else { start as u64 },
        step,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::test_support::sel;

    #[test]
    fn slices_follow_python() {
        let r = |start, step, len| Sel::Range { start, step, len };
        assert_eq!(sel("", &[5]), [r(0, 1, 5)]);
        assert_eq!(sel("1:3", &[5]), [r(1, 1, 2)]);
        assert_eq!(sel("-2:", &[5]), [r(3, 1, 2)]);
        assert_eq!(sel("::2", &[5]), [r(0, 2, 3)]);
        assert_eq!(sel("::-1", &[5]), [r(4, -1, 5)]);
        assert_eq!(sel("3:0:-2", &[5]), [r(3, -2, 2)]);
        assert_eq!(sel("10:20", &[5]), [r(0, 1, 0)]);
        assert_eq!(sel("-100:100", &[5]), [r(0, 1, 5)]);
        assert_eq!(sel("-1", &[5]), [Sel::Index(4)]);
        assert_eq!(
            sel("1, ..., 2", &[3, 4, 5, 6]),
            [Sel::Index(1), r(0, 1, 4), r(0, 1, 5), Sel::Index(2)]
        );
        assert_eq!(sel("...", &[2, 3]), [r(0, 1, 2), r(0, 1, 3)]);
        assert_eq!(sel("0", &[2, 3]), [Sel::Index(0), r(0, 1, 3)]);
    }

    #[test]
    fn bad_slices_are_clear_errors() {
        let e = |expr: &str| parse_selection(expr, &[4, 5]).unwrap_err().to_string();
        assert!(e("::0").contains("step cannot be zero"));
        assert!(e("5").contains("out of bounds"));
        assert!(e("0, -6").contains("out of bounds"));
        assert!(e("1, 2, 3").contains("too many indices"));
        assert!(e("..., ...").contains("single ellipsis"));
        assert!(e("a:b").contains("not an integer"));
        assert!(e("1:2:3:4").contains("at most"));
        assert!(e("1,,2").contains("empty"));
        assert!(e("None").contains("not an integer"));
    }

    /// `npy_slice` input `"|u1 C 9\x0c...\n-1:0:-9223372036854775808"`: the slice length
    /// negated the step, which overflows for i64::MIN. Python gives one element, the last.
    #[test]
    fn fuzz_step_i64_min_is_one_element() {
        assert_eq!(
            sel("-1:0:-9223372036854775808", &[9]),
            [Sel::Range {
                start: 8,
                step: i64::MIN,
                len: 1
            }]
        );
        assert_eq!(
            sel("::-9223372036854775808", &[9]),
            [Sel::Range {
                start: 8,
                step: i64::MIN,
                len: 1
            }]
        );
        assert_eq!(
            sel("::9223372036854775807", &[9]),
            [Sel::Range {
                start: 0,
                step: i64::MAX,
                len: 1
            }]
        );
    }
}
