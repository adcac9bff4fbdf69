//! Prometheus metrics, served at GET /metrics on the administrative listener.
//!
//! Counters and timings are this process's own (Prometheus sums them over instances); the gauges of shared
//! state (batch files in progress, the alert outbox) are read from the database when scraped, so that every
//! instance reports the same, true figure.

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::domain::delivery::Transport;
use crate::domain::receipt::Receipt;
use crate::domain::sortiment::Integration;
use crate::storage::text::{Named as _, TransferState};

pub struct Metrics {
    registry: Registry,
    deliveries: IntCounterVec,
    items: IntCounterVec,
    errors: IntCounterVec,
    seconds: HistogramVec,
    batch_files: IntGauge,
    outbox: IntGaugeVec,
    receipt_files: IntGaugeVec,
    target_rows: IntGauge,
    target_oldest: IntGauge,
    target_failing: IntGaugeVec,
    /// The web page's logins: passwords checked, and tries refused without a check, by reason.
    pub logins: IntCounterVec,
    pub groups: GroupMetrics,
}

/// The straks writer's groups: how many deliveries each committed, and how long the commit took.
#[derive(Clone)]
pub struct GroupMetrics {
    size: prometheus::Histogram,
    seconds: prometheus::Histogram,
    /// Deliveries decided and waiting for the writer.
    pub waiting: IntGauge,
}

impl GroupMetrics {
    pub fn observe(&self, deliveries: usize, took: Duration) {
        self.size.observe(deliveries as f64);
        self.seconds.observe(took.as_secs_f64());
    }
}

/// Shared state read from the database at scrape time.
pub use crate::storage::inspect::SharedFigures;

