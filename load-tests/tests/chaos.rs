//! The quick variant of `make chaos`, run by `make test`: every scenario on
//! a stack of its own (Redis with an append-only file, PostgreSQL, the
//! gateway and two workers as child processes), with faults and windows
//! scaled down. It passes only when no accepted event is lost, none is
//! stored twice, the stream drains after every fault and every service
//! exits 0 on SIGTERM at the end.

use std::process::Command;

#[test]
fn every_fault_loses_nothing_and_stores_nothing_twice() {
    let dir = std::env::temp_dir().join(eventline_shared::testkit::unique_name("chaos-quick"));
    let json = dir.with_extension("json");
    let out = Command::new(env!("CARGO_BIN_EXE_eventline-load"))
        .args(["chaos", "--quick", "--workers", "2", "--dir"])
        .arg(&dir)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("eventline-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "chaos run failed ({}); logs in {}:\n{stdout}\n{stderr}",
        out.status,
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON summary"))
            .expect("valid JSON");
    let _ = std::fs::remove_file(&json);
    let scenarios = summary["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 8, "{stdout}");
    for s in scenarios {
        assert!(s["accepted"].as_u64().unwrap_or(0) > 0, "{s}");
        assert_eq!(s["lost"], 0, "{s}");
        assert_eq!(s["duplicated"], 0, "{s}");
        assert!(s["drained_after_seconds"].is_number(), "{s}");
    }
    // The overload scenario did push the stream past its high-water mark.
    let overload = scenarios
        .iter()
        .find(|s| s["scenario"] == "overload")
        .expect("the overload scenario");
    assert!(
        overload["retried_429_503"].as_u64().unwrap_or(0) > 0,
        "{overload}"
    );
    eprintln!("{stdout}");
}
