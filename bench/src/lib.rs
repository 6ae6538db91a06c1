//! Benchmarks live in `benches/` and `paths.d/`; this crate has no library code.
