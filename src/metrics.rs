//! Prometheus metrics (`GET /metrics`, text format): what the server does (requests by surface
//! and status class, latency, bytes on the wire, GC and fsck runs) as counters updated where it
//! happens, and what it holds (stores, sessions, database, disk) as gauges read at scrape time
//! from running totals, never by scanning the stores.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Which part of the server a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/api/…`.
    Rest,
    /// git smart HTTP (`/<owner>/<repo>.git/…`).
    Git,
    /// The OCI registry (`/v2/…`).
    Oci,
    /// Web pages and their assets.
    Ui,
    /// `/healthz`, `/readyz`, `/metrics`.
    Probe,
}

impl Surface {
    /// The surface a request path belongs to (the same prefixes the routes match).
    pub fn of_path(path: &str) -> Surface {
        if path == "/v2" || path.starts_with("/v2/") {
            Surface::Oci
        } else if path.starts_with("/api/") {
            Surface::Rest
        } else if matches!(path, "/healthz" | "/readyz" | "/metrics") {
            Surface::Probe
        } else if path
            .trim_start_matches('/')
            .split('/')
            .nth(1)
            .is_some_and(|repo| repo.ends_with(".git"))
        {
            // `/{owner}/{repo}.git/...`: the segment after the owner, not any `.git` in a path.
            Surface::Git
        } else {
            Surface::Ui
        }
    }

    const ALL: [Surface; 5] = [
        Surface::Rest,
        Surface::Git,
        Surface::Oci,
        Surface::Ui,
        Surface::Probe,
    ];

    fn label(self) -> &'static str {
        match self {
            Surface::Rest => "rest",
            Surface::Git => "git",
            Surface::Oci => "oci",
            Surface::Ui => "ui",
            Surface::Probe => "probe",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    surface: &'static str,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SurfaceLabels {
    surface: &'static str,
}

/// What the stores hold at scrape time (from running totals and cheap calls).
#[derive(Debug, Clone, Copy, Default)]
pub struct Holdings {
    /// Registry blobs and their bytes.
    pub blob_count: u64,
    /// Bytes of the registry blobs.
    pub blob_bytes: u64,
    /// Release assets.
    pub asset_count: u64,
    /// Bytes of the release assets.
    pub asset_bytes: u64,
    /// OCI upload sessions open.
    pub upload_sessions: u64,
    /// Size of `pfai.redb`.
    pub database_bytes: u64,
    /// Free bytes on the blob store's filesystem.
    pub disk_free_bytes: u64,
    /// Free bytes on the asset store's filesystem.
    pub asset_disk_free_bytes: u64,
}

/// The byte counters of client connections, handed to `conn` (which counts at the socket).
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Bytes read from clients.
    pub received: Counter,
    /// Bytes written to clients.
    pub sent: Counter,
}

/// The server's metrics. One per server (tests run several in one process).
pub struct Metrics {
    registry: Registry,
    /// The request counters per surface and status class, taken from their family once so
    /// that counting a request takes no lock and hashes no labels.
    requests: [[Counter; 5]; 5],
    /// The latency histograms per surface, likewise.
    latency: [Histogram; 5],
    /// Bytes read from and written to client connections (request lines, headers and bodies).
    pub traffic: Traffic,
    gc_runs: Counter,
    gc_blobs: Counter,
    gc_bytes: Counter,
    fsck_runs: Counter,
    fsck_problems: Gauge,
    fsck_last_run: Gauge,
    holdings: [Gauge; 8],
    /// Serializes scrapes (the gauges are set, then encoded).
    scrape: Mutex<()>,
}

