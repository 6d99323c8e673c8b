//! How to fetch the byte runs a slice needs, chosen by a cost model of the store.
//!
//! A read costs [`Cost::request_s`] for each request and one byte per [`Cost::bytes_per_s`].
//! Between two runs of a slice lies a gap: skipping it costs one more request, reading through it
//! costs its bytes. Each gap is decided alone, so the cheapest fetch reads through every gap
//! shorter than the break-even gap `request_s × bytes_per_s` ([`Cost::break_even_gap`]) and skips
//! the others. That covers every shape from the exact runs (no gap read) over coalesced ranges to
//! one sequential read of the whole span (every gap read); long ranges are then read in parts.
//!
//! The two numbers start from defaults per kind of store ([`Cost::FILE`], [`Cost::HTTP`]) and are
//! learned from the reads themselves ([`Cost::learn`]): a read's time against the time the model
//! expected corrects whichever of the two terms made up most of it.

use std::ops::Range;

use super::Plan;
use crate::spec::Protocol;

/// What reading from one store costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Seconds one more request adds to a read, among the requests a read keeps in flight (the
    /// store's throughput in requests, not one request's round trip).
    pub request_s: f64,
    /// Bytes a read moves per second.
    pub bytes_per_s: f64,
}

/// What one read did: requests made, bytes received, seconds it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    pub requests: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Bounds of what the model believes, whatever it observes.
const REQUEST_S: (f64, f64) = (1e-7, 1.0);
const BYTES_PER_S: (f64, f64) = (1e6, 1e11);
/// How far one read moves the estimates toward what it saw (in log space).
const LEARN_RATE: f64 = 0.5;
/// One read corrects the model by at most this factor.
const MAX_STEP: f64 = 4.0;
/// A read of fewer requests than this measures their round trip, not what a request costs among
/// many in flight: it teaches only the bandwidth.
const MIN_REQUESTS_TO_LEARN: u64 = 16;

impl Cost {
    /// A `file` store: a positioned read is one system call; bytes come from the page cache or
    /// the disk.
    pub const FILE: Cost = Cost {
        request_s: 5e-6,
        bytes_per_s: 2e9,
    };
    /// An object store over HTTP (S3, GCS, Azure): a ranged GET costs a share of a round trip
    /// and of the server's work even with many in flight.
    pub const HTTP: Cost = Cost {
        request_s: 1e-3,
        bytes_per_s: 500e6,
    };

    /// Where a store of `protocol` starts: [`Cost::FILE`] or [`Cost::HTTP`].
    pub fn for_protocol(protocol: Protocol) -> Cost {
        match protocol {
            Protocol::File => Cost::FILE,
            Protocol::S3 | Protocol::Gcs | Protocol::Azure => Cost::HTTP,
        }
    }

    /// Seconds the model expects `requests` requests moving `bytes` bytes to take.
    pub fn seconds(&self, requests: u64, bytes: u64) -> f64 {
        requests as f64 * self.request_s + bytes as f64 / self.bytes_per_s
    }

    /// The gap at which reading through costs as much as another request.
    pub fn break_even_gap(&self) -> u64 {
        (self.request_s * self.bytes_per_s) as u64
    }

    /// Move the estimates toward what a read took. The error (observed time over expected) is
    /// shared between the two terms by the part of the expected time each made up; a read of few
    /// requests leaves the request cost alone. Reads with nothing to learn from change nothing.
    pub fn learn(&mut self, o: &Observed) {
        let per_request = o.requests as f64 * self.request_s;
        let per_byte = o.bytes as f64 / self.bytes_per_s;
        let expected = per_request + per_byte;
        if !(o.seconds.is_finite() && o.seconds > 0.0 && expected > 0.0) {
            return;
        }
        let error = (o.seconds / expected).clamp(1.0 / MAX_STEP, MAX_STEP).ln() * LEARN_RATE;
        let request_share = if o.requests >= MIN_REQUESTS_TO_LEARN {
            per_request / expected
        } else {
            0.0
        };
        self.request_s =
            (self.request_s * (error * request_share).exp()).clamp(REQUEST_S.0, REQUEST_S.1);
        self.bytes_per_s = (self.bytes_per_s / (error * per_byte / expected).exp())
            .clamp(BYTES_PER_S.0, BYTES_PER_S.1);
    }
}

/// The shape of a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// Nothing to fetch (an empty slice).
    Nothing,
    /// Exactly the bytes the slice needs.
    Exact,
    /// Some gaps read through, others skipped.
    Coalesced,
    /// One range from the slice's first byte to its last, read through in parts.
    Sequential,
}

impl FetchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FetchKind::Nothing => "nothing",
            FetchKind::Exact => "exact",
            FetchKind::Coalesced => "coalesced",
            FetchKind::Sequential => "sequential",
        }
    }
}

