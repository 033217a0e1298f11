//! Prometheus metrics (prometheus-client; no global recorder, so every [`Metrics`] is its own
//! registry and tests can build as many apps as they like).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: Cow<'static, str>,
    route: Cow<'static, str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// What a relayed WebSocket (or other upgraded connection) is, for the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsKind {
    /// A session's public endpoint (`/{session_id}/ws`).
    Session,
    /// An upgrade through `/proxy/...`.
    Proxy,
    /// A terminal (`/v1/sandboxes/{id}/pty`).
    Pty,
}

impl WsKind {
    fn as_str(self) -> &'static str {
        match self {
            WsKind::Session => "session",
            WsKind::Proxy => "proxy",
            WsKind::Pty => "pty",
        }
    }
}

/// Counts one open connection in `sqrx_websockets_open` until dropped.
#[derive(Debug)]
pub struct OpenConnection {
    gauge: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpLabels>,
    sandboxes: Family<StateLabels, Gauge>,
    layers: Gauge,
    execs: Family<OutcomeLabels, Counter>,
    exec_duration: HistogramFamily<OutcomeLabels>,
    js: Family<StatusLabels, Counter>,
    js_duration: Histogram,
    sessions_opened: Family<OutcomeLabels, Counter>,
    sessions_active: Gauge,
    websockets: Family<KindLabels, Gauge>,
    websockets_total: Family<KindLabels, Counter>,
    egress: Family<DecisionLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How an exec ended, for the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Exit code 0.
    Success,
    /// A non-zero exit or a signal.
    Failure,
    /// Killed by its timeout.
    Timeout,
    /// Could not be run (or the connection to init failed).
    Error,
}

