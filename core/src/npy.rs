//! NumPy `.npy` files: the header, NumPy's basic slice syntax, and which bytes a slice needs.
//!
//! This is the pure half of ranged array reads: given the first bytes of a file (the header) and a
//! slice such as `"10:20, ::2, -1"`, [`plan`] says exactly which byte ranges of the file hold the
//! selected elements and in what order they form the result, so a reader fetches only those
//! ranges and [`Plan::assemble`] builds the result. [`write_header`] writes headers byte-identical
//! to `np.save` (NumPy 2.x).
//!
//! Format: `\x93NUMPY`, major, minor, header length (u16 LE in 1.0, u32 LE in 2.0 and 3.0), then a
//! Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with
//! spaces and `\n` so the data starts on a 64-byte boundary.

use crate::error::OasError;

pub const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// NumPy aligns the start of the data to this many bytes.
const ALIGN: usize = 64;
/// NumPy leaves room for the growth axis to reach this many digits (`GROWTH_AXIS_MAX_DIGITS`).
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
/// Enough bytes to hold any header NumPy writes for arrays of up to a few dozen dimensions.
pub const HEADER_PROBE: usize = 4096;

fn bad(msg: impl Into<String>) -> OasError {
    OasError::invalid_argument(msg)
}

/// Byte order of a dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
    /// One-byte types (`|b1`, `|u1`, `|S5`).
    NotApplicable,
}

/// A fixed-size, non-structured dtype, as its `descr` string says (`<f4`, `>i8`, `|b1`, `<U10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtype {
    pub descr: String,
    pub order: ByteOrder,
    /// NumPy's kind character: `b` bool, `i` int, `u` unsigned, `f` float, `c` complex,
    /// `S` bytes, `U` unicode, `V` void, `M` datetime, `m` timedelta.
    pub kind: char,
    pub itemsize: usize,
}

impl Dtype {
    pub fn parse(descr: &str) -> Result<Self, OasError> {
        let mut chars = descr.chars();
        let order = match chars.next() {
            Some('<') => ByteOrder::Little,
            Some('>') => ByteOrder::Big,
            Some('|') => ByteOrder::NotApplicable,
            // Native order: this code runs on little-endian machines only.
            Some('=') => ByteOrder::Little,
            _ => {
                return Err(bad(format!(
                    "unsupported dtype \"{descr}\": no byte order character"
                )))
            }
        };
        let kind = chars
            .next()
            .ok_or_else(|| bad(format!("unsupported dtype \"{descr}\"")))?;
        let rest: String = chars.collect();
        if kind == 'O' {
            return Err(OasError::invalid_argument_hint(
                "object arrays (dtype 'O') cannot be stored or sliced",
                "DataJoint's <npy@> codec rejects them too; convert to a fixed-size dtype",
            ));
        }
        if !"biufcSUVMm".contains(kind) {
            return Err(bad(format!("unsupported dtype \"{descr}\"")));
        }
        // Datetimes may carry a unit: `<M8[ns]`, `<m8[10ms]`; nothing else has a suffix. The
        // descr goes back into result headers as it is, so it must be what NumPy writes.
        let (digits, unit) = match rest.find('[') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest.as_str(), None),
        };
        let unit_ok = match unit {
            None => true,
            Some(u) => matches!(kind, 'M' | 'm') && datetime_unit_ok(u),
        };
        let n: usize = Some(digits)
            .filter(|d| unit_ok && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad(format!("unsupported dtype \"{descr}\"")))?;
        let itemsize = if kind == 'U' {
            n.checked_mul(4)
        } else {
            Some(n)
        }
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            bad(format!(
                "unsupported dtype \"{descr}\": zero or oversized item"
            ))
        })?;
        let valid = match kind {
            'b' => itemsize == 1,
            'i' | 'u' => matches!(itemsize, 1 | 2 | 4 | 8),
            'f' => matches!(itemsize, 2 | 4 | 8 | 16),
            'c' => matches!(itemsize, 8 | 16 | 32),
            'M' | 'm' => itemsize == 8,
            _ => true,
        };
        if !valid {
            return Err(bad(format!("unsupported dtype \"{descr}\"")));
        }
        Ok(Dtype {
            descr: descr.to_string(),
            order,
            kind,
            itemsize,
        })
    }
}

