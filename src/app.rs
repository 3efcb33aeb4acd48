//! The main window. This is the foundation's minimal window: account state, contacts
//! and a simple chat pane; the full chat UI (virtualised lists, sign-in) builds on it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use adw::prelude::*;
use natter_core::store::{Contact, Direction, Message, MessageState};
use natter_core::{AccountEvent, ConnectionState, Event, SessionError, SessionHandle};
use relm4::{adw, gtk, Component, ComponentParts, ComponentSender};

use crate::backend;
use crate::i18n::tr;

pub struct App {
    handle: Option<SessionHandle>,
    contacts: BTreeMap<String, Contact>,
    online: BTreeMap<String, usize>,
    selected: Option<String>,
    messages: Vec<Message>,
    status: String,
}

#[derive(Debug)]
pub enum Input {
    Select(String),
    Send,
}

#[derive(Debug)]
pub enum Command {
    Started(Result<Option<SessionHandle>, String>),
    Event(Box<AccountEvent>),
    History(String, Result<Vec<Message>, SessionError>),
    Sent(Result<Message, SessionError>),
    Read(Result<(), SessionError>),
}

/// What a contact row shows: name and whether any resource is online.
type ContactInfo = Rc<RefCell<HashMap<String, (String, bool)>>>;

pub struct Widgets {
    title: adw::WindowTitle,
    contact_info: ContactInfo,
    positions: HashMap<String, u32>,
    labels: HashMap<i64, gtk::Label>,
    stack: gtk::Stack,
    empty: adw::StatusPage,
    contacts: gtk::StringList,
    chat_title: adw::WindowTitle,
    messages: gtk::ListBox,
    scroller: gtk::ScrolledWindow,
    entry: gtk::Entry,
}

fn connection_text(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Connecting => tr("Connecting…"),
        ConnectionState::Online { .. } => tr("Online"),
        ConnectionState::Reconnecting { .. } => tr("Reconnecting…"),
        ConnectionState::Failed(e) => format!("{}: {e}", tr("Not connected")),
        ConnectionState::Offline => tr("Offline"),
    }
}

fn state_text(m: &Message) -> &'static str {
    match (m.direction, m.state) {
        (Direction::Incoming, _) => "",
        (_, MessageState::Pending) => "🕓",
        (_, MessageState::Sent) => "✓",
        (_, MessageState::Acked) => "✓✓",
        (_, MessageState::Failed) => "⚠",
        (_, MessageState::Received) => "",
    }
}

impl App {
    fn load_history(&self, sender: &ComponentSender<Self>) {
        let (Some(handle), Some(peer)) = (self.handle.clone(), self.selected.clone()) else {
            return;
        };
        sender.oneshot_command(async move {
            let page = handle.history(&peer, None, 50).await;
            Command::History(peer, page)
        });
    }

