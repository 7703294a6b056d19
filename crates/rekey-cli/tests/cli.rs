//! CLI tests: the real `rekey` binary, as a server and as a client, over real TCP, each in a
//! fresh folder.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rekey");

/// A running `rekey serve`; killed on drop. Its stderr goes to `log`.
struct Server {
    child: Child,
    addr: String,
    dir: PathBuf,
    log: PathBuf,
}

impl Server {
    fn dev(dir: &Path) -> Self {
        Self::start(
            dir,
            &["serve", "--dev", "--listen", "127.0.0.1:0", "--data", &dir.join("data").display().to_string()],
            "http",
        )
    }

    fn start(dir: &Path, args: &[&str], scheme: &str) -> Self {
        let log = dir.join(format!("server-{}.log", Instant::now().elapsed().as_nanos() + rand_suffix()));
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env_remove("REKEY_TOKEN")
            .env_remove("REKEY_ADDR")
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

    fn root_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data").join("root-token")).unwrap().trim().to_owned()
    }

    fn rekey(&self, token: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(&self.addr, token, args, stdin, &[])
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn find_addr(line: &str) -> Option<String> {
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

fn run(addr: &str, token: &str, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
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

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure, got: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_readme_tour_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    assert!(root.starts_with("rk_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["root-token", "dev-root.key"] {
            let mode = std::fs::metadata(dir.path().join("data").join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let status = ok(&server.rekey(&root, &["-o", "table", "status"], None));
    assert!(status.contains("dev (unsealed)") && status.contains("WARNING"), "{status}");
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk", "--contact", "it@acme.example"], None));
    let tenants = ok(&server.rekey(&root, &["-o", "table", "tenant", "list"], None));
    assert!(tenants.lines().nth(1).unwrap().starts_with("acme"), "{tenants}");
    let shown = ok(&server.rekey(&root, &["-o", "json", "tenant", "show", "acme"], None));
    assert!(shown.contains("it@acme.example"));

    let put = [
        "cred",
        "put",
        "acme/directory",
        "--kind",
        "ldap",
        "--set",
        "url=ldaps://dc1.acme.example:636",
        "--set",
        "bind_dn=cn=svc-mail,ou=svc,dc=acme,dc=example",
        "--secret-stdin",
    ];
    ok(&server.rekey(&root, &put, Some(b"Tour-Secret-1\n")));
    let secret_file = dir.path().join("client-secret.txt");
    std::fs::write(&secret_file, "Tour-Secret-2\n").unwrap();
    let ews = [
        "cred",
        "put",
        "acme/ews",
        "--kind",
        "entra-app",
        "--set",
        "token_url=https://login.example/t/oauth2/v2.0/token",
        "--set",
        "client_id=11111111-2222",
        "--set",
        "scope=https://outlook.office365.com/.default",
        "--secret-file",
        secret_file.to_str().unwrap(),
    ];
    ok(&server.rekey(&root, &ews, None));
    let pop = [
        "cred",
        "put",
        "acme/journal",
        "--kind",
        "pop3",
        "--set",
        "host=mail.acme.example",
        "--set",
        "port=995",
        "--set",
        "tls=implicit",
        "--set",
        "user=journal@acme.example",
        "--secret-stdin",
    ];
    ok(&server.rekey(&root, &pop, Some(b"Tour-Secret-3")));
    ok(&server.rekey(
        &root,
        &["cred", "put", "acme/other", "--kind", "generic", "--secret-stdin"],
        Some(b"Tour-Secret-4"),
    ));

    let show = ok(&server.rekey(&root, &["-o", "table", "cred", "show", "acme/directory"], None));
    assert!(show.contains("bind_dn=cn=svc-mail") && !show.contains("Tour-Secret"), "{show}");
    // reveal prints exactly the secret (the trailing newline from echo was dropped on put).
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/directory"], None)), "Tour-Secret-1\n");
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/ews"], None)), "Tour-Secret-2\n");
    let list = ok(&server.rekey(
        &root,
        &["-o", "table", "cred", "list", "--tenant", "acme", "--kind", "ldap", "--region", "uk"],
        None,
    ));
    assert_eq!(list.lines().count(), 2, "{list}");

    ok(&server.rekey(&root, &put, Some(b"Tour-Secret-5")));
    let versions = ok(&server.rekey(&root, &["-o", "table", "cred", "versions", "acme/directory"], None));
    assert!(versions.contains("previous") && versions.contains("current"), "{versions}");
    ok(&server.rekey(&root, &["cred", "rollback", "acme/directory", "--to", "1"], None));
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/directory"], None)), "Tour-Secret-1\n");

    // A connector token: shown once, works only for its credential, only from loopback.
    let token = ok(&server.rekey(
        &root,
        &[
            "-o",
            "table",
            "token",
            "create",
            "--role",
            "connector",
            "--tenant",
            "acme",
            "--cred",
            "directory",
            "--cidr",
            "127.0.0.1/32",
            "--ttl",
            "1h",
        ],
        None,
    ));
    let connector = token.trim();
    assert_eq!(
        ok(&server.rekey(connector, &["-o", "table", "cred", "reveal", "acme/directory"], None)),
        "Tour-Secret-1\n"
    );
    let denied = fails(&server.rekey(connector, &["cred", "reveal", "acme/ews"], None));
    assert!(denied.contains("not found") && denied.contains("HTTP 404"), "{denied}");
    let tokens = ok(&server.rekey(&root, &["-o", "table", "token", "list"], None));
    assert!(tokens.contains("connector") && !tokens.contains(connector), "{tokens}");
    let id = tokens.lines().find(|l| l.contains("connector")).unwrap().split_whitespace().next().unwrap().to_owned();
    ok(&server.rekey(&root, &["token", "revoke", &id], None));
    assert!(fails(&server.rekey(connector, &["cred", "reveal", "acme/directory"], None)).contains("HTTP 401"));

    ok(&server.rekey(&root, &["cred", "delete", "acme/other"], None));
    assert!(fails(&server.rekey(&root, &["cred", "show", "acme/other"], None)).contains("not found"));

    let tail = ok(&server.rekey(&root, &["-o", "table", "audit", "tail", "-n", "50"], None));
    assert!(tail.contains("cred.reveal") && tail.contains("denied") && tail.contains("token.revoke"), "{tail}");
    let verify = ok(&server.rekey(&root, &["-o", "table", "audit", "verify"], None));
    assert!(verify.starts_with("audit log OK"), "{verify}");
    let export = ok(&server.rekey(&root, &["audit", "export"], None));
    assert!(export.lines().count() > 25, "{export}");
    assert!(export.lines().all(|l| l.starts_with('{') && l.contains("\"mac\"")), "{export}");

    // No secret, and no token secret, in the server's log or the audit export.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log_text();
    assert!(log.contains("request"), "the server logs requests");
    for needle in ["Tour-Secret", connector.rsplit('_').next().unwrap(), root.rsplit('_').next().unwrap()] {
        assert!(!log.contains(needle), "{needle} in the server log");
        assert!(!export.contains(needle), "{needle} in the audit export");
    }
}

#[test]
fn secrets_never_come_from_arguments_and_bad_input_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let err = fails(&server.rekey(&root, &["cred", "put", "acme/x", "--kind", "generic"], None));
    assert!(err.contains("--secret-stdin"), "{err}");
    let err = fails(&server.rekey(&root, &["cred", "put", "acme/x", "--kind", "generic", "--secret", "hunter2"], None));
    assert!(err.contains("unexpected argument"), "{err}");
    let err = fails(&server.rekey(
        &root,
        &["cred", "put", "acme/x", "--kind", "ldap", "--set", "url=ldap://h", "--secret-stdin"],
        Some(b"pw"),
    ));
    assert!(err.contains("bind_dn") && err.contains("invalid_field"), "{err}");
    let err = fails(&server.rekey(&root, &["cred", "show", "nonsense"], None));
    assert!(err.contains("tenant/name"), "{err}");
    let err = fails(&server.rekey(&root, &["tenant", "create", "Bad_Name", "--region", "uk"], None));
    assert!(err.contains("invalid_name"), "{err}");
    let err = fails(&run(&server.addr, "rk_nope", &["status"], None, &[]));
    assert!(err.contains("unauthenticated"), "{err}");
    let err = fails(&run("http://127.0.0.1:1", &root, &["status"], None, &[]));
    assert!(err.contains("cannot reach the server"), "{err}");
    // A binary secret goes through base64 and comes back byte for byte.
    let binary = [0u8, 159, 146, 150, 255, 10];
    ok(&server.rekey(
        &root,
        &["cred", "put", "acme/bin", "--kind", "generic", "--secret-stdin", "--keep-newline"],
        Some(&binary),
    ));
    let out = server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/bin"], None);
    assert!(out.status.success());
    assert_eq!(out.stdout, binary);
}

#[test]
fn import_is_all_or_nothing_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let file = dir.path().join("creds.jsonl");
    let mut lines: Vec<String> = (0..250)
        .map(|i| {
            format!(r#"{{"tenant":"t{}","region":"us","name":"c{i}","kind":"generic","secret":"import-{i}"}}"#, i % 7)
        })
        .collect();
    lines[137] = r#"{"tenant":"acme","name":"x","kind":"ldap","fields":{"url":"ldap://h"},"secret":"s"}"#.to_owned();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let args = ["cred", "import", file.to_str().unwrap(), "--create-tenants", "--chunk", "40"];
    let err = fails(&server.rekey(&root, &args, None));
    assert!(err.contains("line 138") && err.contains("bind_dn") && err.contains("nothing was written"), "{err}");
    let list = ok(&server.rekey(&root, &["-o", "json", "cred", "list"], None));
    assert_eq!(list.trim(), "[]", "a failed import writes nothing");
    // --continue-on-error writes the good lines, lists the bad one, and still exits non-zero.
    let out = server.rekey(
        &root,
        &[
            "-o",
            "table",
            "cred",
            "import",
            file.to_str().unwrap(),
            "--create-tenants",
            "--chunk",
            "40",
            "--continue-on-error",
        ],
        None,
    );
    let err = fails(&out);
    assert!(err.contains("line 138"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 249 of 250 lines; 7 tenants created"), "{stdout}");
    lines[137] = r#"{"tenant":"acme","name":"x","kind":"generic","secret":"s"}"#.to_owned();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = ok(&server.rekey(
        &root,
        &["-o", "table", "cred", "import", "-", "--chunk", "100"],
        Some(lines.join("\n").as_bytes()),
    ));
    assert!(out.contains("imported 250 of 250 lines"), "{out}");
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "t3/c3"], None)), "import-3\n");
    let versions = ok(&server.rekey(&root, &["-o", "json", "cred", "versions", "t3/c3"], None));
    assert!(versions.contains("\"version\": 2"), "a second import adds a version");
}

#[test]
fn nothing_is_lost_when_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let children: Vec<Child> = (0..30)
        .map(|i| {
            let mut c = Command::new(BIN)
                .args(["cred", "put", &format!("acme/c{i}"), "--kind", "generic", "--secret-stdin"])
                .env("REKEY_ADDR", &server.addr)
                .env("REKEY_TOKEN", &root)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(format!("durable-{i}").as_bytes()).unwrap();
            c
        })
        .collect();
    let acknowledged: Vec<usize> = children
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| c.wait_with_output().unwrap().status.success().then_some(i))
        .collect();
    assert_eq!(acknowledged.len(), 30);
    server.kill9();
    let again = Server::dev(dir.path());
    assert_eq!(again.root_token(), root, "the root token is not recreated");
    for i in acknowledged {
        let got = ok(&again.rekey(&root, &["-o", "table", "cred", "reveal", &format!("acme/c{i}")], None));
        assert_eq!(got, format!("durable-{i}\n"));
    }
    assert!(ok(&again.rekey(&root, &["-o", "table", "audit", "verify"], None)).starts_with("audit log OK"));
}