/// A datetime unit as NumPy writes it in a descr: `[ns]`, `[10ms]`, `[D]`.
fn datetime_unit_ok(unit: &str) -> bool {
    let Some(inner) = unit.strip_prefix('[').and_then(|u| u.strip_suffix(']')) else {
        return false;
    };
    let name = inner.trim_start_matches(|c: char| c.is_ascii_digit());
    matches!(
        name,
        "Y" | "M" | "W" | "D" | "h" | "m" | "s" | "ms" | "us" | "ns" | "ps" | "fs" | "as"
    )
}

/// Item size of a dtype as DataJoint records it in `<npy@>` references (`str(arr.dtype)`:
/// `float32`, `int64`, `bool`, `complex128`, `datetime64[ns]`, or a descr such as `>i8`, `<U5`,
/// `|S3`). `None` for names it does not know.
pub fn dtype_itemsize(name: &str) -> Option<usize> {
    let fixed = match name {
        "bool" | "int8" | "uint8" => Some(1),
        "int16" | "uint16" | "float16" => Some(2),
        "int32" | "uint32" | "float32" => Some(4),
        "int64" | "uint64" | "float64" | "complex64" => Some(8),
        "complex128" | "longdouble" | "float128" => Some(16),
        "complex256" | "clongdouble" => Some(32),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    if name.starts_with("datetime64") || name.starts_with("timedelta64") {
        return Some(8);
    }
    Dtype::parse(name).ok().map(|d| d.itemsize)
}

/// `str(np.dtype(descr))`: what DataJoint records as an `<npy@>` reference's `dtype`. Native
/// (little-endian or byte-order-free) numeric types get their names (`float64`, `int32`, `bool`,
/// `datetime64[ns]`); everything else keeps its descr (`>f8`, `<U5`, `|S3`).
pub fn numpy_dtype_name(d: &Dtype) -> String {
    let native = d.order != ByteOrder::Big;
    // Saturating: `|S`, `<U` and `|V` items may be of any size (the bits name only the numeric
    // kinds, whose sizes `Dtype::parse` bounds).
    let bits = d.itemsize.saturating_mul(8);
    match (native, d.kind) {
        (true, 'b') => "bool".into(),
        (true, 'i') => format!("int{bits}"),
        (true, 'u') => format!("uint{bits}"),
        (true, 'f') => format!("float{bits}"),
        (true, 'c') => format!("complex{bits}"),
        (true, 'M') | (true, 'm') => {
            let unit = d.descr.find('[').map(|i| &d.descr[i..]).unwrap_or("");
            format!(
                "{}{unit}",
                if d.kind == 'M' {
                    "datetime64"
                } else {
                    "timedelta64"
                }
            )
        }
        _ => d.descr.clone(),
    }
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: (u8, u8),
    /// Offset of the first data byte.
    pub data_offset: u64,
    pub dtype: Dtype,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// Number of elements.
    pub count: u64,
    /// Bytes of data: `count * itemsize`.
    pub nbytes: u64,
}

/// How much of the file [`parse_header`] needs, from its first 12 bytes.
pub fn header_len(prefix: &[u8]) -> Result<u64, OasError> {
    if prefix.len() < 10 || &prefix[..6] != MAGIC {
        return Err(bad("not a .npy file (bad magic string)"));
    }
    match prefix[6] {
        1 => Ok(10 + u64::from(u16::from_le_bytes([prefix[8], prefix[9]]))),
        2 | 3 if prefix.len() >= 12 => Ok(12
            + u64::from(u32::from_le_bytes([
                prefix[8], prefix[9], prefix[10], prefix[11],
            ]))),
        2 | 3 => Err(bad("truncated .npy header")),
        v => Err(bad(format!(
            "unsupported .npy format version {v}.{}",
            prefix[7]
        ))),
    }
}

/// Parse the header at the start of `buf` (which must hold at least [`header_len`] bytes).
pub fn parse_header(buf: &[u8]) -> Result<Header, OasError> {
    let total = header_len(buf)?;
    let start = if buf[6] == 1 { 10 } else { 12 };
    let total_usize = usize::try_from(total).map_err(|_| bad("oversized .npy header"))?;
    if buf.len() < total_usize {
        return Err(bad(format!(
            "truncated .npy header: {} of {total} bytes",
            buf.len()
        )));
    }
    let text = std::str::from_utf8(&buf[start..total_usize])
        .map_err(|_| bad(".npy header is not text"))?;
    if buf[6] < 3 && !text.is_ascii() {
        return Err(bad(".npy header of format 1.0/2.0 must be ASCII"));
    }
    let dict = parse_dict(text)?;
    let dtype = Dtype::parse(&dict.descr)?;
    let count = dict
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d));
    // The data's end (`data_offset + nbytes`) must fit too: readers and plans add them.
    let nbytes = count
        .and_then(|c| c.checked_mul(dtype.itemsize as u64))
        .filter(|n| n.checked_add(total).is_some());
    let (Some(count), Some(nbytes)) = (count, nbytes) else {
        return Err(OasError::TooLarge {
            message: format!(
                "array shape {:?} of dtype {} overflows: its size in bytes does not fit in 64 bits",
                dict.shape, dtype.descr
            ),
            hint: None,
        });
    };
    Ok(Header {
        version: (buf[6], buf[7]),
        data_offset: total,
        dtype,
        fortran_order: dict.fortran_order,
        shape: dict.shape,
        count,
        nbytes,
    })
}

