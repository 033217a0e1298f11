//! Validated layer names (`NNN-name`).

use std::fmt;
use std::str::FromStr;

use super::LayerError;

/// A layer name: three digits, a dash, then 1-63 of `[a-z0-9._-]` starting with `[a-z0-9]`
/// (`000-base`, `100-python3`; `9xx` is used for snapshots). The digits order the stack: the
/// highest number is on top.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct LayerName(String);

impl LayerName {
    /// Validate `name` against `^[0-9]{3}-[a-z0-9][a-z0-9._-]{0,62}$`.
    pub fn new(name: impl Into<String>) -> Result<Self, LayerError> {
        let name = name.into();
        match Self::problem(&name) {
            None => Ok(LayerName(name)),
            Some(reason) => Err(LayerError::InvalidName { name, reason }),
        }
    }

    fn problem(name: &str) -> Option<&'static str> {
        let bytes = name.as_bytes();
        if bytes.len() < 5 || !bytes[..3].iter().all(u8::is_ascii_digit) || bytes[3] != b'-' {
            return Some("must start with three digits and a dash, like 100-tools");
        }
        let rest = &bytes[4..];
        if rest.len() > 63 {
            return Some("at most 63 characters after the dash");
        }
        if !(rest[0].is_ascii_lowercase() || rest[0].is_ascii_digit()) {
            return Some("the part after the dash must start with a-z or 0-9");
        }
        let allowed = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c);
        if !rest.iter().all(allowed) {
            return Some("only a-z, 0-9, '.', '_' and '-' are allowed");
        }
        None
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The three-digit order prefix (`100` for `100-python3`).
    pub fn order(&self) -> u16 {
        self.0[..3].parse().unwrap_or(0)
    }
}

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for LayerName {
    type Err = LayerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LayerName::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for LayerName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LayerName::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for n in ["000-base", "100-python3", "999-snap.2026-11-23_1", "123-a"] {
            assert!(LayerName::new(n).is_ok(), "{n}");
        }
        let long = format!("100-{}", "a".repeat(63));
        assert!(LayerName::new(long).is_ok());
        assert_eq!(LayerName::new("100-py").map(|n| n.order()).ok(), Some(100));
    }

    #[test]
    fn rejects_invalid_names() {
        let long = format!("100-{}", "a".repeat(64));
        for n in [
            "",
            "base",
            "10-base",
            "1000-base",
            "100base",
            "100-",
            "100-Base",
            "100-.x",
            "100-a/b",
            "100-a b",
            "abc-def",
            "100-ü",
            &long,
        ] {
            assert!(
                matches!(LayerName::new(n), Err(LayerError::InvalidName { .. })),
                "{n:?} should be rejected"
            );
        }
    }
}
