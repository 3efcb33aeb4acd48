//! The main window: sign-in, the conversation list and the chat, side by side in an
//! AdwLeaflet (one pane at a time when narrow). Everything network- or disk-bound goes
//! through a `SessionHandle` on the session runtime; this thread only renders.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use adw::prelude::*;
use natter_core::store::{Contact, ConversationSummary, Direction, Message};
use natter_core::{
    AccountEvent, Availability, ChatState, ConnectError, ConnectionState, Event, ResourcePresence,
    SessionError, SessionHandle, SubscriptionAction,
};
use relm4::gtk::{gio, glib};
use relm4::{adw, gtk, Component, ComponentParts, ComponentSender};

use crate::backend::{self, SignInError, Started, StartedAccounts};
use crate::i18n::tr;
use crate::settings::Settings;
use crate::ui::avatar::{Avatar, Dot};
use crate::ui::composer::{Composer, ComposerEvent};
use crate::ui::timeline::MessageAction;

/// What the composer's next send does besides sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Composing {
    Reply(i64),
    Edit(i64),
}
use crate::ui::blocking::{self as block_ui, BlockedBar};
use crate::ui::conversations::{ConvKey, ConvRow, ConversationList};
use crate::ui::search::{SearchPanel, SearchResult};
use crate::ui::signin::{self, SignInForm, SignInPage};
use crate::ui::timeline::Timeline;
use crate::ui::{dialogs, format};

/// Messages in the first page of a conversation (more if the view is taller): what fills
/// the view goes in before the first frame, the rest over the next few frames.
const FIRST_PAGE: u32 = 25;
/// Messages per older page, loaded as the user scrolls up.
const PAGE: u32 = 50;
/// Unfocused or hidden this long, the window counts as not looked at (XEP-0352).
const CLIENT_IDLE: Duration = Duration::from_secs(60);

/// The user's own status, as the selector shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnStatus {
    Available,
    Away,
    Busy,
    Offline,
}

impl OwnStatus {
    fn availability(self) -> Option<Availability> {
        match self {
            OwnStatus::Available => Some(Availability::Available),
            OwnStatus::Away => Some(Availability::Away),
            OwnStatus::Busy => Some(Availability::DoNotDisturb),
            OwnStatus::Offline => None,
        }
    }

    fn words(self) -> String {
        match self {
            OwnStatus::Available => tr("Available"),
            OwnStatus::Away => tr("Away"),
            OwnStatus::Busy => tr("Busy"),
            OwnStatus::Offline => tr("Offline"),
        }
    }

    fn dot(self) -> Dot {
        match self {
            OwnStatus::Available => Dot::Available,
            OwnStatus::Away => Dot::Away,
            OwnStatus::Busy => Dot::Busy,
            OwnStatus::Offline => Dot::None,
        }
    }
}

fn dot_of(p: &ResourcePresence) -> Dot {
    match p.availability {
        Availability::Available | Availability::Chat => Dot::Available,
        Availability::Away | Availability::ExtendedAway => Dot::Away,
        Availability::DoNotDisturb => Dot::Busy,
    }
}

fn availability_words(a: Availability) -> String {
    match a {
        Availability::Available | Availability::Chat => tr("Available"),
        Availability::Away => tr("Away"),
        Availability::ExtendedAway => tr("Away for a while"),
        Availability::DoNotDisturb => tr("Busy"),
    }
}

struct AccountState {
    handle: SessionHandle,
    state: ConnectionState,
    contacts: BTreeMap<String, Contact>,
    presences: HashMap<String, BTreeMap<String, ResourcePresence>>,
    /// The user chose "Offline": no reconnecting, no error banner.
    offline_by_choice: bool,
    /// Contacts typing (or paused) in their chat with us (XEP-0085).
    typing: HashMap<String, ChatState>,
    /// Who we block (XEP-0191), as the server says.
    blocked: BTreeSet<String>,
}

impl AccountState {
    fn new(handle: SessionHandle) -> AccountState {
        AccountState {
            handle,
            state: ConnectionState::Connecting,
            contacts: BTreeMap::new(),
            presences: HashMap::new(),
            offline_by_choice: false,
            typing: HashMap::new(),
            blocked: BTreeSet::new(),
        }
    }

    fn name_of(&self, jid: &str) -> String {
        self.contacts
            .get(jid)
            .and_then(|c| c.name.clone())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| jid.to_owned())
    }

    /// The best presence of a contact (for the avatar dot).
    fn dot_of(&self, jid: &str) -> Dot {
        self.presences
            .get(jid)
            .and_then(|r| r.values().max_by_key(|p| (p.priority, dot_rank(dot_of(p)))))
            .map_or(Dot::None, dot_of)
    }
}

fn dot_rank(d: Dot) -> u8 {
    match d {
        Dot::Available => 3,
        Dot::Away => 2,
        Dot::Busy => 1,
        Dot::None => 0,
    }
}

pub struct App {
    accounts: BTreeMap<i64, AccountState>,
    current: Option<ConvKey>,
    drafts: HashMap<ConvKey, String>,
    /// The next send answers (reply) or replaces (edit) this message.
    composing: Option<Composing>,
    requests: VecDeque<(i64, String)>,
    signing_in: bool,
    /// The certificate the user chose to trust while signing in (address, SHA-256), so
    /// that a retry after a wrong password does not ask again.
    trusted: Option<(String, String)>,
    status: OwnStatus,
    status_text: String,
    settings: Settings,
    opened_at: Option<Instant>,
    started_at: i64,
    /// Conversation-list changes from messages not shown yet: a sync stores thousands
    /// of messages a second, and each change re-sorts the list and rebinds the rows
    /// between its old and new place. They are applied together (see `LIVE_FLUSH`).
    pending_rows: HashMap<ConvKey, PendingRow>,
    /// The newest message to ring for, per conversation, of a catch-up still running.
    caught_up: HashMap<ConvKey, Message>,
    /// The delay of the list update already scheduled, if any.
    flush_scheduled: Option<Duration>,
    /// What the sessions were told about us looking (XEP-0352).
    client_active: bool,
    /// Counts the window's focus changes, so a stale idle timer does nothing.
    focus_changes: u64,
    /// When the history sync's progress line last changed (`None`: not shown).
    sync_shown_at: Option<Instant>,
}

#[derive(Debug)]
pub enum Input {
    /// From a message's menu.
    MessageAction(MessageAction),
    Composer(ComposerEvent),
    /// The user confirmed "Delete for Everyone" of this message.
    ConfirmedDelete(i64),
    Open(ConvKey),
    OpenTarget(String),
    Back,
    Send,
    Retry(i64),
    LoadOlder,
    /// Scrolled down in a conversation shown from an older message.
    LoadNewer,
    /// Apply the conversation-list changes of the messages that came meanwhile.
    FlushRows,
    /// Show or leave the message search in the sidebar.
    ShowSearch(bool),
    /// The search entry's text changed (query generation, text).
    Search(u64, String),
    /// A search result was chosen.
    OpenResult(Box<SearchResult>),
    SignIn,
    SignInCancel,
    SignInTrusted(SignInForm, String),
    AddAccount,
    RemoveAccount(String),
    RemoveAccountConfirmed(i64),
    StartChat(i64, String),
    AddContact(i64, String, String),
    ShowStartChat,
    ShowAddContact,
    ContactDetails,
    RemoveContact,
    RemoveContactConfirmed(ConvKey),
    SetStatus(OwnStatus),
    Reconnect,
    AnswerRequest(bool),
    WindowActive,
    /// The window lost the focus (or was hidden).
    WindowInactive,
    /// Nobody looked for a while since focus change `.0`.
    ClientIdle(u64),
    /// "Block Contact…" in the conversation menu.
    BlockContact,
    /// "Block" on the subscription request banner.
    BlockRequester,
    /// The user confirmed blocking (account, JID, report as spam).
    BlockConfirmed(i64, String, bool),
    Unblock,
    About,
    /// "Set Avatar…": choose a picture for the default account.
    SetAvatar,
}

#[derive(Debug)]
pub enum Command {
    /// Our new avatar was published (or why not, in the user's words).
    AvatarSet(Result<(), String>),
    Started(Result<StartedAccounts, String>),
    Event(Box<AccountEvent>),
    Summaries(i64, Result<Vec<ConversationSummary>, SessionError>),
    History {
        key: ConvKey,
        older: bool,
        /// How many messages were asked for (fewer came: there are no older ones).
        limit: u32,
        result: Result<Vec<Message>, SessionError>,
    },
    SignedIn(
        Box<Result<(Started, Vec<AccountEvent>), SignInError>>,
        SignInForm,
    ),
    Restarted(i64, Result<Started, String>),
    AccountRemoved(i64, Result<(), String>),
    Presences(ConvKey, Vec<(String, ResourcePresence)>),
    Newer {
        key: ConvKey,
        limit: u32,
        result: Result<Vec<Message>, SessionError>,
    },
    /// A message in its context, for a search result.
    Around {
        key: ConvKey,
        target: i64,
        limit: u32,
        result: Result<Vec<Message>, SessionError>,
    },
    SearchResults(u64, Vec<SearchResult>),
    /// Older messages of a conversation came from the archive (how many were stored).
    FetchedOlder {
        key: ConvKey,
        result: Result<usize, SessionError>,
    },
    /// An action finished; `Err` is shown as a toast.
    Done(Result<(), String>),
}

/// What messages not applied to the conversation list yet change in one row.
#[derive(Debug, Default)]
struct PendingRow {
    /// The newest message.
    latest: Option<Message>,
    /// Incoming messages not seen.
    unread: i64,
    /// The newest message rings (a notification) when the row is updated.
    ring: bool,
}

/// How soon the conversation list shows a live message, and archive pages.
const LIVE_FLUSH: Duration = Duration::from_millis(100);
const ARCHIVE_FLUSH: Duration = Duration::from_millis(1000);
/// How often the history sync's progress line may change.
const SYNC_PROGRESS_EVERY: Duration = Duration::from_millis(1000);

/// When a stored message may ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ring {
    /// Live: with the next list update.
    Now,
    /// Came while we were offline: once the catch-up is done, one per conversation.
    AfterSync,
    /// Older history: never.
    Never,
}

