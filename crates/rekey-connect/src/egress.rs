//! The egress policy: where Rekey may connect on a tenant's behalf.
//!
//! Target fields are written by tenant admins, so every outbound connection (ldap, pop3, smtp,
//! OAuth token, OpenID discovery, JWKS, Graph, webhook) is checked here, **after name
//! resolution, on the address actually connected**: a name that resolves to a denied address is
//! refused, and since the connection goes to the very address that was checked, a name that
//! resolves differently the second time gains nothing.
//!
//! By default these are denied: loopback, unspecified, RFC 1918 and RFC 6598 (shared) space,
//! link-local, unique-local IPv6, multicast and broadcast, IPv4 addresses embedded in IPv6
//! (mapped, NAT64) that are any of those, and the documented cloud metadata addresses. An
//! operator allows destinations by CIDR or by host name (`ldap.corp.example`, `*.corp.example`)
//! and may restrict ports. A host name on the allow list lifts the default for the addresses it
//! resolves to, except a metadata address, which only a CIDR that contains it allows.
//!
//! A refusal says which rule refused, never anything about the destination's state (whether it
//! would have answered), and is its own status (`egress-denied`).

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpStream;

use crate::{Failure, Status};

/// Why a destination was refused: the rule, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The rule that refused it, in words (`port not in egress.ports`, `cloud metadata address`, …).
    pub rule: &'static str,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress denied: {} (allow it in [egress] if this target is meant)", self.rule)
    }
}

impl StdError for Denied {}

impl From<Denied> for Failure {
    fn from(d: Denied) -> Self {
        Failure::new(Status::EgressDenied, d.to_string())
    }
}

/// Where outbound connections may go. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    nets: Vec<IpNet>,
    /// Lowercase names; a leading `*.` matches any name below.
    hosts: Vec<String>,
    ports: Option<Vec<u16>>,
}

/// A bad entry of the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress: {0}")]
pub struct PolicyError(String);

impl EgressPolicy {
    /// The default: every public address, any port; nothing of the denied ranges.
    pub fn deny_internal() -> Self {
        Self::default()
    }

    /// A policy from its configured allow list (CIDRs, addresses, host names, `*.domain`) and
    /// optional port list.
    pub fn new(allow: &[String], ports: Option<Vec<u16>>) -> Result<Self, PolicyError> {
        let mut policy = Self { ports, ..Self::default() };
        for entry in allow {
            let entry = entry.trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.nets.push(net);
            } else if let Ok(ip) = entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if valid_host_pattern(entry) {
                policy.hosts.push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(PolicyError(format!(
                    "`{entry}` in allow is neither a CIDR, an address, a host name nor `*.domain`"
                )));
            }
        }
        if policy.ports.as_ref().is_some_and(|p| p.is_empty() || p.contains(&0)) {
            return Err(PolicyError("ports, when set, lists ports from 1 to 65535".into()));
        }
        Ok(policy)
    }

    /// Allows loopback (both families): what tests and local drills add for their peers.
    pub fn with_loopback(mut self) -> Self {
        self.nets.push("127.0.0.0/8".parse().expect("a CIDR"));
        self.nets.push("::1/128".parse().expect("a CIDR"));
        self
    }

    /// Whether `host` is named on the allow list.
    fn names(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|h| match h.strip_prefix("*.") {
            // Below the domain: at least one label and a dot before it.
            Some(domain) => host.strip_suffix(domain).is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => *h == host,
        })
    }

    /// Checks a port against the port list.
    pub fn check_port(&self, port: u16) -> Result<(), Denied> {
        match &self.ports {
            Some(ports) if !ports.contains(&port) => Err(Denied { rule: "port not in egress.ports" }),
            _ => Ok(()),
        }
    }

    /// Checks one address that `host` resolved to (or that `host` is).
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Denied> {
        let ip = canonical(ip);
        let allowed_net = self.nets.iter().any(|n| n.contains(&ip));
        if let Some(rule) = metadata(ip) {
            return if allowed_net { Ok(()) } else { Err(Denied { rule }) };
        }
        if allowed_net || self.names(host) {
            return Ok(());
        }
        match reserved(ip) {
            Some(rule) => Err(Denied { rule }),
            None => Ok(()),
        }
    }

    /// Checks a URL before a request: its port, its host if that is an address, and for a URL
    /// found at run time (OpenID discovery, JWKS), that it is `https` unless the allow list
    /// names its host. Host names are checked again on the addresses they resolve to.
    pub fn check_url(&self, url: &url::Url, discovered: bool) -> Result<(), Denied> {
        let port = url.port_or_known_default().ok_or(Denied { rule: "a URL without a port" })?;
        self.check_port(port)?;
        let host = match url.host() {
            Some(url::Host::Ipv4(ip)) => {
                self.check_ip("", IpAddr::V4(ip))?;
                None
            }
            Some(url::Host::Ipv6(ip)) => {
                self.check_ip("", IpAddr::V6(ip))?;
                None
            }
            Some(url::Host::Domain(name)) => Some(name),
            None => return Err(Denied { rule: "a URL without a host" }),
        };
        if discovered && url.scheme() != "https" {
            let named = match (host, url.host()) {
                (Some(name), _) => self.names(name),
                (None, Some(url::Host::Ipv4(ip))) => self.nets.iter().any(|n| n.contains(&IpAddr::V4(ip))),
                (None, Some(url::Host::Ipv6(ip))) => self.nets.iter().any(|n| n.contains(&IpAddr::V6(ip))),
                _ => false,
            };
            if !named {
                return Err(Denied { rule: "a discovered URL must be https" });
            }
        }
        Ok(())
    }

    /// Resolves `host` and keeps the addresses the policy allows, in order. Refused when none
    /// is left (the rule of the first refused address is given).
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
        self.check_port(port)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| Failure::from_transport(&e, Status::Unreachable, &format!("resolving {host}")))?
                .collect(),
        };
        match self.allowed_of(bare, found) {
            Ok(allowed) => Ok(allowed),
            Err(Some(denied)) => Err(denied.into()),
            Err(None) => Err(Failure::new(Status::Unreachable, format!("{host} resolves to no address"))),
        }
    }

    /// The addresses `host` resolved to that the policy allows, in order; when none is, the
    /// rule of the first refused one (`None`: there was no address at all).
    fn allowed_of(
        &self,
        host: &str,
        found: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Option<Denied>> {
        let mut first_refusal = None;
        let mut allowed = Vec::new();
        for addr in found {
            match self.check_ip(host, addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(d) => {
                    first_refusal.get_or_insert(d);
                }
            }
        }
        if allowed.is_empty() {
            Err(first_refusal)
        } else {
            Ok(allowed)
        }
    }

    /// Opens a TCP connection to `host:port` on an allowed address, each in turn, within
    /// `timeout` (resolution included).
    pub(crate) async fn connect(&self, host: &str, port: u16, timeout: Duration) -> Result<TcpStream, Failure> {
        let attempt = async {
            let addrs = self.resolve(host, port).await?;
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            let e = last.expect("resolve returns at least one address");
            Err(Failure::from_transport(&e, Status::Unreachable, &format!("connecting to {host}:{port}")))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(Status::Timeout, format!("no connection to {host}:{port} within {timeout:?}"))),
        }
    }
}

