//! WireGuard keys: generation, parsing, the 0600 private key file, and redacted formatting.
//!
//! A private key never appears in `Debug` or `Display` output, so it cannot reach a log line or a
//! resource by accident. Public keys print as standard base64, the form `wg` and the CRDs use.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use defguard_wireguard_rs::key::Key;

use crate::{Error, Result};

/// A WireGuard public key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

/// A WireGuard private key. Its `Debug` output is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey([u8; 32]);

impl PublicKey {
    /// Raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn to_key(&self) -> Key {
        Key::new(self.0)
    }

    pub(crate) fn from_key(key: &Key) -> Self {
        PublicKey(key.as_array())
    }
}

impl PrivateKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        PrivateKey(Key::generate().as_array())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(Key::new(self.0).public_key().as_array())
    }

    /// Raw key bytes, for the engines.
    pub(crate) fn secret_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key as base64 text, for storing it in a Secret or a file. Never log the result.
    pub fn expose_base64(&self) -> String {
        Key::new(self.0).to_string()
    }

    /// Parses a base64 (or hex) private key. The error never echoes the input.
    pub fn parse(text: &str) -> Result<Self> {
        Key::try_from(text.trim())
            .map(|key| PrivateKey(key.as_array()))
            .map_err(|_| Error::invalid("private key is not 32 bytes of base64 or hex"))
    }

    /// Reads a key written by [`PrivateKey::write_file`], refusing a file others can read.
    pub fn read_file(path: &Path) -> Result<Self> {
        let mode = fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::invalid(format!(
                "private key file {} has mode {mode:o}; want 0600",
                path.display()
            )));
        }
        Self::parse(&fs::read_to_string(path)?)
    }

    /// Writes the key as base64 to a new file with mode 0600 (replacing an older one).
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(file, "{}", Key::new(self.0))?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Loads the key at `path`, or generates one and stores it there (mode 0600).
    pub fn load_or_generate(path: &Path) -> Result<Self> {
        if path.exists() {
            return Self::read_file(path);
        }
        let key = Self::generate();
        key.write_file(path)?;
        Ok(key)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Key::new(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Key::try_from(text.trim())
            .map(|key| PublicKey(key.as_array()))
            .map_err(|_| Error::invalid(format!("public key {text:?} is not 32 bytes of base64")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_private_key() {
        let key = PrivateKey::generate();
        let shown = format!("{key:?}");
        assert_eq!(shown, "PrivateKey(<redacted>)");
        assert!(!shown.contains(&Key::new(key.0).to_string()));
    }

    #[test]
    fn key_file_is_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg.key");
        let key = PrivateKey::load_or_generate(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(PrivateKey::load_or_generate(&path).unwrap(), key);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(PrivateKey::read_file(&path).is_err());
    }

    #[test]
    fn public_key_parses_and_rejects() {
        let public = PrivateKey::generate().public_key();
        assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
        let private = PrivateKey::generate();
        assert_eq!(
            PrivateKey::parse(&private.expose_base64()).unwrap(),
            private
        );
        assert!("not-a-key".parse::<PublicKey>().is_err());
    }
}
