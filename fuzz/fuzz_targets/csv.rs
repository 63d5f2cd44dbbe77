//! cargo-fuzz target: the CSV user import (the harness is shared with the stable driver, tests/fuzz.rs).
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::csv_import(data);
});
