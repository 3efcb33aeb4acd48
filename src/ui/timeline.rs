//! The chat view: a virtualised `gtk::ListView` over a `gio::ListStore` of the messages
//! loaded so far (older ones load as the user scrolls up). Day separators, grouping of
//! consecutive messages, time and delivery state, clickable links, selectable text.
//!
//! GTK 4.8's list view builds, binds and lays out a row for every item within 200 of the
//! one it shows, in the frame the item arrives. So fetched messages go into the list a
//! few a frame: the first frame of a conversation gets only the rows that fill the view,
//! the rest of its page follows over the next frames, and no frame, while scrolling, has
//! to build a whole page of rows.

mod row;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use natter_core::store::{Direction, HistoryCursor, Message, MessageState};
use relm4::gtk;
use relm4::gtk::prelude::*;
use relm4::gtk::{gio, glib};

use super::format;
use row::MessageRow;

/// Two messages from one sender closer than this are one group.
const GROUP_GAP_MS: i64 = 5 * 60 * 1000;

/// About the shortest a row gets (one line, within a group): the first frame of a
/// conversation gets as many rows as fill the view at this height.
const MIN_ROW_HEIGHT: i32 = 36;

/// Rows that go into the list in each later frame. Each is built, bound and laid out in
/// that frame (about a millisecond apiece on a slow machine), and each insertion also
/// costs GTK 4.8's list view some milliseconds for the rows it has built already (up to
/// 200): a few rows a frame beat both one at a time and a page at once (a ~60 ms frame).
const ROWS_PER_FRAME: usize = 6;

#[derive(Debug, Clone)]
pub struct MsgRow {
    pub message: Message,
    /// The day separator above this message, if it starts a day.
    pub day: Option<String>,
    /// First of a group of consecutive messages from one sender.
    pub group_start: bool,
    /// The message a search result jumped to (outlined for a few seconds).
    pub highlight: bool,
    /// New whenever the row changes. GTK 4.8 binds every row below an insertion again
    /// (to tell it its new position): one already showing this revision skips it.
    revision: u64,
}

fn next_revision() -> u64 {
    thread_local! {
        static LAST: Cell<u64> = const { Cell::new(0) };
    }
    LAST.with(|last| {
        last.set(last.get() + 1);
        last.get()
    })
}

/// What the user chose in a message's menu (right click or long press on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageAction {
    Reply(i64),
    /// React with this emoji (again: take it back).
    React(i64, String),
    Edit(i64),
    Delete(i64),
}

pub struct Timeline {
    pub root: gtk::ScrolledWindow,
    pub view: gtk::ListView,
    list: Rc<List>,
    /// Every older message is loaded.
    pub complete: bool,
    pub loading: bool,
}

/// The list's items and the messages waiting to go in, shared with the frame callback
/// that feeds them in and with the scroll handlers.
struct List {
    store: gio::ListStore,
    index: RefCell<HashMap<i64, glib::BoxedAnyObject>>,
    /// Messages fetched but not in the list yet, oldest first; they are all older than
    /// the list's first item.
    pending: RefCell<VecDeque<Message>>,
    /// Follow new messages (the view is at the bottom).
    stick: Cell<bool>,
    /// The scroll position last seen, to tell the user's moves from content growth.
    last_value: Cell<f64>,
    /// The conversation's first frame has been painted: reaching the top now means the
    /// user wants older messages.
    settled: Cell<bool>,
    /// Asked for older messages; not again until they come.
    asked: Cell<bool>,
    /// The newest message is loaded: false after a jump to an older message, until
    /// scrolling down has loaded everything after it.
    newer_complete: Cell<bool>,
    /// Asked for newer messages; not again until they come.
    asked_newer: Cell<bool>,
    /// A frame callback is feeding pending messages in.
    feeding: Cell<bool>,
    /// Changes with each conversation shown, so the last one's feeding stops.
    generation: Cell<u64>,
    on_need_older: Box<dyn Fn()>,
    on_need_newer: Box<dyn Fn()>,
}

fn row_of(obj: &glib::Object) -> Option<std::cell::Ref<'_, MsgRow>> {
    obj.downcast_ref::<glib::BoxedAnyObject>()
        .and_then(|b| b.try_borrow::<MsgRow>().ok())
}

