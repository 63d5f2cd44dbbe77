//! cargo-fuzz target: CSV and LDIF export read back (the harness is shared with the stable driver, tests/fuzz.rs).
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::export_round_trip(data);
});
