//! Sending: one task per keep-alive connection, taking request numbers from
//! a shared counter. Open loop: request `k` is due at `schedule.due(k)`; a
//! connection that falls behind sends late requests at once, and their
//! latency counts from when they were due. Closed loop: each connection sends
//! back to back until the duration is up.
//!
//! An OTLP export's 200 names no ids: its records all carry an `event_id`,
//! so each accepted record is kept by its dedup key, and a request with
//! refused records (`partial_success`) has its keys left out, since the
//! answer does not say which were refused.
//!
//! 429 and 503 are answers the pipeline is right to give under load: the
//! request waits `Retry-After` and is sent again (each such answer is
//! counted). Nothing is retried after the drain deadline; what is still
//! unanswered then is counted as abandoned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::{Answer, Connection, Endpoint, Target, accepted_ids, otlp_rejected};
use crate::event_gen::{EventGen, Format, GeneratedEvent, request_body};
use crate::scenario::{Pacing, Plan};
use crate::stats::{AcceptedEvent, Recorder};

/// Samples of accepted events for the lag measurement: (dedup key, when the
/// 202 arrived). By key, not id: of two accepted copies of one event (a
/// client retry) either may be the one stored.
pub type LagSample = (Uuid, std::time::Instant);

/// Taps accepted events for the lag measurement, at most one per `every`.
pub struct LagTap {
    pub tx: mpsc::UnboundedSender<LagSample>,
    pub every: Duration,
}

pub struct RunConfig {
    pub target: Target,
    pub plan: Plan,
    pub seed: u64,
    /// Makes this run's service names and event ids unique.
    pub run_tag: String,
    pub services: Arc<[String]>,
    /// How long after the send window answers are still waited for.
    pub drain_timeout: Duration,
    /// Keep every accepted id (end-to-end mode).
    pub keep_ids: bool,
    pub progress: bool,
    pub lag: Option<LagTap>,
}

const TIMER_TICK: Duration = Duration::from_millis(1);

struct Shared {
    config: RunConfig,
    recorder: Recorder,
    next: AtomicU64,
    start: Instant,
    deadline: Instant,
    /// Micros since start of the last lag sample.
    last_sample: AtomicU64,
}

/// Runs the plan; returns how long it took (first send to last answer) and
/// what was recorded.
pub async fn run(config: RunConfig) -> (Duration, Recorder) {
    let start = Instant::now();
    let deadline = start + config.plan.send_window() + config.drain_timeout;
    let connections = config.plan.connections;
    let recorder = Recorder::new(config.keep_ids);
    let shared = Arc::new(Shared {
        config,
        recorder,
        next: AtomicU64::new(0),
        start,
        deadline,
        last_sample: AtomicU64::new(0),
    });
    let stop_progress = CancellationToken::new();
    let progress = shared
        .config
        .progress
        .then(|| tokio::spawn(progress_lines(shared.clone(), stop_progress.clone())));
    let tasks: Vec<_> = (0..connections)
        .map(|i| tokio::spawn(connection_loop(i, shared.clone())))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed();
    stop_progress.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    let shared = Arc::into_inner(shared).expect("every task has ended");
    (elapsed, shared.recorder)
}

async fn connection_loop(index: u32, shared: Arc<Shared>) {
    let c = &shared.config;
    let mut generator = EventGen::new(
        c.plan.shape.clone(),
        c.services.clone(),
        &c.run_tag,
        index,
        c.seed,
    )
    .with_format(c.plan.format);
    let endpoint = match (c.plan.format, c.plan.batch_size) {
        (Format::Otlp, _) => Endpoint::LOGS,
        (Format::Json | Format::JsonAsOtlp, Some(_)) => Endpoint::BATCH,
        (Format::Json | Format::JsonAsOtlp, None) => Endpoint::EVENTS,
    };
    let mut connection: Option<Connection> = None;
    let mut events = Vec::new();
    loop {
        let ticket = shared.next.fetch_add(1, Ordering::Relaxed);
        if c.plan.max_requests.is_some_and(|max| ticket >= max) {
            break;
        }
        let due = match &c.plan.pacing {
            Pacing::Open { schedule } => match schedule.due(ticket) {
                Some(offset) => shared.start + offset,
                None => break,
            },
            Pacing::Closed { duration } => {
                let now = Instant::now();
                if now >= shared.start + *duration {
                    break;
                }
                now
            }
        };
        // tokio's timer rounds deadlines up to its next millisecond tick:
        // aim a tick early so the send is not up to 1 ms late (latency then
        // counts from the earlier of due and sent).
        tokio::time::sleep_until(due.checked_sub(TIMER_TICK).unwrap_or(due)).await;
        let body = request_body(&mut generator, c.plan.batch_size, &mut events);
        send_until_answered(&shared, &mut connection, endpoint, &body, &events, due).await;
    }
}

