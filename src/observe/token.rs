//! The shared secret between `knee observe` and the driver: read from a file (never from the
//! command line, where `ps` shows it) or `KNEE_OBSERVER_TOKEN`, sent as a bearer token, and
//! compared in constant time so its bytes cannot be guessed one by one from response times.

use crate::plan::Token;
use std::path::Path;

/// The environment variable the driver reads the token from when no file is given.
pub const ENV: &str = "KNEE_OBSERVER_TOKEN";

/// The token in `path` (surrounding whitespace trimmed): an error names the file.
pub fn read_file(path: &Path) -> Result<Token, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    from_text(text.trim()).ok_or_else(|| format!("the token file {} is empty", path.display()))
}

/// The token in `KNEE_OBSERVER_TOKEN`, when set and not empty.
pub fn from_env() -> Option<Token> {
    from_text(std::env::var(ENV).ok()?.trim())
}

fn from_text(text: &str) -> Option<Token> {
    (!text.is_empty()).then(|| Token(text.to_string()))
}

/// Whether an `Authorization` header carries `token`, in time independent of where they
/// differ (the length of a wrong guess is all it can learn).
pub fn authorizes(header: Option<&[u8]>, token: &Token) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
        return false;
    };
    same(given, token.0.as_bytes())
}

fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_authorizes() {
        let token = Token("s3cret".into());
        assert!(authorizes(Some(b"Bearer s3cret"), &token));
        assert!(!authorizes(Some(b"Bearer s3cres"), &token));
        assert!(!authorizes(Some(b"Bearer s3cret2"), &token));
        assert!(!authorizes(Some(b"s3cret"), &token));
        assert!(!authorizes(None, &token));
    }
}
