//! Passwords: Argon2id hashes (PHC strings, which Dovecot reads too), the rules a new password
//! must meet, and one-time passwords for new accounts and resets.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

/// The shortest password a person may choose (NCSC's guidance: length over complexity).
pub const MIN_LENGTH: usize = 12;
/// The longest accepted: hashing is bounded work whatever is posted.
pub const MAX_LENGTH: usize = 256;

/// The Argon2id hash of `password` with a fresh salt, as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("Argon2id with its default parameters hashes any password up to MAX_LENGTH")
        .to_string()
}

/// Whether `password` matches the stored hash. A hash that does not parse matches nothing.
pub fn verify(password: &str, hash: &str) -> bool {
    password.len() <= MAX_LENGTH
        && Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
}

/// [`hash`] on the blocking pool: tens of milliseconds of work, by design, that must not hold
/// one of the runtime's few threads (every other page waits behind it).
pub async fn hash_off_thread(password: String) -> String {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .expect("hashing does not panic")
}

/// [`verify`] on the blocking pool.
pub async fn verify_off_thread(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || verify(&password, &hash))
        .await
        .expect("verifying does not panic")
}

/// Why a new password is refused, in words for the person choosing it; `None` when it will do.
/// `login` is the address signing in with it (a password made of it is refused).
pub fn problem(password: &str, login: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Some(format!(
            "Use at least {MIN_LENGTH} characters (three random words make a good password)."
        ));
    }
    if password.len() > MAX_LENGTH {
        return Some(format!("Use at most {MAX_LENGTH} characters."));
    }
    if password.chars().any(char::is_control) {
        return Some("Use letters, digits, spaces and punctuation only.".into());
    }
    let lower = password.to_lowercase();
    let local = login.split('@').next().unwrap_or("").to_lowercase();
    if local.len() >= 4 && lower.contains(&local) {
        return Some("Do not use your address in your password.".into());
    }
    if is_common(&lower) {
        return Some(
            "That password is too common: it is among the first that attackers try.".into(),
        );
    }
    None
}

/// The passwords attackers try first (the most common in published breaches, and the names of
/// this service), compared once what people add to them is taken away: case, digits and
/// punctuation at the end, and a repeated run.
fn is_common(lower: &str) -> bool {
    let core = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    let core = core.trim_start_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    if core.is_empty() {
        return true; // digits and punctuation alone
    }
    let first = core.chars().next().unwrap_or(' ');
    if core.chars().all(|c| c == first) {
        return true; // aaaaaaaaaaaa
    }
    // A word repeated (passwordpassword).
    for size in 1..=core.len() / 2 {
        if core.len().is_multiple_of(size)
            && core.is_char_boundary(size)
            && core
                .as_bytes()
                .chunks(size)
                .all(|chunk| chunk == &core.as_bytes()[..size])
        {
            return true;
        }
    }
    let squeezed: String = core.chars().filter(|c| !c.is_whitespace()).collect();
    COMMON.lines().any(|common| {
        let common = common.trim();
        !common.is_empty() && (squeezed == common || core == common)
    })
}

/// The list [`is_common`] checks, one a line, lower case, without trailing digits.
const COMMON: &str = include_str!("common-passwords.txt");

/// The alphabet of one-time passwords: no 0/O, 1/l/I, so a password read from a letter is
/// typed right.
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A one-time password: 16 characters from the OS's random source (about 93 bits).
pub fn one_time() -> String {
    random_text(16, ALPHABET)
}

/// `len` characters of `alphabet`, each chosen uniformly from the OS's random source.
pub fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(len);
    // Bytes at or above the largest multiple of the alphabet's size are drawn again, so
    // every character is equally likely.
    let limit = 256 - 256 % alphabet.len();
    while out.len() < len {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS's random source");
        for b in bytes {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A random token for a cookie or a form: 32 bytes from the OS, hex.
pub fn token() -> String {
    random_text(64, b"0123456789abcdef")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery");
        assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(
            stored,
            hash("correct horse battery"),
            "a fresh salt each time"
        );
    }

    #[test]
    fn new_passwords_are_long_and_uncommon() {
        let login = "alice.smith@smithchambers.cjsm.net";
        for (password, refused) in [
            ("short", true),
            ("elevenchars", true),
            ("password1234", true),
            ("Password123!", true),
            ("passwordpassword", true),
            ("qwertyuiop12", true),
            ("111111111111", true),
            ("aaaaaaaaaaaa", true),
            ("abcabcabcabc", true),
            ("alice.smith-2026", true),
            ("iloveyou1234", true),
            ("cjsmcjsm2026!", true),
            ("correct horse battery", false),
            ("Tr0ub4dor&3-orchid", false),
            ("twelve chars", false),
        ] {
            assert_eq!(problem(password, login).is_some(), refused, "{password}");
        }
        assert!(problem(&"x".repeat(MAX_LENGTH + 1), login).is_some());
        assert!(problem("tab\there is fine?", login).is_some());
    }

    #[test]
    fn one_time_passwords_are_long_random_and_unambiguous() {
        let a = one_time();
        let b = one_time();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)), "{a}");
        assert!(
            problem(&a, "x@y.uk").is_none(),
            "{a} must itself be acceptable"
        );
        assert_eq!(token().len(), 64);
    }
}
