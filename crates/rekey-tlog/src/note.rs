//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 signatures: the envelope a checkpoint
//! travels in. A note is text ending in a newline, a blank line, then one line per signature:
//! `— <key name> base64(key id ‖ signature)`. The key id of a key is the first four bytes of
//! `SHA-256(key name ‖ 0x0A ‖ type ‖ public key)`, where the type is `0x01` for a log's Ed25519
//! key and `0x04` for a witness's Ed25519 cosignature key (see [`crate::cosignature`]).
//!
//! Written by hand: the format is a few lines of text, too small to deserve a dependency.

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// What a key signs: notes (a log's key) or cosignatures (a witness's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Type `0x01`: Ed25519 signatures of the note text.
    Ed25519,
    /// Type `0x04`: timestamped Ed25519 cosignatures (`c2sp.org/tlog-cosignature`).
    Cosignature,
}

impl KeyKind {
    /// The type byte in key ids and verifier keys.
    pub fn byte(self) -> u8 {
        match self {
            KeyKind::Ed25519 => 0x01,
            KeyKind::Cosignature => 0x04,
        }
    }
}

/// The most signatures a note may carry (the spec asks verifiers to accept at least 16).
pub const MAX_SIGNATURES: usize = 64;

/// Why a note or a key does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteError {
    /// Not a note: no blank line before the signatures, a control character, a malformed line.
    Malformed(&'static str),
    /// Not a verifier key `name+keyid+base64(0x01 ‖ public key)`.
    BadKey(&'static str),
    /// No signature of the trusted key.
    Unsigned,
    /// A signature of the trusted key that does not verify.
    BadSignature,
}

impl std::fmt::Display for NoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoteError::Malformed(why) => write!(f, "not a signed note: {why}"),
            NoteError::BadKey(why) => write!(f, "not a verifier key: {why}"),
            NoteError::Unsigned => f.write_str("the note carries no signature of the trusted key"),
            NoteError::BadSignature => f.write_str("the trusted key's signature on the note does not verify"),
        }
    }
}

impl std::error::Error for NoteError {}

/// An Ed25519 public key with its name and kind, as a verifier of notes holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key's name (a schema-less URL, by convention).
    pub name: String,
    /// What the key signs.
    pub kind: KeyKind,
    /// The key id.
    pub id: [u8; 4],
    /// The Ed25519 public key.
    pub public: [u8; 32],
}

/// The key id of an Ed25519 key of `kind` named `name`.
pub fn key_id(name: &str, kind: KeyKind, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, kind.byte()]);
    h.update(public);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

impl VerifierKey {
    /// The note-signing key of `name` with this public key.
    pub fn new(name: &str, public: [u8; 32]) -> Result<Self, NoteError> {
        Self::of_kind(name, KeyKind::Ed25519, public)
    }

    /// The cosignature key of the witness `name` with this public key.
    pub fn cosigner(name: &str, public: [u8; 32]) -> Result<Self, NoteError> {
        Self::of_kind(name, KeyKind::Cosignature, public)
    }

    fn of_kind(name: &str, kind: KeyKind, public: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey("a key name is non-empty, without spaces or '+'"));
        }
        Ok(Self { name: name.to_owned(), kind, id: key_id(name, kind, &public), public })
    }

    /// Parses `name+keyid+base64(type ‖ public key)`, the form verifier keys are written in
    /// (type `0x01` or `0x04`).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected name+keyid+key"));
        };
        let bytes = STANDARD.decode(key).map_err(|_| NoteError::BadKey("the key is not base64"))?;
        let (&kind, public) = bytes.split_first().ok_or(NoteError::BadKey("the key is empty"))?;
        let kind = match kind {
            0x01 => KeyKind::Ed25519,
            0x04 => KeyKind::Cosignature,
            _ => return Err(NoteError::BadKey("not an Ed25519 key (type 0x01) or cosignature key (type 0x04)")),
        };
        let public: [u8; 32] = public.try_into().map_err(|_| NoteError::BadKey("an Ed25519 key is 32 bytes"))?;
        let parsed = Self::of_kind(name, kind, public)?;
        if id.len() != 8 || u32::from_str_radix(id, 16).ok() != Some(u32::from_be_bytes(parsed.id)) {
            return Err(NoteError::BadKey("the key id does not match the name and key"));
        }
        Ok(parsed)
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![self.kind.byte()];
        key.extend_from_slice(&self.public);
        write!(f, "{}+{}+{}", self.name, hex_of(&self.id), STANDARD.encode(key))
    }
}

pub(crate) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of a note with one signature added: `sign` signs the text with the key of
/// `key` (the caller holds the private half).
pub fn sign(text: &str, key: &VerifierKey, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Result<String, NoteError> {
    if key.kind != KeyKind::Ed25519 {
        return Err(NoteError::BadKey("a cosignature key does not sign notes"));
    }
    check_text(text)?;
    let signature = sign(text.as_bytes());
    let mut blob = key.id.to_vec();
    blob.extend_from_slice(&signature);
    Ok(format!("{text}\n\u{2014} {} {}\n", key.name, STANDARD.encode(blob)))
}

pub(crate) fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text must end in a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("a control character"));
    }
    Ok(())
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signer's key name.
    pub name: String,
    /// The signer's key id.
    pub id: [u8; 4],
    /// The signature bytes after the key id.
    pub bytes: Vec<u8>,
}

