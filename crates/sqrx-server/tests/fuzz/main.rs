//! Fuzz targets of sqrx-server: proptest drivers over what a client sends, the relay's
//! request head parser and body framing, and the JSON bodies of `/v1` and `/cgi-bin`. They
//! run in `cargo test` with a small case count; `SQRX_FUZZ_CASES=N` runs each with `N` cases
//! (see `docs/reliability.md`). This binary caps its own address space and aborts on a hang.

mod bodies;
mod relay;
