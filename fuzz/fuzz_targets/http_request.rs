//! Fuzz target: see `ferrule_tests::fuzz_targets::http_request` for the invariant checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrule_tests::fuzz_targets::http_request(data);
});