pub struct Widgets {
    window: adw::ApplicationWindow,
    toasts: adw::ToastOverlay,
    stack: gtk::Stack,
    /// Built the first time it is shown (see [`Widgets::signin`]).
    signin: Option<SignInPage>,
    leaflet: adw::Leaflet,
    sidebar_page: gtk::Box,
    content_page: gtk::Box,
    conversations: ConversationList,
    sidebar_stack: gtk::Stack,
    search: SearchPanel,
    search_button: gtk::ToggleButton,
    own_avatar: Avatar,
    status_checks: Vec<(OwnStatus, gtk::CheckButton)>,
    status_entry: gtk::Entry,
    status_button: gtk::MenuButton,
    conn_banner: gtk::Revealer,
    sync_banner: gtk::Revealer,
    sync_label: gtk::Label,
    conn_label: gtk::Label,
    conn_button: gtk::Button,
    request_banner: gtk::Revealer,
    request_label: gtk::Label,
    chat_stack: gtk::Stack,
    chat_title: adw::WindowTitle,
    chat_avatar: Avatar,
    timeline: Timeline,
    composer: Composer,
    blocked_bar: BlockedBar,
    accounts_menu: gio::Menu,
}

fn banner(label: &gtk::Label, buttons: &[&gtk::Button], class: &str) -> gtk::Revealer {
    let bar = gtk::Box::builder()
        .spacing(12)
        .css_classes(["natter-banner", class])
        .build();
    label.set_hexpand(true);
    label.set_wrap(true);
    label.set_xalign(0.0);
    bar.append(label);
    for b in buttons {
        b.set_valign(gtk::Align::Center);
        bar.append(*b);
    }
    gtk::Revealer::builder()
        .child(&bar)
        .transition_type(gtk::RevealerTransitionType::SlideDown)
        .build()
}

impl Widgets {
    /// The sign-in page, built the first time it is needed. A start with an account
    /// never shows it, and GTK would load the icons of its rows anyway: its expander
    /// arrow exists only as SVG, and the first SVG icon maps librsvg (12 MB resident).
    fn signin(&mut self, sender: &ComponentSender<App>) -> &SignInPage {
        let stack = &self.stack;
        self.signin.get_or_insert_with(|| {
            let s = sender.clone();
            let page = SignInPage::new(move || s.input(Input::SignIn));
            let s = sender.clone();
            page.cancel
                .connect_clicked(move |_| s.input(Input::SignInCancel));
            stack.add_named(&page.root, Some("signin"));
            page
        })
    }
}

impl App {
    fn handle(&self, account_id: i64) -> Option<SessionHandle> {
        self.accounts.get(&account_id).map(|a| a.handle.clone())
    }

    /// Each account as (id, address), for choosing one in a dialog.
    fn account_list(&self) -> Vec<(i64, String)> {
        self.accounts
            .iter()
            .map(|(id, a)| (*id, a.handle.jid().to_owned()))
            .collect()
    }

    fn default_account(&self) -> Option<i64> {
        self.current
            .as_ref()
            .map(|k| k.account_id)
            .or_else(|| self.accounts.keys().next().copied())
    }

    fn name_of(&self, key: &ConvKey) -> String {
        self.accounts
            .get(&key.account_id)
            .map_or_else(|| key.peer.clone(), |a| a.name_of(&key.peer))
    }

    fn new_row(&self, key: &ConvKey) -> ConvRow {
        ConvRow {
            key: key.clone(),
            name: self.name_of(key),
            preview: String::new(),
            last_activity: 0,
            unread: 0,
            dot: self
                .accounts
                .get(&key.account_id)
                .map_or(Dot::None, |a| a.dot_of(&key.peer)),
        }
    }

    fn adopt(&mut self, started: Started, w: &mut Widgets, sender: &ComponentSender<Self>) {
        let Started { handle, mut events } = started;
        let account_id = handle.account_id();
        let mut state = AccountState::new(handle.clone());
        if let Some(old) = self.accounts.remove(&account_id) {
            state.contacts = old.contacts;
        }
        self.accounts.insert(account_id, state);
        sender.command(move |out, shutdown| {
            shutdown
                .register(async move {
                    while let Some(ev) = events.recv().await {
                        if out.send(Command::Event(Box::new(ev))).is_err() {
                            break;
                        }
                    }
                })
                .drop_on_shutdown()
        });
        let h = handle.clone();
        sender.oneshot_command(
            async move { Command::Summaries(account_id, h.conversations().await) },
        );
        if let (Some(a), false) = (
            self.status.availability(),
            self.status == OwnStatus::Available && self.status_text.is_empty(),
        ) {
            let text = Some(self.status_text.clone()).filter(|t| !t.is_empty());
            send_presence(sender, handle, a, text);
        }
        self.refresh_accounts_menu(w);
        self.refresh_banner(w);
        // From the start-up page straight in: a cross-fade there is a dozen frames of the
        // whole window blended on a CPU renderer, for a page shown a fraction of a second.
        let transition = if w.stack.visible_child_name().as_deref() == Some("loading") {
            gtk::StackTransitionType::None
        } else {
            gtk::StackTransitionType::Crossfade
        };
        w.stack.set_visible_child_full("main", transition);
    }

    fn refresh_accounts_menu(&self, w: &Widgets) {
        w.accounts_menu.remove_all();
        for a in self.accounts.values() {
            let jid = a.handle.jid().to_owned();
            let item = gio::MenuItem::new(Some(&format!("{} {jid}…", tr("Remove"))), None);
            item.set_action_and_target_value(Some("app.remove-account"), Some(&jid.to_variant()));
            w.accounts_menu.append_item(&item);
        }
        let jids: Vec<_> = self
            .accounts
            .values()
            .map(|a| a.handle.jid().to_owned())
            .collect();
        w.own_avatar.set(
            jids.first().map_or("", |s| s.as_str()),
            jids.first().map_or("?", |s| s.as_str()),
            self.status.dot(),
        );
        w.status_button.set_tooltip_text(Some(&format!(
            "{} — {}",
            jids.join(", "),
            self.status.words()
        )));
    }

    /// The connection banner: the first account that is not online, in words.
    fn refresh_banner(&self, w: &Widgets) {
        let mut text = None;
        let mut retry = false;
        for a in self.accounts.values() {
            let jid = a.handle.jid();
            let t = match &a.state {
                ConnectionState::Online { .. } => continue,
                _ if a.offline_by_choice => Some((tr("You are offline."), false, tr("Go Online"))),
                ConnectionState::Connecting => {
                    Some((format!("{} {jid}…", tr("Connecting")), false, String::new()))
                }
                ConnectionState::Reconnecting { error, retry_in } => {
                    let why = error.as_ref().map(signin::error_words).unwrap_or_default();
                    let when = retry_in
                        .map(|d| format!(" {} {} s.", tr("Trying again in"), d.as_secs().max(1)))
                        .unwrap_or_default();
                    Some((
                        format!("{} {jid}. {why}{when}", tr("Not connected:")),
                        true,
                        tr("Retry"),
                    ))
                }
                ConnectionState::Failed(e) => Some((
                    format!("{} {jid}: {}", tr("Cannot sign in"), signin::error_words(e)),
                    true,
                    tr("Retry"),
                )),
                ConnectionState::Offline => {
                    Some((format!("{} {jid}.", tr("Offline:")), true, tr("Connect")))
                }
            };
            if let Some((t, r, label)) = t {
                retry = r || a.offline_by_choice;
                w.conn_button.set_label(&label);
                text = Some(t);
                break;
            }
        }
        match text {
            Some(t) => {
                w.conn_label.set_label(&t);
                w.conn_button.set_visible(retry);
                w.conn_banner.set_reveal_child(true);
            }
            None => w.conn_banner.set_reveal_child(false),
        }
    }

    fn refresh_request(&self, w: &Widgets) {
        match self.requests.front() {
            Some((_, from)) => {
                w.request_label.set_label(&format!(
                    "{from} {}",
                    tr("wants to add you as a contact and see when you are online.")
                ));
                w.request_banner.set_reveal_child(true);
            }
            None => w.request_banner.set_reveal_child(false),
        }
    }

    fn load_history(
        &self,
        key: &ConvKey,
        older: bool,
        w: &Widgets,
        sender: &ComponentSender<Self>,
    ) {
        let Some(handle) = self.handle(key.account_id) else {
            return;
        };
        let before = if older { w.timeline.cursor() } else { None };
        let limit = if older {
            PAGE
        } else {
            FIRST_PAGE.max(w.timeline.rows_to_fill())
        };
        let key = key.clone();
        sender.oneshot_command(async move {
            let result = handle.history(&key.peer, before, limit).await;
            Command::History {
                key,
                older,
                limit,
                result,
            }
        });
    }

    fn load_around(&self, key: &ConvKey, target: i64, sender: &ComponentSender<Self>) {
        let Some(handle) = self.handle(key.account_id) else {
            return;
        };
        let key = key.clone();
        sender.oneshot_command(async move {
            let result = handle.history_around(&key.peer, target, PAGE).await;
            Command::Around {
                key,
                target,
                limit: PAGE,
                result,
            }
        });
    }

    /// Asks the archive for a conversation's older messages (none once the whole
    /// archive is stored: then the conversation's start is loaded).
    fn fetch_older(&self, key: &ConvKey, w: &mut Widgets, sender: &ComponentSender<Self>) {
        let Some(handle) = self.handle(key.account_id) else {
            w.timeline.complete = true;
            return;
        };
        w.timeline.loading = true;
        let key = key.clone();
        sender.oneshot_command(async move {
            let result = handle.fetch_older(&key.peer, PAGE).await;
            Command::FetchedOlder { key, result }
        });
    }

    fn load_newer(&self, key: &ConvKey, w: &Widgets, sender: &ComponentSender<Self>) {
        let (Some(handle), Some(after)) = (self.handle(key.account_id), w.timeline.newest_cursor())
        else {
            return;
        };
        let key = key.clone();
        sender.oneshot_command(async move {
            let result = handle.history_after(&key.peer, after, PAGE).await;
            Command::Newer {
                key,
                limit: PAGE,
                result,
            }
        });
    }