impl ExecOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ExecOutcome::Success => "success",
            ExecOutcome::Failure => "failure",
            ExecOutcome::Timeout => "timeout",
            ExecOutcome::Error => "error",
        }
    }

    /// The outcome of a finished exec.
    pub fn of(result: &sqrx_core::ExecResult) -> Self {
        if result.timed_out {
            ExecOutcome::Timeout
        } else if result.exit_code == Some(0) {
            ExecOutcome::Success
        } else {
            ExecOutcome::Failure
        }
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "sqrx_http_requests",
            "HTTP requests by method, route and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "sqrx_http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            http_duration.clone(),
        );
        let sandboxes = Family::<StateLabels, Gauge>::default();
        registry.register(
            "sqrx_sandboxes",
            "Sandboxes by state (running, paused)",
            sandboxes.clone(),
        );
        let layers = Gauge::default();
        registry.register("sqrx_layers", "Layers in the store", layers.clone());
        let execs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sqrx_execs",
            "Sandbox execs by outcome (success, failure, timeout, error)",
            execs.clone(),
        );
        let exec_duration: HistogramFamily<OutcomeLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "sqrx_exec_duration_seconds",
            "Sandbox exec wall time by outcome",
            exec_duration.clone(),
        );
        let js = Family::<StatusLabels, Counter>::default();
        registry.register(
            "sqrx_js_executions",
            "JavaScript executions by status (success, error, timeout, out_of_memory)",
            js.clone(),
        );
        let js_duration = latency_histogram();
        registry.register(
            "sqrx_js_execution_duration_seconds",
            "JavaScript execution time",
            js_duration.clone(),
        );
        let sessions_opened = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sqrx_sessions_opened",
            "POST /v1/try by outcome (success, error)",
            sessions_opened.clone(),
        );
        let sessions_active = Gauge::default();
        registry.register(
            "sqrx_sessions_active",
            "Sessions starting or running",
            sessions_active.clone(),
        );
        let websockets = Family::<KindLabels, Gauge>::default();
        registry.register(
            "sqrx_websockets_open",
            "Relayed WebSockets and upgraded connections open now, by kind (session, proxy, pty)",
            websockets.clone(),
        );
        let websockets_total = Family::<KindLabels, Counter>::default();
        registry.register(
            "sqrx_websockets",
            "Relayed WebSockets and upgraded connections opened, by kind",
            websockets_total.clone(),
        );
        let egress = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "sqrx_egress_secret_requests",
            "Requests carrying a secret's placeholder, by the egress proxy's decision \
             (substituted, refused); from the audit log",
            egress.clone(),
        );
        Metrics {
            egress,
            registry,
            sessions_opened,
            sessions_active,
            websockets,
            websockets_total,
            http_requests,
            http_duration,
            sandboxes,
            layers,
            execs,
            exec_duration,
            js,
            js_duration,
        }
    }

    /// Count one HTTP request.
    pub fn http(&self, method: &Method, route: Cow<'static, str>, status: u16, seconds: f64) {
        let labels = HttpLabels {
            method: method_label(method),
            route,
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&labels).observe(seconds);
    }

    /// Count one exec.
    pub fn exec(&self, outcome: ExecOutcome, seconds: f64) {
        let labels = OutcomeLabels {
            outcome: outcome.as_str().to_string(),
        };
        self.execs.get_or_create(&labels).inc();
        self.exec_duration.get_or_create(&labels).observe(seconds);
    }

    /// Count one JavaScript execution.
    pub fn js(&self, status: &str, seconds: f64) {
        self.js
            .get_or_create(&StatusLabels {
                status: status.to_string(),
            })
            .inc();
        self.js_duration.observe(seconds);
    }

    /// Count one `POST /v1/try`.
    pub fn session_opened(&self, ok: bool) {
        let outcome = if ok { "success" } else { "error" };
        self.sessions_opened
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Set the number of sessions starting or running.
    pub fn sessions_active(&self, n: usize) {
        self.sessions_active
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Count a relayed connection of `kind` as open until the returned guard drops.
    pub fn websocket_opened(&self, kind: WsKind) -> OpenConnection {
        let labels = KindLabels {
            kind: kind.as_str().to_string(),
        };
        self.websockets_total.get_or_create(&labels).inc();
        let gauge = self.websockets.get_or_create(&labels).clone();
        gauge.inc();
        OpenConnection { gauge }
    }

    /// Set the sandbox gauges from a census (`status` of every live sandbox) and the layer
    /// count.
    pub fn census<'a>(&self, statuses: impl IntoIterator<Item = &'a str>, layers: usize) {
        let mut counts = std::collections::BTreeMap::<&str, i64>::new();
        // Report both usual states even when zero, so dashboards see the series.
        counts.insert("running", 0);
        counts.insert("paused", 0);
        for s in statuses {
            *counts.entry(s).or_default() += 1;
        }
        for (state, n) in counts {
            self.sandboxes
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(n);
        }
        self.layers.set(i64::try_from(layers).unwrap_or(i64::MAX));
    }

    /// Bring the egress counters up to the audit log's totals.
    pub fn egress(&self, totals: sqrx_core::secrets::AuditTotals) {
        for (decision, total) in [
            ("substituted", totals.substituted),
            ("refused", totals.refused),
        ] {
            let c = self.egress.get_or_create(&DecisionLabels {
                decision: decision.into(),
            });
            let seen = c.get();
            if total > seen {
                c.inc_by(total - seen);
            }
        }
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Middleware counting every request by its route template (never the raw path, which would
/// make one series per sandbox id).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(Cow::Borrowed("unmatched"), |m| {
            Cow::Owned(m.as_str().to_string())
        });
    let response = next.run(req).await;
    state.metrics().http(
        &method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// A method's label, without an allocation for the standard ones.
fn method_label(method: &Method) -> Cow<'static, str> {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    match STANDARD.iter().find(|(m, _)| m == method) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Owned(method.as_str().to_string()),
    }
}

/// A shared handle on the metrics.
pub type SharedMetrics = Arc<Metrics>;
