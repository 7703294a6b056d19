//! The tenant self-service reset pages: `GET /r/<link>` shows what must be reset and why, and a
//! form; `POST /r/<link>` takes the new secrets, which `rekey-core` checks against each real
//! target before it stores any of them.
//!
//! The pages are rendered on the server (`maud`, which escapes every value) and work without
//! JavaScript. Every answer sends a Content-Security-Policy that allows nothing but this
//! server's stylesheet and forms posted back to itself, and `Referrer-Policy: no-referrer`
//! (the URL holds the link's secret). The form carries a CSRF token bound to a nonce in a
//! `SameSite=Strict`, `HttpOnly` cookie (and `Secure` behind TLS): a post from another origin
//! carries no cookie and is refused before anything is checked.
//!
//! Must never: put a secret (a link's or a credential's) in a page, a log line or an error.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use rekey_core::campaigns::{ResetOutcome, ResetPage};
use rekey_core::CoreError;
use rekey_types::{ErrorCode, Secret};

use crate::extract::{body_bytes, RawBody, ReqCtx};
use crate::state::{AppState, PageState};

/// What the pages may load: this server's stylesheet; forms post back here only.
pub(crate) const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The HTML report is one self-contained file: inline style, nothing else.
pub(crate) const CSP_REPORT: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const COOKIE: &str = "rekey_csrf";
/// Form fields holding a new secret are named `secret.<credential name>`.
const SECRET_FIELD: &str = "secret.";
/// Hidden fields naming each secret's account, for password managers; ignored when posted.
const USER_FIELD: &str = "user.";

/// The pages' stylesheet, served from this server (the only source their policy allows).
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;\
color:#1a1a1a;line-height:1.45}fieldset{border:1px solid #bbb;border-radius:6px;margin:1rem 0;padding:.8rem 1rem}\
legend{font-weight:600}label{display:block;margin-top:.5rem}input[type=password]{width:100%;padding:.4rem;\
font-size:1rem;box-sizing:border-box}button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem}\
.error{color:#a11;font-weight:600}.done{color:#176b2c}.muted{color:#555;font-size:.9rem}code{word-break:break-all}";

pub(crate) async fn stylesheet() -> Response {
    let mut response = STYLE.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Rekey" }
                link rel="stylesheet" href="/assets/reset.css";
            }
            body { (body) }
        }
    }
}

/// A page with the headers every reset page sends, and optionally a new CSRF cookie.
fn respond(status: StatusCode, page: Markup, cookie: Option<String>) -> Response {
    let mut response = (status, page.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, c);
    }
    response
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let page = layout(title, html! { h1 { (title) } p { (text) } });
    respond(status, page, None)
}

/// The page for a link that cannot be used, by the reason `rekey-core` gave.
fn refusal(e: CoreError) -> Response {
    if let CoreError::TooManyAttempts(seconds) = e {
        let mut page = message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many links that did not work came from your address. Please wait a minute and open the link again.",
        );
        page.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        return page;
    }
    match e.code() {
        ErrorCode::NotFound => message(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Check that you copied the whole link from the message you received. If it still does not work, \
             ask your provider for a new one.",
        ),
        ErrorCode::LinkGone => message(
            StatusCode::GONE,
            "This link can no longer be used",
            &format!(
                "{e}. Each link works once, until its deadline. Ask your provider for a new one if you still need it."
            ),
        ),
        ErrorCode::BadRequest => message(StatusCode::BAD_REQUEST, "The form was not accepted", &e.to_string()),
        ErrorCode::Conflict => message(StatusCode::CONFLICT, "Nothing was stored", &e.to_string()),
        ErrorCode::Sealed => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "The service cannot take new secrets right now. Please try again later.",
        ),
        _ => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Nothing was changed. Please try again later.",
        ),
    }
}

fn cookie(state: &PageState, nonce: &str) -> String {
    let secure = if state.secure { "; Secure" } else { "" };
    format!("{COOKIE}={nonce}; Path=/r/; HttpOnly; SameSite=Strict; Max-Age=3600{secure}")
}

