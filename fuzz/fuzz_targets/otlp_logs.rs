//! See `ingest_gateway::fuzz_checks::otlp_logs` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest_gateway::fuzz_checks::otlp_logs(data));
