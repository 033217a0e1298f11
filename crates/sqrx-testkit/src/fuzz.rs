//! The fuzzing harness: proptest drivers that run as ordinary `cargo test` targets on the
//! stable toolchain, with a small default case count for CI and a long run on demand.
//!
//! Each target calls [`config`] for its proptest configuration, [`limit_memory`] once (a
//! process-wide address-space cap, so an input that makes the code under test allocate without
//! bound aborts the run instead of swapping the machine), and wraps one case in [`watch`] (an
//! input that hangs aborts the run with its label).
//!
//! `SQRX_FUZZ_CASES=N` runs every target with `N` cases instead of its default; see
//! `docs/reliability.md`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// The variable that sets every target's case count (a long run).
pub const CASES_ENV: &str = "SQRX_FUZZ_CASES";

/// The address space a fuzz test binary may use, all threads together.
pub const MEMORY_LIMIT: u64 = 4 << 30;

/// The longest one case may take before the run is aborted as a hang.
pub const CASE_LIMIT: Duration = Duration::from_secs(30);

/// The case count: `SQRX_FUZZ_CASES` when set (and a number), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var(CASES_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A proptest configuration with [`cases`]`(default)` cases. Failures are not persisted to
/// files next to the source: a crash found is kept as a named regression test instead.
pub fn config(default: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: cases(default),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// Cap this process's address space at [`MEMORY_LIMIT`] (once; later calls do nothing). An
/// allocation past it fails, and Rust aborts the process naming the size.
pub fn limit_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_AS).expect("getrlimit");
        let soft = MEMORY_LIMIT.min(hard);
        setrlimit(Resource::RLIMIT_AS, soft, hard).expect("setrlimit RLIMIT_AS");
    });
}

struct Watchdog {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, (Instant, String)>>,
}

fn watchdog() -> &'static Watchdog {
    static DOG: std::sync::OnceLock<&'static Watchdog> = std::sync::OnceLock::new();
    DOG.get_or_init(|| {
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            next: AtomicU64::new(0),
            running: Mutex::new(BTreeMap::new()),
        }));
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let running = dog.running.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((started, label)) =
                    running.values().find(|(s, _)| s.elapsed() > CASE_LIMIT)
                {
                    eprintln!(
                        "fuzz: case {label} has run for {:?} (limit {CASE_LIMIT:?}): a hang",
                        started.elapsed()
                    );
                    std::process::abort();
                }
            }
        });
        dog
    })
}

/// Run one case, aborting the whole process (after printing `label`) if it takes longer than
/// [`CASE_LIMIT`]: a hang must fail the run, not stall it.
pub fn watch<T>(label: impl Into<String>, case: impl FnOnce() -> T) -> T {
    let dog = watchdog();
    let id = dog.next.fetch_add(1, Ordering::Relaxed);
    dog.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, (Instant::now(), label.into()));
    let out = case();
    dog.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    out
}

/// One edit of a valid input. Positions are taken modulo the input's length when applied, so
/// one strategy serves inputs of any size.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Overwrite the byte at a position.
    Set(usize, u8),
    /// Flip one bit of the byte at a position.
    Flip(usize, u8),
    /// Overwrite four bytes at a position with a little-endian number (sizes, offsets,
    /// counts: where parsers trust the input most).
    Word(usize, u32),
    /// Cut the input at a position.
    Truncate(usize),
    /// Insert bytes at a position.
    Insert(usize, Vec<u8>),
}

/// A few [`Edit`]s, each kind alike likely.
pub fn edits() -> impl proptest::strategy::Strategy<Value = Vec<Edit>> {
    use proptest::prelude::*;
    let word = prop_oneof![
        Just(0u32),
        Just(u32::MAX),
        Just(0x8000_0000),
        any::<u16>().prop_map(u32::from),
        any::<u32>(),
    ];
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, v)| Edit::Set(a, v)),
        (any::<usize>(), 0u8..8).prop_map(|(a, bit)| Edit::Flip(a, bit)),
        (any::<usize>(), word).prop_map(|(a, w)| Edit::Word(a, w)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(a, b)| Edit::Insert(a, b)),
    ];
    prop::collection::vec(edit, 1..8)
}

/// Apply `edits` to `bytes` in order.
pub fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let len = bytes.len();
        let at = |a: usize| if len == 0 { 0 } else { a % len };
        match e {
            Edit::Set(a, v) if len > 0 => bytes[at(*a)] = *v,
            Edit::Flip(a, bit) if len > 0 => bytes[at(*a)] ^= 1 << (bit % 8),
            Edit::Word(a, w) if len > 0 => {
                let start = at(*a);
                for (i, b) in w.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(start + i) {
                        *slot = b;
                    }
                }
            }
            Edit::Truncate(a) => bytes.truncate(at(*a)),
            Edit::Insert(a, b) => {
                let start = at(*a);
                bytes.splice(start..start, b.iter().copied());
            }
            Edit::Set(..) | Edit::Flip(..) | Edit::Word(..) => {}
        }
    }
}