    /// Searches every account's history for `text`; results come newest first.
    fn search(&self, generation: u64, text: String, sender: &ComponentSender<Self>) {
        let accounts: Vec<(i64, SessionHandle, HashMap<String, String>)> = self
            .accounts
            .iter()
            .map(|(id, a)| {
                let names = a
                    .contacts
                    .keys()
                    .map(|jid| (jid.clone(), a.name_of(jid)))
                    .collect();
                (*id, a.handle.clone(), names)
            })
            .collect();
        sender.oneshot_command(async move {
            let mut results = Vec::new();
            for (account_id, handle, names) in accounts {
                match handle.search(&text, crate::ui::search::MAX_RESULTS).await {
                    Ok(hits) => results.extend(hits.into_iter().map(|hit| {
                        let peer = hit.message.peer.clone();
                        SearchResult {
                            name: names.get(&peer).cloned().unwrap_or_else(|| peer.clone()),
                            key: ConvKey { account_id, peer },
                            hit,
                        }
                    })),
                    Err(e) => tracing::warn!(error = %e, "search failed"),
                }
            }
            results.sort_by_key(|r| std::cmp::Reverse(r.hit.message.timestamp));
            results.truncate(crate::ui::search::MAX_RESULTS as usize);
            Command::SearchResults(generation, results)
        });
    }

    fn mark_read(&self, key: &ConvKey, w: &mut Widgets, sender: &ComponentSender<Self>) {
        let unread = w.conversations.get(key).is_some_and(|r| r.unread > 0);
        w.conversations.update(key, |r| r.unread = 0);
        crate::notify::withdraw(key);
        if !unread {
            return;
        }
        if let Some(handle) = self.handle(key.account_id) {
            let peer = key.peer.clone();
            sender.oneshot_command(async move {
                Command::Done(handle.mark_read(&peer).await.map_err(|e| e.to_string()))
            });
        }
    }

    fn open(&mut self, key: ConvKey, w: &mut Widgets, sender: &ComponentSender<Self>) {
        self.open_at(key, None, w, sender);
    }

    /// Opens a conversation at its newest message, or at message `at` in its context.
    fn open_at(
        &mut self,
        key: ConvKey,
        at: Option<i64>,
        w: &mut Widgets,
        sender: &ComponentSender<Self>,
    ) {
        if let Some(old) = self.current.take() {
            let draft = w.composer.draft();
            if draft.trim().is_empty() {
                self.drafts.remove(&old);
            } else {
                self.drafts.insert(old, draft);
            }
        }
        if w.conversations.get(&key).is_none() {
            let row = self.new_row(&key);
            w.conversations.upsert(&key, || row, |_| {});
        }
        self.opened_at = Some(Instant::now());
        self.current = Some(key.clone());
        self.composing = None;
        w.composer.set_context(None);
        w.conversations.select(Some(key.clone()));
        self.show_chat_header(&key, w);
        w.composer
            .set_draft(self.drafts.get(&key).map_or("", |s| s.as_str()));
        w.timeline.clear();
        w.timeline.loading = true;
        w.chat_stack.set_visible_child_name("chat");
        w.leaflet.set_visible_child(&w.content_page);
        match at {
            Some(target) => {
                // The result keeps the focus: the user may go on through the results.
                self.opened_at = None;
                self.load_around(&key, target, sender);
            }
            None => {
                w.composer.text.grab_focus();
                self.load_history(&key, false, w, sender);
            }
        }
        if Self::chat_visible(w) {
            self.mark_read(&key, w, sender);
        }
        if let Some(at) = self.opened_at {
            tracing::debug!(target: "natter::perf", ms = at.elapsed().as_secs_f64() * 1e3, "open handled");
        }
    }

    fn show_chat_header(&self, key: &ConvKey, w: &Widgets) {
        let name = self.name_of(key);
        format::set_chat_peer_name(&name);
        let (dot, subtitle) = match self.accounts.get(&key.account_id) {
            Some(a) => {
                let best = a
                    .presences
                    .get(&key.peer)
                    .and_then(|r| r.values().max_by_key(|p| p.priority));
                let words = match best {
                    Some(p) => match &p.status {
                        Some(s) if !s.is_empty() => {
                            format!("{} — {s}", availability_words(p.availability))
                        }
                        _ => availability_words(p.availability),
                    },
                    None if name != key.peer => key.peer.clone(),
                    None => String::new(),
                };
                let words = match a.typing.get(&key.peer) {
                    Some(ChatState::Composing) => tr("typing…"),
                    Some(ChatState::Paused) => tr("stopped typing"),
                    _ => words,
                };
                (a.dot_of(&key.peer), words)
            }
            None => (Dot::None, String::new()),
        };
        w.chat_title.set_title(&name);
        w.chat_title.set_subtitle(&subtitle);
        w.chat_avatar.set(&key.peer, &name, dot);
        let blocked = self
            .accounts
            .get(&key.account_id)
            .is_some_and(|a| a.blocked.contains(&key.peer));
        w.blocked_bar.show(&name, blocked);
        w.composer.root.set_sensitive(!blocked);
    }

    fn on_event(&mut self, ev: AccountEvent, w: &mut Widgets, sender: &ComponentSender<Self>) {
        let account_id = ev.account_id;
        let Some(account) = self.accounts.get_mut(&account_id) else {
            return;
        };
        match ev.event {
            // The call window is its own issue; until it lands the app neither rings nor
            // places calls (the engine is reachable through `natter-call`).
            Event::Call(_) => {}
            // What contacts support matters to the call buttons, which are not there yet.
            Event::Features { .. } => {}
            Event::Blocklist(list) => {
                account.blocked = list.into_iter().collect();
                if let Some(key) = self.current.clone() {
                    if key.account_id == account_id {
                        self.show_chat_header(&key, w);
                    }
                }
            }
            Event::HistorySync { stored, done } => {
                if done {
                    self.ring_caught_up(account_id, w);
                    // Sign-in and the sync are done: what they freed goes back.
                    crate::perf::release_memory();
                }
                if done || stored == 0 {
                    w.sync_banner.set_reveal_child(false);
                    self.sync_shown_at = None;
                } else if self
                    .sync_shown_at
                    .is_none_or(|at| at.elapsed() >= SYNC_PROGRESS_EVERY)
                {
                    // Once a second: every change is a new frame of the whole window, and
                    // pages come several times a second.
                    self.sync_shown_at = Some(Instant::now());
                    w.sync_label.set_label(&format!(
                        "{} {}",
                        tr("Fetching history…"),
                        ngettext_count(stored)
                    ));
                    w.sync_banner.set_reveal_child(true);
                }
            }
            Event::Connection(state) => {
                let online = matches!(state, ConnectionState::Online { .. });
                account.state = state;
                if online {
                    account.offline_by_choice = false;
                } else if !account.presences.is_empty() {
                    // Not connected: nobody's presence is known any more.
                    let jids: Vec<String> = account.presences.drain().map(|(j, _)| j).collect();
                    for jid in jids {
                        let key = ConvKey {
                            account_id,
                            peer: jid,
                        };
                        w.conversations.update(&key, |r| r.dot = Dot::None);
                        if self.current.as_ref() == Some(&key) {
                            self.show_chat_header(&key, w);
                        }
                    }
                }
                self.refresh_banner(w);
            }
            Event::Roster(contacts) => {
                tracing::debug!(contacts = contacts.len(), "roster");
                account.contacts = contacts.into_iter().map(|c| (c.jid.clone(), c)).collect();
                let jids: Vec<_> = account.contacts.keys().cloned().collect();
                let rows: Vec<_> = jids
                    .into_iter()
                    .map(|peer| {
                        let key = ConvKey { account_id, peer };
                        (self.name_of(&key), self.new_row(&key), key)
                    })
                    .collect();
                w.conversations.batch(|list| {
                    for (name, row, key) in rows {
                        list.upsert(&key, || row, |r| r.name = name);
                    }
                });
                if let Some(key) = self.current.as_ref().filter(|k| k.account_id == account_id) {
                    self.show_chat_header(key, w);
                }
            }
            Event::RosterItem(c) => {
                let jid = c.jid.clone();
                account.contacts.insert(jid.clone(), c);
                self.show_contact(account_id, &jid, w);
            }
            Event::RosterRemoved { jid } => {
                account.contacts.remove(&jid);
                self.show_contact(account_id, &jid, w);
            }
            Event::Presence {
                jid,
                resource,
                presence,
            } => {
                let entry = account.presences.entry(jid.clone()).or_default();
                match presence {
                    Some(p) => {
                        entry.insert(resource, p);
                    }
                    None => {
                        entry.remove(&resource);
                    }
                }
                let dot = account.dot_of(&jid);
                let key = ConvKey {
                    account_id,
                    peer: jid,
                };
                w.conversations.update(&key, |r| r.dot = dot);
                if self.current.as_ref() == Some(&key) {
                    self.show_chat_header(&key, w);
                }
            }
            Event::SubscriptionRequest { from } => {
                tracing::info!(%from, "subscription request");
                if !self
                    .requests
                    .iter()
                    .any(|(a, f)| *a == account_id && *f == from)
                {
                    self.requests.push_back((account_id, from));
                }
                self.refresh_request(w);
            }
            Event::Message(m) => {
                if m.direction == Direction::Incoming && account.typing.remove(&m.peer).is_some() {
                    self.refresh_header_of(account_id, &m.peer, w);
                }
                self.on_message(account_id, m, w, sender)
            }
            Event::ArchivePage { messages, news } => {
                self.on_archive_page(account_id, messages, news, w, sender)
            }
            Event::MessageState { id, state } => w.timeline.set_state(id, state),
            Event::MessageChanged(m) => {
                let key = ConvKey {
                    account_id,
                    peer: m.peer.clone(),
                };
                if self.current.as_ref() == Some(&key) && !w.timeline.loading {
                    w.timeline.insert(m);
                }
            }
            Event::ChatState { peer, state } => {
                match state {
                    ChatState::Composing | ChatState::Paused => {
                        account.typing.insert(peer.clone(), state)
                    }
                    _ => account.typing.remove(&peer),
                };
                self.refresh_header_of(account_id, &peer, w);
            }
            Event::ConversationRead { peer, unread } => {
                let key = ConvKey { account_id, peer };
                w.conversations.update(&key, |r| r.unread = unread);
                if unread == 0 {
                    crate::notify::withdraw(&key);
                }
            }
            Event::Avatar { jid, path } => crate::ui::avatar::set_picture(&jid, path),
            // What the server's requests after sign-in held is freed: it goes back too.
            Event::Settled => crate::perf::release_memory(),
        }
    }