/// The refusal inside an error's chain of sources, if the error is one.
pub(crate) fn denied_in(err: &(dyn StdError + 'static)) -> Option<Denied> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(d) = e.downcast_ref::<Denied>() {
            return Some(d.clone());
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(d) = denied_in(inner) {
                return Some(d);
            }
        }
        cur = e.source();
    }
    None
}

/// A name resolver for `reqwest` that hands out only the addresses the policy allows, so that
/// the HTTP client connects to nothing else. (Addresses written in a URL never reach a
/// resolver: [`EgressPolicy::check_url`] checks them.)
pub(crate) struct PolicyResolver(pub(crate) Arc<EgressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            match policy.allowed_of(&host, found) {
                Ok(allowed) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                Err(Some(denied)) => Err(Box::new(denied) as Box<dyn StdError + Send + Sync>),
                Err(None) => Err(format!("{host} resolves to no address").into()),
            }
        })
    }
}

fn valid_host_pattern(entry: &str) -> bool {
    let name = entry.strip_prefix("*.").unwrap_or(entry).trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An IPv4 address carried in IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) as the
/// IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        v4 => v4,
    }
}

/// The cloud metadata services' addresses (AWS, GCP, Azure, Oracle, DigitalOcean at
/// 169.254.169.254; AWS ECS task metadata; Azure's wire server; Alibaba; AWS over IPv6).
fn metadata(ip: IpAddr) -> Option<&'static str> {
    const V4: [Ipv4Addr; 4] = [
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(169, 254, 170, 2),
        Ipv4Addr::new(168, 63, 129, 16),
        Ipv4Addr::new(100, 100, 100, 200),
    ];
    const AWS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    let hit = match ip {
        IpAddr::V4(v4) => V4.contains(&v4),
        IpAddr::V6(v6) => v6 == AWS_V6,
    };
    hit.then_some("cloud metadata address")
}

