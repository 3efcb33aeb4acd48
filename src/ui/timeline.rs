//! The chat view: a virtualised `gtk::ListView` over a `gio::ListStore` that holds only
//! the pages loaded so far (older ones load when the user scrolls to the top). Day
//! separators, grouping of consecutive messages, time and delivery state, clickable
//! links, selectable text.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use natter_core::store::{Direction, HistoryCursor, Message, MessageState};
use relm4::gtk;
use relm4::gtk::prelude::*;
use relm4::gtk::{gio, glib};

use super::format;
use crate::i18n::tr;

/// Messages up to this long fit a phone-width bubble on one line.
const SHORT_CHARS: usize = 32;

/// Two messages from one sender closer than this are one group.
const GROUP_GAP_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct MsgRow {
    pub message: Message,
    /// The day separator above this message, if it starts a day.
    pub day: Option<String>,
    /// First of a group of consecutive messages from one sender.
    pub group_start: bool,
}

struct RowWidgets {
    id: Rc<Cell<i64>>,
    /// Ours and not deleted: the menu offers Edit and Delete for Everyone.
    own: Rc<Cell<bool>>,
    day: gtk::Label,
    bubble: gtk::Box,
    quote: gtk::Label,
    body: gtk::Label,
    meta: gtk::Label,
    reactions: gtk::Label,
    retry: gtk::Button,
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

/// The menu of one message: reply, react, and for our own messages edit and delete.
fn message_menu(
    anchor: &gtk::Widget,
    x: f64,
    y: f64,
    id: i64,
    own: bool,
    on_action: Rc<dyn Fn(MessageAction)>,
) {
    let popover = gtk::Popover::builder().has_arrow(true).build();
    popover.set_parent(anchor);
    popover.set_pointing_to(Some(&gtk::gdk::Rectangle::new(x as i32, y as i32, 1, 1)));
    let list = gtk::Box::new(gtk::Orientation::Vertical, 0);
    let quick = gtk::Box::new(gtk::Orientation::Horizontal, 0);
    for emoji in ["👍", "❤️", "😂", "😮", "😢", "🎉"] {
        let b = gtk::Button::builder()
            .label(emoji)
            .css_classes(["flat", "natter-quick-reaction"])
            .tooltip_text(tr("React"))
            .build();
        let (p, cb, e) = (popover.clone(), on_action.clone(), emoji.to_owned());
        b.connect_clicked(move |_| {
            p.popdown();
            cb(MessageAction::React(id, e.clone()));
        });
        quick.append(&b);
    }
    let more = gtk::MenuButton::builder()
        .icon_name("face-smile-symbolic")
        .tooltip_text(tr("More Reactions"))
        .css_classes(["flat"])
        .build();
    let chooser = gtk::EmojiChooser::new();
    let (p, cb) = (popover.clone(), on_action.clone());
    chooser.connect_emoji_picked(move |_, emoji| {
        p.popdown();
        cb(MessageAction::React(id, emoji.to_owned()));
    });
    more.set_popover(Some(&chooser));
    quick.append(&more);
    list.append(&quick);
    let mut entries = vec![(tr("Reply"), MessageAction::Reply(id))];
    if own {
        entries.push((tr("Edit"), MessageAction::Edit(id)));
        entries.push((tr("Delete for Everyone"), MessageAction::Delete(id)));
    }
    for (label, action) in entries {
        let b = gtk::Button::builder()
            .label(label)
            .css_classes(["flat"])
            .build();
        if let Some(l) = b.child().and_then(|c| c.downcast::<gtk::Label>().ok()) {
            l.set_xalign(0.0);
        }
        let (p, cb) = (popover.clone(), on_action.clone());
        b.connect_clicked(move |_| {
            p.popdown();
            cb(action.clone());
        });
        list.append(&b);
    }
    popover.set_child(Some(&list));
    popover.connect_closed(|p| {
        let p = p.clone();
        glib::idle_add_local_once(move || p.unparent());
    });
    popover.popup();
}

/// "👍 2  🎉 1": each emoji and how many reacted with it.
fn reactions_text(m: &Message) -> String {
    m.reactions
        .iter()
        .map(|r| match r.senders.len() {
            1 => r.emoji.clone(),
            n => format!("{} {n}", r.emoji),
        })
        .collect::<Vec<_>>()
        .join("   ")
}

pub struct Timeline {
    pub root: gtk::ScrolledWindow,
    pub view: gtk::ListView,
    store: gio::ListStore,
    index: HashMap<i64, glib::BoxedAnyObject>,
    /// Follow new messages (the view is at the bottom).
    stick: Rc<Cell<bool>>,
    /// The first page has been laid out (reaching the top now means "load more").
    settled: Rc<Cell<bool>>,
    /// Every older message is loaded.
    pub complete: bool,
    pub loading: bool,
}

fn row_of(obj: &glib::Object) -> Option<std::cell::Ref<'_, MsgRow>> {
    obj.downcast_ref::<glib::BoxedAnyObject>()
        .and_then(|b| b.try_borrow::<MsgRow>().ok())
}

