//! The Shamir seal: the root keyring is kept in the store, encrypted under an unseal key that
//! exists only as `n` shares, any `k` of which rebuild it (Shamir's scheme over GF(256), from
//! the `vsss-rs` crate).
//!
//! A share as printed:
//!
//! ```text
//! rekey-share-<hex of: threshold (1) | key set id (8) | x (1) | y (32) | checksum (4)>
//! ```
//!
//! The checksum (the first four bytes of SHA-256 over the rest) makes a mistyped share fail as
//! a mistyped share. The key set id ties a share to one split, so a share from an older split
//! or another vault is named as such before any key is rebuilt.
//!
//! Each split also stores one commitment per share, SHA-256 over the share (domain-separated,
//! with the key set id and threshold): a share is counted only if it matches the commitment of
//! its index, so a well-formed share that was never issued (forged by anyone who can reach the
//! unseal endpoint, to make the unseal fail and every collected share be discarded) is refused
//! on arrival. Hash commitments, not a verifiable secret sharing scheme: the dealer is Rekey
//! itself at split time, so shares need checking only against what it issued, not against a
//! dishonest dealer (which is what Feldman or Pedersen VSS add, with group arithmetic that
//! GF(256) byte-wise sharing does not have). A commitment reveals nothing usable: each share's
//! y is 32 uniformly random bytes. Splits made before commitments have none; their shares are
//! checked as before, and a root rotation (`rekey key rotate --root`) makes a split that has
//! them.
//!
//! The keyring blob is AES-256-GCM under the unseal key, with the Rekey header and the key set
//! id as associated data. Rotating the root makes a new split: the new keyring is stored as
//! pending and becomes the active one only when the caller commits, after the new shares were
//! handed out, so a crash in between leaves the old shares working.

use std::sync::Mutex;

use sha2::{Digest, Sha256};
use vsss_rs::Gf256;
use zeroize::Zeroizing;

use super::keyring::{root_key_id, MemorySeal, RootKeyring};
use super::{KeyContext, Seal};
use crate::envelope::{open_blob, seal_blob, Header, Purpose};
use crate::keys::{random_32, Kek, SystemKey};
use crate::CryptoError;

const PREFIX: &str = "rekey-share-";
const SHARE_BYTES: usize = 1 + 8 + 1 + 32;
const CHECKSUM_BYTES: usize = 4;

/// Why an unseal share was refused (never with the share's value).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error("not a Rekey unseal share (expected rekey-share- followed by {} hex digits)", (SHARE_BYTES + CHECKSUM_BYTES) * 2)]
    /// Not `rekey-share-` and the right number of hex digits.
    Malformed,
    /// Mistyped or damaged.
    #[error("the share's checksum does not match: it was mistyped or damaged")]
    Checksum,
    /// Of another split or another vault.
    #[error("this share belongs to another key set (an older split, or another vault)")]
    OtherSet,
    /// Given twice.
    #[error("this share was already given")]
    Repeated,
    /// A split's share count or threshold out of range.
    #[error("a split needs 2 to 255 shares and a threshold from 2 to the number of shares")]
    Parameters,
    /// The threshold is met but the key rebuilt does not open the keyring.
    #[error("the shares do not rebuild this vault's unseal key")]
    WrongKey,
    /// Does not match the commitment stored at the split.
    #[error(
        "this share was not issued for this vault's key set (it does not match the commitment stored at the split)"
    )]
    NotIssued,
}

/// What a split stores of each share: its index and a commitment to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareCommitment {
    /// The share's x coordinate.
    pub index: u8,
    /// SHA-256 commitment to the share.
    pub digest: [u8; 32],
}

impl ShareCommitment {
    const BYTES: usize = 33;

