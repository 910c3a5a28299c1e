//! The status page at the admin listener's `/`: key versions and the latest census, store
//! health, running jobs with their progress, S3 request rates over the last minute, and the
//! process's counters. Plain server-rendered HTML with a little CSS; no script, no build step.
//!
//! Behind the token: `GET /` without a session shows a login form; `POST /login` with the token
//! (form field `token`, checked like a bearer token: constant time, failures throttled) sets a
//! session cookie — random, `HttpOnly`, `SameSite=Strict`, `Secure` over TLS, 12 hours — and
//! redirects to `/`. `POST /admin/page-link` (bearer token) hands out a one-time login URL
//! (`/login?once=…`, 60 seconds) for a browser that cannot type the token (a headless test).
//! Session ids are compared in constant time; the token is never put in the page or a cookie.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::AdminContext;
use super::auth::Verdict;
use super::jobs::JobState;

/// The session cookie's name.
const COOKIE: &str = "escrow_admin";
/// How long a session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a one-time login link lasts.
const LINK_LIFETIME: Duration = Duration::from_secs(60);
/// Sessions (and links) kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 32;
/// Largest login form body.
const MAX_FORM_BYTES: usize = 4096;

/// Live sessions and unused one-time links.
#[derive(Default)]
pub(super) struct Sessions {
    sessions: Mutex<Vec<([u8; 32], Instant)>>,
    links: Mutex<Vec<([u8; 32], Instant)>>,
}

impl Sessions {
    fn issue(list: &Mutex<Vec<([u8; 32], Instant)>>, lifetime: Duration) -> String {
        let id: [u8; 32] = rand::random();
        let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(_, until)| *until > Instant::now());
        if list.len() >= MAX_SESSIONS {
            list.remove(0);
        }
        list.push((id, Instant::now() + lifetime));
        hex::encode(id)
    }

    /// Whether `presented` is a live entry of `list` (every entry compared in constant time);
    /// `consume` removes it.
    fn check(list: &Mutex<Vec<([u8; 32], Instant)>>, presented: &str, consume: bool) -> bool {
        let Some(bytes) = hex::decode(presented).ok().filter(|b| b.len() == 32) else {
            return false;
        };
        let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut found = None;
        for (i, (id, until)) in list.iter().enumerate() {
            let same: bool = id.ct_eq(bytes.as_slice()).into();
            if same && *until > now {
                found = Some(i);
            }
        }
        if let (Some(i), true) = (found, consume) {
            list.remove(i);
        }
        found.is_some()
    }

    /// A one-time login link's code.
    pub(super) fn link(&self) -> String {
        Self::issue(&self.links, LINK_LIFETIME)
    }
}

/// Serves `/`, `/login` and `/logout`.
pub(super) async fn serve(
    ctx: &AdminContext,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let session = cookie(&req).is_some_and(|id| Sessions::check(&ctx.page.sessions, &id, false));
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, "/") if session => html(StatusCode::OK, &status_page(ctx)),
        (Method::GET | Method::HEAD, "/") => html(StatusCode::OK, &login_page(None)),
        (Method::GET, "/login") => {
            let once = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("once=")))
                .unwrap_or("");
            if Sessions::check(&ctx.page.links, once, true) {
                tracing::info!(target: "audit", %peer, route = "/login", status = 303, "status page login by one-time link");
                logged_in(ctx, tls)
            } else {
                tracing::warn!(target: "audit", %peer, route = "/login", status = 401, "status page: unknown or used login link");
                html(
                    StatusCode::UNAUTHORIZED,
                    &login_page(Some("That login link is unknown, used or expired.")),
                )
            }
        }
        (Method::POST, "/login") => {
            let form = match tokio::time::timeout(
                super::BODY_TIMEOUT,
                Limited::new(req.into_body(), MAX_FORM_BYTES).collect(),
            )
            .await
            {
                Ok(Ok(c)) => c.to_bytes(),
                _ => {
                    return html(
                        StatusCode::BAD_REQUEST,
                        &login_page(Some("The form could not be read.")),
                    );
                }
            };
            let token = form_field(&form, "token").unwrap_or_default();
            let mut bearer = b"Bearer ".to_vec();
            bearer.extend_from_slice(token.as_bytes());
            let verdict = ctx.token.check(Some(&bearer));
            zeroize::Zeroize::zeroize(&mut bearer);
            match verdict {
                Verdict::Allowed => {
                    tracing::info!(target: "audit", token = %ctx.token.fingerprint(), %peer, route = "/login", status = 303, "status page login");
                    logged_in(ctx, tls)
                }
                Verdict::Denied => {
                    metrics::counter!("escrow_admin_auth_failures_total").increment(1);
                    tracing::warn!(target: "audit", %peer, route = "/login", status = 401, "status page login with a wrong token");
                    html(StatusCode::UNAUTHORIZED, &login_page(Some("Wrong token.")))
                }
                Verdict::Throttled(_) => html(
                    StatusCode::TOO_MANY_REQUESTS,
                    &login_page(Some("Too many failed attempts; retry later.")),
                ),
            }
        }
        (Method::POST, "/logout") => {
            if let Some(id) = cookie(&req) {
                Sessions::check(&ctx.page.sessions, &id, true);
            }
            redirect(&format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"))
        }
        _ => html(StatusCode::METHOD_NOT_ALLOWED, "<p>Method not allowed.</p>"),
    }
}