    fn current_handle(&self) -> Option<SessionHandle> {
        self.current
            .as_ref()
            .and_then(|k| self.handle(k.account_id))
    }

    fn on_message_action(
        &mut self,
        action: MessageAction,
        w: &mut Widgets,
        sender: &ComponentSender<Self>,
    ) {
        let Some(handle) = self.current_handle() else {
            return;
        };
        match action {
            MessageAction::Reply(id) => {
                let Some(m) = w.timeline.message(id) else {
                    return;
                };
                let who = match m.direction {
                    Direction::Outgoing => tr("yourself"),
                    Direction::Incoming => self
                        .current
                        .as_ref()
                        .map(|k| self.name_of(k))
                        .unwrap_or_default(),
                };
                self.composing = Some(Composing::Reply(id));
                w.composer.set_context(Some(&format!(
                    "{} {who}: {}",
                    tr("Replying to"),
                    m.body.replace('\n', " ")
                )));
                w.composer.text.grab_focus();
            }
            MessageAction::Edit(id) => {
                let Some(m) = w.timeline.message(id) else {
                    return;
                };
                self.composing = Some(Composing::Edit(id));
                w.composer.set_draft(&m.body);
                w.composer.set_context(Some(&tr("Editing message")));
                w.composer.text.grab_focus();
            }
            MessageAction::React(id, emoji) => {
                let Some(m) = w.timeline.message(id) else {
                    return;
                };
                let own = handle.jid().to_owned();
                // Our set of reactions on it, with this emoji added or taken back.
                let mut mine: Vec<String> = m
                    .reactions
                    .iter()
                    .filter(|r| r.senders.contains(&own))
                    .map(|r| r.emoji.clone())
                    .collect();
                if let Some(at) = mine.iter().position(|e| *e == emoji) {
                    mine.remove(at);
                } else {
                    mine.push(emoji);
                }
                sender.oneshot_command(async move {
                    Command::Done(
                        handle
                            .react(id, mine)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                    )
                });
            }
            MessageAction::Delete(id) => {
                let dialog = adw::MessageDialog::builder()
                    .heading(tr("Delete for Everyone?"))
                    .body(tr(
                        "The message is removed here and on your contact's devices. Clients that do not support this keep showing it.",
                    ))
                    .modal(true)
                    .build();
                if let Some(window) = w.timeline.root.root().and_downcast::<gtk::Window>() {
                    dialog.set_transient_for(Some(&window));
                }
                dialog.add_response("cancel", &tr("Cancel"));
                dialog.add_response("delete", &tr("Delete"));
                dialog.set_response_appearance("delete", adw::ResponseAppearance::Destructive);
                dialog.set_default_response(Some("cancel"));
                dialog.set_close_response("cancel");
                let s = sender.clone();
                dialog.connect_response(None, move |_, response| {
                    if response == "delete" {
                        s.input(Input::ConfirmedDelete(id));
                    }
                });
                dialog.present();
            }
        }
    }

    /// XEP-0352: tells every session whether someone is looking.
    fn set_client_active(&mut self, active: bool) {
        if self.client_active != active {
            self.client_active = active;
            tracing::debug!(active, "client state");
            for a in self.accounts.values() {
                a.handle.set_client_active(active);
            }
        }
    }

    fn ask_block(
        &self,
        account_id: i64,
        jid: String,
        root: &adw::ApplicationWindow,
        sender: &ComponentSender<Self>,
    ) {
        let key = ConvKey {
            account_id,
            peer: jid.clone(),
        };
        let name = self.name_of(&key);
        let s = sender.clone();
        let shown = jid.clone();
        block_ui::ask(root, &name, &shown, move |report| {
            s.input(Input::BlockConfirmed(account_id, jid.clone(), report))
        });
    }

    fn refresh_header_of(&self, account_id: i64, peer: &str, w: &Widgets) {
        let key = ConvKey {
            account_id,
            peer: peer.to_owned(),
        };
        if self.current.as_ref() == Some(&key) {
            self.show_chat_header(&key, w);
        }
    }

    fn show_contact(&mut self, account_id: i64, jid: &str, w: &mut Widgets) {
        let key = ConvKey {
            account_id,
            peer: jid.to_owned(),
        };
        let name = self.name_of(&key);
        let row = self.new_row(&key);
        w.conversations.upsert(&key, || row, |r| r.name = name);
        if self.current.as_ref() == Some(&key) {
            self.show_chat_header(&key, w);
        }
    }

    /// A message stored live (received, carbon, or sent from here).
    fn on_message(
        &mut self,
        account_id: i64,
        m: Message,
        w: &mut Widgets,
        sender: &ComponentSender<Self>,
    ) {
        let key = ConvKey {
            account_id,
            peer: m.peer.clone(),
        };
        let open = self.current.as_ref() == Some(&key);
        let incoming = m.direction == Direction::Incoming;
        if open && !w.timeline.loading {
            if !incoming && !w.timeline.at_newest() {
                // Sent while an older part was shown (a search result): back to the end.
                w.timeline.loading = true;
                self.load_history(&key, false, w, sender);
            } else {
                w.timeline.insert(m.clone());
                if !incoming {
                    w.timeline.scroll_to_bottom();
                }
            }
        }
        let seen = self.take_message(key, m, Ring::Now, w, sender);
        if seen {
            self.mark_seen(account_id, sender);
        }
    }

    /// A page of messages stored from the archive: one list update and at most one
    /// notification per conversation, and only for what came while we were offline
    /// (`news`) once the whole catch-up is here.
    fn on_archive_page(
        &mut self,
        account_id: i64,
        messages: Vec<Message>,
        news: bool,
        w: &mut Widgets,
        sender: &ComponentSender<Self>,
    ) {
        let ring = if news { Ring::AfterSync } else { Ring::Never };
        let mut seen = false;
        for m in messages {
            let key = ConvKey {
                account_id,
                peer: m.peer.clone(),
            };
            if self.current.as_ref() == Some(&key) && !w.timeline.loading {
                w.timeline.insert(m.clone());
            }
            seen |= self.take_message(key, m, ring, w, sender);
        }
        if seen {
            self.mark_seen(account_id, sender);
        }
    }

    /// Queues the conversation-list change of one stored message (applied by the next
    /// flush) and whether it rings. Returns whether it is an incoming message the user
    /// sees now (the open, visible chat).
    fn take_message(
        &mut self,
        key: ConvKey,
        m: Message,
        ring: Ring,
        w: &Widgets,
        sender: &ComponentSender<Self>,
    ) -> bool {
        let seen = self.current.as_ref() == Some(&key) && Self::chat_visible(w);
        let incoming = m.direction == Direction::Incoming;
        // Recent messages only: a long archive, or a night offline, does not ring.
        let rings = incoming
            && !seen
            && m.timestamp >= self.started_at - 10 * 60 * 1000
            && self.settings.notifications();
        if rings && ring == Ring::AfterSync {
            match self.caught_up.get(&key) {
                Some(newer) if newer.timestamp > m.timestamp => {}
                _ => {
                    self.caught_up.insert(key.clone(), m.clone());
                }
            }
        }
        let pending = self.pending_rows.entry(key).or_default();
        if incoming && !seen {
            pending.unread += 1;
        }
        if pending
            .latest
            .as_ref()
            .is_none_or(|l| m.timestamp >= l.timestamp)
        {
            pending.ring = rings && ring == Ring::Now;
            pending.latest = Some(m);
        }
        // Live messages show in the list within 100 ms; archive pages (thousands a
        // second while history syncs) change it once a second: each change re-sorts and
        // redraws the list.
        let delay = match ring {
            Ring::Now => LIVE_FLUSH,
            Ring::AfterSync | Ring::Never => ARCHIVE_FLUSH,
        };
        if self.flush_scheduled.is_none_or(|pending| pending > delay) {
            self.flush_scheduled = Some(delay);
            let s = sender.clone();
            glib::timeout_add_local_once(delay, move || s.input(Input::FlushRows));
        }
        incoming && seen
    }

    /// Tells our contact (and our other devices) that the open chat was read: new
    /// messages came into it while it was shown.
    fn mark_seen(&self, account_id: i64, sender: &ComponentSender<Self>) {
        let Some(key) = self.current.as_ref().filter(|k| k.account_id == account_id) else {
            return;
        };
        if let Some(handle) = self.handle(account_id) {
            let peer = key.peer.clone();
            sender.oneshot_command(async move {
                Command::Done(handle.mark_read(&peer).await.map_err(|e| e.to_string()))
            });
        }
    }

    /// Rings once per conversation for what a finished catch-up brought.
    fn ring_caught_up(&mut self, account_id: i64, w: &mut Widgets) {
        self.flush_rows(w);
        let keys: Vec<ConvKey> = self
            .caught_up
            .keys()
            .filter(|k| k.account_id == account_id)
            .cloned()
            .collect();
        for key in keys {
            let Some(m) = self.caught_up.remove(&key) else {
                continue;
            };
            let unread = w.conversations.get(&key).map_or(0, |r| r.unread);
            if unread > 0 {
                crate::notify::message(&key, &self.name_of(&key), &m.body, unread);
            }
        }
    }

    /// Applies the conversation-list changes of the messages that came since the last
    /// time; anything else that reads or changes the list does this first.
    fn flush_rows(&mut self, w: &mut Widgets) {
        if self.pending_rows.is_empty() {
            return;
        }
        let changes: Vec<_> = std::mem::take(&mut self.pending_rows)
            .into_iter()
            .map(|(key, p)| {
                let row = self.new_row(&key);
                let preview = p
                    .latest
                    .as_ref()
                    .map(|m| (format::preview_markup(m, &row.name), m.timestamp));
                (key, row, preview, p)
            })
            .collect();
        let mut rings = Vec::new();
        w.conversations.batch(|list| {
            for (key, row, preview, p) in changes {
                let name = row.name.clone();
                list.upsert(
                    &key,
                    || row,
                    |r| {
                        if let Some((preview, ts)) = preview {
                            if ts >= r.last_activity {
                                r.preview = preview;
                                r.last_activity = ts;
                            }
                        }
                        r.unread += p.unread;
                    },
                );
                if let Some(m) = p.latest.filter(|_| p.ring) {
                    rings.push((key, name, m));
                }
            }
        });
        for (key, name, m) in rings {
            let unread = w.conversations.get(&key).map_or(1, |r| r.unread);
            crate::notify::message(&key, &name, &m.body, unread);
        }
    }

