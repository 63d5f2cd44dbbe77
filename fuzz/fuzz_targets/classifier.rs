//! cargo-fuzz target: the classifier on any bytes as a message (the harness is shared with the stable driver, tests/fuzz.rs).
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

thread_local! {
    static RIG: targets::ClassifierRig = targets::ClassifierRig::new();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    RIG.with(|rig| rig.raw_message(data));
});
