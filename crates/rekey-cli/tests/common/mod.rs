//! Helpers shared by the CLI test files: a running `rekey serve`, and the `rekey` client.
#![allow(dead_code)]

pub(crate) mod peers;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_rekey");

/// A running `rekey serve`; killed on drop. Its stderr goes to `log`.
pub(crate) struct Server {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// A dev server whose egress policy allows loopback, where the test peers listen.
    pub(crate) fn dev(dir: &Path) -> Self {
        let cfg = dir.join("dev.toml");
        std::fs::write(&cfg, LOOPBACK_EGRESS).unwrap();
        let args = dev_with_config(&dir.join("data"), &cfg);
        Self::start(dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), "http")
    }

    pub(crate) fn start(dir: &Path, args: &[&str], scheme: &str) -> Self {
        Self::start_env(dir, args, scheme, &[])
    }

    pub(crate) fn start_env(dir: &Path, args: &[&str], scheme: &str, env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("server-{}.log", Instant::now().elapsed().as_nanos() + rand_suffix()));
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env_remove("REKEY_TOKEN")
            .env_remove("REKEY_ADDR")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting rekey serve");
        // The dev banner (and, in production, the log line) names the bound address.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log_path).unwrap();
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                writeln!(file, "{line}").unwrap();
                if !sent {
                    if let Some(addr) = find_addr(&line) {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("server did not report its address");
        Self { child, addr: format!("{scheme}://{addr}"), dir: dir.to_owned(), log }
    }

    pub(crate) fn root_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data").join("root-token")).unwrap().trim().to_owned()
    }

    pub(crate) fn rekey(&self, token: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(&self.addr, token, args, stdin, &[])
    }

    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

pub(crate) fn find_addr(line: &str) -> Option<String> {
    if let Some(rest) = line.split("Rekey dev server on http://").nth(1) {
        return Some(rest.trim().to_owned());
    }
    // JSON log line of a production server: "addr":"127.0.0.1:PORT" ... "listening"
    if line.contains("listening") {
        let start = line.find("\"addr\":\"")? + 8;
        let end = line[start..].find('"')? + start;
        return Some(line[start..end].to_owned());
    }
    None
}

pub(crate) fn run(addr: &str, token: &str, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("REKEY_ADDR", addr).env("REKEY_TOKEN", token).env_remove("REKEY_CACERT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub(crate) fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure, got: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The egress section the tests add: their peers listen on loopback, which the default policy
/// refuses.
pub(crate) const LOOPBACK_EGRESS: &str = "\n[egress]\nallow = [\"127.0.0.0/8\", \"::1\"]\n";

pub(crate) fn dev_with_config(data: &Path, cfg: &Path) -> Vec<String> {
    ["serve", "--dev", "--listen", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--config", cfg.to_str().unwrap()]
        .map(str::to_owned)
        .to_vec()
}
