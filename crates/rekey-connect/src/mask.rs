//! Masks the secrets Rekey sent in an exchange out of the text of the target's reply before it
//! becomes an outcome's detail (which reaches the caller, the health row and the audit log).
//!
//! A target that echoes what it was sent (a `PASS` or `AUTH` argument in an error line, a
//! client secret in an `error_description`, an `Authorization` header in a diagnostic page)
//! would otherwise put the secret there. Masked: each secret as sent and in the encodings a
//! protocol gives it (base64, as in SMTP AUTH and HTTP Basic; percent and form encoding, as in
//! an OAuth form body), and any base64 run of the text that decodes to bytes holding a secret
//! (so `AUTH PLAIN`'s `\0user\0password` is caught too). If a secret can still be found in the
//! text percent-decoded, the whole reply is withheld. Secrets shorter than [`MIN_MASKED`] bytes
//! are not searched for: masking them would garble ordinary words, and such a secret is no
//! secret.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// What replaces a secret in a detail.
pub(crate) const MASK: &str = "[masked]";
/// The shortest secret searched for.
pub(crate) const MIN_MASKED: usize = 4;
/// Said instead of a reply that still holds a secret in a form not masked piece by piece.
const WITHHELD: &str = "[the reply is withheld: it holds a secret Rekey sent]";

/// `text` with every secret of `sent` masked.
pub(crate) fn mask(text: &str, sent: &[&[u8]]) -> String {
    let secrets: Vec<&[u8]> = sent.iter().copied().filter(|s| s.len() >= MIN_MASKED).collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    // Base64 runs first, whole: a secret's own base64 can sit inside a longer one.
    let mut out = mask_base64_runs(text, &secrets);
    for s in &secrets {
        for form in encodings(s) {
            if !form.is_empty() && out.contains(&form) {
                out = out.replace(&form, MASK);
            }
        }
    }
    let decoded = percent_decode(&out);
    if secrets.iter().any(|s| contains(&decoded, s) || contains(out.as_bytes(), s)) {
        return WITHHELD.to_owned();
    }
    out
}

/// The forms a secret takes on the wire, longest first (so a longer form is replaced whole).
fn encodings(secret: &[u8]) -> Vec<String> {
    let mut forms = vec![
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        url::form_urlencoded::byte_serialize(secret).collect::<String>(),
        percent_encode(secret),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        forms.push(text.to_owned());
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

/// Replaces each run of base64 characters (8 or more) that decodes to bytes holding a secret.
fn mask_base64_runs(text: &str, secrets: &[&[u8]]) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 8 && decodes_to_secret(run, secrets) {
            out.push_str(MASK);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_b64(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn decodes_to_secret(run: &str, secrets: &[&[u8]]) -> bool {
    let bare = run.trim_end_matches('=');
    [STANDARD.decode(run), STANDARD_NO_PAD.decode(bare), URL_SAFE.decode(run), URL_SAFE_NO_PAD.decode(bare)]
        .into_iter()
        .flatten()
        .any(|bytes| secrets.iter().any(|s| contains(&bytes, s)))
}

/// RFC 3986 percent-encoding of everything but unreserved characters, upper-case hex.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` (either case) and `+` as a space; anything else is kept as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"p@ss w0rd+/x";

    #[test]
    fn each_encoding_of_a_secret_is_masked() {
        let plain = "-ERR [AUTH] bad password p@ss w0rd+/x for svc";
        assert_eq!(mask(plain, &[S]), "-ERR [AUTH] bad password [masked] for svc");
        let b64 = format!("535 5.7.8 rejected {}", STANDARD.encode(S));
        assert_eq!(mask(&b64, &[S]), "535 5.7.8 rejected [masked]");
        let form = format!(
            "invalid_client: client_secret={} is wrong",
            url::form_urlencoded::byte_serialize(S).collect::<String>()
        );
        assert_eq!(mask(&form, &[S]), "invalid_client: client_secret=[masked] is wrong");
        let pct = format!("bad secret {}", percent_encode(S));
        assert_eq!(mask(&pct, &[S]), "bad secret [masked]");
    }

    #[test]
    fn a_secret_inside_a_larger_base64_string_is_masked() {
        // AUTH PLAIN: base64("\0user\0password"); HTTP Basic: base64("id:secret").
        let plain = STANDARD.encode(b"\0svc@acme.example\0p@ss w0rd+/x");
        let basic = STANDARD.encode(b"11111111-2222:p@ss w0rd+/x");
        let text = format!("535 echo {plain} / Authorization: Basic {basic}");
        let masked = mask(&text, &[S]);
        assert_eq!(masked, "535 echo [masked] / Authorization: Basic [masked]");
    }

    #[test]
    fn an_unusual_encoding_withholds_the_whole_reply() {
        let lower = "bad secret p%40ss%20w0rd%2b%2fx".to_owned();
        assert_eq!(mask(&lower, &[S]), WITHHELD);
    }

    #[test]
    fn text_without_a_secret_is_unchanged_and_short_secrets_are_not_searched() {
        let t = "-ERR [AUTH] Authentication failed.";
        assert_eq!(mask(t, &[S]), t);
        assert_eq!(mask("a pw field", &[b"pw"]), "a pw field");
        assert_eq!(mask("nothing sent", &[]), "nothing sent");
    }
}
