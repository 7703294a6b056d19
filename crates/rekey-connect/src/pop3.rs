//! POP3 login check (RFC 1939, STLS from RFC 2595, implicit TLS from RFC 8314), written by hand.
//!
//! A check needs five commands (greeting, STLS, USER, PASS, QUIT), and the POP3 crates on
//! crates.io are either unmaintained or synchronous, so this small client is written here on
//! tokio and tokio-rustls. `PASS` is sent only inside TLS, unless the credential says `tls=none`.

use rekey_types::fields::TlsMode;
use rekey_types::{Fields, Secret};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::error::one_line;
use crate::{secret_text, tls, Failure, Limits, Status};

/// RFC 1939 allows 512 octets per response line; some servers send a little more.
const MAX_LINE: usize = 4096;

pub(crate) async fn verify(fields: &Fields, secret: &Secret, limits: &Limits) -> Result<String, Failure> {
    let host = fields.get("host").ok_or_else(|| Failure::Config("the credential has no host".into()))?;
    let port: u16 =
        fields.get("port").and_then(|p| p.parse().ok()).ok_or_else(|| Failure::Config("bad port".into()))?;
    let user = fields.get("user").ok_or_else(|| Failure::Config("the credential has no user".into()))?;
    let mode: TlsMode = fields.get("tls").unwrap_or("implicit").parse().map_err(Failure::Config)?;
    let password = secret_text(secret)?;
    let tcp = connect(host, port, limits).await?;
    match mode {
        TlsMode::Implicit => {
            let mut session = BufReader::new(handshake(tcp, host, fields).await?);
            expect_ok(&mut session, "greeting").await?;
            login(&mut session, user, password).await
        }
        TlsMode::StartTls => {
            let mut plain = BufReader::new(tcp);
            expect_ok(&mut plain, "greeting").await?;
            send(&mut plain, b"STLS\r\n").await?;
            let reply = read_line(&mut plain).await?;
            if !reply.starts_with("+OK") {
                return Err(Failure::new(Status::TlsFailed, format!("the server refused STLS: {}", one_line(&reply))));
            }
            if !plain.buffer().is_empty() {
                return Err(Failure::protocol("the server sent data after +OK to STLS"));
            }
            let mut session = BufReader::new(handshake(plain.into_inner(), host, fields).await?);
            login(&mut session, user, password).await
        }
        TlsMode::None => {
            let mut session = BufReader::new(tcp);
            expect_ok(&mut session, "greeting").await?;
            login(&mut session, user, password).await
        }
    }
}

/// Opens a TCP connection within the connect limit, to an address the egress policy allows.
async fn connect(host: &str, port: u16, limits: &Limits) -> Result<TcpStream, Failure> {
    let tcp = limits.egress.connect(host, port, limits.connect).await?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

async fn handshake(
    tcp: TcpStream,
    host: &str,
    fields: &Fields,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let connector = tokio_rustls::TlsConnector::from(tls::client_config(fields)?);
    connector
        .connect(tls::server_name(host)?, tcp)
        .await
        .map_err(|e| Failure::from_transport(&e, Status::TlsFailed, "TLS handshake"))
}

async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut BufReader<S>,
    user: &str,
    password: &str,
) -> Result<String, Failure> {
    if user.contains(['\r', '\n']) {
        return Err(Failure::Config("the user name contains a line break".into()));
    }
    send(session, format!("USER {user}\r\n").as_bytes()).await?;
    let reply = read_line(session).await?;
    if !reply.starts_with("+OK") {
        return Err(refusal(&reply));
    }
    let command = Zeroizing::new(format!("PASS {password}\r\n"));
    send(session, command.as_bytes()).await?;
    let reply = read_line(session).await?;
    let accepted = reply.starts_with("+OK")
        // RFC 2449: authenticated, but the mailbox is locked by another session.
        || reply.starts_with("-ERR [IN-USE]");
    if !accepted {
        return Err(refusal(&reply));
    }
    let _ = send(session, b"QUIT\r\n").await;
    let _ = read_line(session).await;
    Ok(format!("logged in as {user}"))
}

/// A `-ERR` to USER or PASS: a refusal of the credentials unless the server says it is its own
/// problem (RFC 3206 `[SYS/...]`).
fn refusal(reply: &str) -> Failure {
    if reply.starts_with("-ERR [SYS/") {
        Failure::protocol(format!("the server failed: {}", one_line(reply)))
    } else if reply.starts_with("-ERR") {
        Failure::auth(format!("login refused: {}", one_line(reply)))
    } else {
        Failure::protocol(format!("unexpected answer: {}", one_line(reply)))
    }
}

async fn expect_ok<S: AsyncRead + AsyncWrite + Unpin>(session: &mut BufReader<S>, what: &str) -> Result<(), Failure> {
    let line = read_line(session).await?;
    if line.starts_with("+OK") {
        Ok(())
    } else {
        Err(Failure::protocol(format!("{what}: expected +OK, got {}", one_line(&line))))
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(session: &mut BufReader<S>, bytes: &[u8]) -> Result<(), Failure> {
    let stream = session.get_mut();
    stream.write_all(bytes).await.map_err(|e| Failure::from_transport(&e, Status::ProtocolError, "sending"))?;
    stream.flush().await.map_err(|e| Failure::from_transport(&e, Status::ProtocolError, "sending"))
}

async fn read_line<S: AsyncRead + Unpin>(session: &mut BufReader<S>) -> Result<String, Failure> {
    let mut line = Vec::new();
    loop {
        let available =
            session.fill_buf().await.map_err(|e| Failure::from_transport(&e, Status::ProtocolError, "reading"))?;
        if available.is_empty() {
            return Err(Failure::protocol("the server closed the connection"));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        line.extend_from_slice(chunk);
        let used = chunk.len();
        session.consume(used);
        if line.len() > MAX_LINE {
            return Err(Failure::protocol("a response line is longer than 4096 bytes"));
        }
        if done {
            let text = String::from_utf8_lossy(&line);
            return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
        }
    }
}
