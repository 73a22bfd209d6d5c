//! The `make bench` table: the runs' reports and the ceilings measured in
//! the same run, read from one `bench-results/<time>/` directory, printed as
//! a Markdown table (what the README shows) and written as `summary.json`.
//!
//! Files read (any may be missing; its rows are then left out):
//! `xadd.json` (`{"entries_per_second", "payload_bytes"}` from
//! redis-benchmark), `copy.json` ([`crate::ceiling::CopyCeiling`]),
//! `batch-max.json`, `batch-sustained.json`, `single.json`, `lag.json`
//! ([`crate::stats::Report`]), `memory.json`
//! (`{"gateway": {"vmrss_kib", "vmhwm_kib"}, "worker": {…}}`) and
//! `stream.json` (`{"<run>": {"max_len"}}`).

use std::path::Path;

use serde_json::{Value, json};

fn load(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&text).ok()
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

/// A row of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub target: String,
    pub vs_xadd: Option<f64>,
    pub vs_copy: Option<f64>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

pub fn rows(dir: &Path) -> Vec<Row> {
    let mut out = Vec::new();
    let xadd = load(dir, "xadd.json");
    let copy = load(dir, "copy.json");
    let xadd_rate = xadd.as_ref().and_then(|x| f(x, &["entries_per_second"]));
    let copy_rate = copy.as_ref().and_then(|c| f(c, &["rows_per_second"]));
    let stream = load(dir, "stream.json");
    let row =
        |figure: &str, measured: String, target: &str, rate: Option<f64>, with_copy: bool| Row {
            figure: figure.into(),
            measured,
            target: target.into(),
            vs_xadd: ratio(rate, xadd_rate),
            vs_copy: if with_copy {
                ratio(rate, copy_rate)
            } else {
                None
            },
        };
    if let Some(x) = &xadd {
        out.push(row(
            "ceiling: redis-benchmark XADD, -P 16",
            format!(
                "{:.0} entries/s ({} B payload)",
                xadd_rate.unwrap_or(0.0),
                f(x, &["payload_bytes"]).unwrap_or(0.0)
            ),
            "",
            xadd_rate,
            false,
        ));
    }
    if let Some(c) = &copy {
        out.push(Row {
            figure: "ceiling: bare COPY into a daily-partitioned table".into(),
            measured: format!(
                "{:.0} rows/s ({} rows in COPYs of {})",
                copy_rate.unwrap_or(0.0),
                f(c, &["rows"]).unwrap_or(0.0),
                f(c, &["chunk"]).unwrap_or(0.0)
            ),
            target: String::new(),
            vs_xadd: None,
            vs_copy: Some(1.0),
        });
    }
    if let Some(r) = load(dir, "batch-max.json") {
        let eps = f(&r, &["events_per_second"]);
        out.push(row(
            "batch ingest, closed loop, accepted by the gateway",
            format!(
                "{:.0} events/s (p99 {:.1} ms)",
                eps.unwrap_or(0.0),
                f(&r, &["latency", "p99_ms"]).unwrap_or(0.0)
            ),
            "",
            eps,
            false,
        ));
    }
    if let Some(r) = load(dir, "batch-sustained.json") {
        let eps = f(&r, &["events_per_second"]);
        let e2e = |k: &str| f(&r, &["e2e", k]).unwrap_or(f64::NAN);
        let max_len = stream
            .as_ref()
            .and_then(|s| f(s, &["batch-sustained", "max_len"]))
            .map_or("?".to_owned(), |n| format!("{n:.0}"));
        out.push(row(
            "batch ingest sustained end to end (open loop)",
            format!(
                "{:.0} events/s stored; lost {}, duplicates {}; drained {:.1} s after sending; stream max {}",
                eps.unwrap_or(0.0),
                e2e("lost"),
                e2e("duplicates"),
                e2e("drain_seconds"),
                max_len
            ),
            ">= 60,000 events/s, 0 lost, 0 dup",
            eps,
            true,
        ));
    }
    if let Some(r) = load(dir, "single.json") {
        let rps = f(&r, &["requests_per_second"]);
        out.push(row(
            "single-event requests end to end (open loop)",
            format!(
                "{:.0} requests/s, p99 {:.2} ms (p50 {:.2}, p99.9 {:.2}); lost {}, duplicates {}",
                rps.unwrap_or(0.0),
                f(&r, &["latency", "p99_ms"]).unwrap_or(f64::NAN),
                f(&r, &["latency", "p50_ms"]).unwrap_or(f64::NAN),
                f(&r, &["latency", "p999_ms"]).unwrap_or(f64::NAN),
                f(&r, &["e2e", "lost"]).unwrap_or(f64::NAN),
                f(&r, &["e2e", "duplicates"]).unwrap_or(f64::NAN),
            ),
            ">= 30,000 requests/s at p99 < 10 ms",
            rps,
            true,
        ));
    }
    if let Some(r) = load(dir, "lag.json") {
        let eps = f(&r, &["events_per_second"]);
        out.push(row(
            "ingest-to-queryable lag at half the sustained rate",
            format!(
                "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms at {:.0} events/s ({} samples, resolution {:.0} ms)",
                f(&r, &["e2e", "lag", "p50_ms"]).unwrap_or(f64::NAN),
                f(&r, &["e2e", "lag", "p99_ms"]).unwrap_or(f64::NAN),
                f(&r, &["e2e", "lag", "max_ms"]).unwrap_or(f64::NAN),
                eps.unwrap_or(0.0),
                f(&r, &["e2e", "lag", "count"]).unwrap_or(0.0),
                f(&r, &["e2e", "lag_resolution_ms"]).unwrap_or(f64::NAN),
            ),
            "p99 < 1 s",
            eps,
            true,
        ));
    }
    if let Some(m) = load(dir, "memory.json") {
        for (name, target) in [("gateway", "< 64 MiB"), ("worker", "< 128 MiB")] {
            if let (Some(rss), Some(hwm)) =
                (f(&m, &[name, "vmrss_kib"]), f(&m, &[name, "vmhwm_kib"]))
            {
                out.push(Row {
                    figure: format!("resident memory of the {name} at full load"),
                    measured: format!(
                        "VmHWM {:.1} MiB (VmRSS {:.1} MiB at the end)",
                        hwm / 1024.0,
                        rss / 1024.0
                    ),
                    target: target.into(),
                    vs_xadd: None,
                    vs_copy: None,
                });
            }
        }
    }
    out
}

