//! The `make bench` table: the runs' reports and the ceilings measured in
//! the same run, read from one `bench-results/<time>/` directory, printed as
//! a Markdown table (what the README shows) and written as `summary.json`.
//!
//! Files read (any may be missing; its rows are then left out):
//! `xadd.json` (`{"entries_per_second", "payload_bytes"}` from
//! redis-benchmark), `copy.json` ([`crate::ceiling::CopyCeiling`]),
//! `batch-max.json`, `batch-sustained.json`, `single.json`, `lag.json`,
//! `batch-max-keyed.json`, `otlp-max.json` ([`crate::stats::Report`]),
//! `memory.json` (`{"gateway": {"vmrss_kib", "vmhwm_kib"}, "worker": {…}}`),
//! `stream.json` (`{"<run>": {"max_len"}}`) and `cpu-<run>.json`
//! (`{"wall_seconds", "cpu_seconds": {"<process>": seconds, …}}`), from which
//! a second table gives each process's CPU per event and in cores, and a
//! third sets the OTLP run beside the JSON batch run of the same shape
//! ([`otlp_vs_json`]).

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

/// What reached PostgreSQL per second from the first send until the stream
/// had drained: the rate a run sustained end to end.
fn stored_rate(r: &Value) -> Option<f64> {
    match (
        f(r, &["e2e", "stored"]),
        f(r, &["elapsed_seconds"]),
        f(r, &["e2e", "drain_seconds"]),
    ) {
        (Some(stored), Some(send), Some(drain)) if send + drain > 0.0 => {
            Some(stored / (send + drain))
        }
        _ => None,
    }
}

/// The JSON batch run that the OTLP run is compared with: the same closed
/// loop, every event with an `event_id`.
const KEYED_RUN: &str = "batch-max-keyed";
const OTLP_RUN: &str = "otlp-max";
/// JSON batches of the events the OTLP run sends, with the metadata the
/// gateway maps its records to (`--format json-as-otlp`): the OTLP run's
/// baseline when present, else [`KEYED_RUN`].
const TWIN_RUN: &str = "batch-max-otlp-shaped";

/// The JSON run the OTLP run is set beside.
fn baseline_run(dir: &Path) -> &'static str {
    if dir.join(format!("{TWIN_RUN}.json")).exists() {
        TWIN_RUN
    } else {
        KEYED_RUN
    }
}

/// The ceilings measured in the run, which the rows are divided by.
struct Ceilings {
    xadd: Option<f64>,
    copy: Option<f64>,
}

impl Ceilings {
    /// A row whose `rate` is set beside the XADD ceiling, and beside the
    /// COPY ceiling too when `with_copy`.
    fn row(
        &self,
        figure: &str,
        measured: String,
        target: &str,
        rate: Option<f64>,
        with_copy: bool,
    ) -> Row {
        Row {
            figure: figure.into(),
            measured,
            target: target.into(),
            vs_xadd: ratio(rate, self.xadd),
            vs_copy: if with_copy {
                ratio(rate, self.copy)
            } else {
                None
            },
        }
    }
}

pub fn rows(dir: &Path) -> Vec<Row> {
    let xadd = load(dir, "xadd.json");
    let copy = load(dir, "copy.json");
    let c = Ceilings {
        xadd: xadd.as_ref().and_then(|x| f(x, &["entries_per_second"])),
        copy: copy.as_ref().and_then(|c| f(c, &["rows_per_second"])),
    };
    let stream = load(dir, "stream.json");
    let mut out = Vec::new();
    out.extend(xadd.map(|x| xadd_row(&x, &c)));
    out.extend(copy.map(|x| copy_row(&x, &c)));
    out.extend(load(dir, "batch-max.json").map(|r| batch_max_row(&r, &c)));
    out.extend(load(dir, "batch-sustained.json").map(|r| sustained_row(&r, stream.as_ref(), &c)));
    out.extend(closed_loop_rows(dir, &c));
    out.extend(load(dir, "single.json").map(|r| single_row(&r, &c)));
    out.extend(load(dir, "lag.json").map(|r| lag_row(&r, &c)));
    out.extend(load(dir, "memory.json").map_or_else(Vec::new, |m| memory_rows(&m)));
    out
}

