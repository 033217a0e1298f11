//! API keys: 256 bits of randomness behind a public id, shown once, stored as a SHA-256.
//!
//! A key reads `sqrx_<id><secret>`: `id` is 16 hex digits (public, the lookup key and what
//! the API lists), `secret` 64 hex digits (256 bits). The same key with `e2b_` in place of
//! `sqrx_` is accepted too, so that E2B SDK releases that insist on `e2b_<hex>` take it.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every key starts with.
pub const PREFIX: &str = "sqrx_";
/// The alternative start accepted for E2B's SDKs.
pub const E2B_PREFIX: &str = "e2b_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A freshly made key.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The public id.
    pub id: String,
    /// The whole key, to show once.
    pub key: String,
    /// What is stored.
    pub hash: String,
}

fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

/// A new random key.
pub fn generate() -> Result<NewKey, getrandom::Error> {
    let id = random_hex(ID_HEX / 2)?;
    let secret = random_hex(SECRET_HEX / 2)?;
    Ok(NewKey {
        key: format!("{PREFIX}{id}{secret}"),
        hash: hash(&secret),
        id,
    })
}

/// `(id, secret)` of something shaped like a key.
pub fn parse(given: &str) -> Option<(&str, &str)> {
    let body = given
        .strip_prefix(PREFIX)
        .or_else(|| given.strip_prefix(E2B_PREFIX))?;
    let hex_only = body
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if body.len() != ID_HEX + SECRET_HEX || !hex_only {
        return None;
    }
    Some(body.split_at(ID_HEX))
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sqrx-api-key\0");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Does `secret` hash to `stored`? Constant time in where they differ.
pub fn matches(secret: &str, stored: &str) -> bool {
    hash(secret).as_bytes().ct_eq(stored.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_verify_and_take_the_e2b_prefix() {
        let k = generate().expect("random");
        assert!(k.key.starts_with(PREFIX) && k.key.len() == PREFIX.len() + 80);
        let (id, secret) = parse(&k.key).expect("parse");
        assert_eq!(id, k.id);
        assert!(matches(secret, &k.hash));
        let e2b = k.key.replacen(PREFIX, E2B_PREFIX, 1);
        assert_eq!(parse(&e2b), Some((id, secret)));
        let mut wrong = secret.to_string();
        wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert!(!matches(&wrong, &k.hash));
        assert_eq!(parse("sqrx_abc"), None);
        assert_eq!(parse(&k.key.to_uppercase()), None);
        assert_eq!(parse(&k.key[1..]), None);
        assert_ne!(generate().expect("random").key, k.key);
    }
}