/// Splits a note into its text and its signatures, checking the form only.
pub fn parse(note: &str) -> Result<(&str, Vec<Signature>), NoteError> {
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("a control character"));
    }
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, lines) = (&note[..=split], &note[split + 2..]);
    if !lines.ends_with('\n') {
        return Err(NoteError::Malformed("the note must end in a newline"));
    }
    let mut signatures = Vec::new();
    for line in lines[..lines.len() - 1].split('\n') {
        let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed("a signature line starts with '— '"))?;
        let (name, blob) =
            rest.split_once(' ').ok_or(NoteError::Malformed("a signature line is '— name signature'"))?;
        if !valid_name(name) {
            return Err(NoteError::Malformed("a key name"));
        }
        let blob = STANDARD.decode(blob).map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        if blob.len() < 5 {
            return Err(NoteError::Malformed("a signature is too short"));
        }
        signatures.push(Signature {
            name: name.to_owned(),
            id: [blob[0], blob[1], blob[2], blob[3]],
            bytes: blob[4..].to_vec(),
        });
        if signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
    }
    if signatures.is_empty() {
        return Err(NoteError::Malformed("no signature"));
    }
    Ok((text, signatures))
}

/// The text of `note` if `key` signed it: every signature of that key (name and id) must
/// verify, and there must be one. Signatures of other keys are returned for the caller (a
/// witness's cosignatures), unchecked.
pub fn open<'a>(note: &'a str, key: &VerifierKey) -> Result<(&'a str, Vec<Signature>), NoteError> {
    if key.kind != KeyKind::Ed25519 {
        return Err(NoteError::BadKey("a note is opened with the log's key (type 0x01)"));
    }
    let (text, signatures) = parse(note)?;
    let mut signed = false;
    let mut others = Vec::new();
    for s in signatures {
        if s.name == key.name && s.id == key.id {
            UnparsedPublicKey::new(&ED25519, &key.public)
                .verify(text.as_bytes(), &s.bytes)
                .map_err(|_| NoteError::BadSignature)?;
            signed = true;
        } else {
            others.push(s);
        }
    }
    if signed {
        Ok((text, others))
    } else {
        Err(NoteError::Unsigned)
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    // The example of golang.org/x/mod/sumdb/note, which every C2SP implementation agrees on.
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SKEY_SEED: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn pair() -> Ed25519KeyPair {
        let seed = STANDARD.decode(SKEY_SEED).unwrap();
        Ed25519KeyPair::from_seed_unchecked(&seed[1..]).unwrap()
    }

    #[test]
    fn the_reference_note_opens_and_signs_byte_for_byte() {
        let key = VerifierKey::parse(VKEY).unwrap();
        assert_eq!(key.to_string(), VKEY);
        assert_eq!(open(NOTE, &key).unwrap().0, TEXT);
        let pair = pair();
        assert_eq!(pair.public_key().as_ref(), &key.public);
        let signed = sign(TEXT, &key, |m| pair.sign(m).as_ref().try_into().unwrap()).unwrap();
        assert_eq!(signed, NOTE, "Ed25519 is deterministic: the same note, byte for byte");
    }

    #[test]
    fn altered_notes_and_keys_are_refused() {
        let key = VerifierKey::parse(VKEY).unwrap();
        assert_eq!(open(&NOTE.replace("cryptography", "cryptographY"), &key), Err(NoteError::BadSignature));
        let other = VerifierKey::new("PeterNeumann2", key.public).unwrap();
        assert_eq!(open(NOTE, &other), Err(NoteError::Unsigned));
        for bad in [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ApRc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad}");
        }
        for bad in [TEXT, "text\n\u{2014} PeterNeumann AAAA\n", "a\tb\n\n\u{2014} x AAAAAAAA\n"] {
            assert!(matches!(parse(bad), Err(NoteError::Malformed(_))), "{bad:?}");
        }
        assert!(sign("no newline", &key, |_| [0; 64]).is_err());
    }

    #[test]
    fn cosignatures_of_other_keys_are_kept_for_the_caller() {
        let key = VerifierKey::parse(VKEY).unwrap();
        let witness = VerifierKey::new("witness.example/w1", [7; 32]).unwrap();
        let cosigned = format!("{NOTE}{}", &sign(TEXT, &witness, |_| [9; 64]).unwrap()[TEXT.len() + 1..]);
        let (text, others) = open(&cosigned, &key).unwrap();
        assert_eq!(text, TEXT);
        assert_eq!(others.len(), 1);
        assert_eq!((others[0].name.as_str(), others[0].id), ("witness.example/w1", witness.id));
    }
}
