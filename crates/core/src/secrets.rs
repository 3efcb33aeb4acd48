//! Account passwords live in the Secret Service (GNOME Keyring, KWallet…) through oo7,
//! never in Natter's database. Inside Flatpak oo7 uses its own file keyring keyed by the
//! Secret portal; tests and the demo use an explicit file keyring.

use std::path::Path;

use oo7::file::UnlockedKeyring;

const APPLICATION: &str = "im.natter.Natter";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the keyring is not available: {0}")]
    Unavailable(String),
    #[error("the keyring refused the operation: {0}")]
    Keyring(String),
}

/// Where passwords are kept.
pub enum PasswordStore {
    /// The desktop's Secret Service (or oo7's portal-keyed file inside a sandbox).
    System(oo7::Keyring),
    /// An oo7 file keyring at an explicit path, unlocked with an explicit secret.
    File(UnlockedKeyring),
}

impl std::fmt::Debug for PasswordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordStore::System(_) => f.write_str("PasswordStore::System"),
            PasswordStore::File(k) => write!(f, "PasswordStore::File({:?})", k.path()),
        }
    }
}

fn attributes(jid: &str) -> [(&'static str, &str); 2] {
    [("application", APPLICATION), ("xmpp-account", jid)]
}

impl PasswordStore {
    /// The desktop keyring.
    pub async fn system() -> Result<Self, SecretError> {
        let keyring = oo7::Keyring::new()
            .await
            .map_err(|e| SecretError::Unavailable(e.to_string()))?;
        keyring
            .unlock()
            .await
            .map_err(|e| SecretError::Unavailable(e.to_string()))?;
        Ok(PasswordStore::System(keyring))
    }

    /// A file keyring (created if missing) protected by `secret`.
    pub async fn file(path: &Path, secret: &[u8]) -> Result<Self, SecretError> {
        let keyring = UnlockedKeyring::load(path, oo7::Secret::from(secret.to_vec()))
            .await
            .map_err(|e| SecretError::Unavailable(e.to_string()))?;
        Ok(PasswordStore::File(keyring))
    }

    pub async fn password(&self, jid: &str) -> Result<Option<String>, SecretError> {
        let err = |e: &dyn std::fmt::Display| SecretError::Keyring(e.to_string());
        let secret = match self {
            PasswordStore::System(k) => {
                let items = k
                    .search_items(&attributes(jid))
                    .await
                    .map_err(|e| err(&e))?;
                match items.first() {
                    Some(item) => Some(item.secret().await.map_err(|e| err(&e))?),
                    None => None,
                }
            }
            PasswordStore::File(k) => {
                let item = k.lookup_item(&attributes(jid)).await.map_err(|e| err(&e))?;
                match item {
                    Some(oo7::file::Item::Unlocked(item)) => Some(item.secret()),
                    Some(oo7::file::Item::Locked(_)) => {
                        return Err(SecretError::Keyring("the password item is locked".into()))
                    }
                    None => None,
                }
            }
        };
        secret
            .map(|s| {
                String::from_utf8(s.as_bytes().to_vec())
                    .map_err(|_| SecretError::Keyring("the stored password is not UTF-8".into()))
            })
            .transpose()
    }

    pub async fn set_password(&self, jid: &str, password: &str) -> Result<(), SecretError> {
        let label = format!("XMPP password for {jid}");
        let secret = oo7::Secret::text(password);
        match self {
            PasswordStore::System(k) => k
                .create_item(&label, &attributes(jid), secret, true)
                .await
                .map_err(|e| SecretError::Keyring(e.to_string())),
            PasswordStore::File(k) => k
                .create_item(&label, &attributes(jid), secret, true)
                .await
                .map(|_| ())
                .map_err(|e| SecretError::Keyring(e.to_string())),
        }
    }

    pub async fn remove_password(&self, jid: &str) -> Result<(), SecretError> {
        match self {
            PasswordStore::System(k) => k
                .delete(&attributes(jid))
                .await
                .map_err(|e| SecretError::Keyring(e.to_string())),
            PasswordStore::File(k) => k
                .delete(&attributes(jid))
                .await
                .map_err(|e| SecretError::Keyring(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_keyring_round_trip_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("natter.keyring");
        let store = PasswordStore::file(&path, b"unlock-secret").await.unwrap();
        assert_eq!(store.password("demo@localhost").await.unwrap(), None);
        store
            .set_password("demo@localhost", "s3cret ü")
            .await
            .unwrap();
        store.set_password("demo@localhost", "n3w").await.unwrap();
        drop(store);
        let raw = std::fs::read(&path).expect("keyring file written");
        assert!(
            !raw.windows(3).any(|w| w == b"n3w"),
            "password stored in clear"
        );
        let store = PasswordStore::file(&path, b"unlock-secret").await.unwrap();
        assert_eq!(
            store.password("demo@localhost").await.unwrap().as_deref(),
            Some("n3w")
        );
        assert!(
            PasswordStore::file(&path, b"wrong").await.is_err(),
            "a wrong unlock secret must not open the keyring"
        );
        store.remove_password("demo@localhost").await.unwrap();
        assert_eq!(store.password("demo@localhost").await.unwrap(), None);
    }
}