fn make_row(prev: Option<&Message>, m: Message, now: i64) -> MsgRow {
    let new_day = prev.is_none_or(|p| format::day_key(p.timestamp) != format::day_key(m.timestamp));
    let group_start = new_day
        || prev.is_none_or(|p| {
            p.direction != m.direction
                || p.sender != m.sender
                || m.timestamp - p.timestamp > GROUP_GAP_MS
        });
    MsgRow {
        day: new_day.then(|| format::day_label(m.timestamp, now)),
        group_start,
        highlight: false,
        message: m,
        revision: next_revision(),
    }
}

impl List {
    fn message_at(&self, pos: u32) -> Option<Message> {
        self.store
            .item(pos)
            .and_then(|o| row_of(&o).map(|r| r.message.clone()))
    }

    /// Recomputes the separator and grouping of the row at `pos` (its neighbour above
    /// changed) and rebinds it if they changed.
    fn refresh_row(&self, pos: u32, now: i64) {
        let Some(obj) = self.store.item(pos) else {
            return;
        };
        let prev = pos.checked_sub(1).and_then(|p| self.message_at(p));
        let Ok(mut boxed) = obj.downcast::<glib::BoxedAnyObject>() else {
            return;
        };
        let changed = match boxed.try_borrow_mut::<MsgRow>().ok() {
            Some(mut row) => {
                let fresh = make_row(prev.as_ref(), row.message.clone(), now);
                let changed = fresh.day != row.day || fresh.group_start != row.group_start;
                if changed {
                    *row = fresh;
                }
                changed
            }
            None => false,
        };
        if changed {
            self.store.items_changed(pos, 1, 1);
        }
    }

    /// Moves up to `n` of the newest pending messages into the list, above what is
    /// there; returns how many went in.
    fn put_pending(&self, n: usize) -> usize {
        let (chunk, mut prev) = {
            let mut pending = self.pending.borrow_mut();
            let from = pending.len().saturating_sub(n);
            let chunk: Vec<Message> = pending.drain(from..).collect();
            // The message just above the chunk decides its first row's separator.
            (chunk, pending.back().cloned())
        };
        let now = glib::real_time() / 1000;
        let mut objs = Vec::with_capacity(chunk.len());
        {
            let mut index = self.index.borrow_mut();
            for m in chunk {
                if index.contains_key(&m.id) {
                    continue;
                }
                let obj = glib::BoxedAnyObject::new(make_row(prev.as_ref(), m.clone(), now));
                index.insert(m.id, obj.clone());
                objs.push(obj);
                prev = Some(m);
            }
        }
        let added = objs.len() as u32;
        self.store.splice(0, 0, &objs);
        self.refresh_row(added, now);
        added as usize
    }

    fn need_newer(&self) {
        if !self.newer_complete.get() && !self.asked_newer.replace(true) {
            (self.on_need_newer)();
        }
    }

    fn need_older(&self) {
        if self.settled.get() && self.pending.borrow().is_empty() && !self.asked.replace(true) {
            (self.on_need_older)();
        }
    }
}

/// Whether the loaded messages fill less than the view.
fn underfilled(adj: &gtk::Adjustment) -> bool {
    adj.upper() <= adj.page_size() + 1.0
}

/// Feeds pending messages into the list, a few each frame, until none are left; then
/// asks for older ones if the view is not full. A fresh conversation's first frame is
/// left to the rows already in the list.
fn feed(list: &Rc<List>, view: &gtk::ListView) {
    if list.feeding.replace(true) {
        return;
    }
    let generation = list.generation.get();
    // The first tick comes in the frame that lays out what is in the list now.
    let wait = Cell::new(!list.settled.get());
    let l = list.clone();
    view.add_tick_callback(move |view, _| {
        if l.generation.get() != generation {
            return glib::ControlFlow::Break;
        }
        if wait.replace(false) {
            return glib::ControlFlow::Continue;
        }
        l.settled.set(true);
        if l.put_pending(ROWS_PER_FRAME) > 0 {
            return glib::ControlFlow::Continue;
        }
        l.feeding.set(false);
        if view.vadjustment().is_some_and(|adj| underfilled(&adj)) {
            l.need_older();
        }
        glib::ControlFlow::Break
    });
}