    fn set_status(&mut self, status: OwnStatus, w: &mut Widgets, sender: &ComponentSender<Self>) {
        self.status = status;
        self.status_text = w.status_entry.text().trim().to_owned();
        for (s, check) in &w.status_checks {
            if *s == status && !check.is_active() {
                check.set_active(true);
            }
        }
        let text = Some(self.status_text.clone()).filter(|t| !t.is_empty());
        let ids: Vec<i64> = self.accounts.keys().copied().collect();
        for id in ids {
            let Some(a) = self.accounts.get_mut(&id) else {
                continue;
            };
            let handle = a.handle.clone();
            match status.availability() {
                None => {
                    a.offline_by_choice = true;
                    sender.oneshot_command(async move {
                        Command::Done(handle.disconnect().await.map_err(|e| e.to_string()))
                    });
                }
                Some(avail) => {
                    let stopped = a.offline_by_choice
                        || matches!(
                            a.state,
                            ConnectionState::Offline | ConnectionState::Failed(_)
                        );
                    if stopped {
                        a.offline_by_choice = false;
                        a.state = ConnectionState::Connecting;
                        sender.oneshot_command(async move {
                            Command::Restarted(id, backend::restart_session(id).await)
                        });
                    } else {
                        send_presence(sender, handle, avail, text.clone());
                    }
                }
            }
        }
        self.refresh_accounts_menu(w);
        self.refresh_banner(w);
    }

    /// The chat pane is on screen and the window has the focus: what arrives is read.
    fn chat_visible(w: &Widgets) -> bool {
        w.window.is_active()
            && w.chat_stack.visible_child_name().as_deref() == Some("chat")
            && (!w.leaflet.is_folded()
                || w.leaflet.visible_child().as_ref() == Some(w.content_page.upcast_ref()))
    }

    fn toast(w: &Widgets, text: &str) {
        w.toasts.add_toast(adw::Toast::new(text));
    }
}

/// Tells the server our availability and status text; a failure shows as a toast.
fn send_presence(
    sender: &ComponentSender<App>,
    handle: SessionHandle,
    availability: Availability,
    text: Option<String>,
) {
    sender.oneshot_command(async move {
        Command::Done(
            handle
                .set_presence(Some(availability), text, 0)
                .await
                .map_err(|e| e.to_string()),
        )
    });
}

fn install_actions(sender: &ComponentSender<App>) {
    let app = relm4::main_application();
    let simple = |name: &str, input: fn() -> Input| {
        let action = gio::SimpleAction::new(name, None);
        let s = sender.clone();
        action.connect_activate(move |_, _| s.input(input()));
        app.add_action(&action);
    };
    simple("add-account", || Input::AddAccount);
    simple("start-chat", || Input::ShowStartChat);
    simple("add-contact", || Input::ShowAddContact);
    simple("contact-details", || Input::ContactDetails);
    simple("remove-contact", || Input::RemoveContact);
    simple("block-contact", || Input::BlockContact);
    simple("about", || Input::About);
    simple("set-avatar", || Input::SetAvatar);
    let s = sender.clone();
    let remove = gio::SimpleAction::new("remove-account", Some(glib::VariantTy::STRING));
    remove.connect_activate(move |_, target| {
        if let Some(jid) = target.and_then(|t| t.str()) {
            s.input(Input::RemoveAccount(jid.to_owned()));
        }
    });
    app.add_action(&remove);
    let s = sender.clone();
    let open = gio::SimpleAction::new("open-conversation", Some(glib::VariantTy::STRING));
    open.connect_activate(move |_, target| {
        if let Some(t) = target.and_then(|t| t.str()) {
            s.input(Input::OpenTarget(t.to_owned()));
        }
    });
    app.add_action(&open);
    let search = gio::SimpleAction::new("search", None);
    app.add_action(&search);
    app.set_accels_for_action("app.start-chat", &["<Control>n"]);
    app.set_accels_for_action("app.search", &["<Control>f", "<Control>k"]);
    let s = sender.clone();
    let search_messages = gio::SimpleAction::new("search-messages", None);
    search_messages.connect_activate(move |_, _| s.input(Input::ShowSearch(true)));
    app.add_action(&search_messages);
    app.set_accels_for_action("app.search-messages", &["<Control><Shift>f"]);
    app.set_accels_for_action("window.close", &["<Control>w"]);
}

impl Component for App {
    type CommandOutput = Command;
    type Input = Input;
    type Output = ();
    type Init = tokio::task::JoinHandle<Result<StartedAccounts, String>>;
    type Root = adw::ApplicationWindow;
    type Widgets = Widgets;

    fn init_root() -> Self::Root {
        adw::ApplicationWindow::builder()
            .title("Natter")
            .width_request(360)
            .height_request(400)
            .build()
    }