    fn contact_title(&self, jid: &str) -> String {
        self.contacts
            .get(jid)
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| jid.to_owned())
    }

    /// Adds or refreshes one contact: the list is virtualised (only visible rows exist),
    /// and an update rebinds just that row.
    fn show_contact(&self, w: &mut Widgets, jid: &str) {
        let online = self.online.get(jid).copied().unwrap_or(0) > 0;
        w.contact_info
            .borrow_mut()
            .insert(jid.to_owned(), (self.contact_title(jid), online));
        match w.positions.get(jid) {
            Some(&pos) => w.contacts.splice(pos, 1, &[jid]),
            None => {
                w.positions.insert(jid.to_owned(), w.contacts.n_items());
                w.contacts.append(jid);
            }
        }
    }

    fn remove_contact_row(w: &mut Widgets, jid: &str) {
        if let Some(pos) = w.positions.remove(jid) {
            w.contacts.remove(pos);
            w.contact_info.borrow_mut().remove(jid);
            for p in w.positions.values_mut() {
                if *p > pos {
                    *p -= 1;
                }
            }
        }
    }

    fn message_text(m: &Message) -> String {
        format!("{} {}", m.body, state_text(m))
            .trim_end()
            .to_owned()
    }

    fn append_message(w: &mut Widgets, m: &Message) {
        let label = gtk::Label::builder()
            .label(Self::message_text(m))
            .wrap(true)
            .selectable(true)
            .xalign(if m.direction == Direction::Outgoing {
                1.0
            } else {
                0.0
            })
            .margin_start(12)
            .margin_end(12)
            .margin_top(4)
            .margin_bottom(4)
            .build();
        w.messages.append(&label);
        w.labels.insert(m.id, label);
    }

    fn show_messages(&self, w: &mut Widgets) {
        while let Some(row) = w.messages.row_at_index(0) {
            w.messages.remove(&row);
        }
        w.labels.clear();
        for m in &self.messages {
            Self::append_message(w, m);
        }
        Self::scroll_to_end(w);
    }

    fn scroll_to_end(w: &Widgets) {
        let adj = w.scroller.vadjustment();
        // After layout, so the new row counts in the height.
        relm4::gtk::glib::idle_add_local_once(move || adj.set_value(adj.upper()));
    }

    fn on_event(&mut self, ev: Event, w: &mut Widgets) {
        match ev {
            // The call window is its own issue; until it lands the app neither rings nor
            // places calls (the engine is reachable through `natter-call`).
            Event::Call(_) => {}
            Event::Connection(state) => {
                self.status = connection_text(&state);
                w.title.set_subtitle(&self.status);
            }
            Event::Roster(contacts) => {
                let fresh: BTreeMap<_, _> =
                    contacts.into_iter().map(|c| (c.jid.clone(), c)).collect();
                let gone: Vec<_> = self
                    .contacts
                    .keys()
                    .filter(|j| !fresh.contains_key(*j))
                    .cloned()
                    .collect();
                for jid in gone {
                    Self::remove_contact_row(w, &jid);
                }
                self.contacts = fresh;
                let jids: Vec<_> = self.contacts.keys().cloned().collect();
                for jid in jids {
                    self.show_contact(w, &jid);
                }
            }
            Event::RosterItem(c) => {
                let jid = c.jid.clone();
                self.contacts.insert(jid.clone(), c);
                self.show_contact(w, &jid);
            }
            Event::RosterRemoved { jid } => {
                self.contacts.remove(&jid);
                Self::remove_contact_row(w, &jid);
            }
            Event::Presence { jid, presence, .. } => {
                let n = self.online.entry(jid.clone()).or_default();
                if presence.is_some() {
                    *n += 1;
                } else {
                    *n = n.saturating_sub(1);
                }
                if w.positions.contains_key(&jid) {
                    self.show_contact(w, &jid);
                }
            }
            Event::SubscriptionRequest { .. } => {}
            Event::Message(m) => {
                if !w.positions.contains_key(&m.peer) {
                    self.show_contact(w, &m.peer);
                }
                if self.selected.as_deref() == Some(m.peer.as_str())
                    && !w.labels.contains_key(&m.id)
                {
                    Self::append_message(w, &m);
                    Self::scroll_to_end(w);
                    self.messages.push(m);
                }
            }
            Event::MessageState { id, state } => {
                if let Some(m) = self.messages.iter_mut().find(|m| m.id == id) {
                    m.state = state;
                    if let Some(label) = w.labels.get(&id) {
                        label.set_label(&Self::message_text(m));
                    }
                }
            }
        }
    }
}

impl Component for App {
    type CommandOutput = Command;
    type Input = Input;
    type Output = ();
    type Init = tokio::task::JoinHandle<Result<Option<backend::Started>, String>>;
    type Root = adw::ApplicationWindow;
    type Widgets = Widgets;

    fn init_root() -> Self::Root {
        adw::ApplicationWindow::builder()
            .title("Natter")
            .default_width(900)
            .default_height(640)
            .build()
    }