    fn of(threshold: u8, set_id: &[u8; 8], point: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"rekey/share-commitment/v1")
            .chain_update([threshold])
            .chain_update(set_id)
            .chain_update(point)
            .finalize();
        Self { index: point[0], digest: digest.into() }
    }

    /// The commitments of a split as stored: 33 bytes each (index, digest).
    pub fn encode(list: &[ShareCommitment]) -> Vec<u8> {
        list.iter().flat_map(|c| std::iter::once(c.index).chain(c.digest)).collect()
    }

    /// The commitments from their stored form; `None` if it is not a whole number of them.
    pub fn decode(bytes: &[u8]) -> Option<Vec<ShareCommitment>> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(Self::BYTES) {
            return None;
        }
        Some(
            bytes
                .chunks(Self::BYTES)
                .map(|c| Self { index: c[0], digest: c[1..].try_into().expect("33-byte chunks") })
                .collect(),
        )
    }
}

/// A parsed, checksum-verified share. Zeroized on drop; no `Debug`.
pub struct Share {
    threshold: u8,
    set_id: [u8; 8],
    point: Zeroizing<Vec<u8>>,
}

impl Share {
    /// A share as a person types it (whitespace ignored), checksum checked.
    pub fn parse(text: &str) -> Result<Self, ShareError> {
        let compact: Zeroizing<String> = Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
        let hex_part = compact.strip_prefix(PREFIX).ok_or(ShareError::Malformed)?;
        let bytes = Zeroizing::new(hex::decode(hex_part).map_err(|_| ShareError::Malformed)?);
        if bytes.len() != SHARE_BYTES + CHECKSUM_BYTES {
            return Err(ShareError::Malformed);
        }
        let (body, checksum) = bytes.split_at(SHARE_BYTES);
        if checksum != &share_checksum(body)[..] {
            return Err(ShareError::Checksum);
        }
        let mut set_id = [0u8; 8];
        set_id.copy_from_slice(&body[1..9]);
        Ok(Self { threshold: body[0], set_id, point: Zeroizing::new(body[9..].to_vec()) })
    }

    /// How many shares the split needs.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// The split the share belongs to.
    pub fn set_id(&self) -> [u8; 8] {
        self.set_id
    }

    /// The share's x coordinate; two shares with the same one are the same share.
    pub fn index(&self) -> u8 {
        self.point[0]
    }

    fn to_text(&self) -> Zeroizing<String> {
        let mut body = Zeroizing::new(Vec::with_capacity(SHARE_BYTES + CHECKSUM_BYTES));
        body.push(self.threshold);
        body.extend_from_slice(&self.set_id);
        body.extend_from_slice(&self.point);
        let checksum = share_checksum(&body);
        body.extend_from_slice(&checksum);
        Zeroizing::new(format!("{PREFIX}{}", Zeroizing::new(hex::encode(&*body)).as_str()))
    }
}

fn share_checksum(body: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let digest = Sha256::new().chain_update(b"rekey-share-v1").chain_update(body).finalize();
    let mut out = [0u8; CHECKSUM_BYTES];
    out.copy_from_slice(&digest[..CHECKSUM_BYTES]);
    out
}

/// The keyring as kept in the store: encrypted under the unseal key, with the commitments to
/// the shares of its split (none for a split made before commitments).
#[derive(Clone)]
pub struct SealedKeyring {
    /// The split's id.
    pub set_id: [u8; 8],
    /// How many shares were made.
    pub shares: u8,
    /// How many open it.
    pub threshold: u8,
    /// The keyring, encrypted under the unseal key.
    pub blob: Vec<u8>,
    /// The commitments to the shares.
    pub commitments: Option<Vec<ShareCommitment>>,
}

/// A fresh split: the shares to hand out (once) and the keyring they open.
pub struct NewSplit {
    /// The shares, as text, to hand out.
    pub shares: Vec<Zeroizing<String>>,
    /// What the store keeps.
    pub sealed: SealedKeyring,
}

struct UnsealKey {
    key: Zeroizing<[u8; 32]>,
    set_id: [u8; 8],
    shares: u8,
    threshold: u8,
    /// Kept to store again with the keyring (after a root version is destroyed).
    commitments: Option<Vec<ShareCommitment>>,
}