    fn init(
        started: Self::Init,
        root: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let settings = Settings::new();
        settings.restore_window(&root);
        crate::perf::watch_frames(&root);
        install_actions(&sender);

        // Sidebar.
        let s = sender.clone();
        let conversations = ConversationList::new(move |key| s.input(Input::Open(key)));
        let f = conversations.filter_entry.clone();
        if let Some(search) = relm4::main_application().lookup_action("search") {
            if let Ok(search) = search.downcast::<gio::SimpleAction>() {
                search.connect_activate(move |_, _| {
                    f.grab_focus();
                });
            }
        }
        let own_avatar = Avatar::new(24);
        let status_box = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(6)
            .margin_top(6)
            .margin_bottom(6)
            .margin_start(6)
            .margin_end(6)
            .build();
        let mut status_checks = Vec::new();
        let mut group: Option<gtk::CheckButton> = None;
        for status in [
            OwnStatus::Available,
            OwnStatus::Away,
            OwnStatus::Busy,
            OwnStatus::Offline,
        ] {
            let check = gtk::CheckButton::with_label(&status.words());
            if let Some(g) = &group {
                check.set_group(Some(g));
            } else {
                group = Some(check.clone());
                check.set_active(true);
            }
            let s = sender.clone();
            check.connect_toggled(move |c| {
                if c.is_active() {
                    s.input(Input::SetStatus(status));
                }
            });
            status_box.append(&check);
            status_checks.push((status, check));
        }
        let status_entry = gtk::Entry::builder()
            .placeholder_text(tr("Status message"))
            .build();
        let s = sender.clone();
        let checks = status_checks.clone();
        status_entry.connect_activate(move |_| {
            if let Some((st, _)) = checks.iter().find(|(_, c)| c.is_active()) {
                s.input(Input::SetStatus(*st));
            }
        });
        status_box.append(&status_entry);
        status_box.append(
            &gtk::Button::builder()
                .label(tr("Set Avatar…"))
                .action_name("app.set-avatar")
                .css_classes(["flat"])
                .build(),
        );
        let status_popover = gtk::Popover::builder().child(&status_box).build();
        let p = status_popover.clone();
        status_entry.connect_activate(move |_| p.popdown());
        let status_button = gtk::MenuButton::builder()
            .child(own_avatar.widget())
            .popover(&status_popover)
            .tooltip_text(tr("Your Status"))
            .css_classes(["flat", "circular"])
            .build();

        let new_menu = gio::Menu::new();
        new_menu.append(Some(&tr("Start Chat…")), Some("app.start-chat"));
        new_menu.append(Some(&tr("Add Contact…")), Some("app.add-contact"));
        let new_button = gtk::MenuButton::builder()
            .icon_name("chat-message-new-symbolic")
            .menu_model(&new_menu)
            .tooltip_text(tr("New Chat"))
            .build();
        let accounts_menu = gio::Menu::new();
        let main_menu = gio::Menu::new();
        let first = gio::Menu::new();
        first.append(Some(&tr("Add Account…")), Some("app.add-account"));
        main_menu.append_section(None, &first);
        main_menu.append_section(None, &accounts_menu);
        let last = gio::Menu::new();
        last.append(Some(&tr("Set Avatar…")), Some("app.set-avatar"));
        if let Some(action) = settings.inner().map(|s| s.create_action("notifications")) {
            relm4::main_application().add_action(&action);
            last.append(
                Some(&tr("Message Notifications")),
                Some("app.notifications"),
            );
        }
        last.append(Some(&tr("About Natter")), Some("app.about"));
        main_menu.append_section(None, &last);
        let menu_button = gtk::MenuButton::builder()
            .icon_name("open-menu-symbolic")
            .menu_model(&main_menu)
            .tooltip_text(tr("Main Menu"))
            .primary(true)
            .build();
        let sidebar_header = adw::HeaderBar::builder()
            .title_widget(&adw::WindowTitle::new("Natter", ""))
            .build();
        sidebar_header.pack_start(&status_button);
        let search_button = gtk::ToggleButton::builder()
            .icon_name("system-search-symbolic")
            .tooltip_text(tr("Search Messages"))
            .build();
        let s = sender.clone();
        search_button.connect_toggled(move |b| s.input(Input::ShowSearch(b.is_active())));
        sidebar_header.pack_end(&menu_button);
        sidebar_header.pack_end(&new_button);
        sidebar_header.pack_end(&search_button);
        let (s, s2, s3) = (sender.clone(), sender.clone(), sender.clone());
        let search = SearchPanel::new(
            move |generation, text| s.input(Input::Search(generation, text)),
            move |result| s2.input(Input::OpenResult(Box::new(result))),
            move || s3.input(Input::ShowSearch(false)),
        );
        let sidebar_stack = gtk::Stack::new();
        sidebar_stack.add_named(&conversations.root, Some("conversations"));
        sidebar_stack.add_named(&search.root, Some("search"));
        sidebar_stack.set_visible_child_name("conversations");

        let conn_label = gtk::Label::new(None);
        let conn_button = gtk::Button::with_label(&tr("Retry"));
        let s = sender.clone();
        conn_button.connect_clicked(move |_| s.input(Input::Reconnect));
        let conn_banner = banner(&conn_label, &[&conn_button], "warning");

        let sidebar_page = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .width_request(300)
            .build();
        sidebar_page.append(&sidebar_header);
        sidebar_page.append(&conn_banner);
        // While history comes from the archive: a spinner and how much is here.
        let sync_label = gtk::Label::builder()
            .css_classes(["dim-label", "caption"])
            .xalign(0.0)
            .hexpand(true)
            .build();
        let sync_row = gtk::Box::builder()
            .spacing(8)
            .margin_start(12)
            .margin_end(12)
            .margin_top(4)
            .margin_bottom(4)
            .build();
        // A still icon, not a spinner: a spinner draws the window sixty times a second for
        // the whole sync (about a tenth of a core on a CPU renderer); the count below
        // changes every second and shows the progress.
        let sync_icon = gtk::Image::builder()
            .icon_name("emblem-synchronizing-symbolic")
            .css_classes(["dim-label"])
            .build();
        sync_row.append(&sync_icon);
        sync_row.append(&sync_label);
        let sync_banner = gtk::Revealer::builder()
            .child(&sync_row)
            .transition_type(gtk::RevealerTransitionType::SlideDown)
            .build();
        sidebar_page.append(&sync_banner);
        sidebar_page.append(&sidebar_stack);

        // Chat.
        let chat_title = adw::WindowTitle::new("", "");
        let chat_avatar = Avatar::new(32);
        let back = gtk::Button::builder()
            .icon_name("go-previous-symbolic")
            .tooltip_text(tr("Back"))
            .build();
        let s = sender.clone();
        back.connect_clicked(move |_| s.input(Input::Back));
        let chat_menu = gio::Menu::new();
        chat_menu.append(Some(&tr("Contact Details")), Some("app.contact-details"));
        chat_menu.append(Some(&tr("Remove Contact…")), Some("app.remove-contact"));
        chat_menu.append(Some(&tr("Block Contact…")), Some("app.block-contact"));
        let chat_menu_button = gtk::MenuButton::builder()
            .icon_name("view-more-symbolic")
            .menu_model(&chat_menu)
            .tooltip_text(tr("Conversation Menu"))
            .build();
        let chat_header = adw::HeaderBar::builder().title_widget(&chat_title).build();
        chat_header.pack_start(&back);
        chat_header.pack_start(chat_avatar.widget());
        chat_header.pack_end(&chat_menu_button);
        let s = sender.clone();
        let s2 = sender.clone();
        let s3 = sender.clone();
        let s4 = sender.clone();
        let timeline = Timeline::new(
            move |id| s.input(Input::Retry(id)),
            move || s2.input(Input::LoadOlder),
            move || s4.input(Input::LoadNewer),
            move |action| s3.input(Input::MessageAction(action)),
        );
        let s = sender.clone();
        let s2 = sender.clone();
        let composer = Composer::new(
            move || s.input(Input::Send),
            move |ev| s2.input(Input::Composer(ev)),
        );
        let chat = gtk::Box::new(gtk::Orientation::Vertical, 0);
        chat.append(&timeline.root);
        chat.append(&composer.root);
        let empty = adw::StatusPage::builder()
            .icon_name("chat-message-new-symbolic")
            .title(tr("No Conversation Selected"))
            .description(tr("Choose a conversation on the left, or start a new one."))
            .vexpand(true)
            .css_classes(["natter-empty-chat"])
            .build();
        let chat_stack = gtk::Stack::new();
        chat_stack.add_named(&empty, Some("empty"));
        chat_stack.add_named(&chat, Some("chat"));
        chat_stack.set_visible_child_name("empty");
        // The avatar and the conversation menu only make sense with a conversation open.
        for widget in [
            chat_avatar.widget().upcast_ref::<gtk::Widget>(),
            chat_menu_button.upcast_ref(),
        ] {
            chat_stack
                .bind_property("visible-child-name", widget, "visible")
                .transform_to(|_, name: Option<String>| Some(name.as_deref() == Some("chat")))
                .sync_create()
                .build();
        }

        let request_label = gtk::Label::new(None);
        let accept = gtk::Button::builder()
            .label(tr("Accept"))
            .css_classes(["suggested-action"])
            .build();
        let deny = gtk::Button::with_label(&tr("Deny"));
        let s = sender.clone();
        accept.connect_clicked(move |_| s.input(Input::AnswerRequest(true)));
        let s = sender.clone();
        deny.connect_clicked(move |_| s.input(Input::AnswerRequest(false)));
        let block_requester = gtk::Button::with_label(&tr("Block"));
        let s = sender.clone();
        block_requester.connect_clicked(move |_| s.input(Input::BlockRequester));
        let request_banner = banner(
            &request_label,
            &[&block_requester, &deny, &accept],
            "accent",
        );
        let s = sender.clone();
        let blocked_bar = BlockedBar::new(move || s.input(Input::Unblock));

        let content_page = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .hexpand(true)
            .width_request(360)
            .build();
        content_page.append(&chat_header);
        content_page.append(&request_banner);
        content_page.append(&blocked_bar.root);
        content_page.append(&chat_stack);

        let leaflet = adw::Leaflet::builder()
            .can_navigate_back(true)
            .transition_type(adw::LeafletTransitionType::Slide)
            .build();
        leaflet.append(&sidebar_page);
        let separator = leaflet.append(&gtk::Separator::new(gtk::Orientation::Vertical));
        separator.set_navigatable(false);
        leaflet.append(&content_page);
        leaflet
            .bind_property("folded", &back, "visible")
            .sync_create()
            .build();
        leaflet
            .bind_property("folded", &sidebar_header, "show-end-title-buttons")
            .sync_create()
            .build();
        leaflet
            .bind_property("folded", &chat_header, "show-start-title-buttons")
            .sync_create()
            .build();

        let loading = adw::StatusPage::builder()
            .title(tr("Starting…"))
            .vexpand(true)
            .build();
        let stack = gtk::Stack::builder()
            .transition_type(gtk::StackTransitionType::Crossfade)
            .build();
        stack.add_named(&loading, Some("loading"));
        stack.add_named(&leaflet, Some("main"));
        let toasts = adw::ToastOverlay::new();
        toasts.set_child(Some(&stack));
        root.set_content(Some(&toasts));
        let s = sender.clone();
        root.connect_is_active_notify(move |win| {
            if win.is_active() {
                s.input(Input::WindowActive);
            } else {
                s.input(Input::WindowInactive);
            }
        });
        let st = settings.clone();
        root.connect_close_request(move |win| {
            st.save_window(win);
            glib::Propagation::Proceed
        });

        // The store, the keyring and the network are touched only on the session runtime.
        sender.oneshot_command(async move {
            Command::Started(match started.await {
                Ok(r) => r,
                Err(e) => Err(e.to_string()),
            })
        });

        let model = App {
            accounts: BTreeMap::new(),
            current: None,
            drafts: HashMap::new(),
            composing: None,
            requests: VecDeque::new(),
            signing_in: false,
            trusted: None,
            status: OwnStatus::Available,
            status_text: String::new(),
            settings,
            opened_at: None,
            started_at: glib::real_time() / 1000,
            pending_rows: HashMap::new(),
            caught_up: HashMap::new(),
            flush_scheduled: None,
            client_active: true,
            focus_changes: 0,
            sync_shown_at: None,
        };
        let widgets = Widgets {
            window: root.clone(),
            toasts,
            stack,
            signin: None,
            leaflet,
            sidebar_page,
            content_page,
            conversations,
            sidebar_stack,
            search,
            search_button,
            own_avatar,
            status_checks,
            status_entry,
            status_button,
            conn_banner,
            sync_banner,
            sync_label,
            conn_label,
            conn_button,
            request_banner,
            request_label,
            chat_stack,
            chat_title,
            chat_avatar,
            timeline,
            composer,
            blocked_bar,
            accounts_menu,
        };
        widgets.stack.set_visible_child_name("loading");
        ComponentParts { model, widgets }
    }

    fn shutdown(&mut self, _widgets: &mut Self::Widgets, _output: relm4::Sender<()>) {
        // Sign off cleanly (unavailable presence, stream close), but never hang the exit.
        let handles: Vec<_> = self.accounts.values().map(|a| a.handle.clone()).collect();
        let bye = tokio::time::timeout(Duration::from_secs(2), async move {
            for handle in handles {
                if let Err(e) = handle.disconnect().await {
                    tracing::warn!(error = %e, "could not sign off cleanly");
                }
            }
        });
        let _ = backend::runtime().block_on(bye);
    }