fn xadd_row(x: &Value, c: &Ceilings) -> Row {
    c.row(
        "ceiling: redis-benchmark XADD, -P 16",
        format!(
            "{:.0} entries/s ({} B payload)",
            c.xadd.unwrap_or(0.0),
            f(x, &["payload_bytes"]).unwrap_or(0.0)
        ),
        "",
        c.xadd,
        false,
    )
}

fn copy_row(copy: &Value, c: &Ceilings) -> Row {
    Row {
        figure: "ceiling: bare COPY into a daily-partitioned table".into(),
        measured: format!(
            "{:.0} rows/s ({} rows in COPYs of {})",
            c.copy.unwrap_or(0.0),
            f(copy, &["rows"]).unwrap_or(0.0),
            f(copy, &["chunk"]).unwrap_or(0.0)
        ),
        target: String::new(),
        vs_xadd: None,
        vs_copy: Some(1.0),
    }
}

fn batch_max_row(r: &Value, c: &Ceilings) -> Row {
    let eps = f(r, &["events_per_second"]);
    c.row(
        "batch ingest, closed loop, accepted by the gateway",
        format!(
            "{:.0} events/s (p99 {:.1} ms)",
            eps.unwrap_or(0.0),
            f(r, &["latency", "p99_ms"]).unwrap_or(0.0)
        ),
        "",
        eps,
        false,
    )
}

fn sustained_row(r: &Value, stream: Option<&Value>, c: &Ceilings) -> Row {
    let eps = f(r, &["events_per_second"]);
    let e2e = |k: &str| f(r, &["e2e", k]).unwrap_or(f64::NAN);
    let stored_rate = stored_rate(r);
    let max_len = stream
        .and_then(|s| f(s, &["batch-sustained", "max_len"]))
        .map_or("?".to_owned(), |n| format!("{n:.0}"));
    c.row(
        "batch ingest sustained end to end (open loop)",
        format!(
            "{:.0} events/s accepted, {:.0} events/s stored from the first send until drained ({:.1} s after sending); lost {}, duplicates {}; stream max {}",
            eps.unwrap_or(0.0),
            stored_rate.unwrap_or(f64::NAN),
            e2e("drain_seconds"),
            e2e("lost"),
            e2e("duplicates"),
            max_len
        ),
        ">= 75,000 events/s stored, 0 lost, 0 dup, <= 26 µs of CPU per event",
        stored_rate.or(eps),
        true,
    )
}

/// The keyed JSON batch run and the OTLP run, both closed loops measured
/// end to end.
fn closed_loop_rows(dir: &Path, c: &Ceilings) -> Vec<Row> {
    let mut out = Vec::new();
    for (run, figure, unit, target) in [
        (
            KEYED_RUN,
            "batch ingest, every event with an event_id, closed loop, end to end",
            "events",
            "",
        ),
        (
            OTLP_RUN,
            "OTLP/HTTP logs (protobuf), closed loop, end to end",
            "records",
            "CPU per record <= the JSON batch's",
        ),
    ] {
        if let Some(r) = load(dir, &format!("{run}.json")) {
            let rate = stored_rate(&r);
            out.push(c.row(
                figure,
                format!(
                    "{:.0} {unit}/s stored from the first send until drained, {:.0}/s accepted (p99 {:.1} ms); lost {}, duplicates {}",
                    rate.unwrap_or(f64::NAN),
                    f(&r, &["events_per_second"]).unwrap_or(0.0),
                    f(&r, &["latency", "p99_ms"]).unwrap_or(f64::NAN),
                    f(&r, &["e2e", "lost"]).unwrap_or(f64::NAN),
                    f(&r, &["e2e", "duplicates"]).unwrap_or(f64::NAN),
                ),
                target,
                rate,
                true,
            ));
        }
    }
    out
}

