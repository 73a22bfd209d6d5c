//! What a run measured: latency histograms (HDR, microseconds), status
//! counts, accepted ids with their dedup keys, and the report built from
//! them.
//!
//! Two latencies are kept per request. `latency` counts from when the
//! request was *due* (open loop) and includes waiting for a free connection
//! and any retries after 429/503, so a stall shows up in full rather than as
//! one slow request (no coordinated omission). `service_time` counts from
//! when the bytes were actually sent.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

/// Highest latency the histograms track: 5 minutes, in microseconds.
const MAX_MICROS: u64 = 300_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds are valid")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS);
    h.saturating_record(micros);
}

/// An accepted event: the id the gateway gave it (OTLP, which gives none:
/// the dedup key) and its dedup key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedEvent {
    pub id: Uuid,
    pub dedup_key: Uuid,
}

/// Everything recorded under one lock; connections record once per response.
pub struct Totals {
    pub latency: Histogram<u64>,
    pub service_time: Histogram<u64>,
    /// Latency since the last progress line.
    pub interval: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub accepted: Vec<AcceptedEvent>,
    /// Events the gateway refused inside an accepted batch.
    pub rejected_events: u64,
}

/// Shared by the connections; counters readable without the lock.
pub struct Recorder {
    pub totals: Mutex<Totals>,
    pub requests_done: AtomicU64,
    pub events_accepted: AtomicU64,
    pub retries: AtomicU64,
    pub transport_errors: AtomicU64,
    /// Requests given up after the drain deadline.
    pub abandoned: AtomicU64,
    keep_ids: bool,
}

