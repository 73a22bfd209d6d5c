//! Scenario files (TOML) and the resolved plan of a run.
//!
//! A scenario names the shape of the load: open or closed loop, connections,
//! batch size, phases of target rates (open loop) or a duration (closed
//! loop), and the events' shape. Flags on the command line override it, so
//! `--scenario steady.toml --rate 30000` is the steady shape at another rate.
//!
//! ```toml
//! description = "10x spike for 10 s"
//! mode = "open"
//! connections = 32
//! batch_size = 100
//! [[phases]]
//! duration = "20s"
//! rate = 6000        # events per second
//! [[phases]]
//! duration = "10s"
//! rate = 60000
//! [events]
//! duplicate_share = 0.02
//! ```
//!
//! `format = "otlp"` sends the same events as OTLP/HTTP logs (protobuf, on
//! `/v1/logs`, `batch_size` records per request) instead of eventline's JSON.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event_gen::{EventShape, Format};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Requests are sent on a schedule at the target rate whatever the
    /// answers take; latency counts from the scheduled send time.
    Open,
    /// Each connection sends its next request when the previous one is
    /// answered, as fast as it can.
    Closed,
}

/// A duration written as `500ms`, `30s`, `10m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TextDuration(pub Duration);

impl TryFrom<String> for TextDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_duration(&s).map(TextDuration)
    }
}

impl From<TextDuration> for String {
    fn from(d: TextDuration) -> String {
        format!("{}ms", d.0.as_millis())
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 30s, 10m or 1h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub duration: TextDuration,
    /// Target events per second during the phase.
    pub rate: f64,
}

/// A scenario file as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub description: Option<String>,
    pub mode: Option<Mode>,
    pub connections: Option<u32>,
    /// `json` (the default) or `otlp`.
    pub format: Option<Format>,
    /// Events per request on `/v1/events/batch`; absent or 0 for
    /// single-event requests on `/v1/events`. OTLP: records per request
    /// (absent or 0: one).
    pub batch_size: Option<u32>,
    /// Closed loop: how long to send.
    pub duration: Option<TextDuration>,
    /// Stop after this many events (whichever comes first).
    pub max_events: Option<u64>,
    #[serde(default)]
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub events: EventShape,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ScenarioError::Parse { source, .. } => ScenarioError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        toml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: "scenario".into(),
            source,
        })
    }
}

/// When each request is due (open loop): piecewise-constant rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// (phase length, requests per second).
    phases: Vec<(Duration, f64)>,
}

impl Schedule {
    /// `phases` in events per second, turned into requests per second.
    pub fn new(phases: &[Phase], events_per_request: u32) -> Self {
        Self {
            phases: phases
                .iter()
                .map(|p| (p.duration.0, p.rate / f64::from(events_per_request)))
                .collect(),
        }
    }

    /// Offset from the start at which request `k` (0-based) is due, or
    /// `None` when the schedule has ended before it.
    pub fn due(&self, k: u64) -> Option<Duration> {
        let mut start = Duration::ZERO;
        let mut first = 0f64;
        let k = k as f64;
        for &(length, rate) in &self.phases {
            let count = (length.as_secs_f64() * rate).floor();
            if k < first + count {
                return Some(start + Duration::from_secs_f64((k - first) / rate));
            }
            first += count;
            start += length;
        }
        None
    }

    pub fn length(&self) -> Duration {
        self.phases.iter().map(|p| p.0).sum()
    }

    pub fn total_requests(&self) -> u64 {
        self.phases
            .iter()
            .map(|&(l, r)| (l.as_secs_f64() * r).floor() as u64)
            .sum()
    }
}

/// How long to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum Pacing {
    Open { schedule: Schedule },
    Closed { duration: Duration },
}

/// A run, resolved from the scenario and the flags.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub pacing: Pacing,
    pub connections: u32,
    pub format: Format,
    /// `None`: single-event requests.
    pub batch_size: Option<u32>,
    /// Stop after this many requests.
    pub max_requests: Option<u64>,
    pub shape: EventShape,
}

/// What the command line may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub mode: Option<Mode>,
    pub connections: Option<u32>,
    pub format: Option<Format>,
    pub batch_size: Option<u32>,
    pub duration: Option<Duration>,
    pub rate: Option<f64>,
    pub rate_scale: Option<f64>,
    pub max_events: Option<u64>,
    pub shape: ShapeOverrides,
}

