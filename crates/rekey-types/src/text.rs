//! Short texts people type into the API: an incident's title, a waiver's reason, a token's
//! description. Each rule is here once, with the pattern the API document gives for it, so that
//! what the document promises and what the server accepts are the same.

/// Control characters (Unicode `Cc`), as a regular-expression class body.
pub const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// White space as Rust's `char::is_whitespace` (and so `str::trim`) knows it, as a class body.
pub const SPACE: &str = r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A text that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {rule}")]
pub struct TextError {
    /// What the text is (`the title`, …).
    pub what: &'static str,
    /// The rule, for a person.
    pub rule: String,
}

/// One line of 1 to `max` characters, without control characters, and not only spaces; the
/// answer is the line trimmed.
pub fn line<'a>(what: &'static str, value: &'a str, max: usize) -> Result<&'a str, TextError> {
    let count = value.chars().count();
    if count == 0 || count > max || value.chars().any(char::is_control) || value.trim().is_empty() {
        return Err(TextError { what, rule: format!("one line of 1 to {max} printable characters") });
    }
    Ok(value.trim())
}

/// [`line`]'s rule as a pattern (with `minLength` 1 and `maxLength` the maximum).
pub fn line_pattern() -> String {
    format!("^[^{CONTROL}]*[^{CONTROL}{SPACE}][^{CONTROL}]*$")
}

/// At most `max` characters without control characters; may be empty.
pub fn text<'a>(what: &'static str, value: &'a str, max: usize) -> Result<&'a str, TextError> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(TextError { what, rule: format!("at most {max} printable characters") });
    }
    Ok(value)
}

/// [`text`]'s rule as a pattern (with `maxLength` the maximum).
pub fn text_pattern() -> String {
    format!("^[^{CONTROL}]*$")
}

/// The longest e-mail address (RFC 5321's path limit), in characters.
pub const MAX_EMAIL: usize = 254;

/// A plausible e-mail address: `local@domain`, no spaces, control characters, `<` or `>`, the
/// local part without `@`, the domain with a dot neither first nor last; at most
/// [`MAX_EMAIL`] characters.
pub fn email<'a>(what: &'static str, value: &'a str) -> Result<&'a str, TextError> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '<' || c == '>';
    let ok = value.chars().count() <= MAX_EMAIL
        && !value.chars().any(bad)
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if ok {
        Ok(value)
    } else {
        Err(TextError { what, rule: "an e-mail address, local@domain.tld".into() })
    }
}

/// [`email`]'s rule as a pattern (with `maxLength` [`MAX_EMAIL`]).
pub fn email_pattern() -> String {
    let not = format!("{CONTROL}{SPACE}<>");
    format!("^[^@{not}]+@[^.{not}][^{not}]*\\.[^{not}]*[^.{not}]$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(line("t", "  a title ", 200).unwrap(), "a title");
        for bad in ["", "   ", "a\nb", "tab\there"] {
            assert!(line("t", bad, 200).is_err(), "{bad:?}");
        }
        assert!(line("t", &"é".repeat(200), 200).is_ok());
        assert!(line("t", &"é".repeat(201), 200).is_err());
        assert!(text("d", "", 10).is_ok());
        assert!(text("d", "a\u{85}", 10).is_err());
    }

    #[test]
    fn emails() {
        for ok in ["a@b.c", "sec@acme.example", "x@y@z.com", "ü@ex.ample"] {
            assert!(email("c", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "@b.c", "a@b", "a@.b", "a@b.", "a b@c.d", "<a@b.c>", "a@b\u{3000}.c"] {
            assert!(email("c", bad).is_err(), "{bad:?}");
        }
    }
}
