//! The admin API's routes. Public: `/live`, `/ready`, `/metrics`. Behind the token: everything
//! under `/admin/`. Each area's handlers return an [`Answer`]; this module adds the status
//! line, the JSON body, the audit line and the metrics.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::auth::Verdict;
use super::{AdminContext, BODY_TIMEOUT, MAX_BODY_BYTES};

/// A handler's answer: a status, a JSON body, and the job it started (for the audit line).
pub(super) struct Answer {
    status: StatusCode,
    body: Value,
    job: Option<String>,
}

impl Answer {
    /// 200 with `body`.
    pub(super) fn ok(body: Value) -> Self {
        Self::with(StatusCode::OK, body)
    }

    /// `status` with `body`.
    pub(super) fn with(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            job: None,
        }
    }

    /// 202 for a job that started: `{"job": id}`.
    #[allow(dead_code)] // For the job-starting routes (rewrap, census, reconcile).
    pub(super) fn job(id: String) -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            body: json!({ "job": id }),
            job: Some(id),
        }
    }

    /// `status` with `{"error": message}`.
    pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::with(status, json!({ "error": message.into() }))
    }

    fn not_found() -> Self {
        Self::error(StatusCode::NOT_FOUND, "no such route")
    }

    fn method_not_allowed() -> Self {
        Self::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
    }
}

/// Serves one admin request from `peer`.
pub(super) async fn handle(ctx: &AdminContext, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match path.as_str() {
        "/live" => return public(&method, || Answer::ok(json!({ "live": true }))),
        "/ready" => {
            return public(&method, || {
                let readiness = ctx.health.readiness();
                let status = if readiness.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                Answer::with(status, json!(readiness))
            });
        }
        "/metrics" if method == Method::GET => {
            metrics::counter!("escrow_admin_requests_total", "route" => "metrics", "status" => "200").increment(1);
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(super::metrics::handle().render())))
                .unwrap_or_default();
        }
        "/metrics" => return respond(Answer::method_not_allowed()),
        "/shutdown" => return shutdown_route(&method, peer),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/admin/") else {
        return respond(Answer::not_found());
    };
    let who = ctx.token.fingerprint();
    let answer = match ctx
        .token
        .check(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()))
    {
        Verdict::Allowed => {
            let segments: Vec<String> = rest.split('/').map(str::to_string).collect();
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            dispatch(ctx, &method, &segments, req).await
        }
        Verdict::Denied => {
            metrics::counter!("escrow_admin_auth_failures_total").increment(1);
            tracing::warn!(target: "audit", %peer, method = %method, route = %path, status = 401, "admin request without a valid token");
            return respond(Answer::error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
        }
        Verdict::Throttled(secs) => {
            let mut response = respond(Answer::error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed token attempts; retry later",
            ));
            if let Ok(value) = http::HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    };
    tracing::info!(
        target: "audit",
        token = %who,
        %peer,
        method = %method,
        route = %path,
        status = answer.status.as_u16(),
        job = answer.job.as_deref().unwrap_or(""),
        "admin request"
    );
    respond(answer)
}

/// `POST /shutdown` (no token; loopback only; off unless enabled): see
/// [`crate::server::shutdown`].
fn shutdown_route(method: &Method, peer: SocketAddr) -> Response<Full<Bytes>> {
    let (status, body) = crate::server::shutdown::answer(method, peer);
    tracing::info!(target: "audit", %peer, route = "/shutdown", status = status.as_u16(), "shutdown request");
    respond(Answer::with(status, body))
}

/// The routes under `/admin/` (segments after it).
async fn dispatch(ctx: &AdminContext, method: &Method, segments: &[&str], req: Request<Incoming>) -> Answer {
    match (method.as_str(), segments) {
        ("GET", ["jobs"]) => Answer::ok(json!({ "jobs": ctx.jobs.list() })),
        ("GET", ["jobs", id]) => match ctx.jobs.get(id) {
            Some(job) => Answer::ok(json!(job)),
            None => Answer::error(StatusCode::NOT_FOUND, "no such job"),
        },
        ("POST", ["jobs", id, "cancel"]) => match ctx.jobs.cancel(id) {
            Some(job) => Answer::ok(json!(job)),
            None => Answer::error(StatusCode::NOT_FOUND, "no such job"),
        },
        ("GET", ["keys"]) => keys_list(ctx),
        (_, ["jobs"] | ["jobs", _] | ["jobs", _, "cancel"] | ["keys"]) => {
            drop(req);
            Answer::method_not_allowed()
        }
        _ => Answer::not_found(),
    }
}

/// `GET /admin/keys`: versions, states and creation times; never material.
fn keys_list(ctx: &AdminContext) -> Answer {
    let (active, _) = ctx.keyring.active();
    let versions: Vec<Value> = ctx
        .keyring
        .versions()
        .map(|v| json!({ "version": v.version, "state": v.state, "created": v.created }))
        .collect();
    Answer::ok(json!({ "active": active, "versions": versions }))
}

/// Reads a JSON request body (at most [`MAX_BODY_BYTES`], within [`BODY_TIMEOUT`]); an empty
/// body is `{}`.
#[allow(dead_code)] // Used by the POST routes that take parameters.
pub(super) async fn read_json(req: Request<Incoming>) -> Result<Value, Answer> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return Err(Answer::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY_BYTES} bytes or broken"),
            ));
        }
        Err(_) => return Err(Answer::error(StatusCode::REQUEST_TIMEOUT, "request body too slow")),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Answer::error(StatusCode::BAD_REQUEST, format!("request body is not JSON: {e}")))
}

fn public(method: &Method, answer: impl FnOnce() -> Answer) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return respond(Answer::method_not_allowed());
    }
    respond(answer())
}

fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let class = if answer.status.is_success() { "ok" } else { "error" };
    metrics::counter!("escrow_admin_requests_total", "route" => "api", "status" => class).increment(1);
    let mut body = serde_json::to_vec(&answer.body).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(answer.status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}
