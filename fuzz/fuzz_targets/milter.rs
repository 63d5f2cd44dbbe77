//! cargo-fuzz target: milter sessions of fuzzed stages and macros (the harness is shared with the stable driver, tests/fuzz.rs).
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

thread_local! {
    static RIG: targets::MilterRig = targets::MilterRig::new();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    RIG.with(|rig| rig.session(data));
});