fn single_row(r: &Value, c: &Ceilings) -> Row {
    let rps = f(r, &["requests_per_second"]);
    c.row(
        "single-event requests end to end (open loop)",
        format!(
            "{:.0} requests/s, p99 {:.2} ms (p50 {:.2}, p99.9 {:.2}); lost {}, duplicates {}",
            rps.unwrap_or(0.0),
            f(r, &["latency", "p99_ms"]).unwrap_or(f64::NAN),
            f(r, &["latency", "p50_ms"]).unwrap_or(f64::NAN),
            f(r, &["latency", "p999_ms"]).unwrap_or(f64::NAN),
            f(r, &["e2e", "lost"]).unwrap_or(f64::NAN),
            f(r, &["e2e", "duplicates"]).unwrap_or(f64::NAN),
        ),
        "p99 < 10 ms up to >= 25,000 requests/s (the sweep), <= 50 µs of CPU per request",
        rps,
        true,
    )
}

fn lag_row(r: &Value, c: &Ceilings) -> Row {
    let eps = f(r, &["events_per_second"]);
    c.row(
        "ingest-to-queryable lag at half the sustained rate",
        format!(
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms at {:.0} events/s ({} samples, resolution {:.0} ms)",
            f(r, &["e2e", "lag", "p50_ms"]).unwrap_or(f64::NAN),
            f(r, &["e2e", "lag", "p99_ms"]).unwrap_or(f64::NAN),
            f(r, &["e2e", "lag", "max_ms"]).unwrap_or(f64::NAN),
            eps.unwrap_or(0.0),
            f(r, &["e2e", "lag", "count"]).unwrap_or(0.0),
            f(r, &["e2e", "lag_resolution_ms"]).unwrap_or(f64::NAN),
        ),
        "p99 < 1 s",
        eps,
        true,
    )
}

