//! The self-monitoring HTTP server of `--metrics-addr` (tiny_http, on a thread of its own):
//! `GET /metrics` (Prometheus text) and `GET /healthz` (200 while every pipeline runs as
//! configured, 503 with the reasons otherwise). Off unless the flag is given; it listens only
//! where the flag says.

use std::sync::Arc;
use std::thread::JoinHandle;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::monitor::{metrics, Monitor};

pub struct MetricsServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (`127.0.0.1:9100`; port 0 picks a free one); the error says why not.
    pub fn start(addr: &str, monitor: Monitor) -> Result<MetricsServer, String> {
        let server = Server::http(addr)
            .map_err(|e| format!("--metrics-addr {addr}: cannot listen there: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("--metrics-addr {addr}: not an IP address"))?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-server".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    answer(request, &monitor);
                }
            })
            .map_err(|e| format!("cannot start the metrics server: {e}"))?;
        tracing::info!("metrics served on http://{bound}/metrics and /healthz");
        Ok(MetricsServer {
            server,
            thread: Some(thread),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(request: Request, monitor: &Monitor) {
    let path = request.url().split('?').next().unwrap_or("");
    let (status, content_type, body) = match (request.method(), path) {
        (Method::Get, "/metrics") => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics::render(monitor),
        ),
        (Method::Get, "/healthz") => {
            let reasons = monitor.unhealthy_reasons();
            if reasons.is_empty() {
                (200, "text/plain; charset=utf-8", "ok\n".to_owned())
            } else {
                let mut body = String::new();
                for reason in reasons {
                    body.push_str(&reason);
                    body.push('\n');
                }
                (503, "text/plain; charset=utf-8", body)
            }
        }
        (Method::Get, _) => (
            404,
            "text/plain; charset=utf-8",
            "not found: try /metrics or /healthz\n".to_owned(),
        ),
        _ => (405, "text/plain; charset=utf-8", "GET only\n".to_owned()),
    };
    let header = Header::from_bytes("Content-Type", content_type).expect("a valid header");
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header);
    if let Err(e) = request.respond(response) {
        tracing::debug!("metrics: answering a request failed: {e}");
    }
}
