//! Witness cosignatures (`c2sp.org/tlog-cosignature`, version 1, Ed25519) and the body of a
//! witness's `add-checkpoint` request (`c2sp.org/tlog-witness`).
//!
//! A cosignature is a note signature line of a key of type `0x04`:
//! `— <witness name> base64(key id ‖ timestamp ‖ signature)`, the timestamp 8 bytes big-endian
//! (seconds since the Unix epoch), the signature Ed25519 over
//! `cosignature/v1\ntime <timestamp>\n<checkpoint text>`. It states that the witness saw this
//! checkpoint at that time and that it was consistent with every earlier one it saw of the log.
//!
//! An `add-checkpoint` body is `old <size>\n`, one base64 consistency-proof hash per line (at most
//! 63), an empty line, then the signed checkpoint note.
//!
//! Written by hand: a few lines of text.

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::note::{check_text, parse, KeyKind, NoteError, Signature, VerifierKey};
use crate::Hash;

/// The most consistency-proof lines an `add-checkpoint` body may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The message a witness signs about a checkpoint text at `time`.
pub fn message(text: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{text}").into_bytes()
}

/// One cosignature line (ending in a newline) by the witness `key` on the checkpoint `text`
/// at `time`; `sign` signs with the witness's private key.
pub fn cosign(
    text: &str,
    key: &VerifierKey,
    time: u64,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<String, NoteError> {
    if key.kind != KeyKind::Cosignature {
        return Err(NoteError::BadKey("a witness cosigns with a key of type 0x04"));
    }
    if time == 0 || time >= 1 << 63 {
        return Err(NoteError::Malformed("a cosignature's time is after the epoch and below 2^63"));
    }
    check_text(text)?;
    let signature = sign(&message(text, time));
    let mut blob = key.id.to_vec();
    blob.extend_from_slice(&time.to_be_bytes());
    blob.extend_from_slice(&signature);
    Ok(format!("\u{2014} {} {}\n", key.name, STANDARD.encode(blob)))
}

/// The time of `signature` if it is the cosignature of `key` on `text` and verifies.
pub fn verify(text: &str, signature: &Signature, key: &VerifierKey) -> Result<u64, NoteError> {
    if key.kind != KeyKind::Cosignature || signature.name != key.name || signature.id != key.id {
        return Err(NoteError::Unsigned);
    }
    let (time, sig) = signature.bytes.split_at_checked(8).ok_or(NoteError::BadSignature)?;
    let time = u64::from_be_bytes(time.try_into().map_err(|_| NoteError::BadSignature)?);
    if sig.len() != 64 || time == 0 || time >= 1 << 63 {
        return Err(NoteError::BadSignature);
    }
    UnparsedPublicKey::new(&ED25519, &key.public)
        .verify(&message(text, time), sig)
        .map_err(|_| NoteError::BadSignature)?;
    Ok(time)
}

/// Each cosignature among `lines` (note signature lines, as a witness answers) by one of
/// `witnesses` on `text`, verified: the witness's name and the time. Lines of unknown keys are
/// ignored, as the protocol asks; a line of a known key that does not verify is an error.
pub fn verify_lines(text: &str, lines: &str, witnesses: &[VerifierKey]) -> Result<Vec<(String, u64)>, NoteError> {
    // A note of the text with only these lines parses the lines as its signatures.
    let (_, signatures) = parse(&format!("{text}\n{lines}"))?;
    let mut found = Vec::new();
    for s in &signatures {
        if let Some(key) = witnesses.iter().find(|k| k.name == s.name && k.id == s.id) {
            found.push((key.name.clone(), verify(text, s, key)?));
        }
    }
    Ok(found)
}

/// An `add-checkpoint` request: the size of the checkpoint the log believes the witness last
/// cosigned, the consistency proof from it, and the new signed checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The previous size (0 for none).
    pub old: u64,
    /// The RFC 6962 consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub note: String,
}