fn memory_rows(m: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    for (name, target) in [("gateway", "< 64 MiB"), ("worker", "< 128 MiB")] {
        if let (Some(rss), Some(hwm)) = (f(m, &[name, "vmrss_kib"]), f(m, &[name, "vmhwm_kib"])) {
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

/// The processes whose CPU `bench.sh` reads, in table order.
const PROCESSES: [(&str, &str); 6] = [
    ("generator", "generator"),
    ("gateway", "gateway"),
    ("worker", "worker"),
    ("redis", "Redis"),
    ("redis_forks", "Redis's forks (AOF rewrite, RDB save)"),
    ("postgres", "PostgreSQL"),
];

/// What one run cost in CPU.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuRow {
    pub run: String,
    pub events: u64,
    /// Per process (in [`PROCESSES`] order): µs of CPU per accepted event.
    pub micros_per_event: Vec<f64>,
    /// Per process: CPU seconds over the run's wall time (sending and the
    /// wait until every event was stored).
    pub cores: Vec<f64>,
}

pub fn cpu_rows(dir: &Path) -> Vec<CpuRow> {
    [
        "batch-max",
        KEYED_RUN,
        TWIN_RUN,
        OTLP_RUN,
        "batch-sustained",
        "single",
        "lag",
    ]
    .into_iter()
    .filter_map(|run| cpu_row(dir, run))
    .collect()
}

/// The CPU of run `run`, when its report and CPU files are there.
fn cpu_row(dir: &Path, run: &str) -> Option<CpuRow> {
    let cpu = load(dir, &format!("cpu-{run}.json"))?;
    let report = load(dir, &format!("{run}.json"))?;
    let events = report
        .get("events_accepted")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let wall = f(&cpu, &["wall_seconds"]).unwrap_or(0.0);
    if events == 0 || wall <= 0.0 {
        return None;
    }
    let seconds: Vec<f64> = PROCESSES
        .iter()
        .map(|(key, _)| f(&cpu, &["cpu_seconds", key]).unwrap_or(0.0))
        .collect();
    Some(CpuRow {
        run: run.to_owned(),
        events,
        micros_per_event: seconds.iter().map(|s| s * 1e6 / events as f64).collect(),
        cores: seconds.iter().map(|s| s / wall).collect(),
    })
}

/// One rate of the single-event sweep (`sweep-<offered>.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SweepRow {
    pub offered: u64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub lost: f64,
    pub duplicates: f64,
    /// µs of CPU per request, every process (the generator included).
    pub cpu_micros: f64,
}

/// The single-event rate sweep, by offered rate: where p99 passes 10 ms.
pub fn sweep_rows(dir: &Path) -> Vec<SweepRow> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut offered: Vec<u64> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("sweep-")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    offered.sort_unstable();
    offered
        .into_iter()
        .filter_map(|rate| {
            let run = format!("sweep-{rate}");
            let r = load(dir, &format!("{run}.json"))?;
            Some(SweepRow {
                offered: rate,
                requests_per_second: f(&r, &["requests_per_second"])?,
                p50_ms: f(&r, &["latency", "p50_ms"]).unwrap_or(f64::NAN),
                p99_ms: f(&r, &["latency", "p99_ms"]).unwrap_or(f64::NAN),
                lost: f(&r, &["e2e", "lost"]).unwrap_or(f64::NAN),
                duplicates: f(&r, &["e2e", "duplicates"]).unwrap_or(f64::NAN),
                cpu_micros: cpu_row(dir, &run)
                    .map_or(f64::NAN, |c| c.micros_per_event.iter().sum()),
            })
        })
        .collect()
}

pub fn render_sweep(rows: &[SweepRow]) -> String {
    let mut out = String::from(
        "| rate sweep, one event per request: offered per second | achieved | p50 ms | p99 ms | lost · dup | µs of CPU per request, all |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {} · {} | {:.1} |\n",
            r.offered,
            r.requests_per_second,
            r.p50_ms,
            r.p99_ms,
            r.lost,
            r.duplicates,
            r.cpu_micros
        ));
    }
    out
}

pub fn render_cpu(rows: &[CpuRow]) -> String {
    let mut out = String::from("| run (µs of CPU per event · cores) |");
    for (_, name) in PROCESSES {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str(" all |\n|---|");
    out.push_str(&"---|".repeat(PROCESSES.len() + 1));
    out.push('\n');
    for r in rows {
        out.push_str(&format!("| {} ({} events) |", r.run, r.events));
        for (us, cores) in r.micros_per_event.iter().zip(&r.cores) {
            out.push_str(&format!(" {us:.1} · {cores:.2} |"));
        }
        out.push_str(&format!(
            " {:.1} · {:.2} |\n",
            r.micros_per_event.iter().sum::<f64>(),
            r.cores.iter().sum::<f64>()
        ));
    }
    out
}

/// One figure of the OTLP run beside the JSON batch run's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Versus {
    pub figure: String,
    pub json: f64,
    pub otlp: f64,
    /// OTLP ÷ JSON.
    pub ratio: Option<f64>,
    /// Decimals shown.
    #[serde(skip)]
    pub decimals: usize,
}

