//! The runner every target shares: proptest's `TestRunner` with a case count from the
//! environment, an optional wall-clock budget, and a one-line summary per target.
//!
//! - `PROPTEST_CASES` (proptest's own variable) sets the case count of the pure targets;
//!   without it each target runs its own small default, sized for CI.
//! - `FUZZ_HTTP_CASES` sets the case count of the HTTP target (each case is a round trip).
//! - `FUZZ_SECONDS` bounds each target's wall time: cases are run in batches, and no new batch
//!   starts once the budget is spent. The summary says how many cases ran.
//! - `FUZZ_SEED` fixes the first batch's seed: a failure prints the seed that reproduces it.
//!
//! Each target prints `fuzz-summary: <target>: <n> cases, ok` on stderr (shown by
//! `cargo test -- --nocapture`; `scripts/fuzz.sh` collects these lines). A failure panics with
//! proptest's minimal failing input. Failures are not persisted to files: the long run prints
//! them, and a found bug becomes a named regression test.

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};

/// Cases per batch when a time budget is set.
const BATCH: u32 = 256;

/// The case count: `var` from the environment, else `default`.
pub fn cases_from(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `test` on `cases` inputs drawn from `strategy` (see the module docs), panicking with the
/// minimal failing input on a failure.
pub fn run<S: Strategy>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult) {
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let mut done = 0u32;
    let mut seed: Option<u64> = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok());
    while done < cases {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let batch = if budget.is_some() {
            BATCH.min(cases - done)
        } else {
            cases - done
        };
        let batch_seed = seed.take().unwrap_or_else(rand::random);
        let config = Config {
            cases: batch,
            rng_seed: RngSeed::Fixed(batch_seed),
            failure_persistence: None,
            // Shrinking an HTTP case can take long; bound it.
            max_shrink_time: 60_000,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!(
                "fuzz target {name} failed after {done}+ cases \
                 (reproduce: FUZZ_SEED={batch_seed} PROPTEST_CASES/FUZZ_HTTP_CASES={batch}): {e}"
            );
        }
        done += batch;
    }
    eprintln!(
        "fuzz-summary: {name}: {done} cases in {:.1} s, ok",
        started.elapsed().as_secs_f64()
    );
}

/// Arbitrary bytes, at most `max` of them.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::num::u8::ANY, 0..=max)
}

/// One way to damage a sealed byte string.
#[derive(Debug, Clone)]
pub enum Damage {
    /// Flip bit `bit` of byte `at` (both taken modulo the length).
    Flip { at: usize, bit: u8 },
    /// Keep only the first `keep` bytes (modulo the length, so always shorter).
    Truncate { keep: usize },
    /// Append these bytes (at least one).
    Extend(Vec<u8>),
}

/// Any [`Damage`].
pub fn damage() -> impl Strategy<Value = Damage> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        1 => any::<usize>().prop_map(|keep| Damage::Truncate { keep }),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Extend),
    ]
}

impl Damage {
    /// `sealed` damaged; never equal to `sealed` (for a non-empty input).
    pub fn apply(&self, sealed: &[u8]) -> Vec<u8> {
        let mut out = sealed.to_vec();
        match self {
            Self::Flip { at, bit } if !out.is_empty() => {
                let at = at % out.len();
                out[at] ^= 1 << bit;
            }
            Self::Flip { .. } => out.push(0),
            Self::Truncate { keep } => out.truncate(keep % sealed.len().max(1)),
            Self::Extend(more) => out.extend_from_slice(more),
        }
        out
    }
}
