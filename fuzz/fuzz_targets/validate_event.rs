//! See `ingest_gateway::fuzz_checks::validate_event` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest_gateway::fuzz_checks::validate_event(data));