/// The OTLP run against the keyed JSON batch run of the same run: records
/// (events) per second end to end, then each process's µs of CPU per
/// record and all of them. Empty unless both runs are there.
pub fn otlp_vs_json(dir: &Path, cpu: &[CpuRow]) -> Vec<Versus> {
    let baseline = baseline_run(dir);
    let (Some(json), Some(otlp)) = (
        load(dir, &format!("{baseline}.json")),
        load(dir, &format!("{OTLP_RUN}.json")),
    ) else {
        return Vec::new();
    };
    let versus = |figure: String, json: Option<f64>, otlp: Option<f64>| Versus {
        figure,
        json: json.unwrap_or(f64::NAN),
        otlp: otlp.unwrap_or(f64::NAN),
        ratio: ratio(otlp, json),
        decimals: 1,
    };
    let mut out = vec![Versus {
        decimals: 0,
        ..versus(
            "stored per second, end to end".into(),
            stored_rate(&json),
            stored_rate(&otlp),
        )
    }];
    let find = |run: &str| cpu.iter().find(|r| r.run == run);
    if let (Some(json), Some(otlp)) = (find(baseline), find(OTLP_RUN)) {
        for (i, (_, name)) in PROCESSES.iter().enumerate() {
            out.push(versus(
                format!("µs of CPU per record: {name}"),
                json.micros_per_event.get(i).copied(),
                otlp.micros_per_event.get(i).copied(),
            ));
        }
        out.push(versus(
            "µs of CPU per record: all".into(),
            Some(json.micros_per_event.iter().sum()),
            Some(otlp.micros_per_event.iter().sum()),
        ));
    }
    out
}

pub fn render_versus(rows: &[Versus], baseline: &str) -> String {
    let mut out = format!(
        "| OTLP ({OTLP_RUN}) beside JSON batches ({baseline}), same shape | JSON batch | OTLP | OTLP ÷ JSON |\n|---|---|---|---|\n"
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.*} | {:.*} | {} |\n",
            r.figure,
            r.decimals,
            r.json,
            r.decimals,
            r.otlp,
            r.ratio.map_or(String::new(), |x| format!("{x:.2}"))
        ));
    }
    out
}

/// The configurations of `BENCH_CLUSTER=1 make bench`, in order: the
/// suffix of their runs (`batch-max-<suffix>`, `single-<suffix>`) and the
/// column's name.
const REDIS_MODES: [(&str, &str); 3] = [
    ("one-server", "one server"),
    ("cluster", "3-master cluster"),
    ("cluster-ack1", "cluster, REDIS_MIN_REPLICAS_ACK=1"),
];

/// One figure of each Redis configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModeRow {
    pub figure: String,
    /// In [`REDIS_MODES`] order; NaN when the run is missing.
    pub values: Vec<f64>,
    #[serde(skip)]
    pub decimals: usize,
}

/// The Redis configurations side by side: batches stored per second end to
/// end, their CPU per event (all processes, and Redis's nodes), single
/// events' latency and CPU per request. Empty unless the one-server runs
/// are there.
pub fn redis_modes(dir: &Path) -> Vec<ModeRow> {
    if !dir.join("batch-max-one-server.json").exists() {
        return Vec::new();
    }
    let figure = |name: &str, decimals: usize, get: &dyn Fn(&str) -> Option<f64>| ModeRow {
        figure: name.to_owned(),
        values: REDIS_MODES
            .iter()
            .map(|(suffix, _)| get(suffix).unwrap_or(f64::NAN))
            .collect(),
        decimals,
    };
    let report =
        |run: String, path: &[&str]| load(dir, &format!("{run}.json")).and_then(|r| f(&r, path));
    let cpu = |run: String, process: Option<usize>| {
        let row = cpu_row(dir, &run)?;
        Some(match process {
            Some(i) => *row.micros_per_event.get(i)?,
            None => row.micros_per_event.iter().sum(),
        })
    };
    let redis = PROCESSES.iter().position(|(key, _)| *key == "redis");
    vec![
        figure(
            "batches, closed loop: stored per second end to end",
            0,
            &|m| load(dir, &format!("batch-max-{m}.json")).and_then(|r| stored_rate(&r)),
        ),
        figure("batches: µs of CPU per event, all processes", 1, &|m| {
            cpu(format!("batch-max-{m}"), None)
        }),
        figure(
            "batches: µs of CPU per event, Redis (every node)",
            1,
            &|m| cpu(format!("batch-max-{m}"), redis),
        ),
        figure("single events: p50 ms", 2, &|m| {
            report(format!("single-{m}"), &["latency", "p50_ms"])
        }),
        figure("single events: p99 ms", 2, &|m| {
            report(format!("single-{m}"), &["latency", "p99_ms"])
        }),
        figure("single events: µs of CPU per request, all", 1, &|m| {
            cpu(format!("single-{m}"), None)
        }),
        figure("lost · duplicated (all runs)", 0, &|m| {
            let sum = |path: &[&str]| {
                ["batch-max", "single"]
                    .iter()
                    .filter_map(|run| report(format!("{run}-{m}"), path))
                    .sum::<f64>()
            };
            Some(sum(&["e2e", "lost"]) + sum(&["e2e", "duplicates"]))
        }),
    ]
}

