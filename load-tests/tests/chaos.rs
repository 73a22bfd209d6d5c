//! The quick variant of `make chaos`, run by `make test`: every scenario
//! scaled down, on a stack of its own (Redis with an append-only file,
//! PostgreSQL, the gateway and two workers as child processes), then the
//! `cluster-*` scenarios on a second one whose Redis is a Redis Cluster
//! (three masters, three replicas). It passes only when no accepted event is
//! lost (but where a failover with `REDIS_MIN_REPLICAS_ACK=0` may lose some:
//! counted, allowed), none is stored twice, the stream drains after every
//! fault, every shard keeps accepting while a master is replaced (but the
//! replaced one, which must not answer 202 without a replica when the
//! gateway waits for one), and every service exits 0 on SIGTERM at the end.

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
    // Eight on one Redis; cluster-failover twice (REDIS_MIN_REPLICAS_ACK 0
    // and 1) and cluster-freeze on the cluster.
    assert_eq!(scenarios.len(), 11, "{stdout}");
    for s in scenarios {
        assert!(s["accepted"].as_u64().unwrap_or(0) > 0, "{s}");
        if s["loss_allowed"] != true {
            assert_eq!(s["lost"], 0, "{s}");
        }
        assert_eq!(s["duplicated"], 0, "{s}");
        assert!(s["drained_after_seconds"].is_number(), "{s}");
        assert_eq!(s["problems"].as_array().map(Vec::len), Some(0), "{s}");
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
    // Each cluster run with its setting; only the failover with 0 may lose.
    let on_cluster: Vec<(String, u64, bool)> = scenarios
        .iter()
        .filter(|s| s["min_replicas_ack"].is_number())
        .map(|s| {
            (
                s["scenario"].as_str().unwrap_or_default().to_owned(),
                s["min_replicas_ack"].as_u64().unwrap_or(99),
                s["loss_allowed"] == true,
            )
        })
        .collect();
    assert_eq!(
        on_cluster,
        [
            ("cluster-failover".to_owned(), 0, true),
            ("cluster-failover".to_owned(), 1, false),
            ("cluster-freeze".to_owned(), 1, false),
        ],
        "{stdout}"
    );
    eprintln!("{stdout}");
}
