//! Slice a `.npy` file the way pg_oas reads arrays from a store: read the header, plan the
//! selection, read only the planned byte ranges (positioned reads), assemble, write `.npy`.
//!
//!     cargo run -p oas_core --example npy_slice -- FILE 'SLICE' > out.npy
//!
//! Prints the bytes read and needed to stderr. Used by tests/test_npy_slicing.py to compare every
//! slice with NumPy's own result.

use std::io::Write;
use std::os::unix::fs::FileExt;

use oas_core::npy::{header_len, parse_header, parse_selection, plan, HEADER_PROBE};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(expr)) = (args.next(), args.next()) else {
        eprintln!("usage: npy_slice FILE SLICE");
        std::process::exit(2);
    };
    if let Err(e) = run(&path, &expr) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(path: &str, expr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = vec![0u8; HEADER_PROBE.min(size as usize)];
    file.read_exact_at(&mut head, 0)?;
    let need = header_len(&head)? as usize;
    if need > head.len() {
        head.resize(need, 0);
        file.read_exact_at(&mut head, 0)?;
    }
    let header = parse_header(&head)?;
    if header.data_offset + header.nbytes > size {
        return Err(format!(
            "file has {size} bytes, the header describes {}",
            header.data_offset + header.nbytes
        )
        .into());
    }
    let sel = parse_selection(expr, &header.shape)?;
    let p = plan(&header, &sel, 1 << 24)?;
    let ranges = p.fetch_ranges(0);
    let mut buffers = Vec::with_capacity(ranges.len());
    for r in &ranges {
        let mut b = vec![0u8; (r.end - r.start) as usize];
        file.read_exact_at(&mut b, r.start)?;
        buffers.push(b);
    }
    let fetched: Vec<_> = ranges
        .iter()
        .cloned()
        .zip(buffers.iter().map(Vec::as_slice))
        .collect();
    let data = p.assemble(&fetched)?;
    let read: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    eprintln!(
        "read {read} bytes for {} bytes of data in {} ranges",
        p.nbytes,
        ranges.len()
    );
    std::io::stdout().write_all(&p.to_npy(&data))?;
    Ok(())
}
