//! Raw zstd speed of pg_oas's own compression (`oas_core::compress`, one frame, single thread)
//! on a file, for `bench/zstd.py`: one JSON line per level with the compressed size and the
//! best compress and decompress times over `repeats` runs.
//!
//!   cargo run --release -p oas_core --example zstd_levels -- FILE [LEVEL ...] [--repeats N]

use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeats = 3;
    if let Some(i) = args.iter().position(|a| a == "--repeats") {
        repeats = args[i + 1].parse().expect("--repeats N");
        args.drain(i..=i + 1);
    }
    let file = args.first().expect("usage: zstd_levels FILE [LEVEL ...]");
    let data = std::fs::read(file).expect("read the file");
    let levels: Vec<i32> = match &args[1..] {
        [] => vec![1, 3, 9],
        l => l.iter().map(|s| s.parse().expect("a level")).collect(),
    };
    for level in levels {
        let (mut best_c, mut best_d, mut size) = (f64::MAX, f64::MAX, 0);
        for _ in 0..repeats {
            let t = Instant::now();
            let z = oas_core::compress::compress(&data, level).expect("compress");
            best_c = best_c.min(t.elapsed().as_secs_f64());
            size = z.len();
            let t = Instant::now();
            let back = oas_core::compress::decompress(&z, data.len()).expect("decompress");
            best_d = best_d.min(t.elapsed().as_secs_f64());
            assert!(back == data, "round trip differs");
        }
        println!(
            "{{\"level\": {level}, \"bytes\": {}, \"compressed\": {size}, \"compress_s\": {best_c}, \"decompress_s\": {best_d}}}",
            data.len()
        );
    }
}
