//! A small closed-loop HTTP/1.1 load generator over raw TCP with keep-alive. Deliberately
//! minimal, so that on a 2-core machine it takes as little CPU as possible from the server it
//! measures; the same generator measures the baseline and Rekey.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    latencies_us: Vec<u32>,
}

impl LoadResult {
    pub(crate) fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Latency percentile in milliseconds.
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }
}

/// Reads one response; returns (status, body).
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, Vec<u8>)> {
    buf.clear();
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let mut tmp = [0u8; 8192];
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = std::str::from_utf8(&buf[..header_end]).context("header is not UTF-8")?;
    let status: u16 = head.get(9..12).context("status line")?.parse()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .context("responses carry a content-length")?;
    while buf.len() < header_end + length {
        let mut tmp = [0u8; 8192];
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            bail!("connection closed in the body");
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Ok((status, buf[header_end..header_end + length].to_vec()))
}

/// One request on a fresh connection.
pub(crate) async fn one(addr: SocketAddr, request: &[u8]) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    read_response(&mut stream, &mut Vec::new()).await
}

/// `connections` connections, each sending its request (round-robin over `requests`) as soon
/// as the previous answer arrived, for `duration`. Runs on a runtime of its own (2 threads) so
/// the load does not queue behind the server's tasks.
pub(crate) async fn load(
    addr: SocketAddr,
    requests: Vec<Vec<u8>>,
    connections: usize,
    duration: Duration,
) -> LoadResult {
    let requests = Arc::new(requests);
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let deadline = Instant::now() + duration;
            let start = Instant::now();
            let mut tasks = Vec::new();
            for c in 0..connections {
                let requests = requests.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(200_000);
                    let mut errors = 0u64;
                    let Ok(mut stream) = TcpStream::connect(addr).await else { return (lat, 1) };
                    let _ = stream.set_nodelay(true);
                    let req = &requests[c % requests.len()];
                    let mut buf = Vec::with_capacity(4096);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        if stream.write_all(req).await.is_err() {
                            errors += 1;
                            break;
                        }
                        match read_response(&mut stream, &mut buf).await {
                            Ok((200, _)) => lat.push(t.elapsed().as_micros() as u32),
                            Ok(_) => errors += 1,
                            Err(_) => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    (lat, errors)
                }));
            }
            let mut all = Vec::new();
            let mut errors = 0;
            for t in tasks {
                let (lat, e) = t.await.expect("load task");
                all.extend(lat);
                errors += e;
            }
            let seconds = start.elapsed().as_secs_f64();
            all.sort_unstable();
            LoadResult { requests: all.len() as u64, errors, seconds, latencies_us: all }
        })
    });
    tokio::task::spawn_blocking(move || handle.join().expect("load thread")).await.expect("join")
}
