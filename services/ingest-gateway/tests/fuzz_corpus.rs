//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`, seeds plus
//! whatever `cargo fuzz` found worth keeping) through the fuzz targets'
//! checks, so a regression on a known nasty input fails `make test`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", path.display());
        count += 1;
    }
    assert!(count > 0, "no corpus for {target}");
}

#[test]
fn validate_event_corpus() {
    replay(
        "validate_event",
        ingest_gateway::fuzz_checks::validate_event,
    );
}

#[test]
fn batch_split_corpus() {
    replay("batch_split", ingest_gateway::fuzz_checks::batch_split);
}

#[test]
fn stream_decode_corpus() {
    replay("stream_decode", ingest_gateway::fuzz_checks::stream_decode);
}

#[test]
fn otlp_logs_corpus() {
    replay("otlp_logs", ingest_gateway::fuzz_checks::otlp_logs);
}
