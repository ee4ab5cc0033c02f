//! ingress-nginx's basic auth: an htpasswd file in a Secret, checked per request.
//!
//! Entries hashed with bcrypt (`$2y$`, `$2a$`, `$2b$`), SHA1 (`{SHA}`) and MD5-crypt
//! (`$apr1$`, Apache's, and `$1$`) are understood; an entry in any other scheme (DES
//! crypt, plain text) is left out with a warning, so it lets no one in. bcrypt and
//! MD5-crypt are slow on purpose, so they run on the blocking pool; a credential that
//! verified is remembered (a SHA-1 of user and password, a bounded set per table), so
//! a client's next requests cost a hash, not a bcrypt.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine;
use md5::{Digest, Md5};
use sha1::Sha1;

/// Credentials remembered as verified, per table (a new Secret makes a new table).
const VERIFIED_CACHE: usize = 4096;

/// The users of one Secret.
#[derive(Debug, Default)]
pub struct Htpasswd {
    users: HashMap<String, Hash>,
    verified: Mutex<HashSet<[u8; 20]>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    Bcrypt(String),
    Sha1([u8; 20]),
    /// MD5-crypt: the magic (`$apr1$` or `$1$`), the salt and the whole entry.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        full: String,
    },
}

impl Htpasswd {
    /// Parses `user:hash` lines (`auth-file`) or user → hash pairs (`auth-map`). Returns
    /// the table and the users left out, with why.
    pub fn parse<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> (Htpasswd, Vec<String>) {
        let mut table = Htpasswd::default();
        let mut skipped = Vec::new();
        for (user, hash) in entries {
            let (user, hash) = (user.trim(), hash.trim());
            if user.is_empty() || user.starts_with('#') {
                continue;
            }
            match parse_hash(hash) {
                Some(h) => {
                    table.users.insert(user.to_owned(), h);
                }
                None => skipped.push(format!(
                    "user {user:?}: not a bcrypt, {{SHA}} or $apr1$ hash"
                )),
            }
        }
        (table, skipped)
    }

    /// The lines of an htpasswd file.
    pub fn parse_file(text: &str) -> (Htpasswd, Vec<String>) {
        Self::parse(text.lines().filter_map(|l| l.split_once(':')))
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether the `Authorization` header value carries a user of this table and the
    /// right password. Slow hashes run on the blocking pool.
    pub async fn verify(self: &std::sync::Arc<Self>, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let fingerprint = fingerprint(&user, &password);
        if self.verified.lock().is_ok_and(|v| v.contains(&fingerprint)) {
            return true;
        }
        let ok = match hash {
            Hash::Sha1(digest) => {
                let got: [u8; 20] = Sha1::digest(password.as_bytes()).into();
                constant_time_eq(&got, digest)
            }
            slow => {
                let slow = slow.clone();
                tokio::task::spawn_blocking(move || check_slow(&slow, &password))
                    .await
                    .unwrap_or(false)
            }
        };
        if ok && let Ok(mut v) = self.verified.lock() {
            if v.len() >= VERIFIED_CACHE {
                v.clear();
            }
            v.insert(fingerprint);
        }
        ok
    }
}

/// What the verified set keeps of a credential: a digest, never the password.
fn fingerprint(user: &str, password: &str) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    h.finalize().into()
}

fn check_slow(hash: &Hash, password: &str) -> bool {
    match hash {
        Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        Hash::Md5Crypt { magic, salt, full } => constant_time_eq(
            md5_crypt(password.as_bytes(), salt, magic).as_bytes(),
            full.as_bytes(),
        ),
        Hash::Sha1(_) => false,
    }
}

fn parse_hash(hash: &str) -> Option<Hash> {
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        return bytes.try_into().ok().map(Hash::Sha1);
    }
    if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
        return Some(Hash::Bcrypt(hash.to_owned()));
    }
    for magic in ["$apr1$", "$1$"] {
        if let Some(rest) = hash.strip_prefix(magic) {
            let (salt, digest) = rest.split_once('$')?;
            if salt.len() > 8 || digest.len() != 22 {
                return None;
            }
            return Some(Hash::Md5Crypt {
                magic,
                salt: salt.to_owned(),
                full: hash.to_owned(),
            });
        }
    }
    None
}

/// User and password of an `Authorization: Basic base64(user:password)` value.
pub fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// MD5-crypt (Poul-Henning Kamp's, as Apache's `$apr1$` and glibc's `$1$`).
fn md5_crypt(password: &[u8], salt: &str, magic: &str) -> String {
    let salt = salt.as_bytes();
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic.as_bytes());
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(std::str::from_utf8(salt).unwrap_or_default());
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    to64(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn header(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    #[test]
    fn md5_crypt_matches_openssl() {
        // openssl passwd -apr1 -salt abcdefgh secret; openssl passwd -1 -salt abcdefgh secret
        assert_eq!(
            md5_crypt(b"secret", "abcdefgh", "$apr1$"),
            "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/"
        );
        assert_eq!(
            md5_crypt(b"secret", "abcdefgh", "$1$"),
            "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"
        );
    }

    #[tokio::test]
    async fn each_scheme_verifies_and_wrong_passwords_do_not() {
        let bcrypt = bcrypt::hash_with_result("secret", 4)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoY);
        let file = format!(
            "alice:{bcrypt}\nbob:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\ncarol:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\n# comment\ndes:abJnggxhB/yWI\n"
        );
        let (table, skipped) = Htpasswd::parse_file(&file);
        assert_eq!(table.len(), 3);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        let table = Arc::new(table);
        for user in ["alice", "bob", "carol"] {
            assert!(table.verify(Some(&header(user, "secret"))).await, "{user}");
            assert!(
                table.verify(Some(&header(user, "secret"))).await,
                "{user} again (cached)"
            );
            assert!(
                !table.verify(Some(&header(user, "Secret"))).await,
                "{user} wrong"
            );
        }
        assert!(!table.verify(Some(&header("des", "secret"))).await);
        assert!(!table.verify(Some(&header("mallory", "secret"))).await);
        assert!(!table.verify(None).await);
        assert!(!table.verify(Some(b"Bearer abc")).await);
        assert!(!table.verify(Some(b"Basic !!!")).await);
    }
}