/// The status classes, in `Metrics::request`'s index order.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `pfai_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pfai");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by surface and status class",
            requests.clone(),
        );
        let latency: Family<SurfaceLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response's head, by surface",
            latency.clone(),
        );
        let received = Counter::default();
        registry.register(
            "http_received_bytes",
            "Bytes read from client connections",
            received.clone(),
        );
        let sent = Counter::default();
        registry.register(
            "http_sent_bytes",
            "Bytes written to client connections",
            sent.clone(),
        );
        let gc_runs = Counter::default();
        registry.register(
            "gc_runs",
            "Registry GC runs that removed (not dry runs)",
            gc_runs.clone(),
        );
        let gc_blobs = Counter::default();
        registry.register("gc_removed_blobs", "Blobs GC removed", gc_blobs.clone());
        let gc_bytes = Counter::default();
        registry.register("gc_freed_bytes", "Bytes GC freed", gc_bytes.clone());
        let fsck_runs = Counter::default();
        registry.register("fsck_runs", "fsck runs", fsck_runs.clone());
        let fsck_problems = Gauge::default();
        registry.register(
            "fsck_problems",
            "Problems the last fsck left (0 = clean)",
            fsck_problems.clone(),
        );
        let fsck_last_run = Gauge::default();
        registry.register(
            "fsck_last_run_timestamp_seconds",
            "When the last fsck finished (unix seconds; 0 = never since start)",
            fsck_last_run.clone(),
        );
        let holdings: [Gauge; 8] = Default::default();
        let names = [
            ("blob_objects", "Registry blobs stored"),
            ("blob_bytes", "Bytes of the registry blobs stored"),
            ("asset_objects", "Release assets stored"),
            ("asset_bytes", "Bytes of the release assets stored"),
            ("upload_sessions", "OCI blob upload sessions open"),
            ("database_bytes", "Size of the database file"),
            (
                "disk_free_bytes",
                "Free bytes on the data directory's filesystem",
            ),
            (
                "asset_disk_free_bytes",
                "Free bytes on the asset directory's filesystem",
            ),
        ];
        for (g, (name, help)) in holdings.iter().zip(names) {
            registry.register(name, help, g.clone());
        }
        let requests_by = Surface::ALL.map(|surface| {
            CLASSES.map(|class| {
                requests
                    .get_or_create(&RequestLabels {
                        surface: surface.label(),
                        class,
                    })
                    .clone()
            })
        });
        let latency_by = Surface::ALL.map(|surface| {
            latency
                .get_or_create(&SurfaceLabels {
                    surface: surface.label(),
                })
                .clone()
        });
        Metrics {
            registry,
            requests: requests_by,
            latency: latency_by,
            traffic: Traffic { received, sent },
            gc_runs,
            gc_blobs,
            gc_bytes,
            fsck_runs,
            fsck_problems,
            fsck_last_run,
            holdings,
            scrape: Mutex::new(()),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, path: &str, status: u16, seconds: f64) {
        let surface = Surface::of_path(path) as usize;
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.requests[surface][class].inc();
        self.latency[surface].observe(seconds);
    }

    /// Counts a GC run that removed `blobs` blobs of `bytes` bytes.
    pub fn gc_ran(&self, blobs: u64, bytes: u64) {
        self.gc_runs.inc();
        self.gc_blobs.inc_by(blobs);
        self.gc_bytes.inc_by(bytes);
    }

    /// Records an fsck run and the problems it left.
    pub fn fsck_ran(&self, problems: u64, at_unix: i64) {
        self.fsck_runs.inc();
        self.fsck_problems.set(clamp(problems));
        self.fsck_last_run.set(at_unix);
    }

    /// The text exposition, with the holdings as of now.
    pub fn render(&self, h: &Holdings) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let values = [
            h.blob_count,
            h.blob_bytes,
            h.asset_count,
            h.asset_bytes,
            h.upload_sessions,
            h.database_bytes,
            h.disk_free_bytes,
            h.asset_disk_free_bytes,
        ];
        for (g, v) in self.holdings.iter().zip(values) {
            g.set(clamp(v));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_surface_their_routes_serve() {
        assert_eq!(Surface::of_path("/v2/"), Surface::Oci);
        assert_eq!(Surface::of_path("/v2/acme/app/blobs/x"), Surface::Oci);
        assert_eq!(Surface::of_path("/api/v1/user"), Surface::Rest);
        assert_eq!(Surface::of_path("/acme/app.git/info/refs"), Surface::Git);
        assert_eq!(Surface::of_path("/acme/app"), Surface::Ui);
        assert_eq!(
            Surface::of_path("/acme/app/releases/tag/x.git/y"),
            Surface::Ui
        );
        assert_eq!(Surface::of_path("/v2x"), Surface::Ui);
        assert_eq!(Surface::of_path("/metrics"), Surface::Probe);
    }

    #[test]
    fn the_exposition_has_every_family_once_and_ends_with_eof() {
        let m = Metrics::new();
        m.request("/v2/", 200, 0.001);
        m.request("/api/v1/user", 404, 0.002);
        m.gc_ran(2, 10);
        let text = m.render(&Holdings {
            blob_count: 3,
            ..Holdings::default()
        });
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("pfai_http_requests_total{surface=\"oci\",class=\"2xx\"} 1"));
        assert!(text.contains("pfai_http_requests_total{surface=\"rest\",class=\"4xx\"} 1"));
        assert!(text.contains("pfai_gc_freed_bytes_total 10"));
        assert!(text.contains("pfai_blob_objects 3"));
        assert_eq!(text.matches("# TYPE pfai_http_requests counter").count(), 1);
    }
}