#[test]
fn the_production_shape_needs_tls_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    // Dev mode refuses a public address; production refuses to run without TLS.
    let out = Command::new(BIN)
        .args(["serve", "--dev", "--listen", "0.0.0.0:0", "--data", "d"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback") && !out.status.success());
    let cfg = dir.path().join("rekey.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\n").unwrap();
    let out =
        Command::new(BIN).args(["serve", "--config", cfg.to_str().unwrap()]).current_dir(dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls") && !out.status.success());
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nlisten_port = 3\n").unwrap();
    let out =
        Command::new(BIN).args(["serve", "--config", cfg.to_str().unwrap()]).current_dir(dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_port"), "{}", String::from_utf8_lossy(&out.stderr));

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n[store]\nurl = \"sqlite://{}/prod.db\"\n[log]\nformat = \"json\"\n",
            data.display(),
            data.display()
        ),
    )
    .unwrap();
    let mut server = Server::start(dir.path(), &["serve", "--config", cfg.to_str().unwrap()], "https");
    // In production the root token goes to stdout once, not to a file.
    let mut first = String::new();
    BufReader::new(server.child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let root = first.trim().to_owned();
    assert!(root.starts_with("rk_") && !data.join("root-token").exists());
    let addr = server.addr.replace("127.0.0.1", "localhost");
    let cacert = dir.path().join("cert.pem");
    let status = ok(&run(&addr, &root, &["-o", "json", "status"], None, &[("REKEY_CACERT", cacert.to_str().unwrap())]));
    assert!(status.contains("\"store\": \"sqlite\""), "{status}");
    let err = fails(&run(&addr, &root, &["status"], None, &[]));
    assert!(err.contains("cannot reach the server"), "an unknown CA is refused: {err}");
}
