//! The Prometheus registry every service creates in `main` and passes down
//! (never a global, so parallel tests do not collide), and its text encoding.
//!
//! Naming: `eventline_<area>_<name>_<unit>`, `_total` for counters, labels
//! from small fixed sets only (never a service name or client address).

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

pub const BUILD_INFO: &str = "eventline_build_info";

/// A registry with `eventline_build_info{version, component}` set to 1.
pub fn new_registry(component: &'static str) -> Registry {
    let registry = Registry::new();
    let info = IntGaugeVec::new(
        Opts::new(
            BUILD_INFO,
            "Always 1; labels say which build and component this is.",
        ),
        &["version", "component"],
    )
    .and_then(|gauge| {
        gauge
            .with_label_values(&[env!("CARGO_PKG_VERSION"), component])
            .set(1);
        registry.register(Box::new(gauge.clone())).map(|()| gauge)
    });
    if let Err(e) = info {
        // Only a programming error (a bad name) gets here; metrics are not
        // worth failing start-up for.
        tracing::warn!(error = %e, metric = BUILD_INFO, "cannot register the metric");
    }
    registry
}

/// The registry in Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, prometheus::Error> {
    let mut buf = Vec::with_capacity(4096);
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// Registers a collector, turning a duplicate registration into an error
/// naming the metric.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

/// The route label of a request: its matched path template
/// (`/v1/events/{id}`), never the raw path, so the label set stays bounded.
pub fn route_label(req: &axum::extract::Request) -> String {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str)
        .to_owned()
}

/// Counts one answered request by route and status and observes how long it
/// took, by route: the request metrics every HTTP service exports.
pub fn observe_request(
    requests: &prometheus::IntCounterVec,
    durations: &prometheus::HistogramVec,
    route: &str,
    status: axum::http::StatusCode,
    started: std::time::Instant,
) {
    requests.with_label_values(&[route, status.as_str()]).inc();
    durations
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
}