impl Timeline {
    pub fn new(
        on_retry: impl Fn(i64) + 'static,
        on_need_older: impl Fn() + 'static,
        on_need_newer: impl Fn() + 'static,
        on_action: impl Fn(MessageAction) + 'static,
    ) -> Timeline {
        let on_action: Rc<dyn Fn(MessageAction)> = Rc::new(on_action);
        let on_retry: Rc<dyn Fn(i64)> = Rc::new(on_retry);
        let store = gio::ListStore::new::<glib::BoxedAnyObject>();
        let selection = gtk::NoSelection::new(Some(store.clone()));
        let factory = gtk::SignalListItemFactory::new();
        factory.connect_setup(move |_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            item.set_activatable(false);
            item.set_selectable(false);
            item.set_child(Some(&MessageRow::new(on_retry.clone(), on_action.clone())));
        });
        factory.connect_bind(move |_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            let (Some(obj), Some(row)) = (item.item(), item.child().and_downcast::<MessageRow>())
            else {
                return;
            };
            if let Some(msg) = row_of(&obj) {
                row.bind(&msg);
            };
        });

        let view = gtk::ListView::builder()
            .model(&selection)
            .factory(&factory)
            .css_classes(["natter-timeline"])
            .build();
        // No horizontal scrollbar, yet not `Never`: that makes the rows' minimum width
        // the view's, so a row with a longer unbreakable word widens the chat pane,
        // narrows the sidebar and has every row laid out again at the new width.
        let root = gtk::ScrolledWindow::builder()
            .child(&view)
            .vexpand(true)
            .hexpand(true)
            .hscrollbar_policy(gtk::PolicyType::External)
            .build();
        let list = Rc::new(List {
            store: store.clone(),
            index: RefCell::default(),
            pending: RefCell::default(),
            stick: Cell::new(true),
            last_value: Cell::new(0.0),
            settled: Cell::new(false),
            asked: Cell::new(false),
            newer_complete: Cell::new(true),
            asked_newer: Cell::new(false),
            feeding: Cell::new(false),
            generation: Cell::new(0),
            on_need_older: Box::new(on_need_older),
            on_need_newer: Box::new(on_need_newer),
        });
        let l = list.clone();
        root.vadjustment().connect_value_changed(move |a| {
            let bottom = a.value() + a.page_size() >= a.upper() - 4.0;
            // Content growing under an unmoved view (a new row at the end) is not the
            // user leaving the end: only a move (or reaching the end) decides.
            let moved = (a.value() - l.last_value.replace(a.value())).abs() > 0.5;
            if moved || bottom {
                l.stick.set(bottom && l.newer_complete.get());
            }
            // Within a screen of the top: fetch the next page before the user is there.
            if a.value() < a.page_size() {
                l.need_older();
            }
            // Likewise at the bottom of a conversation shown from an older message.
            if a.value() + 2.0 * a.page_size() > a.upper() {
                l.need_newer();
            }
        });
        // Following the newest message: the list is told which item to show
        // ("list.scroll-to-item" anchors on it) instead of moving the adjustment to an
        // estimated end, which makes GTK lay rows out again and again until it settles.
        let (l, v) = (list.clone(), view.downgrade());
        store.connect_items_changed(move |store, _, _, added| {
            if added > 0 && l.stick.get() {
                if let (Some(view), Some(last)) = (v.upgrade(), store.n_items().checked_sub(1)) {
                    let _ = view.activate_action("list.scroll-to-item", Some(&last.to_variant()));
                    // "scroll-to-item" places the row by its estimated height; once it
                    // is laid out, the end is where the view must be (once, not chased).
                    let l = l.clone();
                    // Tick callbacks run before the frame's layout: the one after next
                    // sees this row's real height.
                    let first = Cell::new(true);
                    view.add_tick_callback(move |view, _| {
                        if first.replace(false) {
                            return glib::ControlFlow::Continue;
                        }
                        if l.stick.get() {
                            if let Some(adj) = view.vadjustment() {
                                adj.set_value(adj.upper() - adj.page_size());
                            }
                        }
                        glib::ControlFlow::Break
                    });
                }
            }
        });
        let l = list.clone();
        root.connect_edge_reached(move |_, pos| {
            if pos == gtk::PositionType::Top {
                l.need_older();
            }
        });
        Timeline {
            root,
            view,
            list,
            complete: false,
            loading: false,
        }
    }

    pub fn len(&self) -> u32 {
        self.list.store.n_items()
    }

    /// The oldest fetched message, where the next older page starts.
    pub fn cursor(&self) -> Option<HistoryCursor> {
        let oldest = self.list.pending.borrow().front().cloned();
        oldest
            .or_else(|| self.list.message_at(0))
            .map(|m| HistoryCursor {
                sort_key: m.sort_key,
                id: m.id,
            })
    }

    pub fn clear(&mut self) {
        let list = &self.list;
        list.generation.set(list.generation.get() + 1);
        list.feeding.set(false);
        list.settled.set(false);
        list.asked.set(false);
        list.newer_complete.set(true);
        list.asked_newer.set(false);
        list.pending.borrow_mut().clear();
        list.store.remove_all();
        list.index.borrow_mut().clear();
        list.stick.set(true);
        self.complete = false;
        self.loading = false;
    }

    /// How many rows fill the view (the window's height when the view is not shown yet).
    pub fn rows_to_fill(&self) -> u32 {
        let height = match self.root.height() {
            h if h > 0 => h,
            _ => self.root.root().map_or(0, |r| r.height()),
        };
        (height.max(400) / MIN_ROW_HEIGHT + 1) as u32
    }

    /// Shows a conversation's newest page (oldest first) in place of what was shown.
    pub fn set_page(&mut self, page: Vec<Message>) {
        self.clear();
        *self.list.pending.borrow_mut() = page.into();
        self.list.put_pending(self.rows_to_fill() as usize);
        feed(&self.list, &self.view);
    }

    /// Shows `page` (oldest first, each side of `target` at most `limit` long) in place of
    /// what was shown, scrolled to `target`, outlined for a few seconds. Scrolling down
    /// loads the newer messages.
    pub fn show_around(&mut self, page: Vec<Message>, target: i64, limit: u32) {
        self.clear();
        let Some(at) = page.iter().position(|m| m.id == target) else {
            return;
        };
        let limit = limit as usize;
        self.complete = at < limit;
        let list = self.list.clone();
        list.newer_complete.set(page.len() - at - 1 < limit);
        list.stick.set(false);
        let now = glib::real_time() / 1000;
        let mut prev: Option<Message> = None;
        let mut objs = Vec::with_capacity(page.len());
        {
            let mut index = list.index.borrow_mut();
            for m in page {
                let mut row = make_row(prev.as_ref(), m.clone(), now);
                row.highlight = m.id == target;
                let obj = glib::BoxedAnyObject::new(row);
                index.insert(m.id, obj.clone());
                objs.push(obj);
                prev = Some(m);
            }
        }
        list.store.splice(0, 0, &objs);
        let _ = self
            .view
            .activate_action("list.scroll-to-item", Some(&(at as u32).to_variant()));
        feed(&list, &self.view);
        let generation = list.generation.get();
        let l = Rc::downgrade(&list);
        glib::timeout_add_local_once(std::time::Duration::from_secs(4), move || {
            let Some(list) = l.upgrade() else {
                return;
            };
            let shown = list.index.borrow().get(&target).cloned();
            if list.generation.get() != generation {
                return;
            }
            if let Some(obj) = shown {
                let mut handle = obj.clone();
                if let Ok(mut row) = handle.try_borrow_mut::<MsgRow>() {
                    row.highlight = false;
                    row.revision = next_revision();
                }
                if let Some(pos) = list.store.find(&obj) {
                    list.store.items_changed(pos, 1, 1);
                }
            }
        });
    }

    /// Whether the newest message is loaded (not after a jump to an older one).
    pub fn at_newest(&self) -> bool {
        self.list.newer_complete.get()
    }

    /// The newest loaded message, where the next newer page starts.
    pub fn newest_cursor(&self) -> Option<HistoryCursor> {
        let n = self.list.store.n_items();
        n.checked_sub(1)
            .and_then(|last| self.list.message_at(last))
            .map(|m| HistoryCursor::from(&m))
    }

    /// Adds a page of newer messages (oldest first) below what is loaded; fewer than
    /// `limit` means the newest is there.
    pub fn add_newer(&mut self, page: Vec<Message>, limit: u32) {
        let list = self.list.clone();
        list.asked_newer.set(false);
        if page.len() < limit as usize {
            list.newer_complete.set(true);
        }
        let now = glib::real_time() / 1000;
        let n = list.store.n_items();
        let mut prev = n.checked_sub(1).and_then(|p| list.message_at(p));
        let mut objs = Vec::with_capacity(page.len());
        {
            let mut index = list.index.borrow_mut();
            for m in page {
                if index.contains_key(&m.id) {
                    continue;
                }
                let obj = glib::BoxedAnyObject::new(make_row(prev.as_ref(), m.clone(), now));
                index.insert(m.id, obj.clone());
                objs.push(obj);
                prev = Some(m);
            }
        }
        list.store.splice(n, 0, &objs);
    }

    /// Adds a page of older messages (oldest first) above what is loaded.
    pub fn add_older(&mut self, page: Vec<Message>) {
        {
            let mut pending = self.list.pending.borrow_mut();
            for m in page.into_iter().rev() {
                pending.push_front(m);
            }
        }
        self.list.asked.set(false);
        feed(&self.list, &self.view);
    }

    /// Adds a message where it belongs by (sort_key, id): at the end for a live one.
    pub fn insert(&mut self, m: Message) {
        let list = &self.list;
        let shown = list.index.borrow().get(&m.id).cloned();
        if let Some(obj) = shown {
            // Already shown: take the newer copy (state changes).
            let mut handle = obj.clone();
            if let Ok(mut row) = handle.try_borrow_mut::<MsgRow>() {
                row.message = m;
                row.revision = next_revision();
            }
            if let Some(pos) = list.store.find(&obj) {
                list.store.items_changed(pos, 1, 1);
            }
            return;
        }
        let n = list.store.n_items();
        let key = (m.sort_key, m.id);
        if !list.newer_complete.get()
            && list
                .message_at(n.saturating_sub(1))
                .is_some_and(|last| (last.sort_key, last.id) < key)
        {
            // Newer than what is shown after a jump: it comes with the newer pages.
            return;
        }
        let mut pos = n;
        while pos > 0 {
            match list.message_at(pos - 1) {
                Some(p) if (p.sort_key, p.id) > key => pos -= 1,
                _ => break,
            }
        }
        if pos == 0 && n > 0 {
            let mut pending = list.pending.borrow_mut();
            if let Some(at) = pending.iter().position(|p| (p.sort_key, p.id) >= key) {
                // Among the fetched ones still to go in (older than all of them: it will
                // come with its page).
                if pending[at].id == m.id {
                    pending[at] = m;
                } else if at > 0 || self.complete {
                    pending.insert(at, m);
                }
                return;
            }
            if !pending.is_empty() {
                pending.push_back(m);
                return;
            }
            if !self.complete {
                // Older than everything loaded: it will come with its page.
                return;
            }
        }
        let now = glib::real_time() / 1000;
        let prev = pos.checked_sub(1).and_then(|p| list.message_at(p));
        let id = m.id;
        let obj = glib::BoxedAnyObject::new(make_row(prev.as_ref(), m, now));
        list.index.borrow_mut().insert(id, obj.clone());
        list.store.insert(pos, &obj);
        list.refresh_row(pos + 1, now);
    }

    /// A loaded message by id.
    pub fn message(&self, id: i64) -> Option<Message> {
        let obj = self.list.index.borrow().get(&id).cloned()?;
        row_of(obj.upcast_ref()).map(|r| r.message.clone())
    }

    /// Our newest loaded message that can still be edited (Up in an empty composer).
    pub fn last_own(&self) -> Option<i64> {
        (0..self.len())
            .rev()
            .filter_map(|i| self.list.message_at(i))
            .find(|m| m.direction == Direction::Outgoing && !m.retracted)
            .map(|m| m.id)
    }

    pub fn set_state(&mut self, id: i64, state: MessageState) {
        let list = &self.list;
        let shown = list.index.borrow().get(&id).cloned();
        let Some(obj) = shown else {
            if let Some(m) = list.pending.borrow_mut().iter_mut().find(|m| m.id == id) {
                m.state = state;
            }
            return;
        };
        let mut handle = obj.clone();
        if let Ok(mut row) = handle.try_borrow_mut::<MsgRow>() {
            row.message.state = state;
            row.revision = next_revision();
        }
        if let Some(pos) = list.store.find(&obj) {
            list.store.items_changed(pos, 1, 1);
        }
    }

    /// Follow new messages again (the user sent one).
    pub fn scroll_to_bottom(&self) {
        self.list.stick.set(true);
        if let Some(last) = self.len().checked_sub(1) {
            let _ = self
                .view
                .activate_action("list.scroll-to-item", Some(&last.to_variant()));
        }
    }
}