impl UnsealKey {
    fn generate(shares: u8, threshold: u8) -> Result<Self, CryptoError> {
        if !(2..=255).contains(&shares) || threshold < 2 || threshold > shares {
            return Err(ShareError::Parameters.into());
        }
        let mut set_id = [0u8; 8];
        getrandom::fill(&mut set_id).map_err(|_| CryptoError::Random)?;
        Ok(Self { key: random_32()?, set_id, shares, threshold, commitments: None })
    }

    fn context(set_id: &[u8; 8]) -> Vec<u8> {
        [&b"rekey/keyring/v1"[..], set_id].concat()
    }

    fn header(&self) -> Header {
        Header { purpose: Purpose::Keyring, key_id: root_key_id(&self.key), key_version: 1 }
    }

    fn seal(&self, ring: &RootKeyring) -> Result<SealedKeyring, CryptoError> {
        let blob = seal_blob(&self.key, self.header(), &Self::context(&self.set_id), &ring.to_bytes())?;
        Ok(SealedKeyring {
            set_id: self.set_id,
            shares: self.shares,
            threshold: self.threshold,
            blob,
            commitments: self.commitments.clone(),
        })
    }

    fn open(&self, sealed: &SealedKeyring) -> Result<RootKeyring, CryptoError> {
        let bytes = open_blob(&self.key, self.header(), &Self::context(&sealed.set_id), &sealed.blob)
            .map_err(|_| CryptoError::Share(ShareError::WrongKey))?;
        RootKeyring::from_bytes(&bytes)
    }

    /// Splits the key into shares, and keeps the commitment to each.
    fn split(&mut self) -> Result<Vec<Zeroizing<String>>, CryptoError> {
        let rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
        let points = Gf256::split_bytes(self.threshold as usize, self.shares as usize, self.key.as_ref(), rng)
            .map_err(|_| CryptoError::Share(ShareError::Parameters))?;
        let mut commitments = Vec::with_capacity(points.len());
        let mut texts = Vec::with_capacity(points.len());
        for p in points {
            commitments.push(ShareCommitment::of(self.threshold, &self.set_id, &p));
            texts.push(Share { threshold: self.threshold, set_id: self.set_id, point: Zeroizing::new(p) }.to_text());
        }
        self.commitments = Some(commitments);
        Ok(texts)
    }

    fn combine(sealed: &SealedKeyring, shares: &[Share]) -> Result<Self, CryptoError> {
        let points: Vec<Vec<u8>> = shares.iter().map(|s| s.point.to_vec()).collect();
        let combined = Gf256::combine_bytes(&points);
        for mut p in points {
            zeroize::Zeroize::zeroize(&mut p);
        }
        let bytes = Zeroizing::new(combined.map_err(|_| CryptoError::Share(ShareError::WrongKey))?);
        let key = crate::envelope::to_key(bytes).map_err(|_| CryptoError::Share(ShareError::WrongKey))?;
        Ok(Self {
            key,
            set_id: sealed.set_id,
            shares: sealed.shares,
            threshold: sealed.threshold,
            commitments: sealed.commitments.clone(),
        })
    }
}

/// Checks one share against the stored keyring (its key set and, where the split has them,
/// the commitment of its index) and the shares given so far.
pub fn check_share(sealed: &SealedKeyring, given: &[Share], share: &Share) -> Result<(), ShareError> {
    check_issued(sealed, share)?;
    if given.iter().any(|g| g.index() == share.index()) {
        return Err(ShareError::Repeated);
    }
    Ok(())
}