struct HeaderDict {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// The restricted Python literal NumPy writes: exactly the keys descr, fortran_order, shape.
fn parse_dict(text: &str) -> Result<HeaderDict, OasError> {
    let mut p = Lexer {
        s: text.trim_end().as_bytes(),
        i: 0,
    };
    let err = |m: &str| bad(format!("malformed .npy header: {m}"));
    p.expect(b'{').ok_or_else(|| err("expected '{'"))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| err("expected a quoted key"))?;
        p.expect(b':').ok_or_else(|| err("expected ':'"))?;
        p.skip_ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err(OasError::invalid_argument_hint(
                        "structured dtypes are not supported",
                        "store each field as its own array",
                    ));
                }
                descr = Some(p.string().ok_or_else(|| err("descr must be a string"))?);
            }
            "fortran_order" => {
                fortran = Some(
                    p.boolean()
                        .ok_or_else(|| err("fortran_order must be True or False"))?,
                )
            }
            "shape" => {
                shape = Some(
                    p.int_tuple()
                        .ok_or_else(|| err("shape must be a tuple of non-negative integers"))?,
                )
            }
            other => return Err(err(&format!("unexpected key '{other}'"))),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.skip_ws();
            p.expect(b'}').ok_or_else(|| err("expected ',' or '}'"))?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(err("text after the closing '}'"));
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(HeaderDict {
            descr,
            fortran_order,
            shape,
        }),
        _ => Err(err("descr, fortran_order and shape are all required")),
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        self.eat(c).then_some(())
    }
    fn string(&mut self) -> Option<String> {
        self.skip_ws();
        let q = self.peek().filter(|&q| q == b'\'' || q == b'"')?;
        self.i += 1;
        let start = self.i;
        while self.peek()? != q {
            if self.peek()? == b'\\' {
                return None;
            }
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .to_string();
        self.i += 1;
        Some(s)
    }
    fn boolean(&mut self) -> Option<bool> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Some(v);
            }
        }
        None
    }
    fn int(&mut self) -> Option<u64> {
        self.skip_ws();
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let v = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()?;
        self.eat(b'L'); // Python 2 longs
        Some(v)
    }
    fn int_tuple(&mut self) -> Option<Vec<u64>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Some(out);
            }
            out.push(self.int()?);
            self.skip_ws();
            if !self.eat(b',') {
                self.skip_ws();
                return self.eat(b')').then_some(out);
            }
        }
    }
}

/// The header `np.save` writes for an array of `descr`, order and `shape` (format 1.0, or 2.0
/// when the header does not fit 1.0), byte for byte.
pub fn write_header(descr: &str, fortran_order: bool, shape: &[u64]) -> Vec<u8> {
    let shape_repr = match shape {
        [] => "()".to_string(),
        [one] => format!("({one},)"),
        many => format!(
            "({})",
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_repr}, }}",
        if fortran_order { "True" } else { "False" }
    );
    if let Some(growth) = if fortran_order {
        shape.last()
    } else {
        shape.first()
    } {
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(growth.to_string().len())));
    }
    let hlen = dict.len() + 1;
    let (version, len_bytes) = if (MAGIC.len() + 4 + hlen).next_multiple_of(ALIGN) < 65536 {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let padlen = ALIGN - ((MAGIC.len() + 2 + len_bytes + hlen) % ALIGN);
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + len_bytes + hlen + padlen);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    let total = (hlen + padlen) as u32;
    if version == 1 {
        out.extend_from_slice(&(total as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&total.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padlen));
    out.push(b'\n');
    out
}

