//! C2SP checkpoints (`c2sp.org/tlog-checkpoint`): the text a log signs about its tree head.
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <root hash, base64>
//! [extension lines, each non-empty]
//! ```
//!
//! Written by hand: three lines of text.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::Hash;

/// A log's tree head, as a checkpoint states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Who issued it: the log's identity, e.g. `rekey.example/audit`.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// The RFC 6962 tree head.
    pub root: Hash,
    /// Opaque extension lines (none written by Rekey).
    pub extensions: Vec<String>,
}

/// Why a text is not a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointError(pub &'static str);

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a checkpoint: {}", self.0)
    }
}

impl std::error::Error for CheckpointError {}

impl Checkpoint {
    /// The note text: the lines, each ending in a newline.
    pub fn text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Reads a checkpoint's note text (after the note was opened with a trusted key).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError("the text ends in a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(CheckpointError("an origin, a size and a root hash"));
        };
        if origin.is_empty() {
            return Err(CheckpointError("the origin is empty"));
        }
        let canonical = size == "0" || (!size.starts_with('0') && !size.is_empty());
        let size = size
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| size.parse::<u64>().ok())
            .flatten()
            .filter(|_| canonical)
            .ok_or(CheckpointError("the size is a decimal number without leading zeros"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError("the root hash is 32 bytes, base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError("an extension line is empty"));
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_reads_and_writes_back() {
        let text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let c = Checkpoint::parse(text).unwrap();
        assert_eq!((c.origin.as_str(), c.size), ("example.com/behind-the-sofa", 20_852_163));
        assert_eq!(c.text(), text);
        let empty = Checkpoint { origin: "o".into(), size: 0, root: crate::empty_root(), extensions: vec![] };
        assert_eq!(Checkpoint::parse(&empty.text()).unwrap(), empty);
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for bad in [
            format!("o\n12\n{root}"),
            format!("\n12\n{root}\n"),
            format!("o\n012\n{root}\n"),
            format!("o\n+12\n{root}\n"),
            format!("o\n\n{root}\n"),
            "o\n12\nAAAA\n".to_owned(),
            format!("o\n12\n{root}\n\n"),
            "o\n12\n".to_owned(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(Checkpoint::parse(&format!("o\n12\n{root}\next\n")).unwrap().extensions, vec!["ext"]);
    }
}