fn state_words(m: &Message) -> (String, String) {
    match (m.direction, m.state) {
        (Direction::Incoming, _) | (_, MessageState::Received) => (String::new(), String::new()),
        (_, MessageState::Pending) => (tr("Sending…"), tr("Waiting to be sent")),
        (_, MessageState::Sent) => ("✓".into(), tr("Sent")),
        (_, MessageState::Acked) => ("✓".into(), tr("On the server")),
        (_, MessageState::Delivered) => ("✓✓".into(), tr("Delivered")),
        (_, MessageState::Read) => (tr("✓✓ Read"), tr("Read")),
        (_, MessageState::Failed) => (tr("Not sent"), tr("The server refused this message")),
    }
}

impl Timeline {
    pub fn new(
        on_retry: impl Fn(i64) + 'static,
        on_need_older: impl Fn() + 'static,
        on_action: impl Fn(MessageAction) + 'static,
    ) -> Timeline {
        let on_action: Rc<dyn Fn(MessageAction)> = Rc::new(on_action);
        let store = gio::ListStore::new::<glib::BoxedAnyObject>();
        let selection = gtk::NoSelection::new(Some(store.clone()));
        let factory = gtk::SignalListItemFactory::new();
        let rows: Rc<RefCell<HashMap<gtk::Widget, RowWidgets>>> = Rc::default();
        let on_retry = Rc::new(on_retry);
        let r = rows.clone();
        factory.connect_setup(move |_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            item.set_activatable(false);
            item.set_selectable(false);
            let day = gtk::Label::builder()
                .css_classes(["natter-day", "dim-label", "caption-heading"])
                .halign(gtk::Align::Center)
                .margin_top(12)
                .margin_bottom(6)
                .build();
            let body = gtk::Label::builder()
                .wrap(true)
                .wrap_mode(gtk::pango::WrapMode::Word)
                // Measuring: GTK finds a wrapping label's minimum width by laying it out
                // at `width-chars` (0 when unset: one character per line, and Pango 1.50
                // shapes the rest of the text again at every break, so a long message
                // costs milliseconds). 16 characters is a sane narrowest bubble anyway.
                .width_chars(16)
                .natural_wrap_mode(gtk::NaturalWrapMode::None)
                .selectable(true)
                .xalign(0.0)
                .use_markup(true)
                .build();
            // The answered message of a reply, in a quote above the text.
            let quote = gtk::Label::builder()
                .css_classes(["natter-quote", "dim-label"])
                .xalign(0.0)
                .ellipsize(gtk::pango::EllipsizeMode::End)
                .max_width_chars(40)
                .lines(2)
                .wrap(true)
                .visible(false)
                .build();
            let reactions = gtk::Label::builder()
                .css_classes(["natter-reactions"])
                .xalign(0.0)
                .visible(false)
                .build();
            // Time and delivery state in one label (no horizontal box in the bubble).
            let meta = gtk::Label::builder()
                .css_classes(["dim-label", "caption"])
                .halign(gtk::Align::End)
                .build();
            let retry = gtk::Button::builder()
                .label(tr("Retry"))
                .css_classes(["flat", "caption"])
                .halign(gtk::Align::End)
                .visible(false)
                .build();
            let id = Rc::new(Cell::new(0i64));
            let (i, cb) = (id.clone(), on_retry.clone());
            retry.connect_clicked(move |_| cb(i.get()));
            let bubble = gtk::Box::builder()
                .orientation(gtk::Orientation::Vertical)
                .spacing(2)
                .css_classes(["natter-bubble"])
                .build();
            bubble.append(&quote);
            bubble.append(&body);
            bubble.append(&meta);
            bubble.append(&reactions);
            bubble.append(&retry);
            let own = Rc::new(Cell::new(false));
            // Right click, or a long press on a touch screen, opens the message's menu.
            let click = gtk::GestureClick::builder().button(3).build();
            let (i, o, cb, b) = (id.clone(), own.clone(), on_action.clone(), bubble.clone());
            click.connect_pressed(move |g, _, x, y| {
                g.set_state(gtk::EventSequenceState::Claimed);
                message_menu(b.upcast_ref(), x, y, i.get(), o.get(), cb.clone());
            });
            bubble.add_controller(click);
            let press = gtk::GestureLongPress::new();
            let (i, o, cb, b) = (id.clone(), own.clone(), on_action.clone(), bubble.clone());
            press.connect_pressed(move |_, x, y| {
                message_menu(b.upcast_ref(), x, y, i.get(), o.get(), cb.clone());
            });
            bubble.add_controller(press);
            // The bubble sits in the row's vertical box itself, aligned left or right: a
            // horizontal box around it would answer "how tall for this width" by a
            // binary search over the bubble's heights, each one a search of its own
            // over widths (GtkBoxLayout's distribute_remaining_size), laying the text out
            // at every step.
            bubble.set_margin_start(12);
            bubble.set_margin_end(12);
            let row = gtk::Box::new(gtk::Orientation::Vertical, 0);
            row.append(&day);
            row.append(&bubble);
            item.set_child(Some(&row));
            r.borrow_mut().insert(
                row.upcast(),
                RowWidgets {
                    id,
                    own,
                    day,
                    bubble,
                    quote,
                    body,
                    meta,
                    reactions,
                    retry,
                },
            );
        });
        let r = rows.clone();
        factory.connect_teardown(move |_, item| {
            if let Some(child) = item.downcast_ref::<gtk::ListItem>().and_then(|i| i.child()) {
                r.borrow_mut().remove(&child);
            }
        });
        factory.connect_bind(move |_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            let (Some(obj), Some(child)) = (item.item(), item.child()) else {
                return;
            };
            let Some(row) = row_of(&obj) else {
                return;
            };
            let widgets = rows.borrow();
            let Some(w) = widgets.get(&child) else {
                return;
            };
            let m = &row.message;
            w.id.set(m.id);
            w.day.set_visible(row.day.is_some());
            w.day.set_label(row.day.as_deref().unwrap_or_default());
            let outgoing = m.direction == Direction::Outgoing;
            w.bubble.set_halign(if outgoing {
                gtk::Align::End
            } else {
                gtk::Align::Start
            });
            w.bubble.set_margin_top(if row.group_start { 8 } else { 2 });
            w.bubble.set_css_classes(if outgoing {
                &["natter-bubble", "outgoing"]
            } else {
                &["natter-bubble", "incoming"]
            });
            // Short one-line messages need no wrapping, and an unwrapped label is laid
            // out once instead of at several widths.
            w.own.set(outgoing && !m.retracted);
            w.body
                .set_wrap(m.body.chars().count() > SHORT_CHARS || m.body.contains('\n'));
            if m.retracted {
                w.body.set_markup(&format!(
                    "<i>{}</i>",
                    glib::markup_escape_text(&tr("This message was deleted"))
                ));
            } else {
                w.body.set_markup(&format::body_markup(&m.body));
            }
            match &m.quote {
                Some(q) if m.reply_to.is_some() => {
                    let text = if q.retracted {
                        tr("This message was deleted")
                    } else {
                        q.body.clone()
                    };
                    w.quote.set_label(&text.replace("\n", " "));
                    w.quote.set_visible(true);
                }
                _ => w.quote.set_visible(false),
            }
            let reactions = reactions_text(m);
            w.reactions.set_visible(!reactions.is_empty());
            w.reactions.set_label(&reactions);
            let (words, tooltip) = state_words(m);
            let clock = if m.edited {
                format!("{} · {}", format::clock(m.timestamp), tr("edited"))
            } else {
                format::clock(m.timestamp)
            };
            if words.is_empty() {
                w.meta.set_label(&clock);
                w.meta.set_tooltip_text(None);
            } else {
                w.meta.set_label(&format!("{clock}  {words}"));
                w.meta.set_tooltip_text(Some(&tooltip));
            }
            w.retry
                .set_visible(outgoing && m.state == MessageState::Failed);
        });

        let view = gtk::ListView::builder()
            .model(&selection)
            .factory(&factory)
            .css_classes(["natter-timeline"])
            .build();
        let root = gtk::ScrolledWindow::builder()
            .child(&view)
            .vexpand(true)
            .hexpand(true)
            .hscrollbar_policy(gtk::PolicyType::Never)
            .build();
        let stick = Rc::new(Cell::new(true));
        let adj = root.vadjustment();
        let s = stick.clone();
        adj.connect_value_changed(move |a| {
            s.set(a.value() + a.page_size() >= a.upper() - 4.0);
        });
        // Following the newest message: the list is told which item to show
        // ("list.scroll-to-item" anchors on it) instead of moving the adjustment to an
        // estimated end, which makes GTK lay rows out again and again until it settles.
        let (s, v) = (stick.clone(), view.downgrade());
        store.connect_items_changed(move |store, _, _, added| {
            if added > 0 && s.get() {
                if let (Some(view), Some(last)) = (v.upgrade(), store.n_items().checked_sub(1)) {
                    let _ = view.activate_action("list.scroll-to-item", Some(&last.to_variant()));
                }
            }
        });
        // A fresh page starts at the top until it is scrolled to its end: that is not
        // the user reaching the top.
        let settled = Rc::new(Cell::new(false));
        let ready = settled.clone();
        root.connect_edge_reached(move |_, pos| {
            if pos == gtk::PositionType::Top && ready.get() {
                on_need_older();
            }
        });
        Timeline {
            root,
            view,
            store,
            index: HashMap::new(),
            stick,
            settled,
            complete: false,
            loading: false,
        }
    }

    pub fn len(&self) -> u32 {
        self.store.n_items()
    }

    fn message_at(&self, pos: u32) -> Option<Message> {
        self.store
            .item(pos)
            .and_then(|o| row_of(&o).map(|r| r.message.clone()))
    }

    /// The oldest loaded message, where the next older page starts.
    pub fn cursor(&self) -> Option<HistoryCursor> {
        self.message_at(0).map(|m| HistoryCursor {
            sort_key: m.sort_key,
            id: m.id,
        })
    }

    pub fn clear(&mut self) {
        self.settled.set(false);
        self.store.remove_all();
        self.index.clear();
        self.complete = false;
        self.loading = false;
        self.stick.set(true);
    }

    fn make_row(prev: Option<&Message>, m: Message, now: i64) -> MsgRow {
        let new_day =
            prev.is_none_or(|p| format::day_key(p.timestamp) != format::day_key(m.timestamp));
        let group_start = new_day
            || prev.is_none_or(|p| {
                p.direction != m.direction
                    || p.sender != m.sender
                    || m.timestamp - p.timestamp > GROUP_GAP_MS
            });
        MsgRow {
            day: new_day.then(|| format::day_label(m.timestamp, now)),
            group_start,
            message: m,
        }
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
                let fresh = Self::make_row(prev.as_ref(), row.message.clone(), now);
                let changed = fresh.day != row.day || fresh.group_start != row.group_start;
                *row = fresh;
                changed
            }
            None => false,
        };
        if changed {
            self.store.items_changed(pos, 1, 1);
        }
    }

    /// Inserts a page of older messages (oldest first) above what is loaded.
    pub fn prepend(&mut self, page: Vec<Message>) {
        let now = glib::real_time() / 1000;
        let mut prev: Option<Message> = None;
        let mut objs = Vec::with_capacity(page.len());
        for m in page {
            if self.index.contains_key(&m.id) {
                continue;
            }
            let row = Self::make_row(prev.as_ref(), m.clone(), now);
            let obj = glib::BoxedAnyObject::new(row);
            self.index.insert(m.id, obj.clone());
            objs.push(obj);
            prev = Some(m);
        }
        let n = objs.len() as u32;
        self.store.splice(0, 0, &objs);
        self.refresh_row(n, now);
    }

    /// Adds a message where it belongs by (sort_key, id): at the end for a live one.
    pub fn insert(&mut self, m: Message) {
        if let Some(obj) = self.index.get(&m.id) {
            // Already shown: take the newer copy (state changes).
            let mut handle = obj.clone();
            if let Ok(mut row) = handle.try_borrow_mut::<MsgRow>() {
                row.message = m;
            }
            if let Some(pos) = self.store.find(obj) {
                self.store.items_changed(pos, 1, 1);
            }
            return;
        }
        let n = self.store.n_items();
        let key = (m.sort_key, m.id);
        let mut pos = n;
        while pos > 0 {
            match self.message_at(pos - 1) {
                Some(p) if (p.sort_key, p.id) > key => pos -= 1,
                _ => break,
            }
        }
        if pos == 0 && n > 0 && !self.complete {
            // Older than everything loaded: it will come with its page.
            return;
        }
        let now = glib::real_time() / 1000;
        let prev = pos.checked_sub(1).and_then(|p| self.message_at(p));
        let id = m.id;
        let obj = glib::BoxedAnyObject::new(Self::make_row(prev.as_ref(), m, now));
        self.index.insert(id, obj.clone());
        self.store.insert(pos, &obj);
        self.refresh_row(pos + 1, now);
    }

    /// A loaded message by id.
    pub fn message(&self, id: i64) -> Option<Message> {
        let obj = self.index.get(&id)?;
        row_of(obj.upcast_ref()).map(|r| r.message.clone())
    }

    /// Our newest loaded message that can still be edited (Up in an empty composer).
    pub fn last_own(&self) -> Option<i64> {
        (0..self.store.n_items())
            .rev()
            .filter_map(|i| self.message_at(i))
            .find(|m| m.direction == Direction::Outgoing && !m.retracted)
            .map(|m| m.id)
    }

    pub fn set_state(&mut self, id: i64, state: MessageState) {
        if let Some(obj) = self.index.get(&id) {
            let mut handle = obj.clone();
            if let Ok(mut row) = handle.try_borrow_mut::<MsgRow>() {
                row.message.state = state;
            }
            if let Some(pos) = self.store.find(obj) {
                self.store.items_changed(pos, 1, 1);
            }
        }
    }

    /// Follow new messages again (the user sent one).
    pub fn scroll_to_bottom(&self) {
        self.stick.set(true);
        if let Some(last) = self.store.n_items().checked_sub(1) {
            let _ = self
                .view
                .activate_action("list.scroll-to-item", Some(&last.to_variant()));
        }
    }

    /// The page on screen has been laid out.
    pub fn settled(&self) {
        self.settled.set(true);
    }

    /// Whether the loaded messages fill less than the view (load more then).
    pub fn underfilled(&self) -> bool {
        let adj = self.root.vadjustment();
        adj.upper() <= adj.page_size() + 1.0
    }
}
