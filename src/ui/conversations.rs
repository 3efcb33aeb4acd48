//! The conversation list: a virtualised `gtk::ListView` over a `gio::ListStore`, sorted
//! by activity and filtered by the search box. Each row: avatar with presence, name,
//! last message preview, time, unread count.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use relm4::adw::prelude::*;
use relm4::gtk::{gio, glib};
use relm4::{adw, gtk};

use super::avatar::{Avatar, Dot};
use super::format;
use crate::i18n::tr;

/// A conversation: one account and one peer (bare JID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvKey {
    pub account_id: i64,
    pub peer: String,
}

impl ConvKey {
    /// The notification action target: "account_id peer".
    pub fn to_target(&self) -> String {
        format!("{} {}", self.account_id, self.peer)
    }

    pub fn from_target(s: &str) -> Option<ConvKey> {
        let (id, peer) = s.split_once(' ')?;
        Some(ConvKey {
            account_id: id.parse().ok()?,
            peer: peer.to_owned(),
        })
    }
}

/// What one row shows.
#[derive(Debug, Clone)]
pub struct ConvRow {
    pub key: ConvKey,
    pub name: String,
    /// The last message on one line, as Pango markup (`format::preview_markup`).
    pub preview: String,
    pub last_activity: i64,
    pub unread: i64,
    pub dot: Dot,
}

pub struct ConversationList {
    pub root: gtk::Box,
    pub filter_entry: gtk::SearchEntry,
    store: gio::ListStore,
    sorter: gtk::CustomSorter,
    selection: gtk::SingleSelection,
    index: HashMap<ConvKey, glib::BoxedAnyObject>,
    /// The widgets of the rows on screen now, by conversation.
    rows: Rows,
    selected: Option<ConvKey>,
    empty: gtk::Stack,
    /// Inside `batch`: rows to add, and whether a row's place may have changed.
    pending: Option<Batch>,
    view: gtk::ListView,
    scroller: gtk::ScrolledWindow,
}

#[derive(Default)]
struct Batch {
    added: Vec<glib::BoxedAnyObject>,
    resort: bool,
}

/// Row widgets by the row's root widget, and which conversation each root shows.
#[derive(Default)]
struct RowMap {
    widgets: HashMap<gtk::Widget, RowWidgets>,
    shown: HashMap<ConvKey, gtk::Widget>,
}

type Rows = Rc<RefCell<RowMap>>;

fn row_of(obj: &glib::Object) -> Option<std::cell::Ref<'_, ConvRow>> {
    obj.downcast_ref::<glib::BoxedAnyObject>()
        .and_then(|b| b.try_borrow::<ConvRow>().ok())
}

/// The widgets of one row, kept on the list item for binding.
struct RowWidgets {
    avatar: Avatar,
    name: gtk::Label,
    time: gtk::Label,
    preview: gtk::Label,
    unread: gtk::Label,
    /// The conversation bound to them now.
    key: Option<ConvKey>,
}

impl RowWidgets {
    fn fill(&self, row: &ConvRow) {
        tracing::debug!(peer = %row.key.peer, unread = row.unread, preview = %row.preview, "conversation row shown");
        self.avatar.set(&row.key.peer, &row.name, row.dot);
        self.name.set_label(&row.name);
        self.preview.set_markup(&row.preview);
        self.time.set_label(&if row.last_activity > 0 {
            format::list_time(row.last_activity, glib::real_time() / 1000)
        } else {
            String::new()
        });
        self.unread.set_visible(row.unread > 0);
        self.unread.set_label(&row.unread.to_string());
        self.name
            .set_css_classes(if row.unread > 0 { &["heading"] } else { &[] });
    }
}

