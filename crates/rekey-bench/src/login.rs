//! Workload logins per second (`POST /v1/auth/jwt/login`, each a durable token row and audit
//! event) for ES256 and RS256 JWTs, against the bare signature check of the same JWT with the
//! same key in the same run (two threads, as the server has two workers).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rekey_crypto::jws::{JwsAlg, PublicJwk};
use rekey_crypto::jwt::UnverifiedJwt;
use rekey_server::App;
use serde_json::json;

use crate::load::{load, one};
use crate::{dev_config, report};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwt(alg: &str, kid: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let claims = json!({"iss": "https://bench.example", "aud": "rekey", "sub": "system:serviceaccount:mail:fetcher",
        "exp": now + 3600, "iat": now, "kubernetes.io": {"namespace": "mail"}});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// Bare checks of `token` with `key` per second, on two threads for `duration`.
fn bare_checks(token: &str, alg: JwsAlg, key: &PublicJwk, duration: Duration) -> f64 {
    let started = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while started.elapsed() < duration {
                        let parsed = UnverifiedJwt::parse(token).expect("a JWT");
                        assert!(parsed.verify_with(alg, key));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64()
}

pub(crate) async fn run(seconds: u64, connections: usize) -> Result<()> {
    let duration = Duration::from_secs(seconds);
    let rng = SystemRandom::new();
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref())?;
    let point = ec.public_key().as_ref().to_vec();
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..])});
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048)?;
    let parts = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
    let rsa_jwk = json!({"kty": "RSA", "kid": "rsa", "n": b64(&parts.n), "e": b64(&parts.e)});
    let es256 = jwt("ES256", "ec", |m| ec.sign(&rng, m).expect("sign").as_ref().to_vec());
    let rs256 = jwt("RS256", "rsa", |m| {
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(&RSA_PKCS1_SHA256, &rng, m, &mut sig).expect("sign");
        sig
    });

    let dir = tempfile::tempdir()?;
    let mut app = App::build(dev_config(&dir.path().join("data"))).await?;
    let root = app.root_token.take().context("fresh vault has a root token")?.expose().to_owned();
    let started = app.start(std::future::pending()).await?;
    let addr = started.addr;
    let request = |method: &str, path: &str, token: Option<&str>, body: &str| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    for (method, path, body) in [
        ("POST", "/v1/tenants", json!({"name": "acme", "region": "uk"})),
        ("PUT", "/v1/tenants/acme/credentials/dir", json!({"kind": "generic", "secret": "bench"})),
        (
            "PUT",
            "/v1/jwt-roles/k8s",
            json!({"issuer": "https://bench.example", "jwks": {"keys": [ec_jwk, rsa_jwk]}, "audiences": ["rekey"],
                   "bound_subject": "system:serviceaccount:mail:*", "bound_claims": {"/kubernetes.io/namespace": ["mail"]},
                   "role": "connector", "tenant": "acme", "credentials": ["dir"]}),
        ),
    ] {
        let (s, b) = one(addr, &request(method, path, Some(&root), &body.to_string())).await?;
        anyhow::ensure!(s == 200, "{path}: {s} {}", String::from_utf8_lossy(&b));
    }
    println!(
        "JWT login over HTTP ({connections} connections, {seconds} s each; every login a durable token row and audit \
         event) against the bare signature check (2 threads), one 2-core machine (load generator included)"
    );
    for (name, token, alg, jwk) in
        [("ES256", &es256, JwsAlg::Es256, &ec_jwk), ("RS256", &rs256, JwsAlg::Rs256, &rsa_jwk)]
    {
        let key: PublicJwk = serde_json::from_value(jwk.clone())?;
        let checks = bare_checks(token, alg, &key, duration);
        let body = json!({"role": "k8s", "jwt": token}).to_string();
        let login = request("POST", "/v1/auth/jwt/login", None, &body);
        let (s, b) = one(addr, &login).await?;
        anyhow::ensure!(s == 200, "login: {s} {}", String::from_utf8_lossy(&b));
        let r = load(addr, vec![login], connections, duration).await;
        println!("{name} bare signature check              {checks:>9.0} checks/s");
        report(&format!("{name} login"), &r);
        println!("{name} logins per bare check: {:.3}", r.rate() / checks);
    }
    Ok(())
}
