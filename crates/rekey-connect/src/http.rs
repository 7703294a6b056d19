//! The one shape of every outbound HTTP client (token endpoints, webhooks, witnesses, SIEM
//! collectors): the given rustls configuration, a connect and an overall timeout, no redirect
//! followed, no proxy taken from the environment, and, where the destination is not fixed by the
//! operator's configuration, names resolved under the egress policy.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::egress::{EgressPolicy, PolicyResolver};

pub(crate) fn client(
    tls: &ClientConfig,
    connect: Duration,
    overall: Duration,
    egress: Option<Arc<EgressPolicy>>,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .connect_timeout(connect)
        .timeout(overall)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("rekey/", env!("CARGO_PKG_VERSION")));
    match egress {
        Some(policy) => builder.dns_resolver(Arc::new(PolicyResolver(policy))),
        None => builder,
    }
    .build()
}

/// Why a request failed, in one line a log or an error may show: no URL (it may hold a token),
/// the egress policy's refusal as it says it, a timeout as such.
pub(crate) fn failure_text(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if let Some(denied) = crate::egress::denied_in(&e) {
        denied.to_string()
    } else {
        crate::error::one_line(&e.without_url().to_string())
    }
}