/// The ranges denied unless allowed, by rule name.
fn reserved(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback address")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified address")
            } else if v4.is_private() {
                Some("private address (RFC 1918)")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared address space (RFC 6598)")
            } else if v4.is_link_local() {
                Some("link-local address")
            } else if v4.is_multicast() {
                Some("multicast address")
            } else if v4.is_broadcast() || o[0] >= 240 {
                Some("reserved or broadcast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback address")
            } else if v6.is_unspecified() {
                Some("unspecified address")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local address")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique-local address (fc00::/7)")
            } else if v6.is_multicast() {
                Some("multicast address")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_denies_internal_ranges_and_allows_public_ones() {
        let p = EgressPolicy::deny_internal();
        for (addr, rule) in [
            ("127.0.0.1", "loopback address"),
            ("10.0.0.1", "private address (RFC 1918)"),
            ("172.31.255.1", "private address (RFC 1918)"),
            ("192.168.1.1", "private address (RFC 1918)"),
            ("100.64.0.1", "shared address space (RFC 6598)"),
            ("169.254.169.254", "cloud metadata address"),
            ("169.254.1.1", "link-local address"),
            ("0.0.0.0", "unspecified address"),
            ("224.0.0.1", "multicast address"),
            ("255.255.255.255", "reserved or broadcast address"),
            ("::1", "loopback address"),
            ("::", "unspecified address"),
            ("fe80::1", "link-local address"),
            ("fd12::1", "unique-local address (fc00::/7)"),
            ("ff02::1", "multicast address"),
            ("::ffff:127.0.0.1", "loopback address"),
            ("::ffff:169.254.169.254", "cloud metadata address"),
            ("64:ff9b::a00:1", "private address (RFC 1918)"),
            ("fd00:ec2::254", "cloud metadata address"),
        ] {
            assert_eq!(p.check_ip("", ip(addr)), Err(Denied { rule }), "{addr}");
        }
        for addr in ["8.8.8.8", "20.190.128.1", "2606:4700::1111", "100.128.0.1", "172.32.0.1"] {
            assert_eq!(p.check_ip("", ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn an_allow_list_lifts_the_default_but_names_never_lift_metadata() {
        let p = EgressPolicy::new(
            &["10.1.0.0/16".into(), "::1".into(), "ldap.corp.example".into(), "*.mail.example".into()],
            None,
        )
        .unwrap();
        assert_eq!(p.check_ip("", ip("10.1.2.3")), Ok(()));
        assert!(p.check_ip("", ip("10.2.0.1")).is_err());
        assert_eq!(p.check_ip("", ip("::1")), Ok(()));
        assert_eq!(p.check_ip("LDAP.corp.example.", ip("10.9.9.9")), Ok(()));
        assert_eq!(p.check_ip("pop.mail.example", ip("192.168.0.5")), Ok(()));
        assert!(p.check_ip("mail.example", ip("192.168.0.5")).is_err(), "*.domain is below the domain only");
        assert!(p.check_ip("evilmail.example", ip("192.168.0.5")).is_err());
        assert_eq!(
            p.check_ip("ldap.corp.example", ip("169.254.169.254")),
            Err(Denied { rule: "cloud metadata address" })
        );
        let m = EgressPolicy::new(&["169.254.169.254/32".into()], None).unwrap();
        assert_eq!(m.check_ip("", ip("169.254.169.254")), Ok(()));
    }

    #[test]
    fn ports_and_urls() {
        let p = EgressPolicy::new(&["idp.example".into()], Some(vec![443, 636])).unwrap();
        assert_eq!(p.check_port(443), Ok(()));
        assert_eq!(p.check_port(22), Err(Denied { rule: "port not in egress.ports" }));
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(p.check_url(&u("https://login.example/token"), false).is_ok());
        assert!(p.check_url(&u("http://login.example/keys"), false).is_err(), "port 80 is not listed");
        assert!(p.check_url(&u("https://169.254.169.254/"), false).is_err());
        assert!(p.check_url(&u("https://[::1]/"), false).is_err());
        let open = EgressPolicy::new(&["idp.example".into()], None).unwrap();
        assert_eq!(
            open.check_url(&u("http://login.example/keys"), true),
            Err(Denied { rule: "a discovered URL must be https" })
        );
        assert!(open.check_url(&u("http://idp.example/keys"), true).is_ok(), "named on the allow list");
        assert!(open.check_url(&u("http://login.example/keys"), false).is_ok(), "configured, not discovered");
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["10.0.0.0/33", "exa mple.com", "-bad.example", "*.", "", "a..b"] {
            assert!(EgressPolicy::new(&[bad.into()], None).is_err(), "{bad}");
        }
        assert!(EgressPolicy::new(&[], Some(vec![])).is_err());
        assert!(EgressPolicy::new(&[], Some(vec![0])).is_err());
    }

    #[tokio::test]
    async fn a_name_is_checked_on_what_it_resolves_to() {
        let p = EgressPolicy::deny_internal();
        let e = p.resolve("localhost", 389).await.unwrap_err();
        assert!(matches!(e, Failure::Target { status: Status::EgressDenied, .. }));
        let l = EgressPolicy::deny_internal().with_loopback();
        assert!(!l.resolve("localhost", 389).await.unwrap().is_empty());
    }
}