#[derive(Debug, Clone, Default)]
pub struct ShapeOverrides {
    pub services: Option<u32>,
    pub event_id_share: Option<f64>,
    pub duplicate_share: Option<f64>,
    pub message_median: Option<u32>,
    pub metadata: Option<crate::event_gen::MetadataKind>,
}

/// The scenario's events with the overrides applied, and the format (OTLP
/// records all carry an `event_id`).
fn resolve_shape(
    scenario: &Scenario,
    o: &Overrides,
) -> Result<(EventShape, Format), ScenarioError> {
    let invalid = |m: String| ScenarioError::Invalid(m);
    let mut shape = scenario.events.clone();
    let s = &o.shape;
    shape.services = s.services.unwrap_or(shape.services);
    shape.event_id_share = s.event_id_share.unwrap_or(shape.event_id_share);
    shape.duplicate_share = s.duplicate_share.unwrap_or(shape.duplicate_share);
    shape.message_median = s.message_median.unwrap_or(shape.message_median);
    shape.metadata = s.metadata.unwrap_or(shape.metadata);
    let format = o.format.or(scenario.format).unwrap_or_default();
    if format != Format::Json {
        // Every OTLP record has an id (and the answer names none: records
        // are found by dedup key); its JSON twin has one too.
        if let Some(share) = s.event_id_share.filter(|&share| share != 1.0) {
            return Err(invalid(format!(
                "event_id_share {share}: every OTLP record carries an event_id (log.record.uid)"
            )));
        }
        shape.event_id_share = 1.0;
    }
    shape.check().map_err(invalid)?;
    Ok((shape, format))
}

/// Closed loop for a duration, or open loop through the phases (one at
/// `--rate` when given), scaled by `rate_scale`.
fn resolve_pacing(
    scenario: &Scenario,
    o: &Overrides,
    per_request: u32,
) -> Result<Pacing, ScenarioError> {
    let invalid = |m: String| ScenarioError::Invalid(m);
    let duration = o.duration.or(scenario.duration.map(|d| d.0));
    let mode =
        o.mode
            .or(scenario.mode)
            .unwrap_or(if o.rate.is_some() || !scenario.phases.is_empty() {
                Mode::Open
            } else {
                Mode::Closed
            });
    if mode == Mode::Closed {
        return Ok(Pacing::Closed {
            duration: duration.unwrap_or(Duration::from_secs(10)),
        });
    }
    let mut phases = match o.rate {
        // A rate on the command line: one phase at it.
        Some(rate) => vec![Phase {
            duration: TextDuration(duration.unwrap_or(Duration::from_secs(10))),
            rate,
        }],
        None => scenario.phases.clone(),
    };
    if phases.is_empty() {
        return Err(invalid(
            "open loop needs a --rate or [[phases]] in the scenario".into(),
        ));
    }
    let scale = o.rate_scale.unwrap_or(1.0);
    for p in &mut phases {
        p.rate *= scale;
        if !(p.rate.is_finite() && p.rate > 0.0) {
            return Err(invalid(format!(
                "phase rate must be positive, not {}",
                p.rate
            )));
        }
    }
    Ok(Pacing::Open {
        schedule: Schedule::new(&phases, per_request),
    })
}

impl Plan {
    pub fn resolve(scenario: &Scenario, o: &Overrides) -> Result<Self, ScenarioError> {
        let (shape, format) = resolve_shape(scenario, o)?;
        let batch_size = match o.batch_size.or(scenario.batch_size).unwrap_or(0) {
            0 => None,
            n @ 1..=1000 => Some(n),
            n => {
                return Err(ScenarioError::Invalid(format!(
                    "batch_size {n} is over the gateway's 1000"
                )));
            }
        };
        let per_request = batch_size.unwrap_or(1);
        let connections = o.connections.or(scenario.connections).unwrap_or(16);
        if connections == 0 {
            return Err(ScenarioError::Invalid(
                "connections must be at least 1".into(),
            ));
        }
        let pacing = resolve_pacing(scenario, o, per_request)?;
        let max_requests = o
            .max_events
            .or(scenario.max_events)
            .map(|events| events.div_ceil(u64::from(per_request)));
        Ok(Self {
            pacing,
            connections,
            format,
            batch_size,
            max_requests,
            shape,
        })
    }

    pub fn events_per_request(&self) -> u32 {
        self.batch_size.unwrap_or(1)
    }

