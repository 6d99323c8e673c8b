//! Arbitrary bytes as the start of a `.npy` file: `header_len` and `parse_header` either fail
//! with an error or give a header whose derived values are consistent, and that the writer
//! writes back to a header that parses to the same values (the round trip `Plan::to_npy` relies
//! on). The same bytes, as text, also go to the dtype parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oas_core::npy::{
    dtype_itemsize, header_len, numpy_dtype_name, parse_header, write_header, Dtype,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = Dtype::parse(text) {
            assert!(d.itemsize > 0);
            assert_eq!(dtype_itemsize(text), Some(d.itemsize));
            let _ = numpy_dtype_name(&d);
        }
        let _ = dtype_itemsize(text);
    }
    let len = header_len(data);
    let Ok(h) = parse_header(data) else {
        return;
    };
    assert_eq!(len.ok(), Some(h.data_offset));
    assert!(h.data_offset <= data.len() as u64);

    // Derived values: element count, byte size, and where the data ends, none overflowing.
    let count = h
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .expect("an accepted header's element count fits in u64");
    assert_eq!(h.count, count);
    assert_eq!(Some(h.nbytes), count.checked_mul(h.dtype.itemsize as u64));
    assert!(
        h.data_offset.checked_add(h.nbytes).is_some(),
        "data end overflows: offset {} + {} bytes",
        h.data_offset,
        h.nbytes
    );

    // The dtype: its descr parses to itself, and the name DataJoint records maps back to the
    // same item size.
    assert_eq!(Dtype::parse(&h.dtype.descr).ok().as_ref(), Some(&h.dtype));
    let name = numpy_dtype_name(&h.dtype);
    assert_eq!(
        dtype_itemsize(&name),
        Some(h.dtype.itemsize),
        "{name} from {:?}",
        h.dtype.descr
    );

    // Round trip through the writer.
    let again = write_header(&h.dtype.descr, h.fortran_order, &h.shape);
    assert_eq!(
        again.len() % 64,
        0,
        "data of a written header is not aligned"
    );
    let back = parse_header(&again).unwrap_or_else(|e| {
        panic!(
            "the writer's header for {:?} does not parse: {e}",
            h.dtype.descr
        )
    });
    assert_eq!(back.data_offset, again.len() as u64);
    assert_eq!(
        (
            &back.dtype,
            back.fortran_order,
            &back.shape,
            back.count,
            back.nbytes
        ),
        (&h.dtype, h.fortran_order, &h.shape, h.count, h.nbytes)
    );
});