fn logged_in(ctx: &AdminContext, tls: bool) -> Response<Full<Bytes>> {
    let id = Sessions::issue(&ctx.page.sessions, SESSION_LIFETIME);
    let secure = if tls { "; Secure" } else { "" };
    redirect(&format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    ))
}

fn redirect(set_cookie: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/")
        .header(header::SET_COOKIE, set_cookie)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

fn html(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        )
        .header("x-frame-options", "DENY")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// The session cookie's value, if the request has one.
fn cookie(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string))
}

/// A field of an `application/x-www-form-urlencoded` body.
fn form_field(form: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(form).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:left}\
.up,.active{color:#070}.down,.destroyed{color:#a00}.disabled{color:#a60}\
progress{width:12em}form{margin:0}code{background:#f4f4f4;padding:0 .2em}";

fn page(title: &str, body: &str, refresh: bool) -> String {
    let meta = if refresh {
        "<meta http-equiv=\"refresh\" content=\"5\">"
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{meta}<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        crate::markup::escape(title)
    )
}

fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"down\">{}</p>", crate::markup::escape(e)))
        .unwrap_or_default();
    page(
        "Escrow Proxy — sign in",
        &format!(
            "<h1>Escrow Proxy admin</h1>{error}<form method=\"post\" action=\"/login\">\
             <label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"off\" required></label> \
             <button type=\"submit\">Sign in</button></form>"
        ),
        false,
    )
}