    /// How long sending lasts at most.
    pub fn send_window(&self) -> Duration {
        match &self.pacing {
            Pacing::Open { schedule } => schedule.length(),
            Pacing::Closed { duration } => *duration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_gen::MetadataKind;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn a_spike_scenario_resolves_to_its_schedule() {
        let s = Scenario::parse(
            r#"
            description = "spike"
            connections = 8
            batch_size = 100
            [[phases]]
            duration = "20s"
            rate = 1000
            [[phases]]
            duration = "10s"
            rate = 10000
            [events]
            duplicate_share = 0.2
            metadata = "big"
            "#,
        )
        .expect("parses");
        let plan = Plan::resolve(&s, &Overrides::default()).expect("resolves");
        assert_eq!(plan.batch_size, Some(100));
        assert_eq!(plan.shape.metadata, MetadataKind::Big);
        assert_eq!(plan.shape.duplicate_share, 0.2);
        let Pacing::Open { schedule } = &plan.pacing else {
            panic!("open loop")
        };
        // 10 req/s for 20 s, then 100 req/s for 10 s.
        assert_eq!(schedule.total_requests(), 200 + 1000);
        assert_eq!(schedule.due(0), Some(Duration::ZERO));
        assert_eq!(schedule.due(10), Some(Duration::from_secs(1)));
        assert_eq!(schedule.due(200), Some(Duration::from_secs(20)));
        assert_eq!(schedule.due(250), Some(Duration::from_millis(20_500)));
        assert_eq!(schedule.due(1200), None);
        assert_eq!(plan.send_window(), Duration::from_secs(30));
    }

    #[test]
    fn flags_override_the_scenario() {
        let s = Scenario::parse("mode = \"closed\"\nconnections = 4\nduration = \"5s\"")
            .expect("parses");
        let o = Overrides {
            mode: Some(Mode::Open),
            rate: Some(500.0),
            rate_scale: Some(2.0),
            duration: Some(Duration::from_secs(2)),
            max_events: Some(150),
            batch_size: Some(0),
            ..Overrides::default()
        };
        let plan = Plan::resolve(&s, &o).expect("resolves");
        assert_eq!(plan.connections, 4);
        assert_eq!(plan.batch_size, None);
        assert_eq!(plan.max_requests, Some(150));
        let Pacing::Open { schedule } = &plan.pacing else {
            panic!("open loop")
        };
        assert_eq!(schedule.total_requests(), 2000);
    }

    #[test]
    fn otlp_runs_give_every_event_an_event_id() {
        let s =
            Scenario::parse("format = \"otlp\"\nbatch_size = 50\n[events]\nevent_id_share = 0.3")
                .expect("parses");
        let plan = Plan::resolve(&s, &Overrides::default()).expect("resolves");
        assert_eq!(plan.format, Format::Otlp);
        assert_eq!(plan.shape.event_id_share, 1.0);
        let json = Overrides {
            format: Some(Format::Json),
            ..Overrides::default()
        };
        let plan = Plan::resolve(&s, &json).expect("resolves");
        assert_eq!(
            (plan.format, plan.shape.event_id_share),
            (Format::Json, 0.3)
        );
        let o = Overrides {
            shape: ShapeOverrides {
                event_id_share: Some(0.5),
                ..ShapeOverrides::default()
            },
            ..Overrides::default()
        };
        let err = Plan::resolve(&s, &o).expect_err("a share below 1 is refused");
        assert!(err.to_string().contains("log.record.uid"), "{err}");
        assert_eq!(
            Plan::resolve(&Scenario::default(), &Overrides::default())
                .expect("resolves")
                .format,
            Format::Json
        );
    }

    #[test]
    fn bad_scenarios_are_refused_with_a_reason() {
        let unknown = Scenario::parse("connectons = 4").expect_err("typo refused");
        assert!(unknown.to_string().contains("connectons"), "{unknown}");
        let s = Scenario::parse("mode = \"open\"").expect("parses");
        let err = Plan::resolve(&s, &Overrides::default()).expect_err("no rate");
        assert!(err.to_string().contains("rate"), "{err}");
        let s = Scenario::parse("batch_size = 5000").expect("parses");
        assert!(Plan::resolve(&s, &Overrides::default()).is_err());
        let s = Scenario::parse("[events]\nduplicate_share = 1.5").expect("parses");
        assert!(Plan::resolve(&s, &Overrides::default()).is_err());
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = Scenario::load(&path).expect("parses");
                Plan::resolve(&s, &Overrides::default()).expect("resolves");
                seen += 1;
            }
        }
        assert!(seen >= 5, "{seen} scenarios");
    }
}