    fn update_with_view(
        &mut self,
        w: &mut Self::Widgets,
        msg: Input,
        sender: ComponentSender<Self>,
        root: &Self::Root,
    ) {
        self.flush_rows(w);
        match msg {
            Input::FlushRows => self.flush_scheduled = None,
            Input::Open(key) => self.open(key, w, &sender),
            Input::OpenTarget(target) => {
                if let Some(key) = ConvKey::from_target(&target) {
                    if self.accounts.contains_key(&key.account_id) {
                        root.present();
                        self.open(key, w, &sender);
                    }
                }
            }
            Input::Back => {
                if w.leaflet.is_folded() {
                    w.leaflet.set_visible_child(&w.sidebar_page);
                }
            }
            Input::Send => {
                let Some(key) = self.current.clone() else {
                    return;
                };
                let text = w.composer.draft();
                if text.trim().is_empty() {
                    return;
                }
                let Some(handle) = self.handle(key.account_id) else {
                    return;
                };
                w.composer.set_draft("");
                self.drafts.remove(&key);
                let composing = self.composing.take();
                w.composer.set_context(None);
                if !matches!(composing, Some(Composing::Edit(_))) {
                    w.timeline.scroll_to_bottom();
                }
                sender.oneshot_command(async move {
                    let text = text.trim_end();
                    let result = match composing {
                        None => handle.send_message(&key.peer, text).await,
                        Some(Composing::Reply(id)) => handle.reply_to(id, text).await,
                        Some(Composing::Edit(id)) => handle.correct_message(id, text).await,
                    };
                    Command::Done(result.map(|_| ()).map_err(|e| e.to_string()))
                });
            }
            Input::MessageAction(action) => self.on_message_action(action, w, &sender),
            Input::ConfirmedDelete(id) => {
                if let Some(handle) = self.current_handle() {
                    sender.oneshot_command(async move {
                        Command::Done(
                            handle
                                .retract_message(id)
                                .await
                                .map(|_| ())
                                .map_err(|e| e.to_string()),
                        )
                    });
                }
            }
            Input::Composer(ComposerEvent::Typing(typing)) => {
                if let (Some(key), Some(handle)) = (self.current.clone(), self.current_handle()) {
                    let state = if typing {
                        ChatState::Composing
                    } else {
                        ChatState::Paused
                    };
                    handle.send_chat_state(&key.peer, state);
                }
            }
            Input::Composer(ComposerEvent::EditLast) => {
                if let Some(id) = w.timeline.last_own() {
                    self.on_message_action(MessageAction::Edit(id), w, &sender);
                }
            }
            Input::Composer(ComposerEvent::Cancel) => {
                if let Some(Composing::Edit(_)) = self.composing {
                    w.composer.set_draft("");
                }
                self.composing = None;
                w.composer.set_context(None);
            }
            Input::Retry(id) => {
                if let Some(handle) = self
                    .current
                    .as_ref()
                    .and_then(|k| self.handle(k.account_id))
                {
                    sender.oneshot_command(async move {
                        Command::Done(handle.retry_message(id).await.map_err(|e| e.to_string()))
                    });
                }
            }
            Input::LoadNewer => {
                if let Some(key) = self.current.clone() {
                    if !w.timeline.loading && !w.timeline.at_newest() {
                        self.load_newer(&key, w, &sender);
                    }
                }
            }
            Input::ShowSearch(show) => {
                if w.search_button.is_active() != show {
                    // Comes back here through the button's toggled handler.
                    w.search_button.set_active(show);
                    return;
                }
                if show {
                    w.sidebar_stack.set_visible_child_name("search");
                    w.leaflet.set_visible_child(&w.sidebar_page);
                    w.search.focus();
                } else {
                    w.sidebar_stack.set_visible_child_name("conversations");
                }
            }
            Input::Search(generation, text) => self.search(generation, text, &sender),
            Input::OpenResult(result) => {
                let id = result.hit.message.id;
                self.open_at(result.key.clone(), Some(id), w, &sender);
            }
            Input::LoadOlder => {
                if let Some(key) = self.current.clone() {
                    if !w.timeline.loading && !w.timeline.complete && w.timeline.len() > 0 {
                        w.timeline.loading = true;
                        self.load_history(&key, true, w, &sender);
                    }
                }
            }
            Input::SignIn => {
                if self.signing_in {
                    return;
                }
                match w.signin(&sender).form() {
                    Ok(form) => {
                        self.signing_in = true;
                        w.signin(&sender).set_busy(true);
                        let pinned = self
                            .trusted
                            .as_ref()
                            .filter(|(jid, _)| *jid == form.jid)
                            .map(|(_, sha)| sha.clone());
                        sender.oneshot_command(async move {
                            let result = backend::sign_in(form.clone(), pinned).await;
                            Command::SignedIn(Box::new(result), form)
                        });
                    }
                    Err(why) => w.signin(&sender).show_error(&why),
                }
            }
            Input::SignInTrusted(form, sha256) => {
                self.trusted = Some((form.jid.clone(), sha256.clone()));
                self.signing_in = true;
                w.signin(&sender).set_busy(true);
                sender.oneshot_command(async move {
                    let result = backend::sign_in(form.clone(), Some(sha256)).await;
                    Command::SignedIn(Box::new(result), form)
                });
            }
            Input::SignInCancel => {
                if !self.accounts.is_empty() {
                    w.stack.set_visible_child_name("main");
                }
            }
            Input::AddAccount => {
                w.signin(&sender).reset(!self.accounts.is_empty());
                w.stack.set_visible_child_name("signin");
                w.signin(&sender).address.grab_focus();
            }
            Input::RemoveAccount(jid) => {
                let Some(id) = self
                    .accounts
                    .iter()
                    .find(|(_, a)| a.handle.jid() == jid)
                    .map(|(id, _)| *id)
                else {
                    return;
                };
                let s = sender.clone();
                dialogs::confirm(
                    root,
                    &tr("Remove Account?"),
                    &format!(
                        "{jid} {}",
                        tr("will be signed out and its messages and contacts removed from this computer. The account itself stays on the server.")
                    ),
                    &tr("_Remove"),
                    move || s.input(Input::RemoveAccountConfirmed(id)),
                );
            }
            Input::RemoveAccountConfirmed(id) => {
                if let Some(a) = self.accounts.get(&id) {
                    let handle = a.handle.clone();
                    sender.oneshot_command(async move {
                        Command::AccountRemoved(id, backend::remove_account(handle).await)
                    });
                }
            }
            Input::ShowStartChat => {
                let accounts = self.account_list();
                if accounts.is_empty() {
                    return;
                }
                let s = sender.clone();
                dialogs::start_chat(root, &accounts, self.default_account(), move |id, jid| {
                    s.input(Input::StartChat(id, jid))
                });
            }
            Input::ShowAddContact => {
                let accounts = self.account_list();
                if accounts.is_empty() {
                    return;
                }
                let s = sender.clone();
                dialogs::add_contact(
                    root,
                    &accounts,
                    self.default_account(),
                    move |id, jid, name| s.input(Input::AddContact(id, jid, name)),
                );
            }
            Input::StartChat(account_id, jid) => {
                let key = ConvKey {
                    account_id,
                    peer: jid,
                };
                self.open(key, w, &sender);
            }
            Input::AddContact(account_id, jid, name) => {
                if let Some(handle) = self.handle(account_id) {
                    let (j, n) = (jid.clone(), name.clone());
                    sender.oneshot_command(async move {
                        let name = Some(n).filter(|n| !n.trim().is_empty());
                        let result = async {
                            handle.add_contact(&j, name, vec![]).await?;
                            handle.subscription(&j, SubscriptionAction::Request).await
                        }
                        .await;
                        Command::Done(result.map_err(|e| e.to_string()))
                    });
                    let key = ConvKey {
                        account_id,
                        peer: jid,
                    };
                    self.open(key, w, &sender);
                }
            }
            Input::ContactDetails => {
                let Some(key) = self.current.clone() else {
                    return;
                };
                if let Some(handle) = self.handle(key.account_id) {
                    sender.oneshot_command(async move {
                        let list = handle.presences(&key.peer).await.unwrap_or_default();
                        Command::Presences(key, list)
                    });
                }
            }
            Input::RemoveContact => {
                let Some(key) = self.current.clone() else {
                    return;
                };
                let s = sender.clone();
                let name = self.name_of(&key);
                dialogs::confirm(
                    root,
                    &tr("Remove Contact?"),
                    &format!(
                        "{name} {}",
                        tr("will be removed from your contacts and will no longer see when you are online.")
                    ),
                    &tr("_Remove"),
                    move || s.input(Input::RemoveContactConfirmed(key.clone())),
                );
            }
            Input::RemoveContactConfirmed(key) => {
                if let Some(handle) = self.handle(key.account_id) {
                    sender.oneshot_command(async move {
                        Command::Done(
                            handle
                                .remove_contact(&key.peer)
                                .await
                                .map_err(|e| e.to_string()),
                        )
                    });
                }
            }
            Input::SetStatus(status) => self.set_status(status, w, &sender),
            Input::Reconnect => {
                let ids: Vec<i64> = self
                    .accounts
                    .iter()
                    .filter(|(_, a)| !matches!(a.state, ConnectionState::Online { .. }))
                    .map(|(id, _)| *id)
                    .collect();
                if self.status == OwnStatus::Offline {
                    self.set_status(OwnStatus::Available, w, &sender);
                    return;
                }
                for id in ids {
                    if let Some(a) = self.accounts.get_mut(&id) {
                        a.state = ConnectionState::Connecting;
                        let handle = a.handle.clone();
                        sender.oneshot_command(async move {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(3), handle.disconnect())
                                    .await;
                            Command::Restarted(id, backend::restart_session(id).await)
                        });
                    }
                }
                self.refresh_banner(w);
            }
            Input::AnswerRequest(accept) => {
                let Some((account_id, from)) = self.requests.pop_front() else {
                    return;
                };
                self.refresh_request(w);
                let Some(handle) = self.handle(account_id) else {
                    return;
                };
                let mutual = accept
                    && self.accounts.get(&account_id).is_none_or(|a| {
                        a.contacts
                            .get(&from)
                            .is_none_or(|c| c.subscription == "none" || c.subscription == "from")
                    });
                sender.oneshot_command(async move {
                    let result = async {
                        if accept {
                            handle
                                .subscription(&from, SubscriptionAction::Approve)
                                .await?;
                            if mutual {
                                handle
                                    .subscription(&from, SubscriptionAction::Request)
                                    .await?;
                            }
                            Ok(())
                        } else {
                            handle.subscription(&from, SubscriptionAction::Deny).await
                        }
                    }
                    .await;
                    Command::Done(result.map_err(|e: SessionError| e.to_string()))
                });
            }
            Input::WindowInactive => {
                self.focus_changes += 1;
                let (s, change) = (sender.clone(), self.focus_changes);
                glib::timeout_add_local_once(CLIENT_IDLE, move || {
                    s.input(Input::ClientIdle(change))
                });
            }
            Input::ClientIdle(change) => {
                if change == self.focus_changes && !w.window.is_active() {
                    self.set_client_active(false);
                }
            }
            Input::BlockContact => {
                if let Some(key) = self.current.clone() {
                    self.ask_block(key.account_id, key.peer, root, &sender);
                }
            }
            Input::BlockRequester => {
                let Some((account_id, from)) = self.requests.pop_front() else {
                    return;
                };
                self.refresh_request(w);
                // Refused as well as blocked: blocking alone would leave it pending.
                if let Some(handle) = self.handle(account_id) {
                    let from = from.clone();
                    sender.oneshot_command(async move {
                        Command::Done(
                            handle
                                .subscription(&from, SubscriptionAction::Deny)
                                .await
                                .map_err(|e| e.to_string()),
                        )
                    });
                }
                self.ask_block(account_id, from, root, &sender);
            }
            Input::BlockConfirmed(account_id, jid, report) => {
                if let Some(handle) = self.handle(account_id) {
                    sender.oneshot_command(async move {
                        Command::Done(handle.block(&jid, report).await.map_err(|e| e.to_string()))
                    });
                }
            }
            Input::Unblock => {
                let Some(key) = self.current.clone() else {
                    return;
                };
                if let Some(handle) = self.handle(key.account_id) {
                    sender.oneshot_command(async move {
                        Command::Done(handle.unblock(&key.peer).await.map_err(|e| e.to_string()))
                    });
                }
            }
            Input::WindowActive => {
                self.focus_changes += 1;
                self.set_client_active(true);
                if let Some(key) = self.current.clone() {
                    if Self::chat_visible(w) {
                        self.mark_read(&key, w, &sender);
                    }
                }
            }
            Input::About => dialogs::about(root),
            Input::SetAvatar => {
                let Some(handle) = self.default_account().and_then(|id| self.handle(id)) else {
                    return;
                };
                crate::ui::avatar::choose_own(root, move |file| {
                    let handle = handle.clone();
                    sender.oneshot_command(async move {
                        Command::AvatarSet(crate::ui::avatar::publish_own(handle, file).await)
                    })
                });
            }
        }
    }

    fn update_cmd_with_view(
        &mut self,
        w: &mut Self::Widgets,
        msg: Command,
        sender: ComponentSender<Self>,
        root: &Self::Root,
    ) {
        // Messages come as commands: the list catches up with them on the timer. Events
        // that do not touch a row's preview or unread count leave the timer alone too: a
        // history sync reports progress after every page.
        if !matches!(&msg, Command::Event(e)
        if matches!(
            e.event,
            Event::Message(_)
                | Event::ArchivePage { .. }
                | Event::HistorySync { done: false, .. }
                | Event::Presence { .. }
                | Event::Avatar { .. }
                | Event::Settled
                | Event::ChatState { .. }
                | Event::MessageState { .. }
        )) {
            self.flush_rows(w);
        }
        match msg {
            Command::AvatarSet(Ok(())) => Self::toast(w, &tr("Avatar updated")),
            Command::AvatarSet(Err(e)) => Self::toast(w, &e),
            Command::Started(Ok(list)) => {
                let mut any = false;
                for started in list {
                    match started {
                        Ok(s) => {
                            any = true;
                            self.adopt(s, w, &sender);
                        }
                        Err((jid, e)) => Self::toast(w, &format!("{jid}: {e}")),
                    }
                }
                if !any {
                    w.signin(&sender).reset(false);
                    w.stack.set_visible_child_name("signin");
                    w.signin(&sender).address.grab_focus();
                }
            }
            Command::Started(Err(e)) => {
                w.signin(&sender).reset(false);
                w.signin(&sender)
                    .show_error(&format!("{}: {e}", tr("Natter cannot open its data")));
                w.stack.set_visible_child_name("signin");
            }
            Command::Event(ev) => self.on_event(*ev, w, &sender),
            Command::Summaries(account_id, Ok(list)) => {
                let rows: Vec<_> = list
                    .into_iter()
                    .map(|s| {
                        let key = ConvKey {
                            account_id,
                            peer: s.conversation.peer.clone(),
                        };
                        let row = self.new_row(&key);
                        let preview = s
                            .last
                            .as_ref()
                            .map(|m| format::preview_markup(m, &self.name_of(&key)))
                            .unwrap_or_default();
                        (key, row, preview, s.conversation)
                    })
                    .collect();
                w.conversations.batch(|list| {
                    for (key, row, preview, conversation) in rows {
                        list.upsert(
                            &key,
                            || row,
                            |r| {
                                r.preview = preview;
                                r.last_activity = r.last_activity.max(conversation.last_activity);
                                r.unread = conversation.unread;
                            },
                        );
                    }
                });
            }
            Command::Summaries(_, Err(e)) => tracing::warn!(error = %e, "conversations not loaded"),
            Command::History {
                key,
                older,
                limit,
                result,
            } => {
                if self.current.as_ref() != Some(&key) {
                    return;
                }
                w.timeline.loading = false;
                match result {
                    Ok(mut page) => {
                        let n = page.len();
                        if let Some(at) = self.opened_at {
                            tracing::debug!(target: "natter::perf", ms = at.elapsed().as_secs_f64() * 1e3, "history page arrived");
                        }
                        page.reverse();
                        if older {
                            tracing::info!(target: "natter::perf", messages = n, "older page loaded");
                            w.timeline.add_older(page);
                        } else {
                            let t = Instant::now();
                            w.timeline.set_page(page);
                            w.timeline.scroll_to_bottom();
                            tracing::debug!(target: "natter::perf", ms = t.elapsed().as_secs_f64() * 1e3, rows = w.timeline.len(), "page put in the model");
                            if let Some(at) = self.opened_at.take() {
                                crate::perf::shown(&w.timeline.view, at, n);
                            }
                        }
                        // Fewer than asked for: the store has no older ones; the archive
                        // may, while a fresh account's history is still coming. (The
                        // timeline asks for more itself when what it has does not fill it.)
                        if n < limit as usize {
                            self.fetch_older(&key, w, &sender);
                        }
                    }
                    Err(e) => Self::toast(w, &format!("{}: {e}", tr("History not loaded"))),
                }
            }
            Command::FetchedOlder { key, result } => {
                if self.current.as_ref() != Some(&key) {
                    return;
                }
                w.timeline.loading = false;
                match result {
                    Ok(n) if n > 0 => {
                        w.timeline.loading = true;
                        let older = w.timeline.len() > 0;
                        self.load_history(&key, older, w, &sender);
                    }
                    Ok(_) => w.timeline.complete = true,
                    // Offline, say: the user may scroll up again later.
                    Err(e) => tracing::debug!(error = %e, "older history not fetched"),
                }
            }
            Command::Newer { key, limit, result } => {
                if self.current.as_ref() != Some(&key) {
                    return;
                }
                match result {
                    Ok(page) => w.timeline.add_newer(page, limit),
                    Err(e) => Self::toast(w, &format!("{}: {e}", tr("History not loaded"))),
                }
            }
            Command::Around {
                key,
                target,
                limit,
                result,
            } => {
                if self.current.as_ref() != Some(&key) {
                    return;
                }
                w.timeline.loading = false;
                match result {
                    Ok(page) if page.iter().any(|m| m.id == target) => {
                        tracing::info!(id = target, "message shown in its context");
                        w.timeline.show_around(page, target, limit);
                    }
                    Ok(_) => {
                        // Deleted since the search: the conversation's end instead.
                        Self::toast(w, &tr("That message is no longer there"));
                        w.timeline.loading = true;
                        self.load_history(&key, false, w, &sender);
                    }
                    Err(e) => Self::toast(w, &format!("{}: {e}", tr("History not loaded"))),
                }
            }
            Command::SearchResults(generation, results) => {
                tracing::info!(results = results.len(), "search results");
                w.search.show(generation, results);
            }
            Command::SignedIn(result, form) => {
                self.signing_in = false;
                match *result {
                    Ok((started, seen)) => {
                        w.signin(&sender).set_busy(false);
                        self.adopt(started, w, &sender);
                        for ev in seen {
                            self.on_event(ev, w, &sender);
                        }
                    }
                    Err(SignInError::Connect(ConnectError::Certificate(problem)))
                        if !problem.sha256.is_empty() =>
                    {
                        w.signin(&sender).show_error(&signin::error_words(
                            &ConnectError::Certificate(problem.clone()),
                        ));
                        let s = sender.clone();
                        let sha = problem.sha256.clone();
                        let server = form.host.clone().unwrap_or_else(|| {
                            form.jid
                                .split_once('@')
                                .map(|(_, d)| d.to_owned())
                                .unwrap_or_default()
                        });
                        signin::ask_trust(root, &server, &problem, move |trust| {
                            if trust {
                                s.input(Input::SignInTrusted(form.clone(), sha.clone()));
                            }
                        });
                    }
                    Err(SignInError::Connect(e)) => {
                        w.signin(&sender).show_error(&signin::error_words(&e));
                        // Put the cursor where the fix goes.
                        match e {
                            ConnectError::WrongPassword(_) => {
                                w.signin(&sender).password.grab_focus()
                            }
                            _ => w.signin(&sender).address.grab_focus(),
                        };
                    }
                    Err(SignInError::Other(e)) => w.signin(&sender).show_error(&e),
                }
            }
            Command::Restarted(id, Ok(started)) => {
                if started.handle.account_id() == id {
                    self.adopt(started, w, &sender);
                }
            }
            Command::Restarted(id, Err(e)) => {
                if let Some(a) = self.accounts.get_mut(&id) {
                    a.state = ConnectionState::Offline;
                }
                self.refresh_banner(w);
                Self::toast(w, &e);
            }
            Command::AccountRemoved(id, result) => {
                if let Err(e) = result {
                    Self::toast(w, &e);
                    return;
                }
                self.accounts.remove(&id);
                self.requests.retain(|(a, _)| *a != id);
                self.refresh_request(w);
                w.conversations.remove_account(id);
                if self.current.as_ref().is_some_and(|k| k.account_id == id) {
                    self.current = None;
                    w.timeline.clear();
                    w.chat_stack.set_visible_child_name("empty");
                    w.chat_title.set_title("");
                    w.chat_title.set_subtitle("");
                }
                self.refresh_accounts_menu(w);
                self.refresh_banner(w);
                if self.accounts.is_empty() {
                    w.signin(&sender).reset(false);
                    w.stack.set_visible_child_name("signin");
                    w.signin(&sender).address.grab_focus();
                }
            }
            Command::Presences(key, list) => {
                let contact = self
                    .accounts
                    .get(&key.account_id)
                    .and_then(|a| a.contacts.get(&key.peer).cloned());
                let name = self.name_of(&key);
                let s = sender.clone();
                let k = key.clone();
                dialogs::contact_details(
                    root,
                    &key.peer,
                    &name,
                    contact.as_ref(),
                    &list,
                    move || {
                        s.input(Input::Open(k.clone()));
                        s.input(Input::RemoveContact);
                    },
                );
            }
            Command::Done(Ok(())) => {}
            Command::Done(Err(e)) => Self::toast(w, &e),
        }
    }
}

/// Words for a resource's presence in the contact details.
pub fn presence_words(p: &ResourcePresence) -> String {
    match &p.status {
        Some(s) if !s.is_empty() => format!("{} — {s}", availability_words(p.availability)),
        _ => availability_words(p.availability),
    }
}

/// "1 message", "25 messages".
fn ngettext_count(n: usize) -> String {
    crate::i18n::ntr("{} message", "{} messages", n as u32).replace("{}", &n.to_string())
}