/// The reads that fetch a slice: ranges of the file, sorted and disjoint, each read as parts of
/// at most `part` bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub ranges: Vec<Range<u64>>,
    /// Gaps between runs up to this many bytes are read through.
    pub gap: u64,
    pub part: u64,
    /// Bytes fetched: the ranges' sum.
    pub bytes: u64,
    /// Requests made: each range's parts.
    pub requests: u64,
    pub kind: FetchKind,
    /// Seconds the cost model expects.
    pub seconds: f64,
}

/// Choose how to fetch `plan`'s runs: through gaps up to `gap` bytes when given (a fixed choice,
/// `0` for exactly the bytes needed), else up to the cost model's break-even gap; long ranges in
/// parts of `part` bytes.
pub fn choose(plan: &Plan, cost: &Cost, gap: Option<u64>, part: u64) -> Fetch {
    let part = part.max(1);
    let gap = gap.unwrap_or_else(|| cost.break_even_gap());
    let ranges = plan.fetch_ranges(gap);
    let bytes: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    let requests: u64 = ranges
        .iter()
        .map(|r| (r.end - r.start).div_ceil(part))
        .sum();
    let kind = if ranges.is_empty() {
        FetchKind::Nothing
    } else if bytes == plan.nbytes {
        FetchKind::Exact
    } else if ranges.len() == 1 {
        FetchKind::Sequential
    } else {
        FetchKind::Coalesced
    };
    Fetch {
        seconds: cost.seconds(requests, bytes),
        ranges,
        gap,
        part,
        bytes,
        requests,
        kind,
    }
}