pub fn render_redis_modes(rows: &[ModeRow]) -> String {
    let mut out = String::from("| Redis |");
    for (_, name) in REDIS_MODES {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str(" cluster ÷ one server | ack 1 ÷ ack 0 |\n|---|");
    out.push_str(&"---|".repeat(REDIS_MODES.len() + 2));
    out.push('\n');
    for r in rows {
        out.push_str(&format!("| {} |", r.figure));
        for v in &r.values {
            out.push_str(&format!(" {v:.*} |", r.decimals));
        }
        let ratio_of = |a: usize, b: usize| {
            ratio(r.values.get(a).copied(), r.values.get(b).copied())
                .filter(|x| x.is_finite())
                .map_or(String::new(), |x| format!("{x:.2}"))
        };
        out.push_str(&format!(" {} | {} |\n", ratio_of(1, 0), ratio_of(2, 1)));
    }
    out
}

/// Prints the tables and writes `summary.json` next to the inputs.
pub fn report(dir: &Path) -> anyhow::Result<String> {
    let rows = rows(dir);
    let cpu = cpu_rows(dir);
    let versus = otlp_vs_json(dir, &cpu);
    let mut table = render(&rows);
    if !cpu.is_empty() {
        table.push('\n');
        table.push_str(&render_cpu(&cpu));
    }
    if !versus.is_empty() {
        table.push('\n');
        table.push_str(&render_versus(&versus, baseline_run(dir)));
    }
    let sweep = sweep_rows(dir);
    if !sweep.is_empty() {
        table.push('\n');
        table.push_str(&render_sweep(&sweep));
    }
    let modes = redis_modes(dir);
    if !modes.is_empty() {
        table.push('\n');
        table.push_str(&render_redis_modes(&modes));
    }
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
    let summary = json!({
        "table": rows,
        "cpu": cpu,
        "otlp_vs_json": versus,
        "redis_modes": modes,
        "inputs": inputs,
    });
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
            json!({"events_per_second": 50000.0, "elapsed_seconds": 20.0,
                   "e2e": {"stored": 1_000_000, "lost": 0, "duplicates": 0, "drain_seconds": 0.0}}),
        );
        write(
            "memory.json",
            json!({"gateway": {"vmrss_kib": 30720, "vmhwm_kib": 40960}}),
        );
        write(
            "lag.json",
            json!({"events_accepted": 500000, "events_per_second": 25000.0}),
        );
        write(
            "cpu-lag.json",
            json!({"wall_seconds": 25.0, "cpu_seconds": {"generator": 2.5, "gateway": 5.0, "worker": 7.5, "redis": 2.5, "redis_forks": 0.0, "postgres": 10.0}}),
        );
        for (rate, p99) in [(20000, 30.5), (5000, 2.0)] {
            write(
                &format!("sweep-{rate}.json"),
                json!({"events_accepted": rate * 10, "requests_per_second": rate as f64 * 0.99,
                       "latency": {"p50_ms": 1.0, "p99_ms": p99},
                       "e2e": {"stored": rate * 10, "lost": 0, "duplicates": 0}}),
            );
            write(
                &format!("cpu-sweep-{rate}.json"),
                json!({"wall_seconds": 10.0, "cpu_seconds": {"generator": 0.0, "gateway": rate as f64 * 10.0 * 40e-6, "worker": 0.0, "redis": rate as f64 * 10.0 * 20e-6, "redis_forks": 0.0, "postgres": 0.0}}),
            );
        }
        let table = report(&dir).expect("report");
        let sweep: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("| 5000 ") || l.starts_with("| 20000 "))
            .collect();
        assert_eq!(
            sweep,
            [
                "| 5000 | 4950 | 1.00 | 2.00 | 0 · 0 | 60.0 |",
                "| 20000 | 19800 | 1.00 | 30.50 | 0 · 0 | 60.0 |"
            ],
            "the sweep, by offered rate"
        );
        let cpu = table
            .lines()
            .find(|l| l.starts_with("| lag"))
            .expect("cpu row");
        assert_eq!(
            cpu,
            "| lag (500000 events) | 5.0 · 0.10 | 10.0 · 0.20 | 15.0 · 0.30 | 5.0 · 0.10 | 0.0 · 0.00 | 20.0 · 0.40 | 55.0 · 1.10 |"
        );
        let sustained = table
            .lines()
            .find(|l| l.contains("sustained"))
            .expect("row");
        assert!(sustained.contains("| 0.25 | 0.50 |"), "{sustained}");
        assert!(table.contains("VmHWM 40.0 MiB"), "{table}");
        assert!(!table.contains("single-event"), "missing runs are left out");
        assert!(!table.contains("OTLP"), "no OTLP run, no OTLP rows");
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("summary.json")).expect("summary"),
        )
        .expect("json");
        assert_eq!(summary["inputs"]["xadd"]["payload_bytes"], 250);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn otlp_is_set_beside_the_keyed_json_batches_of_the_same_run() {
        let dir = std::env::temp_dir().join(format!("eventline-bench-otlp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write =
            |name: &str, v: Value| std::fs::write(dir.join(name), v.to_string()).expect("write");
        // JSON: 1,000,000 events in 20 + 5 s; OTLP: 900,000 in 20 + 10 s.
        write(
            "batch-max-keyed.json",
            json!({"events_accepted": 1_000_000, "events_per_second": 50000.0, "elapsed_seconds": 20.0,
                   "latency": {"p99_ms": 40.0},
                   "e2e": {"stored": 1_000_000, "lost": 0, "duplicates": 0, "drain_seconds": 5.0}}),
        );
        write(
            "otlp-max.json",
            json!({"events_accepted": 900_000, "events_per_second": 45000.0, "elapsed_seconds": 20.0,
                   "latency": {"p99_ms": 50.0},
                   "e2e": {"stored": 900_000, "lost": 0, "duplicates": 0, "drain_seconds": 10.0}}),
        );
        write(
            "cpu-batch-max-keyed.json",
            json!({"wall_seconds": 25.0, "cpu_seconds": {"generator": 2.0, "gateway": 4.0, "worker": 4.0, "redis": 12.0, "redis_forks": 0.0, "postgres": 13.0}}),
        );
        write(
            "cpu-otlp-max.json",
            json!({"wall_seconds": 30.0, "cpu_seconds": {"generator": 2.7, "gateway": 3.6, "worker": 3.6, "redis": 10.8, "redis_forks": 0.0, "postgres": 11.7}}),
        );
        let table = report(&dir).expect("report");
        let line = |start: &str| {
            table
                .lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in\n{table}"))
                .to_owned()
        };
        // 1,000,000 / 25 s and 900,000 / 30 s; ÷ COPY needs a COPY.
        assert!(
            line("| OTLP/HTTP logs").contains("30000 records/s stored from the first send until drained, 45000/s accepted (p99 50.0 ms); lost 0, duplicates 0"),
            "{table}"
        );
        assert!(line("| batch ingest, every event").contains("40000 events/s stored"));
        assert_eq!(
            line("| stored per second"),
            "| stored per second, end to end | 40000 | 30000 | 0.75 |"
        );
        // 4.0 s / 1,000,000 = 4 µs; 3.6 s / 900,000 = 4 µs: 1.00.
        assert_eq!(
            line("| µs of CPU per record: gateway"),
            "| µs of CPU per record: gateway | 4.0 | 4.0 | 1.00 |"
        );
        assert_eq!(
            line("| µs of CPU per record: generator"),
            "| µs of CPU per record: generator | 2.0 | 3.0 | 1.50 |"
        );
        assert_eq!(
            line("| µs of CPU per record: all"),
            "| µs of CPU per record: all | 35.0 | 36.0 | 1.03 |"
        );
        assert!(
            line("| otlp-max (900000 events)")
                .starts_with("| otlp-max (900000 events) | 3.0 · 0.09 | 4.0 · 0.12 |")
        );
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("summary.json")).expect("summary"),
        )
        .expect("json");
        assert_eq!(
            summary["otlp_vs_json"][1]["figure"],
            "µs of CPU per record: generator"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn redis_modes_set_the_cluster_beside_one_server_and_ack_1_beside_ack_0() {
        let dir =
            std::env::temp_dir().join(format!("eventline-bench-modes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write =
            |name: &str, v: Value| std::fs::write(dir.join(name), v.to_string()).expect("write");
        // Stored 1,000,000 / 800,000 / 600,000 events in 20 + 5 s.
        for (mode, stored, redis_cpu, p99) in [
            ("one-server", 1_000_000, 5.0, 2.0),
            ("cluster", 800_000, 6.0, 2.5),
            ("cluster-ack1", 600_000, 6.0, 5.0),
        ] {
            write(
                &format!("batch-max-{mode}.json"),
                json!({"events_accepted": stored, "elapsed_seconds": 20.0,
                       "e2e": {"stored": stored, "lost": 0, "duplicates": 0, "drain_seconds": 5.0}}),
            );
            write(
                &format!("cpu-batch-max-{mode}.json"),
                json!({"wall_seconds": 25.0, "cpu_seconds": {"generator": 1.0, "gateway": 2.0, "worker": 2.0, "redis": redis_cpu, "redis_forks": 0.0, "postgres": 10.0}}),
            );
            write(
                &format!("single-{mode}.json"),
                json!({"events_accepted": 100_000, "latency": {"p50_ms": 1.0, "p99_ms": p99},
                       "e2e": {"stored": 100_000, "lost": 0, "duplicates": 1}}),
            );
        }
        let table = report(&dir).expect("report");
        let line = |start: &str| {
            table
                .lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in\n{table}"))
                .to_owned()
        };
        assert_eq!(
            line("| batches, closed loop"),
            "| batches, closed loop: stored per second end to end | 40000 | 32000 | 24000 | 0.80 | 0.75 |"
        );
        // 6 s / 800,000 events = 7.5 µs; 6 s / 600,000 = 10 µs.
        assert_eq!(
            line("| batches: µs of CPU per event, Redis"),
            "| batches: µs of CPU per event, Redis (every node) | 5.0 | 7.5 | 10.0 | 1.50 | 1.33 |"
        );
        assert_eq!(
            line("| single events: p99"),
            "| single events: p99 ms | 2.00 | 2.50 | 5.00 | 1.25 | 2.00 |"
        );
        // No CPU file for the single runs: shown as NaN, no ratio.
        assert!(line("| single events: µs").ends_with("| NaN | NaN | NaN |  |  |"));
        assert!(
            line("| lost · duplicated").starts_with("| lost · duplicated (all runs) | 1 | 1 | 1 |")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
