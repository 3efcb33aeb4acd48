//! The app's side of the bridge: the tokio runtime that runs the sessions, and starting
//! the configured account from the store and the keyring.

use std::path::PathBuf;
use std::sync::OnceLock;

use natter_core::store::Store;
use natter_core::{AccountEvent, PasswordStore, SessionConfig, SessionHandle};
use tokio::sync::mpsc;

/// The runtime for sessions (two worker threads: the UI thread never waits on it).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("natter-session")
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot start the session runtime");
                std::process::exit(1)
            })
    })
}

/// Where Natter keeps its database.
pub fn data_dir() -> PathBuf {
    relm4::gtk::glib::user_data_dir().join("natter")
}

/// The keyring: the desktop's Secret Service, or a file keyring when
/// `NATTER_KEYRING_FILE` and `NATTER_KEYRING_SECRET_FILE` are set (demo, benchmarks,
/// headless machines).
pub async fn password_store() -> Result<PasswordStore, String> {
    match (
        std::env::var_os("NATTER_KEYRING_FILE"),
        std::env::var_os("NATTER_KEYRING_SECRET_FILE"),
    ) {
        (Some(file), Some(secret)) => {
            let secret = tokio::fs::read(&secret)
                .await
                .map_err(|e| format!("{}: {e}", PathBuf::from(secret).display()))?;
            PasswordStore::file(&PathBuf::from(file), secret.trim_ascii())
                .await
                .map_err(|e| e.to_string())
        }
        _ => PasswordStore::system().await.map_err(|e| e.to_string()),
    }
}

/// A signed-in (or signing-in) account.
pub struct Started {
    pub handle: SessionHandle,
    pub events: mpsc::UnboundedReceiver<AccountEvent>,
}

/// Opens the store and starts the first enabled account. `Ok(None)`: no account yet.
pub async fn start_account() -> Result<Option<Started>, String> {
    let store = Store::open(data_dir().join("natter.db"))
        .await
        .map_err(|e| e.to_string())?;
    let accounts = store.accounts().await.map_err(|e| e.to_string())?;
    let Some(account) = accounts.into_iter().find(|a| a.enabled) else {
        return Ok(None);
    };
    let keyring = password_store().await?;
    let password = keyring
        .password(&account.jid)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no password stored for {}", account.jid))?;
    let (tx, events) = mpsc::unbounded_channel();
    let config = SessionConfig {
        account,
        password,
        backoff: Default::default(),
        calls: Default::default(),
    };
    let handle = natter_core::start(config, store, tx).map_err(|e| e.to_string())?;
    Ok(Some(Started { handle, events }))
}