impl Recorder {
    pub fn new(keep_ids: bool) -> Self {
        Self {
            totals: Mutex::new(Totals {
                latency: histogram(),
                service_time: histogram(),
                interval: histogram(),
                statuses: BTreeMap::new(),
                accepted: Vec::new(),
                rejected_events: 0,
            }),
            requests_done: AtomicU64::new(0),
            events_accepted: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            transport_errors: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            keep_ids,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A response that will be retried (429, 503): counted by status only.
    pub fn retryable(&self, status: u16) {
        *self.lock().statuses.entry(status).or_default() += 1;
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A final answer.
    pub fn done(
        &self,
        status: u16,
        latency: Duration,
        service_time: Duration,
        accepted: &[AcceptedEvent],
        rejected: u64,
    ) {
        let mut t = self.lock();
        *t.statuses.entry(status).or_default() += 1;
        record(&mut t.latency, latency);
        record(&mut t.service_time, service_time);
        record(&mut t.interval, latency);
        t.rejected_events += rejected;
        if self.keep_ids {
            t.accepted.extend_from_slice(accepted);
        }
        drop(t);
        self.requests_done.fetch_add(1, Ordering::Relaxed);
        self.events_accepted
            .fetch_add(accepted.len() as u64, Ordering::Relaxed);
    }

    /// Events accepted whose ids or keys are not known (an OTLP export with
    /// refused records does not say which): counted, not checked end to end.
    pub fn accepted_unattributed(&self, events: u64) {
        self.events_accepted.fetch_add(events, Ordering::Relaxed);
    }

    /// The interval histogram's p99 and count, reset for the next interval.
    pub fn take_interval(&self) -> (u64, u64) {
        let mut t = self.lock();
        let out = (t.interval.value_at_quantile(0.99), t.interval.len());
        t.interval.reset();
        out
    }

    pub fn into_totals(self) -> Totals {
        self.totals
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// The end-to-end part of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndToEnd {
    /// Distinct dedup keys among accepted events: what must be stored.
    pub expected: u64,
    /// Expected keys found in PostgreSQL.
    pub stored: u64,
    /// Expected keys never found before the timeout.
    pub lost: u64,
    /// Extra rows for a dedup key already stored.
    pub duplicates: u64,
    /// Rows of this run's services whose key was never accepted (e.g. a 202
    /// lost with its connection).
    pub unexpected: u64,
    /// From the last response to the last expected row being visible.
    pub drain_seconds: f64,
    pub timed_out: bool,
    /// Accepted → visible in PostgreSQL, for sampled events.
    pub lag: Option<Percentiles>,
    pub lag_samples_unseen: u64,
    /// The lag's resolution: poll interval plus the slowest poll query.
    pub lag_resolution_ms: f64,
}

/// A run's report, also written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub label: String,
    pub plan: crate::scenario::Plan,
    /// From the first request to the last answer.
    pub elapsed_seconds: f64,
    pub requests: u64,
    pub requests_per_second: f64,
    pub events_accepted: u64,
    pub events_per_second: f64,
    pub events_rejected: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub retries: u64,
    pub transport_errors: u64,
    pub abandoned: u64,
    /// From the due time (open loop) or the first send (closed loop).
    pub latency: Percentiles,
    /// From the last send of the request.
    pub service_time: Percentiles,
    pub e2e: Option<EndToEnd>,
}

impl Report {
    pub fn new(
        label: String,
        plan: crate::scenario::Plan,
        elapsed: Duration,
        recorder: &Recorder,
        totals: &Totals,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let requests = recorder.requests_done.load(Ordering::Relaxed);
        let events = recorder.events_accepted.load(Ordering::Relaxed);
        Self {
            label,
            plan,
            elapsed_seconds: seconds,
            requests,
            requests_per_second: requests as f64 / seconds,
            events_accepted: events,
            events_per_second: events as f64 / seconds,
            events_rejected: totals.rejected_events,
            statuses: totals.statuses.clone(),
            retries: recorder.retries.load(Ordering::Relaxed),
            transport_errors: recorder.transport_errors.load(Ordering::Relaxed),
            abandoned: recorder.abandoned.load(Ordering::Relaxed),
            latency: Percentiles::of(&totals.latency),
            service_time: Percentiles::of(&totals.service_time),
            e2e: None,
        }
    }

    /// The human summary printed at the end of a run.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let p = &self.latency;
        let s = &self.service_time;
        out.push_str(&format!(
            "{label}: {req} requests in {secs:.1} s: {rps:.0} requests/s, {eps:.0} events/s accepted\n\
             statuses {statuses}; rejected events {rej}; retries {retries}; transport errors {terr}; abandoned {ab}\n\
             latency (from due time) p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n\
             service time (from send) p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n",
            p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms,
            s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms,
            label = self.label,
            req = self.requests,
            secs = self.elapsed_seconds,
            rps = self.requests_per_second,
            eps = self.events_per_second,
            statuses = statuses.join(", "),
            rej = self.events_rejected,
            retries = self.retries,
            terr = self.transport_errors,
            ab = self.abandoned,
        ));
        if let Some(e) = &self.e2e {
            out.push_str(&format!(
                "end to end: expected {} stored {} lost {} duplicates {} unexpected {}; drained {:.2} s after the last answer{}\n",
                e.expected,
                e.stored,
                e.lost,
                e.duplicates,
                e.unexpected,
                e.drain_seconds,
                if e.timed_out { " (TIMED OUT)" } else { "" }
            ));
            if let Some(l) = &e.lag {
                out.push_str(&format!(
                    "ingest-to-queryable lag ({} samples, resolution {:.0} ms) p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms; unseen {}\n",
                    l.count, e.lag_resolution_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, e.lag_samples_unseen
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Overrides, Plan, Scenario};

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        // Three significant digits.
        assert!((p.p50_ms - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.p999_ms - 999.0).abs() < 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn the_report_counts_what_was_recorded() {
        let r = Recorder::new(true);
        let ev = AcceptedEvent {
            id: Uuid::now_v7(),
            dedup_key: Uuid::now_v7(),
        };
        r.retryable(429);
        r.done(
            202,
            Duration::from_millis(3),
            Duration::from_millis(1),
            &[ev, ev],
            1,
        );
        r.done(
            400,
            Duration::from_millis(1),
            Duration::from_millis(1),
            &[],
            0,
        );
        let (p99, n) = r.take_interval();
        assert_eq!(n, 2);
        assert!(p99 >= 2900, "{p99}");
        assert_eq!(r.take_interval().1, 0, "the interval resets");
        let plan = Plan::resolve(&Scenario::default(), &Overrides::default()).expect("plan");
        let totals_snapshot = r.into_totals();
        let r2 = Recorder::new(false);
        r2.requests_done.store(2, Ordering::Relaxed);
        r2.events_accepted.store(2, Ordering::Relaxed);
        r2.retries.store(1, Ordering::Relaxed);
        let report = Report::new(
            "t".into(),
            plan,
            Duration::from_secs(2),
            &r2,
            &totals_snapshot,
        );
        assert_eq!(report.statuses.get(&202), Some(&1));
        assert_eq!(report.statuses.get(&429), Some(&1));
        assert_eq!(report.statuses.get(&400), Some(&1));
        assert_eq!(report.events_rejected, 1);
        assert_eq!(report.requests_per_second, 1.0);
        assert_eq!(totals_snapshot.accepted.len(), 2);
        let text = report.render();
        assert!(text.contains("202: 1") && text.contains("429: 1"), "{text}");
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["latency"]["count"], 2);
    }
}