fn status_page(ctx: &AdminContext) -> String {
    let mut b = String::new();
    let ring = ctx.keyring.load();
    let census = ring.census().cloned();
    let _ = write!(
        b,
        "<h1>Escrow Proxy</h1><form method=\"post\" action=\"/logout\"><button>Sign out</button></form>\
         <h2>Key versions</h2><p>Active version <strong id=\"active-version\">{}</strong>, keyring generation {}.</p>\
         <table id=\"keys\"><tr><th>Version</th><th>State</th><th>Created</th><th>References (latest census)</th></tr>",
        ring.active().0,
        ring.generation()
    );
    for v in ring.versions() {
        let state = format!("{:?}", v.state).to_lowercase();
        let refs = census
            .as_ref()
            .map_or_else(|| "—".to_string(), |c| c.references(v.version).to_string());
        let _ = write!(
            b,
            "<tr data-version=\"{0}\"><td>{0}</td><td class=\"{1}\">{1}</td><td>{2}</td><td>{refs}</td></tr>",
            v.version,
            state,
            crate::markup::escape(&v.created)
        );
    }
    b.push_str("</table>");
    match &census {
        None => b.push_str("<p>No census has run yet.</p>"),
        Some(c) => {
            let _ = write!(
                b,
                "<p>Latest census <code>{}</code> finished {}{}.</p><table id=\"census\"><tr><th>Store</th><th>Buckets</th><th>Objects per version</th><th>Uploads per version</th></tr>",
                crate::markup::escape(&c.job),
                crate::markup::escape(&c.finished),
                if c.complete { "" } else { " (partial)" }
            );
            for (store, counts) in &c.stores {
                let per = |m: &std::collections::BTreeMap<u32, u64>| {
                    m.iter()
                        .map(|(v, n)| format!("v{v}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    crate::markup::escape(store),
                    counts.buckets,
                    per(&counts.objects),
                    per(&counts.uploads)
                );
            }
            b.push_str("</table>");
        }
    }
    let ready = ctx.health.readiness();
    let _ = write!(
        b,
        "<h2>Stores</h2><p>Ready: <strong id=\"ready\">{}</strong>{}</p><table id=\"stores\"><tr><th>Store</th><th>Breaker</th><th>For</th><th>Why</th></tr>",
        if ready.ready { "yes" } else { "no" },
        if ready.draining { " (draining)" } else { "" }
    );
    for s in &ready.stores {
        let (class, word) = if s.up {
            ("up", "closed (up)")
        } else {
            ("down", "open (down)")
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"{class}\">{word}</td><td>{} s</td><td>{}</td></tr>",
            crate::markup::escape(&s.name),
            s.for_secs,
            crate::markup::escape(s.why.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table><h2>Jobs</h2>");
    let jobs = ctx.jobs.list();
    if jobs.is_empty() {
        b.push_str("<p>No jobs.</p>");
    } else {
        b.push_str("<table id=\"jobs\"><tr><th>Job</th><th>State</th><th>Started</th><th>Progress</th></tr>");
        for job in jobs.iter().rev().take(20) {
            let state = format!("{:?}", job.state).to_lowercase();
            let counters = job
                .progress
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let bar = if job.state == JobState::Running {
                "<progress></progress> "
            } else {
                ""
            };
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{state}</td><td>{}</td><td>{bar}{}</td></tr>",
                crate::markup::escape(&job.id),
                crate::markup::escape(&job.started),
                crate::markup::escape(&counters)
            );
        }
        b.push_str("</table>");
    }
    match ctx.rates.now() {
        None => b.push_str(
            "<h2>Request rates</h2><p id=\"rates\">Measuring (the first sample is a few seconds old at most).</p>",
        ),
        Some(r) => {
            let mb = |bytes: f64| bytes / 1e6;
            let _ = write!(
                b,
                "<h2>Request rates</h2><p>Over the last {:.0} s.</p><table id=\"rates\">\
                 <tr><th>Requests/s</th><th>4xx/s</th><th>5xx/s</th><th>MB/s in</th><th>MB/s out</th></tr>\
                 <tr><td id=\"rate-requests\">{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr></table>",
                r.secs,
                r.requests,
                r.client_errors,
                r.server_errors,
                mb(r.bytes_in),
                mb(r.bytes_out)
            );
        }
    }
    b.push_str("<h2>Counters since start</h2><table id=\"metrics\"><tr><th>Metric</th><th>Value</th></tr>");
    for line in super::metrics::handle().render().lines() {
        if line.starts_with("escrow_")
            && let Some((name, value)) = line.rsplit_once(' ')
        {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                crate::markup::escape(name),
                crate::markup::escape(value)
            );
        }
    }
    b.push_str("</table><p>This page refreshes every 5 seconds.</p>");
    page("Escrow Proxy — status", &b, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_checked_whole_and_links_are_single_use() {
        let s = Sessions::default();
        let id = Sessions::issue(&s.sessions, SESSION_LIFETIME);
        assert!(Sessions::check(&s.sessions, &id, false));
        assert!(Sessions::check(&s.sessions, &id, false), "a session stays");
        assert!(!Sessions::check(&s.sessions, &id[..62], false), "short");
        assert!(!Sessions::check(&s.sessions, &"0".repeat(64), false));
        assert!(!Sessions::check(&s.sessions, "zz", false));
        let link = s.link();
        assert!(!Sessions::check(&s.sessions, &link, false), "a link is not a session");
        assert!(Sessions::check(&s.links, &link, true));
        assert!(!Sessions::check(&s.links, &link, true), "used once");
    }

    #[test]
    fn forms_decode_and_html_escapes() {
        assert_eq!(form_field(b"a=1&token=ab%2Bc+d", "token").as_deref(), Some("ab+c d"));
        assert_eq!(form_field(b"token=%zz%4", "token").as_deref(), Some("%zz%4"));
        assert_eq!(form_field(b"x=1", "token"), None);
        assert_eq!(
            crate::markup::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