async fn send_until_answered(
    shared: &Shared,
    connection: &mut Option<Connection>,
    endpoint: Endpoint,
    body: &[u8],
    events: &[GeneratedEvent],
    due: Instant,
) {
    let c = &shared.config;
    let r = &shared.recorder;
    let mut first_sent = None;
    loop {
        if Instant::now() >= shared.deadline {
            r.abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(conn) = connected(shared, connection).await else {
            continue;
        };
        let sent = Instant::now();
        first_sent.get_or_insert(sent);
        let answer =
            match tokio::time::timeout_at(shared.deadline, conn.send(&c.target, endpoint, body))
                .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => {
                    // The gateway may have taken it before the connection
                    // broke; a re-send is the same event (the pipeline
                    // stores it once) or shows up as an "unexpected" row.
                    r.transport_errors.fetch_add(1, Ordering::Relaxed);
                    *connection = None;
                    continue;
                }
                Err(_) => {
                    // No answer by the drain deadline.
                    r.abandoned.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
        if conn.is_closing() {
            *connection = None;
        }
        if answer.status == 429 || answer.status == 503 {
            r.retryable(answer.status);
            let wait = answer.retry_after.unwrap_or(Duration::from_secs(1));
            tokio::time::sleep_until((Instant::now() + wait).min(shared.deadline)).await;
            continue;
        }
        let now = Instant::now();
        let taken = Taken::from_answer(r, &answer, endpoint, events);
        let origin = first_sent.map_or(due, |first| first.min(due));
        r.done(
            answer.status,
            now - origin,
            now - sent,
            &taken.accepted,
            taken.rejected,
        );
        if let (Some(tap), Some(key)) = (&c.lag, taken.lag_sample) {
            sample_lag(shared, tap, key);
        }
        return;
    }
}

/// The connection, opened when there is none; None (after a pause, the
/// failure counted) when it cannot be opened.
async fn connected<'a>(
    shared: &Shared,
    connection: &'a mut Option<Connection>,
) -> Option<&'a mut Connection> {
    if connection.is_none() {
        match Connection::open(&shared.config.target).await {
            Ok(conn) => *connection = Some(conn),
            Err(_) => {
                shared
                    .recorder
                    .transport_errors
                    .fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                return None;
            }
        }
    }
    connection.as_mut()
}

/// What a final answer says the gateway took.
#[derive(Default)]
struct Taken {
    accepted: Vec<AcceptedEvent>,
    rejected: u64,
    /// An accepted event to measure the lag with.
    lag_sample: Option<Uuid>,
}

impl Taken {
    fn from_answer(
        r: &Recorder,
        answer: &Answer,
        endpoint: Endpoint,
        events: &[GeneratedEvent],
    ) -> Self {
        if answer.status == 200 && endpoint == Endpoint::LOGS {
            Self::from_export(r, &answer.body, events)
        } else if answer.status == 202 {
            Self::from_accepted(&answer.body, events)
        } else {
            Taken::default()
        }
    }

    /// An OTLP export's 200: every record by its dedup key, unless some
    /// were refused (then none is checked end to end).
    fn from_export(r: &Recorder, body: &[u8], events: &[GeneratedEvent]) -> Self {
        let mut taken = Taken::default();
        match otlp_rejected(body) {
            Ok((0, _)) => {
                taken.accepted = events
                    .iter()
                    .filter_map(|e| e.dedup_key)
                    .map(|key| AcceptedEvent {
                        id: key,
                        dedup_key: key,
                    })
                    .collect();
            }
            Ok((n, reason)) => {
                taken.rejected = n;
                r.accepted_unattributed((events.len() as u64).saturating_sub(n));
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "eventline-load: {n} OTLP records refused ({reason}); the request's other records are not checked end to end"
                    );
                }
            }
            Err(error) => eprintln!("eventline-load: {error}"),
        }
        taken
    }

    /// A 202: the ids it gave the events it accepted.
    fn from_accepted(body: &[u8], events: &[GeneratedEvent]) -> Self {
        let mut taken = Taken::default();
        match accepted_ids(body, events.len()) {
            Ok((pairs, n)) => {
                taken.rejected = n;
                // Sample an event without an `event_id`: it is sent
                // once and stored under the id the 202 gave it. (An
                // event with one may be stored under the id of a
                // re-send that overtook it, or be seen at once when
                // it is itself a re-send.)
                taken.lag_sample = pairs
                    .iter()
                    .find(|(i, _)| events[*i].dedup_key.is_none())
                    .map(|&(_, id)| id);
                taken.accepted = pairs
                    .into_iter()
                    .map(|(i, id)| AcceptedEvent {
                        id,
                        dedup_key: events[i].dedup_key.unwrap_or(id),
                    })
                    .collect();
            }
            Err(error) => eprintln!("eventline-load: {error}"),
        }
        taken
    }
}

fn sample_lag(shared: &Shared, tap: &LagTap, id: Uuid) {
    let now = u64::try_from(shared.start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let last = shared.last_sample.load(Ordering::Relaxed);
    let every = u64::try_from(tap.every.as_micros()).unwrap_or(u64::MAX);
    if now.saturating_sub(last) >= every
        && shared
            .last_sample
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let _ = tap.tx.send((id, std::time::Instant::now()));
    }
}

/// Once a second on stderr: rates over the last second, p99 latency over
/// the last second, and the totals.
async fn progress_lines(shared: Arc<Shared>, stop: CancellationToken) {
    let r = &shared.recorder;
    let mut tick = tokio::time::interval_at(
        shared.start + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let (mut last_req, mut last_ev) = (0, 0);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let req = r.requests_done.load(Ordering::Relaxed);
        let ev = r.events_accepted.load(Ordering::Relaxed);
        let (p99, _) = r.take_interval();
        eprintln!(
            "[{:>5.0} s] {:>8} req/s {:>9} events/s  p99 {:>8.2} ms  | total {} events, {} retries (429/503), {} transport errors",
            shared.start.elapsed().as_secs_f64(),
            req - last_req,
            ev - last_ev,
            p99 as f64 / 1000.0,
            ev,
            r.retries.load(Ordering::Relaxed),
            r.transport_errors.load(Ordering::Relaxed),
        );
        (last_req, last_ev) = (req, ev);
    }
}