/// The selection along one axis, normalized against its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sel {
    /// An integer index: selects one position and drops the axis.
    Index(u64),
    /// `len` positions `start, start + step, ...` (step may be negative, never zero).
    Range { start: u64, step: i64, len: u64 },
}

impl Sel {
    fn count(self) -> u64 {
        match self {
            Sel::Index(_) => 1,
            Sel::Range { len, .. } => len,
        }
    }
    fn position(self, j: u64) -> u64 {
        match self {
            Sel::Index(i) => i,
            Sel::Range { start, step, .. } => (start as i64 + step * j as i64) as u64,
        }
    }
    fn is_full(self, dim: u64) -> bool {
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

/// The elements of an array's data (`data`, in the array's own order) as `f64` in C order, for
/// a PostgreSQL `double precision[]`. Numeric and bool dtypes only; integers beyond 2^53 are
/// refused rather than rounded.
pub fn to_f64_c_order(
    dtype: &Dtype,
    fortran_order: bool,
    shape: &[u64],
    data: &[u8],
) -> Result<Vec<f64>, OasError> {
    let size = dtype.itemsize;
    // The dtype decides, not the slice: an empty slice of a complex array is refused too.
    if !matches!(
        (dtype.kind, size),
        ('b', 1) | ('u' | 'i', 1 | 2 | 4 | 8) | ('f', 2 | 4 | 8)
    ) {
        return Err(OasError::invalid_argument_hint(
            format!("dtype \"{}\" has no PostgreSQL number array", dtype.descr),
            "oas_npy_slice returns the .npy bytes of any dtype",
        ));
    }
    let count = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad("shape too large"))?;
    if (data.len() as u64) != count.saturating_mul(size as u64) {
        return Err(bad("array data does not match its shape"));
    }
    let big = dtype.order == ByteOrder::Big;
    let word = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        if big {
            for &x in b {
                v = (v << 8) | u64::from(x);
            }
        } else {
            for &x in b.iter().rev() {
                v = (v << 8) | u64::from(x);
            }
        }
        v
    };
    // Integers up to 2^53 in magnitude are exactly a double; compared as integers (2^53 + 1 as
    // a double is 2^53, so a comparison of doubles would let it through, rounded).
    const EXACT: u64 = 1 << 53;
    let decode = |b: &[u8]| -> Result<f64, OasError> {
        let w = word(b);
        Ok(match (dtype.kind, size) {
            ('b', 1) => f64::from(u8::from(w != 0)),
            ('u', 1 | 2 | 4 | 8) => {
                let v = w as f64;
                if w > EXACT {
                    return Err(bad(format!(
                        "integer {w} cannot be a double precision exactly"
                    )));
                }
                v
            }
            ('i', 1 | 2 | 4 | 8) => {
                let shift = 64 - 8 * size as u32;
                let v = ((w << shift) as i64) >> shift;
                if v.unsigned_abs() > EXACT {
                    return Err(bad(format!(
                        "integer {v} cannot be a double precision exactly"
                    )));
                }
                v as f64
            }
            ('f', 2) => f16_to_f64(w as u16),
            ('f', 4) => f64::from(f32::from_bits(w as u32)),
            ('f', 8) => f64::from_bits(w),
            _ => {
                return Err(OasError::invalid_argument_hint(
                    format!("dtype \"{}\" has no PostgreSQL number array", dtype.descr),
                    "oas_npy_slice returns the .npy bytes of any dtype",
                ))
            }
        })
    };
    let n = count as usize;
    let mut out = Vec::with_capacity(n);
    if !fortran_order || shape.len() < 2 {
        for chunk in data.chunks_exact(size.max(1)).take(n) {
            out.push(decode(chunk)?);
        }
        return Ok(out);
    }
    // Fortran order: walk the C-order index and find each element's Fortran offset.
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let mut strides = vec![1usize; dims.len()];
    for k in 1..dims.len() {
        strides[k] = strides[k - 1] * dims[k - 1];
    }
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(decode(&data[off * size..(off + 1) * size])?);
        for k in (0..dims.len()).rev() {
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(out)
}

/// `{{1e0,2e0},{3e0,4e0}}` for values in C order and a shape; exact (shortest round-trip digits).
pub fn pg_array_literal(values: &[f64], shape: &[u64]) -> String {
    use std::fmt::Write;
    if shape.is_empty() {
        return format!("{{{:e}}}", values.first().copied().unwrap_or(f64::NAN));
    }
    if shape.contains(&0) {
        return "{}".into();
    }
    // suffix[k]: elements in one step of dimension k-1, i.e. the product of shape[k..].
    let mut suffix = vec![1u64; shape.len() + 1];
    for k in (0..shape.len()).rev() {
        suffix[k] = suffix[k + 1] * shape[k];
    }
    let mut out = String::with_capacity(values.len() * 12 + 2 * shape.len());
    out.push_str(&"{".repeat(shape.len()));
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            let i = i as u64;
            let closed = (1..shape.len()).filter(|&k| i % suffix[k] == 0).count();
            out.push_str(&"}".repeat(closed));
            out.push(',');
            out.push_str(&"{".repeat(closed));
        }
        let _ = write!(out, "{v:e}");
    }
    out.push_str(&"}".repeat(shape.len()));
    out
}