fn form(page: &ResetPage, csrf: &str, errors: &[(String, String)]) -> Markup {
    html! {
        h1 { "Reset credentials for " (page.tenant) }
        p {
            "We are responding to a security incident: " strong { (page.incident) } ". "
            "The credentials below, which your organisation gave us, may be exposed. For each one, first set a new "
            "secret at its target (your directory, mail server or identity provider), then enter that new secret here. "
            "Each one is checked against its target before anything is stored."
        }
        p class="muted" { "This link works once, until " (page.deadline) ". Nothing is stored unless every secret works." }
        @if !errors.is_empty() {
            div role="alert" {
                p class="error" { "Nothing was stored. These secrets did not work:" }
                ul { @for (name, why) in errors { li { strong { (name) } ": " (why) } } }
            }
        }
        form method="post" autocomplete="off" {
            input type="hidden" name="csrf" value=(csrf);
            @for item in &page.items {
                fieldset {
                    legend { (item.name) }
                    p class="muted" { (item.kind) " · " code { (item.target) } }
                    // For password managers: whose secret this is (not read back by the server).
                    input type="text" name=(format!("{USER_FIELD}{}", item.name)) value=(item.account)
                        autocomplete="username" readonly hidden;
                    label for=(format!("{SECRET_FIELD}{}", item.name)) { "New secret for " (item.name) }
                    input type="password" id=(format!("{SECRET_FIELD}{}", item.name))
                        name=(format!("{SECRET_FIELD}{}", item.name)) autocomplete="new-password" required;
                }
            }
            button type="submit" { "Check and save" }
        }
    }
}

pub(crate) async fn show(State(s): State<AppState>, ctx: ReqCtx, Path(link): Path<String>) -> Response {
    let vault = match s.keeper.vault() {
        Ok(v) => v,
        Err(e) => return refusal(e),
    };
    let page = match vault.reset_page(&link, ctx.source).await {
        Ok(p) => p,
        Err(e) => return refusal(e),
    };
    if page.items.is_empty() {
        return message(StatusCode::OK, "Nothing to reset", "Every credential this link was for is already done.");
    }
    let Ok((nonce, token)) = s.pages.csrf.issue(page.link) else {
        return refusal(CoreError::BadRequest("try again".into()));
    };
    respond(StatusCode::OK, layout("Reset credentials", form(&page, &token, &[])), Some(cookie(&s.pages, &nonce)))
}

fn cookie_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

pub(crate) async fn submit(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(link): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let vault = match s.keeper.vault() {
        Ok(v) => v,
        Err(e) => return refusal(e),
    };
    let bytes = match body_bytes(body, ctx.request_id) {
        Ok(b) => b,
        Err(_) => return refusal(CoreError::BadRequest("the form could not be read".into())),
    };
    let mut csrf = None;
    let mut secrets = Vec::new();
    for (key, value) in url::form_urlencoded::parse(&bytes) {
        if key == "csrf" {
            csrf = Some(value.into_owned());
        } else if let Some(name) = key.strip_prefix(SECRET_FIELD) {
            secrets.push((name.to_owned(), Secret::new(value.as_bytes().to_vec())));
        } else if key.starts_with(USER_FIELD) {
            continue;
        } else {
            return refusal(CoreError::BadRequest(format!("unexpected form field {key:?}")));
        }
    }
    let Some(presented) = rekey_crypto::link::PresentedLink::parse(&link) else {
        return refusal(CoreError::NotFound("reset link".into()));
    };
    let csrf_ok = match (cookie_nonce(&headers), csrf) {
        (Some(nonce), Some(token)) => s.pages.csrf.check(presented.id, &nonce, &token),
        _ => false,
    };
    if !csrf_ok {
        return message(
            StatusCode::FORBIDDEN,
            "The form has expired",
            "Nothing was stored. Open the link from your message again and fill in the form once more.",
        );
    }
    match vault.reset_submit(&link, ctx.source, secrets).await {
        Ok(ResetOutcome::Done(names)) => {
            let page = layout(
                "Credentials saved",
                html! {
                    h1 class="done" { "Thank you: every new secret works" }
                    p { "Checked against its target and stored: " (names.join(", ")) "." }
                    p { "This link is now used up. You can close this page." }
                },
            );
            respond(StatusCode::OK, page, None)
        }
        Ok(ResetOutcome::Refused { page, refusals: errors }) => {
            // Show the form again, with a fresh token for the same link.
            let Ok((nonce, token)) = s.pages.csrf.issue(page.link) else {
                return refusal(CoreError::BadRequest("try again".into()));
            };
            let body = layout("Reset credentials", form(&page, &token, &errors));
            respond(StatusCode::UNPROCESSABLE_ENTITY, body, Some(cookie(&s.pages, &nonce)))
        }
        Err(e) => refusal(e),
    }
}