/// Whether `share` is one that the stored keyring's split issued (as far as a split without
/// commitments can tell: its key set and threshold).
pub fn check_issued(sealed: &SealedKeyring, share: &Share) -> Result<(), ShareError> {
    if share.set_id != sealed.set_id || share.threshold != sealed.threshold {
        return Err(ShareError::OtherSet);
    }
    if let Some(commitments) = &sealed.commitments {
        let expected = ShareCommitment::of(share.threshold, &share.set_id, &share.point);
        if !commitments.iter().any(|c| c.index == expected.index && c.digest == expected.digest) {
            return Err(ShareError::NotIssued);
        }
    }
    Ok(())
}

/// A split in progress: made, handed out, not yet committed.
struct Pending {
    unseal: UnsealKey,
}

/// The Shamir seal: the root keyring in memory while unsealed, rebuilt from shares.
#[derive(Default)]
pub struct ShamirSeal {
    inner: MemorySeal,
    unseal: Mutex<Option<UnsealKey>>,
    pending: Mutex<Option<Pending>>,
}

impl ShamirSeal {
    /// A sealed seal; [`ShamirSeal::unseal`] opens it.
    pub fn new() -> Self {
        Self::default()
    }

    /// `rekey init`: a new root keyring with version 1, encrypted under a new unseal key that
    /// is split into `shares` shares, `threshold` of which open it. The seal stays sealed.
    pub fn initialize(shares: u8, threshold: u8) -> Result<NewSplit, CryptoError> {
        let mut unseal = UnsealKey::generate(shares, threshold)?;
        let mut ring = RootKeyring::default();
        ring.add_new()?;
        let shares = unseal.split()?;
        Ok(NewSplit { sealed: unseal.seal(&ring)?, shares })
    }

    /// Rebuilds the unseal key from `shares` (already checked with [`check_share`]), opens the
    /// stored keyring and holds it in memory.
    pub fn unseal(&self, sealed: &SealedKeyring, shares: &[Share]) -> Result<(), CryptoError> {
        if shares.len() < sealed.threshold as usize {
            return Err(ShareError::Parameters.into());
        }
        let unseal = UnsealKey::combine(sealed, shares)?;
        let ring = unseal.open(sealed)?;
        self.inner.install(ring);
        *self.unseal.lock().expect("lock is never poisoned") = Some(unseal);
        Ok(())
    }

    /// First step of a root rotation: the current keyring plus a new root version, under a new
    /// unseal key with a new split. Nothing changes until [`ShamirSeal::commit_split`].
    pub fn prepare_split(&self, shares: u8, threshold: u8) -> Result<NewSplit, CryptoError> {
        let mut unseal = UnsealKey::generate(shares, threshold)?;
        let mut ring = self.inner.with(|r| Ok(r.duplicate()))?;
        ring.add_new()?;
        let shares = unseal.split()?;
        let split = NewSplit { sealed: unseal.seal(&ring)?, shares };
        *self.pending.lock().expect("lock is never poisoned") = Some(Pending { unseal });
        Ok(split)
    }

    /// Second step, after the caller has made `sealed` the stored keyring: holds the new
    /// keyring, whose newest version new wraps use from now on.
    pub fn commit_split(&self, sealed: &SealedKeyring) -> Result<u32, CryptoError> {
        let mut pending = self.pending.lock().expect("lock is never poisoned");
        match pending.as_ref() {
            Some(p) if p.unseal.set_id == sealed.set_id => {}
            _ => return Err(CryptoError::Seal("no such root rotation is pending; start it again".into())),
        }
        let Pending { unseal } = pending.take().expect("checked above");
        let ring = unseal.open(sealed)?;
        let version = ring.active().ok_or(CryptoError::Sealed)?;
        self.inner.install(ring);
        *self.unseal.lock().expect("lock is never poisoned") = Some(unseal);
        Ok(version)
    }

    /// The pending split's key set id, if a rotation was prepared and not committed.
    pub fn pending_set(&self) -> Option<[u8; 8]> {
        self.pending.lock().expect("lock is never poisoned").as_ref().map(|p| p.unseal.set_id)
    }