/// TLS handshakes refused because of the client's certificate, by reason. Process-wide: the TLS layer counts
/// them before any request (or pipeline) exists; every `Metrics` registry shows it.
pub fn tls_refused() -> &'static IntCounterVec {
    static REFUSED: std::sync::LazyLock<IntCounterVec> = std::sync::LazyLock::new(|| {
        IntCounterVec::new(Opts::new("fkoeko_tls_refused_total", "TLS handshakes refused or broken off, by reason."), &["reason"])
            .expect("valid metric")
    });
    &REFUSED
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let deliveries = IntCounterVec::new(
            Opts::new(
                "fkoeko_deliveries_total",
                "Deliveries processed, by integration, transport and result (accepteret, afvist, delvist).",
            ),
            &["integration", "transport", "result"],
        )
        .expect("valid metric");
        let items = IntCounterVec::new(
            Opts::new("fkoeko_items_total", "Finansbilag and fordringer decided, by integration, transport and receipt status."),
            &["integration", "transport", "status"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("fkoeko_rejection_errors_total", "Errors in rejected receipts, by integration and receipt code."),
            &["integration", "code"],
        )
        .expect("valid metric");
        let seconds = HistogramVec::new(
            HistogramOpts::new("fkoeko_delivery_seconds", "Time from receiving a delivery to its receipts being written.")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0]),
            &["integration", "transport"],
        )
        .expect("valid metric");
        let batch_files = IntGauge::new("fkoeko_batch_files_in_progress", "Batch files claimed and not yet done, on every instance.")
            .expect("valid metric");
        let outbox = IntGaugeVec::new(Opts::new("fkoeko_alert_outbox", "Rejection alerts in the outbox, by status."), &["status"])
            .expect("valid metric");
        let receipt_files = IntGaugeVec::new(
            Opts::new(
                "fkoeko_receipt_files",
                "Receipt files sent back through Serviceplatformen, by state (failed: not delivered after the last try).",
            ),
            &["state"],
        )
        .expect("valid metric");
        let target_rows = IntGauge::new(
            "fkoeko_target_rows_waiting",
            "Rows for a target profile's file targets booked and not yet in a written file, on every instance.",
        )
        .expect("valid metric");
        let target_oldest = IntGauge::new(
            "fkoeko_target_oldest_waiting_seconds",
            "How long the oldest row for a file target has waited for its file (0: none waits).",
        )
        .expect("valid metric");
        let build =
            IntGaugeVec::new(Opts::new("fkoeko_build_info", "Always 1: the running program's version, as labels."), &["version", "arch"])
                .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION"), std::env::consts::ARCH]).set(1);
        let target_failing = IntGaugeVec::new(
            Opts::new(
                "fkoeko_target_writer_failing",
                "1 while the file writer (writer=files) or a forwarder (writer=database:<name>) failed its last round on this instance.",
            ),
            &["writer"],
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new(
                "fkoeko_web_logins_total",
                "Logins to the web page, by outcome: checked (a password was checked), locked (too many tries for the name), busy (too many checks at once).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let groups = GroupMetrics {
            size: prometheus::Histogram::with_opts(
                HistogramOpts::new("fkoeko_write_group_deliveries", "Straks deliveries written in one transaction by the writer.")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            )
            .expect("valid metric"),
            seconds: prometheus::Histogram::with_opts(
                HistogramOpts::new("fkoeko_write_group_seconds", "Time to write and commit one group of straks deliveries.")
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
            )
            .expect("valid metric"),
            waiting: IntGauge::new("fkoeko_write_queue", "Straks deliveries decided and waiting for the writer.").expect("valid metric"),
        };
        for metric in [
            Box::new(groups.size.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(groups.seconds.clone()),
            Box::new(groups.waiting.clone()),
            Box::new(target_rows.clone()),
            Box::new(target_oldest.clone()),
            Box::new(target_failing.clone()),
            Box::new(build.clone()),
            Box::new(deliveries.clone()),
            Box::new(items.clone()),
            Box::new(errors.clone()),
            Box::new(seconds.clone()),
            Box::new(batch_files.clone()),
            Box::new(outbox.clone()),
            Box::new(receipt_files.clone()),
            Box::new(logins.clone()),
            Box::new(tls_refused().clone()),
        ] {
            registry.register(metric).expect("each metric registered once");
        }
        Metrics {
            registry,
            deliveries,
            items,
            errors,
            seconds,
            batch_files,
            outbox,
            receipt_files,
            target_rows,
            target_oldest,
            target_failing,
            logins,
            groups,
        }
    }

    /// One delivery (a call or a batch file) done, with its receipts' outcome and how long it took.
    pub fn delivery(&self, integration: Integration, transport: Transport, accepted: usize, rejected: usize, took: Duration) {
        let (integration, transport) = (integration.as_str(), transport.as_str());
        let result = match (accepted, rejected) {
            (_, 0) => "accepteret",
            (0, _) => "afvist",
            _ => "delvist",
        };
        self.deliveries.with_label_values(&[integration, transport, result]).inc();
        self.items.with_label_values(&[integration, transport, "Accepteret"]).inc_by(accepted as u64);
        self.items.with_label_values(&[integration, transport, "Afvist"]).inc_by(rejected as u64);
        self.seconds.with_label_values(&[integration, transport]).observe(took.as_secs_f64());
    }

    /// The codes of the errors in these receipts.
    pub fn errors(&self, integration: Integration, receipts: &[Receipt]) {
        for error in receipts.iter().flat_map(|r| &r.errors) {
            self.errors.with_label_values(&[integration.as_str(), error.code.as_str()]).inc();
        }
    }

    /// The text exposition format. Without the shared figures (the database does not answer), their gauges
    /// read -1 rather than a stale or made-up count.
    /// Whether a target writer failed its last round.
    pub fn target_writer(&self, writer: &str, failing: bool) {
        self.target_failing.with_label_values(&[writer]).set(i64::from(failing));
    }

    pub fn render(&self, shared: Option<&SharedFigures>) -> String {
        self.batch_files.set(shared.map_or(-1, |s| s.batch_files_in_progress));
        // Every status is shown, at 0 when none are in it, so that a dashboard's series do not vanish.
        for status in ["pending", "sending", "sent", "failed"] {
            let count = shared.map_or(-1, |s| s.alert_outbox.iter().find(|(name, _)| name == status).map_or(0, |(_, n)| *n));
            self.outbox.with_label_values(&[status]).set(count);
        }
        for state in [TransferState::Written, TransferState::Sent, TransferState::Delivered, TransferState::Failed] {
            let count = shared.map_or(-1, |s| s.receipt_files.iter().find(|(named, _)| *named == state).map_or(0, |(_, n)| *n));
            self.receipt_files.with_label_values(&[state.name()]).set(count);
        }
        let backlog = shared.and_then(|s| s.target_backlog.as_ref());
        self.target_rows.set(backlog.map_or(-1, |b| b.rows));
        let waited = backlog.and_then(|b| b.oldest).map_or(0, |oldest| (chrono::Utc::now().naive_utc() - oldest).num_seconds().max(0));
        self.target_oldest.set(if backlog.is_some() { waited } else { -1 });
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("metrics encode");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