impl Fetch {
    /// Requests to keep in flight: many for small requests, whose cost is mostly waiting; fewer
    /// for parts, which share the bandwidth.
    pub fn in_flight(&self) -> usize {
        const SMALL: u64 = 1 << 20;
        if self.requests > 0 && self.bytes / self.requests < SMALL {
            64
        } else {
            16
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::plan;
    use crate::npy::test_support::{header_of, sel};

    const PART: u64 = 8 << 20;

    /// The cheapest fetch by brute force: every subset of gaps read through, priced by the model.
    fn cheapest(p: &Plan, cost: &Cost) -> f64 {
        let exact = p.fetch_ranges(0);
        let gaps: Vec<u64> = exact.windows(2).map(|w| w[1].start - w[0].end).collect();
        assert!(gaps.len() < 16);
        (0u32..1 << gaps.len())
            .map(|mask| {
                let mut ranges = vec![exact[0].clone()];
                for (i, r) in exact[1..].iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        ranges.last_mut().unwrap().end = r.end;
                    } else {
                        ranges.push(r.clone());
                    }
                }
                let bytes = ranges.iter().map(|r| r.end - r.start).sum();
                let requests = ranges
                    .iter()
                    .map(|r| (r.end - r.start).div_ceil(PART))
                    .sum();
                cost.seconds(requests, bytes)
            })
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn the_chosen_fetch_is_the_cheapest_the_model_knows() {
        let costs = [
            Cost::FILE,
            Cost::HTTP,
            Cost {
                request_s: 1e-4,
                bytes_per_s: 1e8,
            },
        ];
        let h = header_of("<f4", false, &[12, 300, 50]);
        let mut checked = 0;
        for expr in [
            ":, 3",
            "::4, 7, 2",
            ":5, 0, 0",
            "::5, 299",
            "1:11:4",
            "::-5, 5, ::2",
            "4",
        ] {
            let p = plan(&h, &sel(expr, &h.shape), 1 << 20).unwrap();
            if p.fetch_ranges(0).len() > 15 {
                continue;
            }
            for cost in &costs {
                let f = choose(&p, cost, None, PART);
                assert!(
                    f.seconds <= cheapest(&p, cost) * (1.0 + 1e-9),
                    "{expr} {cost:?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 18);
    }

    #[test]
    fn a_column_is_read_whole_over_http_and_exactly_from_a_file() {
        // 65,536 rows of 16 KiB: a column is 4 bytes every 16 KiB.
        let h = header_of("<f4", false, &[65536, 4096]);
        let p = plan(&h, &sel(":, 17", &h.shape), 1 << 20).unwrap();
        let http = choose(&p, &Cost::HTTP, None, PART);
        assert_eq!(http.kind, FetchKind::Sequential);
        assert_eq!(http.ranges.len(), 1);
        assert_eq!(http.bytes, 65535 * 16384 + 4);
        assert_eq!(http.requests, http.bytes.div_ceil(PART));
        assert!(http.in_flight() < 64);
        let file = choose(&p, &Cost::FILE, None, PART);
        assert_eq!(file.kind, FetchKind::Exact);
        assert_eq!((file.requests, file.bytes), (65536, 65536 * 4));
        assert_eq!(file.in_flight(), 64);
        // A fixed gap overrides the model either way.
        assert_eq!(
            choose(&p, &Cost::HTTP, Some(0), PART).kind,
            FetchKind::Exact
        );
        assert_eq!(
            choose(&p, &Cost::FILE, Some(1 << 20), PART).kind,
            FetchKind::Sequential
        );
        // Every 64th row: gaps of 1 MiB, too far apart to read through over HTTP.
        let p = plan(&h, &sel("::64, 17", &h.shape), 1 << 20).unwrap();
        assert_eq!(choose(&p, &Cost::HTTP, None, PART).kind, FetchKind::Exact);
    }

    #[test]
    fn rows_blocks_and_empty_slices_read_only_their_bytes() {
        let h = header_of("<f4", false, &[65536, 4096]);
        let fetch = |expr: &str, cost: &Cost, gap: Option<u64>| {
            choose(
                &plan(&h, &sel(expr, &h.shape), 1 << 20).unwrap(),
                cost,
                gap,
                PART,
            )
        };
        for cost in [Cost::FILE, Cost::HTTP] {
            let row = fetch("1234", &cost, None);
            assert_eq!(
                (row.kind, row.requests, row.bytes),
                (FetchKind::Exact, 1, 16384)
            );
            let block = fetch("16384:22937", &cost, None);
            let nbytes = 6553 * 16384;
            assert_eq!((block.kind, block.bytes), (FetchKind::Exact, nbytes));
            assert_eq!(block.requests, nbytes.div_ceil(PART));
            let empty = fetch("5:5", &cost, None);
            assert_eq!(
                (empty.kind, empty.requests, empty.bytes),
                (FetchKind::Nothing, 0, 0)
            );
        }
        // Two columns of each row: the gap between them is read, not a request per element.
        let f = fetch(":, 17:4000:3982", &Cost::HTTP, None);
        assert_eq!(f.kind, FetchKind::Sequential);
        let f = fetch("::2, 1", &Cost::FILE, Some(40000));
        assert_eq!((f.kind, f.ranges.len()), (FetchKind::Sequential, 1));
        let f = fetch("::2, 1", &Cost::FILE, Some(20000));
        assert_eq!((f.kind, f.ranges.len()), (FetchKind::Exact, 32768));
    }

    /// Reads priced by a true cost the model does not know.
    fn observe(truth: &Cost, requests: u64, bytes: u64) -> Observed {
        Observed {
            requests,
            bytes,
            seconds: truth.seconds(requests, bytes),
        }
    }

    #[test]
    fn the_model_learns_a_store_from_its_reads() {
        let truth = Cost {
            request_s: 0.4e-3,
            bytes_per_s: 400e6,
        };
        let mut model = Cost::HTTP;
        // Mixed reads: columns (many small requests), blocks (large parts), single rows.
        for _ in 0..40 {
            model.learn(&observe(&truth, 65536, 65536 * 4));
            model.learn(&observe(&truth, 13, 100 << 20));
            model.learn(&observe(&truth, 1, 16384));
        }
        let near = |a: f64, b: f64| (a / b - 1.0).abs() < 0.1;
        assert!(near(model.request_s, truth.request_s), "{model:?}");
        assert!(near(model.bytes_per_s, truth.bytes_per_s), "{model:?}");
        assert!(near(
            model.break_even_gap() as f64,
            truth.break_even_gap() as f64
        ));
    }

    #[test]
    fn few_requests_teach_only_the_bandwidth_and_nothing_breaks_the_model() {
        let mut model = Cost::HTTP;
        // One slow round trip: not what a request costs among many.
        model.learn(&Observed {
            requests: 1,
            bytes: 100,
            seconds: 0.5,
        });
        assert_eq!(model.request_s, Cost::HTTP.request_s);
        // One read corrects by at most MAX_STEP^LEARN_RATE.
        let mut m = Cost::HTTP;
        m.learn(&Observed {
            requests: 1000,
            bytes: 0,
            seconds: 1e6,
        });
        assert!(
            (m.request_s / Cost::HTTP.request_s - 2.0).abs() < 1e-9,
            "{m:?}"
        );
        // Nonsense changes nothing, and the bounds hold.
        for seconds in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut m = Cost::FILE;
            m.learn(&Observed {
                requests: 100,
                bytes: 100,
                seconds,
            });
            assert_eq!(m, Cost::FILE);
        }
        let mut m = Cost::FILE;
        m.learn(&Observed {
            requests: 0,
            bytes: 0,
            seconds: 1.0,
        });
        assert_eq!(m, Cost::FILE);
        for _ in 0..1000 {
            m.learn(&Observed {
                requests: 100,
                bytes: 1 << 30,
                seconds: 1e-9,
            });
        }
        assert!(
            m.request_s >= REQUEST_S.0 && m.bytes_per_s <= BYTES_PER_S.1,
            "{m:?}"
        );
    }
}