pub fn render(rows: &[Row]) -> String {
    let cell = |r: Option<f64>| r.map_or(String::new(), |r| format!("{r:.2}"));
    let mut out = String::from(
        "| figure | measured | target | ÷ XADD ceiling | ÷ COPY ceiling |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.figure,
            r.measured,
            r.target,
            cell(r.vs_xadd),
            cell(r.vs_copy)
        ));
    }
    out
}

/// Prints the table and writes `summary.json` next to the inputs.
pub fn report(dir: &Path) -> anyhow::Result<String> {
    let rows = rows(dir);
    let table = render(&rows);
    let mut inputs = serde_json::Map::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".json")
            && name != "summary.json"
            && let Ok(v) = serde_json::from_str::<Value>(&std::fs::read_to_string(&path)?)
        {
            inputs.insert(name.trim_end_matches(".json").to_owned(), v);
        }
    }
    let summary = json!({ "table": rows, "inputs": inputs });
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_to_the_ceilings_of_the_same_run() {
        let dir =
            std::env::temp_dir().join(format!("eventline-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write =
            |name: &str, v: Value| std::fs::write(dir.join(name), v.to_string()).expect("write");
        write(
            "xadd.json",
            json!({"entries_per_second": 200000.0, "payload_bytes": 250}),
        );
        write(
            "copy.json",
            json!({"rows": 100000, "chunk": 5000, "rows_per_second": 100000.0}),
        );
        write(
            "batch-sustained.json",
            json!({"events_per_second": 50000.0, "e2e": {"lost": 0, "duplicates": 0, "drain_seconds": 0.4}}),
        );
        write(
            "memory.json",
            json!({"gateway": {"vmrss_kib": 30720, "vmhwm_kib": 40960}}),
        );
        let table = report(&dir).expect("report");
        let sustained = table
            .lines()
            .find(|l| l.contains("sustained"))
            .expect("row");
        assert!(sustained.contains("| 0.25 | 0.50 |"), "{sustained}");
        assert!(table.contains("VmHWM 40.0 MiB"), "{table}");
        assert!(!table.contains("single-event"), "missing runs are left out");
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("summary.json")).expect("summary"),
        )
        .expect("json");
        assert_eq!(summary["inputs"]["xadd"]["payload_bytes"], 250);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