/// IEEE half precision to double.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(descr: &str, fortran: bool, shape: &[u64]) -> Header {
        parse_header(&write_header(descr, fortran, shape)).unwrap()
    }

    #[test]
    fn headers_match_np_save_byte_for_byte() {
        // From NumPy 2.4.6: np.save(BytesIO(), np.zeros((3, 4), '<f4')) and friends.
        let cases: [(&str, bool, &[u64], &str); 4] = [
            (
                "<f4",
                false,
                &[3, 4],
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
            ),
            (
                ">i8",
                false,
                &[5],
                "{'descr': '>i8', 'fortran_order': False, 'shape': (5,), }",
            ),
            (
                "|b1",
                false,
                &[],
                "{'descr': '|b1', 'fortran_order': False, 'shape': (), }",
            ),
            (
                "<f8",
                true,
                &[2, 3, 4],
                "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 4), }",
            ),
        ];
        for (descr, fortran, shape, dict) in cases {
            let h = write_header(descr, fortran, shape);
            assert_eq!(&h[..10], b"\x93NUMPY\x01\x00v\x00", "{dict}");
            assert_eq!(h.len(), 128);
            let text = std::str::from_utf8(&h[10..]).unwrap();
            assert!(text.starts_with(dict) && text.ends_with('\n'), "{text:?}");
            assert!(text[dict.len()..text.len() - 1].bytes().all(|b| b == b' '));
            let parsed = parse_header(&h).unwrap();
            assert_eq!(
                (
                    parsed.dtype.descr.as_str(),
                    parsed.fortran_order,
                    parsed.shape.as_slice()
                ),
                (descr, fortran, shape)
            );
            assert_eq!(parsed.data_offset, 128);
        }
    }

    #[test]
    fn header_sizes_and_dtypes() {
        let h = header_of("<c16", false, &[2, 3]);
        assert_eq!(
            (h.count, h.nbytes, h.dtype.kind, h.dtype.itemsize),
            (6, 96, 'c', 16)
        );
        assert_eq!(header_of("<U5", false, &[2]).dtype.itemsize, 20);
        assert_eq!(header_of("<M8[ns]", false, &[2]).dtype.itemsize, 8);
        assert_eq!(header_of("<u2", false, &[0, 7]).nbytes, 0);
        // Version 2.0 and 3.0 headers (4-byte length) parse too.
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        let dict = b"{'descr': '<i4', 'fortran_order': False, 'shape': (7,), }\n";
        v2.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        v2.extend_from_slice(dict);
        let h = parse_header(&v2).unwrap();
        assert_eq!(
            (h.version, h.shape.as_slice(), h.data_offset),
            ((2, 0), &[7u64][..], (12 + dict.len()) as u64)
        );
    }

    #[test]
    fn bad_headers_are_clear_errors() {
        let good = write_header("<f4", false, &[3]);
        let e = |buf: &[u8]| parse_header(buf).unwrap_err().to_string();
        assert!(e(b"not numpy at all").contains("magic"));
        assert!(e(&good[..50]).contains("truncated"));
        assert!(e(&[&good[..6], &[4u8, 0], &good[8..]].concat()).contains("version 4"));
        let with = |dict: &str| {
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            b.extend_from_slice(dict.as_bytes());
            parse_header(&b)
        };
        assert!(
            with("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }")
                .unwrap_err()
                .to_string()
                .contains("object")
        );
        assert!(
            with("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (3,), }")
                .unwrap_err()
                .to_string()
                .contains("structured")
        );
        assert!(with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1), }").is_err());
        assert!(with("{'descr': '<f4', 'fortran_order': False}").is_err());
        assert!(with("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}").is_err());
        assert!(with("{'descr': '<f3', 'fortran_order': False, 'shape': (3,), }").is_err());
        assert!(with("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3,), }").is_err());
        let big = with("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }");
        assert!(matches!(big, Err(OasError::TooLarge { .. })));
    }

    fn sel(expr: &str, shape: &[u64]) -> Vec<Sel> {
        parse_selection(expr, shape).unwrap()
    }

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
    fn itemsizes_of_the_names_datajoint_records() {
        for (name, size) in [
            ("float32", 4),
            ("int64", 8),
            ("bool", 1),
            ("complex128", 16),
            ("uint16", 2),
            ("datetime64[ns]", 8),
            (">i8", 8),
            ("<U5", 20),
            ("|S3", 3),
            ("<f2", 2),
        ] {
            assert_eq!(dtype_itemsize(name), Some(size), "{name}");
        }
        assert_eq!(dtype_itemsize("object"), None);
        assert_eq!(dtype_itemsize("[('a', '<i4')]"), None);
    }

    #[test]
    fn dtype_names_are_numpys() {
        // str(np.dtype(descr)) from NumPy 2.4.6.
        for (descr, name) in [
            ("<f8", "float64"),
            ("<f2", "float16"),
            ("|i1", "int8"),
            ("<u4", "uint32"),
            ("|b1", "bool"),
            ("<c16", "complex128"),
            (">f8", ">f8"),
            (">i4", ">i4"),
            ("<U5", "<U5"),
            ("|S3", "|S3"),
            ("<M8[ns]", "datetime64[ns]"),
            ("<m8[s]", "timedelta64[s]"),
            ("|V4", "|V4"),
            (">u2", ">u2"),
        ] {
            assert_eq!(
                numpy_dtype_name(&Dtype::parse(descr).unwrap()),
                name,
                "{descr}"
            );
        }
    }
    #[test]
    fn elements_as_doubles_in_c_order() {
        let le = |d: &str| Dtype::parse(d).unwrap();
        let data: Vec<u8> = [1i16, -2, 3, 4, 5, 6]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            to_f64_c_order(&le("<i2"), false, &[2, 3], &data).unwrap(),
            vec![1.0, -2.0, 3.0, 4.0, 5.0, 6.0]
        );
        // The same bytes as a Fortran-order (2, 3) array: columns first.
        assert_eq!(
            to_f64_c_order(&le("<i2"), true, &[2, 3], &data).unwrap(),
            vec![1.0, 3.0, 5.0, -2.0, 4.0, 6.0]
        );
        let be: Vec<u8> = [1.5f64, -0.25]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(
            to_f64_c_order(&le(">f8"), false, &[2], &be).unwrap(),
            vec![1.5, -0.25]
        );
        assert_eq!(
            to_f64_c_order(
                &le("<f2"),
                false,
                &[3],
                &[0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c]
            )
            .unwrap(),
            vec![1.0, -2.0, f64::INFINITY]
        );
        assert_eq!(
            to_f64_c_order(&le("|b1"), false, &[2], &[0, 1]).unwrap(),
            vec![0.0, 1.0]
        );
        assert_eq!(
            to_f64_c_order(&le("<u1"), false, &[], &[200]).unwrap(),
            vec![200.0]
        );
        let huge = (1i64 << 60).to_le_bytes();
        assert!(to_f64_c_order(&le("<i8"), false, &[1], &huge).is_err());
        // 2^53 is exact; 2^53 + 1 would round to 2^53 and is refused, either sign, signed or not.
        for (dtype, v, ok) in [
            ("<i8", (1i64 << 53).to_le_bytes(), true),
            ("<i8", (-(1i64 << 53)).to_le_bytes(), true),
            ("<i8", ((1i64 << 53) + 1).to_le_bytes(), false),
            ("<i8", (-(1i64 << 53) - 1).to_le_bytes(), false),
            ("<u8", ((1i64 << 53) + 1).to_le_bytes(), false),
            ("<i8", i64::MIN.to_le_bytes(), false),
        ] {
            assert_eq!(
                to_f64_c_order(&le(dtype), false, &[1], &v).is_ok(),
                ok,
                "{dtype} {v:?}"
            );
        }
        assert!(to_f64_c_order(&le("<U2"), false, &[1], &[0; 8]).is_err());
        assert!(to_f64_c_order(&le("<c8"), false, &[1], &[0; 8]).is_err());
        assert!(to_f64_c_order(&le("<c8"), false, &[0], &[]).is_err());
        assert!(to_f64_c_order(&le("<i4"), false, &[2], &[0; 4]).is_err());
    }

    #[test]
    fn postgres_array_literals() {
        assert_eq!(
            pg_array_literal(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]),
            "{{1e0,2e0,3e0},{4e0,5e0,6e0}}"
        );
        assert_eq!(
            pg_array_literal(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 2, 2]),
            "{{{1e0,2e0},{3e0,4e0}},{{5e0,6e0},{7e0,8e0}}}"
        );
        assert_eq!(
            pg_array_literal(&[0.1, f64::NAN, f64::NEG_INFINITY], &[3]),
            "{1e-1,NaN,-inf}"
        );
        assert_eq!(pg_array_literal(&[2.5], &[]), "{2.5e0}");
        assert_eq!(pg_array_literal(&[], &[0, 3]), "{}");
    }

    // Regressions: inputs the fuzz targets in core/fuzz found (scripts/fuzz.sh), each as it
    // crashed, with the error it gives now.

    /// `npy_header`: a void dtype of about 2^63 bytes made `numpy_dtype_name` overflow on `itemsize * 8`.
    #[test]
    fn fuzz_huge_void_itemsize_names_without_overflow() {
        let d = Dtype::parse("<V9222333269248377777").unwrap();
        assert_eq!(d.itemsize, 9222333269248377777);
        assert_eq!(numpy_dtype_name(&d), "<V9222333269248377777");
    }

    /// `npy_slice` input `"|u2 C 9223372036854775807\n-1:0:-9223372036854775807"`: the data's
    /// size fit in u64 but its end (header + data) did not, so every range of it overflowed.
    #[test]
    fn fuzz_data_end_past_u64_is_too_large() {
        let h = parse_header(&write_header("|u2", false, &[9223372036854775807]));
        let Err(OasError::TooLarge { message, .. }) = h else {
            panic!("{h:?}");
        };
        assert!(message.contains("does not fit in 64 bits"), "{message}");
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

    /// `npy_header`: a 3.0 header with the descr `'<M8[nN,\u{b9792}<i8'`. Anything after `[` was
    /// taken as a datetime unit, so the descr was accepted, and the header written for a slice of
    /// it (format 1.0, ASCII only) did not parse.
    #[test]
    fn fuzz_datetime_unit_garbage_is_an_unsupported_dtype() {
        let mut b = b"\x93NUMPY\x03\x00t\x00\x00\x00{'descr': '<M8[nN,\xf2\xb9\x9e\x92<i8', \
            'fortran_order': False, 'shape': (7,), }"
            .to_vec();
        b.resize(138, b' ');
        b.push(b'\n');
        let e = parse_header(&b).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype"), "{e}");
        for descr in [
            "<f4[ns]", "<M8[ns", "<M8[x]", "<M8[]", "<i+8", "<f 4", "|S-1",
        ] {
            assert!(Dtype::parse(descr).is_err(), "{descr}");
        }
        for descr in ["<M8[ns]", "<m8[10ms]", ">M8[D]", "<M8", "<f4", "|S3"] {
            assert!(Dtype::parse(descr).is_ok(), "{descr}");
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