impl ConversationList {
    pub fn new(on_activate: impl Fn(ConvKey) + 'static) -> ConversationList {
        let store = gio::ListStore::new::<glib::BoxedAnyObject>();
        let sorter = gtk::CustomSorter::new(|a, b| {
            let (Some(a), Some(b)) = (row_of(a), row_of(b)) else {
                return gtk::Ordering::Equal;
            };
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
                .into()
        });
        let filter_text: Rc<RefCell<String>> = Rc::default();
        let text = filter_text.clone();
        let filter = gtk::CustomFilter::new(move |o| {
            let needle = text.borrow();
            if needle.is_empty() {
                return true;
            }
            row_of(o).is_some_and(|r| {
                r.name.to_lowercase().contains(needle.as_str())
                    || r.key.peer.to_lowercase().contains(needle.as_str())
            })
        });
        let sorted = gtk::SortListModel::new(Some(store.clone()), Some(sorter.clone()));
        let filtered = gtk::FilterListModel::new(Some(sorted), Some(filter.clone()));
        let selection = gtk::SingleSelection::new(Some(filtered));
        selection.set_autoselect(false);
        selection.set_can_unselect(true);

        let factory = gtk::SignalListItemFactory::new();
        // The widgets of each row (only as many as are on screen), by the row's root.
        let rows: Rows = Rc::default();
        let r = rows.clone();
        factory.connect_setup(move |_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            let avatar = Avatar::new(40);
            // Ellipsized labels ask for their whole text as natural width: bounded, the
            // sidebar keeps one width, so the chat beside it is not laid out again
            // whenever a preview changes.
            let name = gtk::Label::builder()
                .xalign(0.0)
                .hexpand(true)
                .width_chars(1)
                .max_width_chars(1)
                .ellipsize(gtk::pango::EllipsizeMode::End)
                .css_classes(["heading"])
                .build();
            let time = gtk::Label::builder()
                .css_classes(["dim-label", "caption"])
                .build();
            let preview = gtk::Label::builder()
                .xalign(0.0)
                .hexpand(true)
                .width_chars(1)
                .max_width_chars(1)
                .ellipsize(gtk::pango::EllipsizeMode::End)
                .css_classes(["dim-label"])
                .build();
            let unread = gtk::Label::builder()
                .css_classes(["natter-unread"])
                .valign(gtk::Align::Center)
                .visible(false)
                .build();
            let top = gtk::Box::new(gtk::Orientation::Horizontal, 6);
            top.append(&name);
            top.append(&time);
            let bottom = gtk::Box::new(gtk::Orientation::Horizontal, 6);
            bottom.append(&preview);
            bottom.append(&unread);
            let text = gtk::Box::builder()
                .orientation(gtk::Orientation::Vertical)
                .spacing(2)
                .valign(gtk::Align::Center)
                .hexpand(true)
                .build();
            text.append(&top);
            text.append(&bottom);
            let row = gtk::Box::builder()
                .spacing(12)
                .margin_top(6)
                .margin_bottom(6)
                .margin_start(6)
                .margin_end(6)
                .build();
            row.append(avatar.widget());
            row.append(&text);
            item.set_child(Some(&row));
            r.borrow_mut().widgets.insert(
                row.upcast(),
                RowWidgets {
                    avatar,
                    name,
                    time,
                    preview,
                    unread,
                    key: None,
                },
            );
        });
        let r = rows.clone();
        factory.connect_teardown(move |_, item| {
            if let Some(child) = item.downcast_ref::<gtk::ListItem>().and_then(|i| i.child()) {
                let mut map = r.borrow_mut();
                if let Some(key) = map.widgets.remove(&child).and_then(|w| w.key) {
                    map.unshow(&key, &child);
                }
            }
        });
        let r = rows.clone();
        factory.connect_unbind(move |_, item| {
            if let Some(child) = item.downcast_ref::<gtk::ListItem>().and_then(|i| i.child()) {
                let mut map = r.borrow_mut();
                let key = map.widgets.get_mut(&child).and_then(|w| w.key.take());
                if let Some(key) = key {
                    map.unshow(&key, &child);
                }
            }
        });
        let r = rows.clone();
        factory.connect_bind(move |_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            let Some(obj) = item.item() else {
                return;
            };
            let Some(row) = row_of(&obj) else {
                return;
            };
            let Some(child) = item.child() else {
                return;
            };
            let mut map = r.borrow_mut();
            let previous = match map.widgets.get_mut(&child) {
                Some(w) => {
                    w.fill(&row);
                    w.key.replace(row.key.clone())
                }
                None => return,
            };
            if let Some(previous) = previous {
                map.unshow(&previous, &child);
            }
            map.shown.insert(row.key.clone(), child);
        });

        let view = gtk::ListView::builder()
            .model(&selection)
            .factory(&factory)
            .single_click_activate(true)
            .css_classes(["navigation-sidebar"])
            .build();
        view.connect_activate(move |view, pos| {
            let key = view
                .model()
                .and_then(|m| m.item(pos))
                .and_then(|o| row_of(&o).map(|r| r.key.clone()));
            if let Some(key) = key {
                on_activate(key);
            }
        });

        let filter_entry = gtk::SearchEntry::builder()
            .placeholder_text(tr("Search conversations"))
            .margin_start(6)
            .margin_end(6)
            .margin_top(6)
            .margin_bottom(6)
            .build();
        let (text, f) = (filter_text.clone(), filter.clone());
        filter_entry.connect_search_changed(move |e| {
            *text.borrow_mut() = e.text().trim().to_lowercase();
            f.changed(gtk::FilterChange::Different);
        });
        // Enter in the search box opens the first match (of what is typed now, even
        // if the delayed search-changed has not run yet).
        let v = view.clone();
        let (text, f) = (filter_text.clone(), filter.clone());
        filter_entry.connect_activate(move |e| {
            let now = e.text().trim().to_lowercase();
            if *text.borrow() != now {
                *text.borrow_mut() = now;
                f.changed(gtk::FilterChange::Different);
            }
            if v.model().is_some_and(|m| m.n_items() > 0) {
                v.emit_by_name::<()>("activate", &[&0u32]);
                // Found: the whole list comes back, like a launcher.
                e.set_text("");
            }
        });

        let scroller = gtk::ScrolledWindow::builder()
            .child(&view)
            .vexpand(true)
            .hscrollbar_policy(gtk::PolicyType::Never)
            .build();
        let empty_page = adw::StatusPage::builder()
            .icon_name("chat-message-new-symbolic")
            .title(tr("No Conversations"))
            .description(tr("Start a chat with the + button."))
            .vexpand(true)
            .build();
        empty_page.add_css_class("compact");
        let empty = gtk::Stack::new();
        empty.add_named(&scroller, Some("list"));
        empty.add_named(&empty_page, Some("empty"));
        empty.set_visible_child_name("empty");

        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&filter_entry);
        root.append(&empty);
        ConversationList {
            root,
            filter_entry,
            store,
            sorter,
            selection,
            index: HashMap::new(),
            rows,
            selected: None,
            empty,
            pending: None,
            view,
            scroller,
        }
    }

    pub fn get(&self, key: &ConvKey) -> Option<ConvRow> {
        self.index
            .get(key)
            .and_then(|o| o.try_borrow::<ConvRow>().ok().map(|r| r.clone()))
    }

    /// Adds the row or changes it with `f`. A change that keeps the row's place (unread
    /// count, presence, a preview of the same time) redraws the row where it is shown, if
    /// it is; one that may move it re-sorts that row (or, inside `batch`, the list once).
    pub fn upsert(
        &mut self,
        key: &ConvKey,
        make: impl FnOnce() -> ConvRow,
        f: impl FnOnce(&mut ConvRow),
    ) {
        match self.index.get(key).cloned() {
            Some(obj) => {
                let mut handle = obj.clone();
                let moved = match handle.try_borrow_mut::<ConvRow>() {
                    Ok(mut row) => {
                        let place = (row.last_activity, row.name.clone());
                        f(&mut row);
                        place != (row.last_activity, row.name.clone())
                    }
                    Err(_) => false,
                };
                if !moved {
                    self.redraw(key, &obj);
                } else if let Some(batch) = &mut self.pending {
                    // The re-sort rebinds only rows whose place changes: this one may
                    // stay where it is with new content.
                    batch.resort = true;
                    self.redraw(key, &obj);
                } else if let Some(pos) = self.store.find(&obj) {
                    self.keeping_top(|store| store.splice(pos, 1, &[obj]));
                }
            }
            None => {
                let mut row = make();
                f(&mut row);
                let obj = glib::BoxedAnyObject::new(row);
                self.index.insert(key.clone(), obj.clone());
                match &mut self.pending {
                    Some(batch) => batch.added.push(obj),
                    None => self.keeping_top(|store| store.append(&obj)),
                }
            }
        }
        if self.pending.is_none() {
            self.empty.set_visible_child_name("list");
            self.reselect();
        }
    }

    /// Applies many changes (`upsert`s in `changes`) with one re-sort at the end instead
    /// of one per moved row: a sync changes dozens of rows at a time.
    pub fn batch(&mut self, changes: impl FnOnce(&mut Self)) {
        self.pending = Some(Batch::default());
        changes(self);
        let Some(batch) = self.pending.take() else {
            return;
        };
        let sorter = self.sorter.clone();
        self.keeping_top(|store| {
            if !batch.added.is_empty() {
                store.splice(store.n_items(), 0, batch.added.as_slice());
            }
            if batch.resort {
                sorter.changed(gtk::SorterChange::Different);
            }
        });
        if !self.index.is_empty() {
            self.empty.set_visible_child_name("list");
        }
        self.reselect();
    }

    /// Changes the model with `change`; a list that showed its top keeps showing it.
    /// Rows that sort above the first visible one would otherwise appear above the view:
    /// the list view keeps its first visible row in place.
    fn keeping_top(&self, change: impl FnOnce(&gio::ListStore)) {
        let adj = self.scroller.vadjustment();
        let at_top = adj.value() <= adj.lower() + 1.0;
        change(&self.store);
        if at_top && self.selection.n_items() > 0 {
            let _ = self
                .view
                .activate_action("list.scroll-to-item", Some(&0u32.to_variant()));
        }
    }

    /// Shows the row's new content in its widgets, when it is on screen.
    fn redraw(&self, key: &ConvKey, obj: &glib::BoxedAnyObject) {
        let map = self.rows.borrow();
        let Some(w) = map.shown.get(key).and_then(|child| map.widgets.get(child)) else {
            return;
        };
        if let Ok(row) = obj.try_borrow::<ConvRow>() {
            w.fill(&row);
        }
    }

    pub fn update(&mut self, key: &ConvKey, f: impl FnOnce(&mut ConvRow)) {
        if self.index.contains_key(key) {
            self.upsert(key, || unreachable_row(key), f);
        }
    }

    /// Removes every conversation of an account (the account was removed).
    pub fn remove_account(&mut self, account_id: i64) {
        let keys: Vec<_> = self
            .index
            .keys()
            .filter(|k| k.account_id == account_id)
            .cloned()
            .collect();
        for key in keys {
            if let Some(obj) = self.index.remove(&key) {
                if let Some(pos) = self.store.find(&obj) {
                    self.store.remove(pos);
                }
            }
        }
        if self.index.is_empty() {
            self.empty.set_visible_child_name("empty");
        }
    }

    /// Highlights `key` (or nothing) in the list.
    pub fn select(&mut self, key: Option<ConvKey>) {
        self.selected = key;
        self.reselect();
    }

    fn reselect(&self) {
        let model = &self.selection;
        let want = self.selected.as_ref();
        let pos = want.and_then(|key| {
            (0..model.n_items()).find(|&i| {
                model
                    .item(i)
                    .and_then(|o| row_of(&o).map(|r| &r.key == key))
                    .unwrap_or(false)
            })
        });
        match pos {
            Some(p) if model.selected() != p => model.set_selected(p),
            Some(_) => {}
            None => model.set_selected(gtk::INVALID_LIST_POSITION),
        }
    }
}

impl RowMap {
    /// `child` no longer shows `key` (it may show it again already: then it stays).
    fn unshow(&mut self, key: &ConvKey, child: &gtk::Widget) {
        if self.shown.get(key) == Some(child) {
            self.shown.remove(key);
        }
    }
}

/// Never built: `update` only changes rows that exist.
fn unreachable_row(key: &ConvKey) -> ConvRow {
    ConvRow {
        key: key.clone(),
        name: key.peer.clone(),
        preview: String::new(),
        last_activity: 0,
        unread: 0,
        dot: Dot::None,
    }
}
