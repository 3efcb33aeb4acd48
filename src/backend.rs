//! The app's side of the bridge: the tokio runtime that runs the sessions, and starting
//! the configured account from the store and the keyring.

use std::path::PathBuf;
use std::sync::OnceLock;

use natter_core::store::{Account, Store};
use natter_core::{
    AccountEvent, ConnectError, ConnectionState, Event, PasswordStore, SessionConfig, SessionHandle,
};
use tokio::sync::mpsc;

use crate::i18n::tr;
use crate::ui::signin::SignInForm;

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

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("jid", &self.handle.jid())
            .finish_non_exhaustive()
    }
}

/// The store, opened once per process on the session runtime.
pub async fn store() -> Result<Store, String> {
    static STORE: tokio::sync::OnceCell<Store> = tokio::sync::OnceCell::const_new();
    STORE
        .get_or_try_init(|| async {
            Store::open(data_dir().join("natter.db"))
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .cloned()
}

fn config(account: Account, password: String) -> SessionConfig {
    SessionConfig {
        account,
        password,
        backoff: Default::default(),
        calls: Default::default(),
        avatar_cache: relm4::gtk::glib::user_cache_dir().join("natter/avatars"),
        keepalive: Default::default(),
    }
}

/// Starts one configured account (its password from the keyring).
pub async fn start_session(account: Account) -> Result<Started, String> {
    let store = store().await?;
    let keyring = password_store().await?;
    let password = keyring
        .password(&account.jid)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no password stored for {}", account.jid))?;
    let (tx, events) = mpsc::unbounded_channel();
    let handle =
        natter_core::start(config(account, password), store, tx).map_err(|e| e.to_string())?;
    Ok(Started { handle, events })
}

/// Starts the account with this id again (after "Retry" or going back online).
pub async fn restart_session(account_id: i64) -> Result<Started, String> {
    let store = store().await?;
    let account = store
        .accounts()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|a| a.id == account_id)
        .ok_or_else(|| "the account was removed".to_string())?;
    start_session(account).await
}

/// Each enabled account: started, or (address, why not).
pub type StartedAccounts = Vec<Result<Started, (String, String)>>;

/// Opens the store and starts every enabled account. An empty list: no account yet
/// (the sign-in page). Accounts that cannot start are reported by address.
pub async fn start_accounts() -> Result<StartedAccounts, String> {
    let store = store().await?;
    let accounts = store.accounts().await.map_err(|e| e.to_string())?;
    let mut started = Vec::new();
    for account in accounts.into_iter().filter(|a| a.enabled) {
        let jid = account.jid.clone();
        started.push(start_session(account).await.map_err(|e| (jid, e)));
    }
    Ok(started)
}

/// Why signing in did not work.
#[derive(Debug, Clone)]
pub enum SignInError {
    Connect(ConnectError),
    Other(String),
}

/// A new account: connects with what the user typed and keeps the account (and the
/// password, in the keyring) only once the server accepted it. Events the session
/// emitted while signing in are returned to be shown.
pub async fn sign_in(
    form: SignInForm,
    pinned_cert: Option<String>,
) -> Result<(Started, Vec<AccountEvent>), SignInError> {
    let other = |e: String| SignInError::Other(e);
    let store = store().await.map_err(other)?;
    let existing = store
        .account(form.jid.clone())
        .await
        .map_err(|e| other(e.to_string()))?;
    if existing.as_ref().is_some_and(|a| a.enabled) {
        return Err(other(tr("This account is already added.")));
    }
    let resource = format!("natter.{}", &relm4::gtk::glib::uuid_string_random()[..8]);
    let mut account = Account {
        id: 0,
        jid: form.jid.clone(),
        resource,
        host: form.host.clone(),
        port: form.port,
        direct_tls: form.direct_tls,
        extra_ca: existing.as_ref().and_then(|a| a.extra_ca.clone()),
        enabled: false,
        pinned_cert,
    };
    account.id = store
        .upsert_account(account.clone())
        .await
        .map_err(|e| other(e.to_string()))?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let handle = natter_core::start(
        config(account.clone(), form.password.clone()),
        store.clone(),
        tx,
    )
    .map_err(|e| other(e.to_string()))?;
    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(ev) = events.recv().await {
            match &ev.event {
                Event::Connection(ConnectionState::Online { .. }) => {
                    seen.push(ev);
                    return Ok(());
                }
                Event::Connection(ConnectionState::Failed(e))
                | Event::Connection(ConnectionState::Reconnecting { error: Some(e), .. }) => {
                    return Err(e.clone())
                }
                _ => seen.push(ev),
            }
        }
        Err(ConnectError::Unreachable("the session stopped".into()))
    })
    .await
    .unwrap_or_else(|_| {
        Err(ConnectError::Unreachable(
            "no answer from the server within 30 s".into(),
        ))
    });
    let enabled = Account {
        enabled: true,
        ..account.clone()
    };
    let keep = async {
        password_store()
            .await?
            .set_password(&enabled.jid, &form.password)
            .await
            .map_err(|e| format!("{}: {e}", tr("The password cannot be stored")))?;
        store
            .upsert_account(enabled.clone())
            .await
            .map_err(|e| e.to_string())
    };
    let failure = match outcome {
        Ok(()) => match keep.await {
            Ok(_) => return Ok((Started { handle, events }, seen)),
            Err(e) => SignInError::Other(e),
        },
        Err(e) => SignInError::Connect(e),
    };
    let _ = handle.disconnect().await;
    if existing.is_none() {
        if let Err(e) = store.remove_account(account.id).await {
            tracing::warn!(error = %e, "could not forget the account that did not sign in");
        }
    }
    Err(failure)
}

/// Signs the account off and forgets it: its messages, contacts and password.
pub async fn remove_account(handle: SessionHandle) -> Result<(), String> {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), handle.disconnect()).await;
    let store = store().await?;
    store
        .remove_account(handle.account_id())
        .await
        .map_err(|e| e.to_string())?;
    if let Err(e) = password_store().await?.remove_password(handle.jid()).await {
        tracing::warn!(error = %e, "the password could not be removed from the keyring");
    }
    Ok(())
}