    fn init(
        started: Self::Init,
        root: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let title = adw::WindowTitle::new("Natter", &tr("Starting…"));
        let header = adw::HeaderBar::builder().title_widget(&title).build();

        let empty = adw::StatusPage::builder()
            .icon_name("user-available-symbolic")
            .title(tr("No Account"))
            .description(tr("Natter has no account yet."))
            .vexpand(true)
            .build();

        let contacts = gtk::StringList::new(&[]);
        let contact_info: ContactInfo = Rc::default();
        let factory = gtk::SignalListItemFactory::new();
        factory.connect_setup(|_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            let name = gtk::Label::builder().xalign(0.0).build();
            let state = gtk::Label::builder()
                .xalign(0.0)
                .css_classes(["dim-label", "caption"])
                .build();
            let row = gtk::Box::builder()
                .orientation(gtk::Orientation::Vertical)
                .spacing(2)
                .margin_start(12)
                .margin_end(12)
                .margin_top(8)
                .margin_bottom(8)
                .build();
            row.append(&name);
            row.append(&state);
            item.set_child(Some(&row));
        });
        let info = contact_info.clone();
        factory.connect_bind(move |_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            let Some(jid) = item
                .item()
                .and_then(|o| o.downcast::<gtk::StringObject>().ok())
                .map(|o| o.string().to_string())
            else {
                return;
            };
            let Some(row) = item.child().and_then(|c| c.downcast::<gtk::Box>().ok()) else {
                return;
            };
            let (title, online) = info
                .borrow()
                .get(&jid)
                .cloned()
                .unwrap_or_else(|| (jid.clone(), false));
            let name = row
                .first_child()
                .and_then(|c| c.downcast::<gtk::Label>().ok());
            let state = row
                .last_child()
                .and_then(|c| c.downcast::<gtk::Label>().ok());
            if let (Some(name), Some(state)) = (name, state) {
                name.set_label(&title);
                state.set_label(&if online {
                    tr("Available")
                } else {
                    tr("Offline")
                });
            }
        });
        let selection = gtk::SingleSelection::new(Some(contacts.clone()));
        selection.set_autoselect(false);
        let contact_view = gtk::ListView::builder()
            .model(&selection)
            .factory(&factory)
            .single_click_activate(true)
            .css_classes(["navigation-sidebar"])
            .build();
        let s = sender.clone();
        contact_view.connect_activate(move |view, pos| {
            let jid = view
                .model()
                .and_then(|m| m.item(pos))
                .and_then(|o| o.downcast::<gtk::StringObject>().ok())
                .map(|o| o.string().to_string());
            if let Some(jid) = jid {
                s.input(Input::Select(jid));
            }
        });
        let contacts_scroller = gtk::ScrolledWindow::builder()
            .child(&contact_view)
            .width_request(260)
            .hscrollbar_policy(gtk::PolicyType::Never)
            .build();

        let chat_title = adw::WindowTitle::new("", "");
        let messages = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::None)
            .build();
        let scroller = gtk::ScrolledWindow::builder()
            .child(&messages)
            .vexpand(true)
            .hscrollbar_policy(gtk::PolicyType::Never)
            .build();
        let entry = gtk::Entry::builder()
            .hexpand(true)
            .placeholder_text(tr("Write a message…"))
            .sensitive(false)
            .build();
        let s = sender.clone();
        entry.connect_activate(move |_| s.input(Input::Send));
        let send = gtk::Button::builder()
            .icon_name("mail-send-symbolic")
            .tooltip_text(tr("Send"))
            .css_classes(["suggested-action"])
            .build();
        let s = sender.clone();
        send.connect_clicked(move |_| s.input(Input::Send));
        let composer = gtk::Box::builder()
            .spacing(6)
            .margin_start(12)
            .margin_end(12)
            .margin_top(6)
            .margin_bottom(12)
            .build();
        composer.append(&entry);
        composer.append(&send);
        let chat = gtk::Box::new(gtk::Orientation::Vertical, 0);
        chat.append(
            &adw::HeaderBar::builder()
                .title_widget(&chat_title)
                .show_end_title_buttons(false)
                .show_start_title_buttons(false)
                .build(),
        );
        chat.append(&scroller);
        chat.append(&composer);

        let panes = gtk::Paned::builder()
            .start_child(&contacts_scroller)
            .end_child(&chat)
            .resize_start_child(false)
            .shrink_start_child(false)
            .build();

        let stack = gtk::Stack::new();
        stack.add_named(&empty, Some("empty"));
        stack.add_named(&panes, Some("chat"));

        let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
        content.append(&header);
        content.append(&stack);
        root.set_content(Some(&content));

        // The store, the keyring and the network are touched only on the session runtime.
        sender.command(|out, shutdown| {
            shutdown
                .register(async move {
                    let started = match started.await {
                        Ok(r) => r,
                        Err(e) => Err(e.to_string()),
                    };
                    match started {
                        Ok(Some(s)) => {
                            let mut events = s.events;
                            let _ = out.send(Command::Started(Ok(Some(s.handle))));
                            while let Some(ev) = events.recv().await {
                                if out.send(Command::Event(Box::new(ev))).is_err() {
                                    break;
                                }
                            }
                        }
                        Ok(None) => {
                            let _ = out.send(Command::Started(Ok(None)));
                        }
                        Err(e) => {
                            let _ = out.send(Command::Started(Err(e)));
                        }
                    }
                })
                .drop_on_shutdown()
        });

        let model = App {
            handle: None,
            contacts: BTreeMap::new(),
            online: BTreeMap::new(),
            selected: None,
            messages: Vec::new(),
            status: tr("Starting…"),
        };
        let widgets = Widgets {
            title,
            contact_info,
            positions: HashMap::new(),
            labels: HashMap::new(),
            stack,
            empty,
            contacts,
            chat_title,
            messages,
            scroller,
            entry,
        };
        widgets.stack.set_visible_child_name("empty");
        ComponentParts { model, widgets }
    }

    fn shutdown(&mut self, _widgets: &mut Self::Widgets, _output: relm4::Sender<()>) {
        // Sign off cleanly (unavailable presence, stream close), but never hang the exit.
        if let Some(handle) = self.handle.take() {
            let bye = tokio::time::timeout(std::time::Duration::from_secs(2), async move {
                handle.disconnect().await
            });
            if let Ok(Err(e)) = backend::runtime().block_on(bye) {
                tracing::warn!(error = %e, "could not sign off cleanly");
            }
        }
    }

    fn update_with_view(
        &mut self,
        widgets: &mut Self::Widgets,
        msg: Input,
        sender: ComponentSender<Self>,
        _root: &Self::Root,
    ) {
        match msg {
            Input::Select(peer) => {
                self.selected = Some(peer.clone());
                widgets.chat_title.set_title(&self.contact_title(&peer));
                widgets.entry.set_sensitive(true);
                widgets.entry.grab_focus();
                self.messages.clear();
                self.show_messages(widgets);
                self.load_history(&sender);
                if let Some(handle) = self.handle.clone() {
                    sender.oneshot_command(
                        async move { Command::Read(handle.mark_read(&peer).await) },
                    );
                }
            }
            Input::Send => {
                let text = widgets.entry.text().to_string();
                if let (Some(handle), Some(peer)) = (self.handle.clone(), self.selected.clone()) {
                    if !text.trim().is_empty() {
                        widgets.entry.set_text("");
                        sender.oneshot_command(async move {
                            Command::Sent(handle.send_message(&peer, &text).await)
                        });
                    }
                }
            }
        }
    }

    fn update_cmd_with_view(
        &mut self,
        widgets: &mut Self::Widgets,
        msg: Command,
        _sender: ComponentSender<Self>,
        _root: &Self::Root,
    ) {
        match msg {
            Command::Started(Ok(Some(handle))) => {
                widgets.title.set_title(handle.jid());
                widgets.stack.set_visible_child_name("chat");
                self.handle = Some(handle);
            }
            Command::Started(Ok(None)) => {
                self.status = tr("No account");
                widgets.title.set_subtitle(&self.status);
            }
            Command::Started(Err(e)) => {
                self.status = tr("Cannot start");
                widgets.title.set_subtitle(&self.status);
                widgets.empty.set_description(Some(&e));
            }
            Command::Event(ev) => self.on_event(ev.event, widgets),
            Command::History(peer, Ok(mut page)) => {
                if self.selected.as_deref() == Some(peer.as_str()) {
                    page.reverse();
                    // Messages that arrived while the page loaded are in the page too.
                    self.messages = page;
                    self.show_messages(widgets);
                }
            }
            Command::History(_, Err(e)) => tracing::warn!(error = %e, "history not loaded"),
            Command::Sent(Ok(_)) | Command::Read(Ok(())) => {}
            Command::Read(Err(e)) => tracing::warn!(error = %e, "not marked read"),
            Command::Sent(Err(e)) => {
                self.status = e.to_string();
                widgets.title.set_subtitle(&self.status);
            }
        }
    }
}