    /// The keyring as it is now, encrypted under the current unseal key, for storing after a
    /// root version was destroyed.
    pub fn export(&self) -> Result<SealedKeyring, CryptoError> {
        let unseal = self.unseal.lock().expect("lock is never poisoned");
        let unseal = unseal.as_ref().ok_or(CryptoError::Sealed)?;
        self.inner.with(|ring| unseal.seal(ring))
    }
}

impl Seal for ShamirSeal {
    fn kind(&self) -> rekey_types::SealKind {
        rekey_types::SealKind::Shamir
    }

    fn is_unsealed(&self) -> bool {
        self.inner.is_unsealed()
    }

    fn root_version(&self) -> Option<u32> {
        self.inner.active()
    }

    fn root_versions(&self) -> Vec<u32> {
        self.inner.versions()
    }

    super::seal_key_methods!(inner);

    fn add_root_version(&self) -> Result<u32, CryptoError> {
        Err(CryptoError::Seal("a Shamir root rotation makes a new split; use prepare_split and commit_split".into()))
    }

    /// Changes the keyring in memory only; the caller stores [`ShamirSeal::export`] afterwards.
    fn destroy_root_version(&self, version: u32) -> Result<(), CryptoError> {
        self.inner
            .with_mut(|ring| if ring.remove(version) { Ok(()) } else { Err(CryptoError::RootVersionMissing(version)) })
    }

    fn seal(&self) {
        self.inner.wipe();
        self.unseal.lock().expect("lock is never poisoned").take();
        self.pending.lock().expect("lock is never poisoned").take();
    }

    fn as_shamir(&self) -> Option<&ShamirSeal> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_types::TenantId;

    fn parse_all(split: &NewSplit) -> Vec<Share> {
        split.shares.iter().map(|s| Share::parse(s).unwrap()).collect()
    }

