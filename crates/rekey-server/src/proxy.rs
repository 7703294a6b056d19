//! Who the client is when Rekey sits behind a proxy or load balancer.
//!
//! Only a request whose TCP peer is in `[server] trusted_proxies` may name its client: by
//! `X-Forwarded-For`, walked from the right (the address the last trusted proxy saw) past every
//! address that is itself a trusted proxy, so a client that sends its own `X-Forwarded-For`
//! to the proxy cannot pick the address that counts; or, on a listener with `proxy_protocol`, by
//! the PROXY protocol v2 header the proxy sends first ([`read_header`]). From any other peer both
//! are ignored (a PROXY header is then just bytes that are not HTTP). The address found is the
//! one CIDR-bound tokens are checked against, the audit log records, and the per-source limits
//! count.
//!
//! The PROXY protocol v2 header is parsed here by hand: it is a 16-byte preamble and one or two
//! fixed-size addresses, too small a format to deserve a dependency.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The client's address as this server decided it (the TCP peer, or who a trusted proxy says
/// it forwards for).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub IpAddr);

/// An IPv4 peer reached over an IPv6 socket shows up as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `[server] trusted_proxies`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From the configured CIDRs (already checked).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request from `peer`: `peer` itself unless it is a trusted proxy that
    /// names another in `X-Forwarded-For`. A trusted proxy's header that does not parse as a
    /// list of addresses is an error (the request is refused, not served as the proxy's).
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, &'static str> {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return Ok(peer);
        }
        let mut hops = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let text = value.to_str().map_err(|_| "X-Forwarded-For is not ASCII")?;
            for part in text.split(',') {
                let ip = part.trim().parse::<IpAddr>().map_err(|_| "X-Forwarded-For holds something not an address")?;
                hops.push(canonical(ip));
            }
        }
        Ok(hops.iter().rev().find(|ip| !self.trusts(**ip)).or(hops.first()).copied().unwrap_or(peer))
    }
}

/// The PROXY protocol v2 preamble.
const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// The longest address block read (an IPv6 pair is 36 bytes; TLVs after it are read and dropped).
const MOST_LENGTH: usize = 1024;
/// How long a trusted proxy has to send its header.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a PROXY protocol v2 header from the start of a connection: the client's address for a
/// `PROXY` command over TCP, `None` for `LOCAL` (the proxy's own health check) or an address
/// family other than TCP over IPv4 or IPv6. An error for anything that is not such a header.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, &'static str> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).await.map_err(|_| "the connection ended before a PROXY header")?;
    if head[..12] != SIGNATURE {
        return Err("not a PROXY protocol v2 header");
    }
    let (version, command) = (head[12] >> 4, head[12] & 0x0F);
    if version != 2 || command > 1 {
        return Err("a PROXY header of another version or command");
    }
    let length = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if length > MOST_LENGTH {
        return Err("a PROXY header longer than this server reads");
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.map_err(|_| "the connection ended inside a PROXY header")?;
    if command == 0 {
        return Ok(None);
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match head[13] {
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 if length >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port(&body[8..10]))))
        }
        0x21 if length >= 36 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&body[..16]).expect("16 bytes"));
            Ok(Some(SocketAddr::new(IpAddr::V6(ip), port(&body[32..34]))))
        }
        0x11 | 0x21 => Err("a PROXY header too short for its addresses"),
        _ => Ok(None),
    }
}

/// The client a PROXY protocol header named, kept on each request of its connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxiedClient(pub SocketAddr);

