//! Passwords and tokens, on the leader, outside the state machine: the
//! leader hashes a password (random salt) and draws a token before it
//! proposes, so that the log and the tables hold only hashes, and the
//! state machine stays deterministic. The user and session records are in
//! `state/users.rs`.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// BLAKE3 of a bearer token: what the state keeps of a session's token.
pub type TokenHash = [u8; 32];

/// A new bearer token: 32 random bytes as 64 hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn token_hash(token: &str) -> TokenHash {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// A new random password for the first admin: 24 characters from an
/// alphabet without look-alikes (~137 bits).
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: the
/// OWASP minimum), salted with 16 random bytes. ~30 ms on one core.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The key that seals S3 secret access keys in the state, derived from the
/// cluster secret: a copy of the database or the log alone opens none.
#[derive(Clone)]
pub struct SealingKey([u8; 32]);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    pub fn from_secret(secret: &[u8]) -> SealingKey {
        SealingKey(blake3::derive_key("cairn s3 secret sealing v1", secret))
    }

    /// ChaCha20-Poly1305 of `secret` under a random nonce, bound to the key
    /// id and its user (a sealed secret moved to another key does not
    /// open): nonce (12 bytes) then ciphertext and tag.
    pub fn seal(&self, key_id: &str, user: &str, secret: &str) -> Vec<u8> {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
        let key =
            LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("a 32-byte key"));
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut sealed = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(key_id, user)),
            &mut sealed,
        )
        .expect("sealing a short secret cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    /// The secret [`SealingKey::seal`] sealed; `None` if it was sealed
    /// under another cluster secret, for another key, or damaged.
    pub fn open(&self, key_id: &str, user: &str, sealed: &[u8]) -> Option<String> {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let key =
            LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("a 32-byte key"));
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let opened = key
            .open_in_place(nonce, Aad::from(associated_data(key_id, user)), &mut buffer)
            .ok()?;
        String::from_utf8(opened.to_vec()).ok()
    }
}

fn associated_data(key_id: &str, user: &str) -> Vec<u8> {
    [key_id.as_bytes(), b"\0", user.as_bytes()].concat()
}

/// A new access key id: `CK` and 18 characters of A-Z and 2-7 (90 random
/// bits), [`cairn_proto::api::ACCESS_KEY_ID_BYTES`] in all, as AWS's look.
pub fn new_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; cairn_proto::api::ACCESS_KEY_ID_BYTES - 2];
    OsRng.fill_bytes(&mut bytes);
    let id: String = std::iter::once("CK".to_string())
        .chain(
            bytes
                .iter()
                .map(|b| (ALPHABET[(*b & 31) as usize] as char).to_string()),
        )
        .collect();
    debug_assert!(cairn_proto::api::validate_access_key_id(&id).is_ok());
    id
}

/// A new secret access key: 40 characters of base64's alphabet less `+`
/// and `/` (about 238 bits), which every S3 tool takes as typed.
pub fn new_secret_access_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; cairn_proto::api::ACCESS_KEY_SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    // 256 is 4 * 62 + 8: the modulo bias (8 of 256) costs under 0.1 bit a
    // character; 40 characters keep well over 200 bits.
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_under_its_key_id_user_and_cluster_secret() {
        let key = SealingKey::from_secret(b"0123456789abcdef0123");
        let id = new_access_key_id();
        let secret = new_secret_access_key();
        assert_eq!(id.len(), 20);
        assert_eq!(secret.len(), 40);
        let sealed = key.seal(&id, "alice", &secret);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert_eq!(
            key.open(&id, "alice", &sealed).as_deref(),
            Some(secret.as_str())
        );
        assert_eq!(key.open(&id, "bob", &sealed), None);
        assert_eq!(key.open(&new_access_key_id(), "alice", &sealed), None);
        let other = SealingKey::from_secret(b"another cluster secret");
        assert_eq!(other.open(&id, "alice", &sealed), None);
        let mut damaged = sealed.clone();
        damaged[15] ^= 1;
        assert_eq!(key.open(&id, "alice", &damaged), None);
        assert_eq!(key.open(&id, "alice", &sealed[..5]), None);
    }

    #[test]
    fn passwords_hash_with_a_fresh_salt_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct horsf", &a));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_and_passwords_are_random() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 64);
        assert_eq!(new_password().len(), 24);
        assert_ne!(new_password(), new_password());
    }
}