impl AddCheckpoint {
    /// The request body.
    pub fn body(&self) -> String {
        let mut body = format!("old {}\n", self.old);
        for hash in &self.proof {
            body.push_str(&STANDARD.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }

    /// Reads a request body.
    pub fn parse(body: &str) -> Result<Self, NoteError> {
        let (head, note) =
            body.split_once("\n\n").ok_or(NoteError::Malformed("an empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| *n == "0" || (!n.starts_with('0') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or(NoteError::Malformed("the first line is 'old <size>'"))?;
        let mut proof = Vec::new();
        for line in lines {
            let hash: Hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(NoteError::Malformed("a proof line is a 32-byte hash, base64"))?;
            proof.push(hash);
            if proof.len() > MAX_PROOF_LINES {
                return Err(NoteError::Malformed("more than 63 proof lines"));
            }
        }
        parse(note)?;
        Ok(Self { old, proof, note: note.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    const TEXT: &str = "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    fn witness() -> (Ed25519KeyPair, VerifierKey) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[3; 32]).unwrap();
        let key = VerifierKey::cosigner("witness.example/w1", pair.public_key().as_ref().try_into().unwrap()).unwrap();
        (pair, key)
    }

    #[test]
    fn a_cosignature_verifies_with_its_time_and_fails_when_anything_changes() {
        let (pair, key) = witness();
        let line = cosign(TEXT, &key, 1_700_000_000, |m| pair.sign(m).as_ref().try_into().unwrap()).unwrap();
        assert_eq!(
            verify_lines(TEXT, &line, std::slice::from_ref(&key)).unwrap(),
            vec![(key.name.clone(), 1_700_000_000)]
        );
        assert!(verify_lines(&TEXT.replace('5', "6"), &line, std::slice::from_ref(&key)).is_err());
        // A different time in the blob breaks the signature.
        let (_, sigs) = parse(&format!("{TEXT}\n{line}")).unwrap();
        let mut forged = sigs[0].clone();
        forged.bytes[7] ^= 1;
        assert_eq!(verify(TEXT, &forged, &key), Err(NoteError::BadSignature));
        // Unknown witnesses are ignored; a log key is not a witness key.
        let other = VerifierKey::cosigner("witness.example/w2", key.public).unwrap();
        assert!(verify_lines(TEXT, &line, &[other]).unwrap().is_empty());
        let as_log = VerifierKey::new("witness.example/w1", key.public).unwrap();
        assert_ne!(as_log.id, key.id, "the type byte is in the key id");
        assert!(cosign(TEXT, &as_log, 1, |_| [0; 64]).is_err());
        assert!(cosign(TEXT, &key, 0, |_| [0; 64]).is_err());
    }

    #[test]
    fn a_cosigner_key_round_trips_as_text() {
        let (_, key) = witness();
        let text = key.to_string();
        assert!(text.starts_with("witness.example/w1+"));
        assert_eq!(VerifierKey::parse(&text).unwrap(), key);
    }

    #[test]
    fn add_checkpoint_bodies_round_trip_and_bad_ones_are_refused() {
        let note = format!("{TEXT}\n\u{2014} example.com/log AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
        let request = AddCheckpoint { old: 3, proof: vec![[1; 32], [2; 32]], note: note.clone() };
        assert_eq!(AddCheckpoint::parse(&request.body()).unwrap(), request);
        let first = AddCheckpoint { old: 0, proof: vec![], note: note.clone() };
        assert!(first.body().starts_with("old 0\n\n"));
        assert_eq!(AddCheckpoint::parse(&first.body()).unwrap(), first);
        for bad in [
            format!("old 03\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("new 3\n\n{note}"),
            format!("old 3\nnot base64!\n\n{note}"),
            format!("old 3\n{}\n\n{note}", STANDARD.encode([0; 31])),
            format!("old 3\n{}\n{note}", STANDARD.encode([0; 32])),
            format!("old 3\n{}\n\n{note}", vec![STANDARD.encode([0; 32]); 64].join("\n")),
            "old 3\n\nno note".to_owned(),
        ] {
            assert!(AddCheckpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