    #[test]
    fn any_threshold_of_shares_unseals_and_fewer_do_not() {
        let split = ShamirSeal::initialize(5, 3).unwrap();
        assert_eq!(split.shares.len(), 5);
        let shares = parse_all(&split);
        for pick in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            let seal = ShamirSeal::new();
            assert!(!seal.is_unsealed());
            let chosen: Vec<Share> = pick.iter().map(|i| Share::parse(&split.shares[*i]).unwrap()).collect();
            seal.unseal(&split.sealed, &chosen).unwrap();
            assert_eq!(seal.root_version(), Some(1));
        }
        let seal = ShamirSeal::new();
        assert!(seal.unseal(&split.sealed, &shares[..2]).is_err());
        assert!(!seal.is_unsealed());
    }

    #[test]
    fn a_mistyped_share_is_named_as_such() {
        let split = ShamirSeal::initialize(3, 2).unwrap();
        let text = split.shares[0].to_string();
        let last = text.chars().last().unwrap();
        let typo = format!("{}{}", &text[..text.len() - 1], if last == '0' { '1' } else { '0' });
        assert_eq!(Share::parse(&typo).err(), Some(ShareError::Checksum));
        assert_eq!(Share::parse("rekey-share-zz").err(), Some(ShareError::Malformed));
        assert_eq!(Share::parse(&text[..text.len() - 2]).err(), Some(ShareError::Malformed));
        assert!(Share::parse(&format!("  {}\n", &*split.shares[0])).is_ok());
    }

    #[test]
    fn repeated_and_foreign_shares_are_refused() {
        let split = ShamirSeal::initialize(3, 2).unwrap();
        let other = ShamirSeal::initialize(3, 2).unwrap();
        let first = Share::parse(&split.shares[0]).unwrap();
        let again = Share::parse(&split.shares[0]).unwrap();
        assert_eq!(check_share(&split.sealed, std::slice::from_ref(&first), &again), Err(ShareError::Repeated));
        let foreign = Share::parse(&other.shares[1]).unwrap();
        assert_eq!(check_share(&split.sealed, &[], &foreign), Err(ShareError::OtherSet));
    }

    /// A share with the right format, checksum, key set and index but another y: what anyone
    /// who saw a share's header could make.
    fn forged_from(real: &Share) -> Share {
        let mut point = real.point.to_vec();
        point[5] ^= 0x5a;
        Share { threshold: real.threshold, set_id: real.set_id, point: Zeroizing::new(point) }
    }

    #[test]
    fn a_forged_share_is_refused_before_it_counts_and_the_real_ones_still_open() {
        let split = ShamirSeal::initialize(3, 2).unwrap();
        let real = parse_all(&split);
        let forged = Share::parse(&forged_from(&real[0]).to_text()).expect("well-formed, checksum right");
        assert_eq!(check_share(&split.sealed, &[], &forged), Err(ShareError::NotIssued));
        assert_eq!(check_share(&split.sealed, &[], &real[0]), Ok(()));
        // Without commitments (a split made before them), the same share would have counted
        // and the unseal failed, as it did before.
        let mut old = split.sealed.clone();
        old.commitments = None;
        assert_eq!(check_share(&old, &[], &forged), Ok(()));
        assert!(ShamirSeal::new().unseal(&old, &[forged, Share::parse(&split.shares[1]).unwrap()]).is_err());
        ShamirSeal::new().unseal(&split.sealed, &real[1..]).unwrap();
        // Commitments survive their stored form.
        let stored = ShareCommitment::encode(split.sealed.commitments.as_ref().unwrap());
        assert_eq!(stored.len(), 3 * 33);
        assert_eq!(ShareCommitment::decode(&stored).as_ref(), split.sealed.commitments.as_ref());
        assert_eq!(ShareCommitment::decode(&stored[..32]), None);
    }

    #[test]
    fn rotation_is_pending_until_committed_and_keeps_old_blobs_open() {
        let split = ShamirSeal::initialize(3, 2).unwrap();
        let seal = ShamirSeal::new();
        seal.unseal(&split.sealed, &parse_all(&split)[..2]).unwrap();
        let ctx = KeyContext::TenantKek { tenant: TenantId::generate(), version: 1 };
        let kek = Kek::generate().unwrap();
        let old = seal.wrap_kek(ctx, &kek).unwrap();
        let next = seal.prepare_split(4, 3).unwrap();
        assert_eq!(seal.root_version(), Some(1), "nothing changes before the commit");
        assert!(seal.commit_split(&split.sealed).is_err(), "only the prepared split commits");
        assert_eq!(seal.commit_split(&next.sealed).unwrap(), 2);
        let new = seal.wrap_kek(ctx, &kek).unwrap();
        assert_eq!(Header::parse(&new).unwrap().key_version, 2);
        // The new shares open the new keyring, which still holds version 1.
        let reopened = ShamirSeal::new();
        reopened.unseal(&next.sealed, &parse_all(&next)[1..]).unwrap();
        assert_eq!(reopened.unwrap_kek(ctx, &old).unwrap().bytes(), kek.bytes());
        // The old shares are from another set now.
        let old_share = Share::parse(&split.shares[0]).unwrap();
        assert_eq!(check_share(&next.sealed, &[], &old_share), Err(ShareError::OtherSet));
        // Destroying version 1 and exporting drops it from what the shares open.
        reopened.destroy_root_version(1).unwrap();
        let exported = reopened.export().unwrap();
        let third = ShamirSeal::new();
        third.unseal(&exported, &parse_all(&next)[..3]).unwrap();
        assert_eq!(third.root_versions(), vec![2]);
        third.seal();
        assert!(!third.is_unsealed());
        assert!(third.wrap_kek(ctx, &kek).is_err());
    }

    #[test]
    fn bad_split_parameters_are_refused() {
        for (n, k) in [(1, 1), (3, 1), (2, 3), (0, 0)] {
            assert!(ShamirSeal::initialize(n, k).is_err(), "{n}/{k}");
        }
    }
}