/// Reads the PROXY protocol v2 header of a connection from a trusted proxy before anything else
/// (before TLS, on a TLS listener); a connection from any other peer is passed on untouched.
#[derive(Clone)]
pub(crate) struct ProxyAcceptor {
    pub trusted: std::sync::Arc<TrustedProxies>,
}

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for ProxyAcceptor {
    type Stream = tokio::net::TcpStream;
    type Service = AddClient<S>;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, mut stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let trusted = self.trusted.clone();
        Box::pin(async move {
            let peer = stream.peer_addr()?;
            let client = if trusted.trusts(peer.ip()) {
                match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await {
                    Ok(Ok(client)) => client,
                    Ok(Err(why)) => {
                        tracing::warn!(peer = %peer.ip(), why, "closed a connection from a trusted proxy");
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
                    }
                    Err(_) => {
                        tracing::warn!(peer = %peer.ip(), "a trusted proxy sent no PROXY header in time");
                        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no PROXY header"));
                    }
                }
            } else {
                None
            };
            Ok((stream, AddClient { inner: service, client }))
        })
    }
}

/// A connection's service that marks each request with the client its PROXY header named.
#[derive(Clone)]
pub(crate) struct AddClient<S> {
    inner: S,
    client: Option<SocketAddr>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for AddClient<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        if let Some(client) = self.client {
            req.extensions_mut().insert(ProxiedClient(client));
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only_and_walked_from_the_right() {
        let t = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = ip("10.1.2.3");
        assert_eq!(t.client(ip("192.0.2.9"), &headers(&["198.51.100.1"])), Ok(ip("192.0.2.9")), "untrusted peer");
        assert_eq!(t.client(proxy, &headers(&[])), Ok(proxy), "no header: the proxy itself");
        assert_eq!(t.client(proxy, &headers(&["192.0.2.7"])), Ok(ip("192.0.2.7")));
        // A client's own header comes first; what the proxies appended is what counts.
        assert_eq!(t.client(proxy, &headers(&["192.0.2.7, 203.0.113.5, 10.0.0.2"])), Ok(ip("203.0.113.5")));
        assert_eq!(t.client(proxy, &headers(&["192.0.2.7", "203.0.113.5"])), Ok(ip("203.0.113.5")), "several headers");
        assert_eq!(t.client(proxy, &headers(&["10.0.0.9, 10.0.0.2"])), Ok(ip("10.0.0.9")), "only proxies: the first");
        assert_eq!(t.client(ip("::ffff:10.1.2.3"), &headers(&["2001:db8::1"])), Ok(ip("2001:db8::1")));
        for bad in ["unknown", "192.0.2.7:443", "", "192.0.2.7,,1.2.3.4"] {
            assert!(t.client(proxy, &headers(&[bad])).is_err(), "{bad}");
        }
        assert_eq!(TrustedProxies::default().client(proxy, &headers(&["192.0.2.7"])), Ok(proxy), "none trusted");
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[tokio::test]
    async fn proxy_protocol_v2_headers() {
        let v4 = v2(1, 0x11, &[192, 0, 2, 7, 10, 0, 0, 1, 0x1F, 0x90, 0x01, 0xBB]);
        assert_eq!(read_header(&mut v4.as_slice()).await, Ok(Some("192.0.2.7:8080".parse().unwrap())));
        let mut six = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        six.extend_from_slice(&[0; 16]);
        six.extend_from_slice(&[0, 80, 1, 187]);
        six.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // a TLV, read and dropped
        let six = v2(1, 0x21, &six);
        assert_eq!(read_header(&mut six.as_slice()).await, Ok(Some("[2001:db8::1]:80".parse().unwrap())));
        assert_eq!(read_header(&mut v2(0, 0x00, &[]).as_slice()).await, Ok(None), "LOCAL");
        assert_eq!(read_header(&mut v2(1, 0x31, &[0; 216]).as_slice()).await, Ok(None), "a unix socket: unknown");
        for bad in [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r\n".to_vec(),
            v2(1, 0x11, &[192, 0, 2]),
            {
                let mut h = v2(1, 0x11, &[0; 12]);
                h[12] = 0x12;
                h
            },
            {
                let mut h = v2(1, 0x11, &[]);
                h[14] = 0xFF;
                h
            },
            SIGNATURE[..8].to_vec(),
        ] {
            assert!(read_header(&mut bad.as_slice()).await.is_err(), "{bad:?}");
        }
    }
}
