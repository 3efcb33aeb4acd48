//! One message of the chat view: the day separator when it starts a day, then the bubble
//! (the quote it answers, its text, time and delivery state, reactions, retry) at its
//! natural width, on the left when incoming and on the right when outgoing.
//!
//! Laying out is what opening a conversation costs, and wrapped text is most of it
//! (Pango 1.50 lays a paragraph out anew at every width it is asked about). So the row
//! places the bubble itself: it measures the bubble once for the row's width and gives it
//! exactly that width. An aligned bubble (`halign: start`) would be measured for the full
//! width and then again, at its natural width, when allocated.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use natter_core::store::{Direction, Message, MessageState};
use relm4::gtk;
use relm4::gtk::glib;
use relm4::gtk::prelude::*;
use relm4::gtk::subclass::prelude::*;

use super::{MessageAction, MsgRow};
use crate::i18n::tr;
use crate::ui::{format, styling};

/// Messages up to this long fit a phone-width bubble on one line.
const SHORT_CHARS: usize = 32;

/// The widgets of a row that binding fills in. The quote, reactions and retry button are
/// rare, so they are made the first time a message bound to the row needs them.
struct Parts {
    id: Rc<Cell<i64>>,
    /// Ours and not deleted: the menu offers Edit and Delete for Everyone.
    own: Rc<Cell<bool>>,
    bubble: gtk::Box,
    body: gtk::Label,
    meta: gtk::Label,
    /// The delivery state in words, the meta label's tooltip.
    state_tip: Rc<RefCell<String>>,
    /// The direction the bubble is styled for.
    styled: Cell<Option<Direction>>,
    quote: OnceCell<gtk::Label>,
    reactions: OnceCell<gtk::Label>,
    retry: OnceCell<gtk::Button>,
    on_retry: Rc<dyn Fn(i64)>,
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct MessageRow {
        pub(super) parts: OnceCell<Parts>,
        pub(super) day: RefCell<Option<gtk::Label>>,
        pub(super) outgoing: Cell<bool>,
        /// The revision of the message row shown.
        pub(super) shown: Cell<u64>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for MessageRow {
        const NAME: &'static str = "NatterMessageRow";
        type Type = super::MessageRow;
        type ParentType = gtk::Widget;

        fn class_init(klass: &mut Self::Class) {
            klass.set_accessible_role(gtk::AccessibleRole::Generic);
        }
    }

    impl ObjectImpl for MessageRow {
        fn dispose(&self) {
            while let Some(child) = self.obj().first_child() {
                child.unparent();
            }
        }
    }

    impl WidgetImpl for MessageRow {
        fn request_mode(&self) -> gtk::SizeRequestMode {
            gtk::SizeRequestMode::HeightForWidth
        }

        fn measure(&self, orientation: gtk::Orientation, for_size: i32) -> (i32, i32, i32, i32) {
            let day = self.day.borrow().clone().filter(|d| d.is_visible());
            let (day_min, day_nat) = day.map_or((0, 0), |d| {
                let (min, nat, _, _) = d.measure(orientation, for_size);
                (min, nat)
            });
            let Some(parts) = self.parts.get() else {
                return (day_min, day_nat, -1, -1);
            };
            if orientation == gtk::Orientation::Horizontal {
                let (min, nat, _, _) = parts.bubble.measure(orientation, -1);
                return (min.max(day_min), nat.max(day_nat), -1, -1);
            }
            let width = bubble_width(&parts.bubble, for_size);
            let (min, nat, _, _) = parts.bubble.measure(orientation, width);
            (min + day_min, nat + day_nat, -1, -1)
        }

        fn size_allocate(&self, width: i32, height: i32, _baseline: i32) {
            let mut y = 0;
            if let Some(day) = self.day.borrow().as_ref().filter(|d| d.is_visible()) {
                let (_, h, _, _) = day.measure(gtk::Orientation::Vertical, width);
                day.size_allocate(&gtk::Allocation::new(0, 0, width, h), -1);
                y = h;
            }
            if let Some(parts) = self.parts.get() {
                let w = bubble_width(&parts.bubble, width);
                let x = if self.outgoing.get() { width - w } else { 0 };
                let bubble = gtk::Allocation::new(x, y, w, (height - y).max(0));
                parts.bubble.size_allocate(&bubble, -1);
            }
        }
    }
}

glib::wrapper! {
    pub struct MessageRow(ObjectSubclass<imp::MessageRow>)
        @extends gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

/// The bubble's width in a row `width` wide: its natural width, but no wider than the row
/// and no narrower than its minimum.
fn bubble_width(bubble: &gtk::Box, width: i32) -> i32 {
    let (min, nat, _, _) = bubble.measure(gtk::Orientation::Horizontal, -1);
    if width < 0 {
        nat
    } else {
        nat.min(width).max(min)
    }
}

impl MessageRow {
    pub fn new(on_retry: Rc<dyn Fn(i64)>, on_action: Rc<dyn Fn(MessageAction)>) -> MessageRow {
        let row: MessageRow = glib::Object::new();
        let body = gtk::Label::builder()
            .wrap(true)
            .wrap_mode(gtk::pango::WrapMode::Word)
            // Measuring: GTK finds a wrapping label's minimum width by laying it out at
            // `width-chars` (0 when unset: one character per line, and Pango 1.50 shapes
            // the rest of the text again at every break, so a long message costs
            // milliseconds). 16 characters is a sane narrowest bubble anyway.
            .width_chars(16)
            .natural_wrap_mode(gtk::NaturalWrapMode::None)
            .selectable(true)
            .xalign(0.0)
            .use_markup(true)
            .build();
        // Time and delivery state in one label (no horizontal box in the bubble).
        let meta = gtk::Label::builder()
            .css_classes(["dim-label", "caption"])
            .halign(gtk::Align::End)
            .has_tooltip(true)
            .build();
        // The state's words come from here, not from set_tooltip_text in bind: setting a
        // shown widget's tooltip asks the X server where the pointer is, a round trip
        // (milliseconds when the server is busy drawing) for every row bound.
        let state_tip: Rc<RefCell<String>> = Rc::default();
        let tip = state_tip.clone();
        meta.connect_query_tooltip(move |_, _, _, _, tooltip| {
            let tip = tip.borrow();
            if tip.is_empty() {
                return false;
            }
            tooltip.set_text(Some(&tip));
            true
        });
        let bubble = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(2)
            .margin_start(12)
            .margin_end(12)
            .css_classes(["natter-bubble"])
            .build();
        bubble.append(&body);
        bubble.append(&meta);
        bubble.set_parent(&row);
        let id = Rc::new(Cell::new(0i64));
        let own = Rc::new(Cell::new(false));
        // Right click, or a long press on a touch screen, opens the message's menu.
        // Captured before the selectable text's own menu (Cut, Paste…, nothing a
        // message needs): ours has Copy.
        let click = gtk::GestureClick::builder()
            .button(3)
            .propagation_phase(gtk::PropagationPhase::Capture)
            .build();
        let (i, o, cb, b, t) = (
            id.clone(),
            own.clone(),
            on_action.clone(),
            bubble.clone(),
            body.clone(),
        );
        click.connect_pressed(move |g, _, x, y| {
            g.set_state(gtk::EventSequenceState::Claimed);
            message_menu(b.upcast_ref(), &t, x, y, i.get(), o.get(), cb.clone());
        });
        bubble.add_controller(click);
        let press = gtk::GestureLongPress::new();
        let (i, o, cb, b, t) = (
            id.clone(),
            own.clone(),
            on_action,
            bubble.clone(),
            body.clone(),
        );
        press.connect_pressed(move |_, x, y| {
            message_menu(b.upcast_ref(), &t, x, y, i.get(), o.get(), cb.clone());
        });
        bubble.add_controller(press);
        let parts = Parts {
            id,
            own,
            bubble,
            body,
            meta,
            state_tip,
            styled: Cell::new(None),
            quote: OnceCell::new(),
            reactions: OnceCell::new(),
            retry: OnceCell::new(),
            on_retry,
        };
        if row.imp().parts.set(parts).is_err() {
            unreachable!("a new row has no parts yet");
        }
        row
    }

    /// Shows `row`'s message.
    pub fn bind(&self, row: &MsgRow) {
        let Some(p) = self.imp().parts.get() else {
            return;
        };
        if self.imp().shown.replace(row.revision) == row.revision {
            return;
        }
        let m = &row.message;
        p.id.set(m.id);
        self.set_day(row.day.as_deref());
        let outgoing = m.direction == Direction::Outgoing;
        if self.imp().outgoing.replace(outgoing) != outgoing {
            self.queue_allocate();
        }
        // A change of style classes restyles the bubble and everything in it.
        if p.styled.replace(Some(m.direction)) != Some(m.direction) {
            p.bubble.set_css_classes(if outgoing {
                &["natter-bubble", "outgoing"]
            } else {
                &["natter-bubble", "incoming"]
            });
        }
        p.bubble.set_margin_top(if row.group_start { 8 } else { 2 });
        // The message a search result jumped to.
        if row.highlight {
            p.bubble.add_css_class("natter-highlight");
        } else {
            p.bubble.remove_css_class("natter-highlight");
        }
        p.own.set(outgoing && !m.retracted);
        let me = format::me_action(&m.body).filter(|_| !m.retracted);
        let sender = me.map(|_| format::sender_name(m, &format::chat_peer_name()));
        // Short one-line messages need no wrapping, and an unwrapped label is laid out
        // once instead of at several widths.
        let chars = m.body.chars().count() + sender.as_ref().map_or(0, |s| s.chars().count());
        p.body
            .set_wrap(chars > SHORT_CHARS || m.body.contains('\n'));
        if m.retracted {
            p.body.set_markup(&format!(
                "<i>{}</i>",
                glib::markup_escape_text(&tr("This message was deleted"))
            ));
        } else if let (Some(action), Some(sender)) = (me, sender) {
            // XEP-0245: "/me waves" from Anna reads "* Anna waves".
            let mut markup = String::from("<i>* ");
            format::push_escaped(&mut markup, &sender);
            markup.push(' ');
            markup.push_str(&styling::markup(action));
            markup.push_str("</i>");
            p.body.set_markup(&markup);
        } else {
            p.body.set_markup(&styling::markup(&m.body));
        }
        match &m.quote {
            Some(q) if m.reply_to.is_some() => {
                let text = if q.retracted {
                    tr("This message was deleted")
                } else {
                    q.body.clone()
                };
                let quote = p.quote.get_or_init(|| {
                    let quote = gtk::Label::builder()
                        .css_classes(["natter-quote", "dim-label"])
                        .xalign(0.0)
                        .ellipsize(gtk::pango::EllipsizeMode::End)
                        .max_width_chars(40)
                        .lines(2)
                        .wrap(true)
                        .build();
                    p.bubble.prepend(&quote);
                    quote
                });
                quote.set_label(&text.replace('\n', " "));
                quote.set_visible(true);
            }
            _ => {
                if let Some(quote) = p.quote.get() {
                    quote.set_visible(false);
                }
            }
        }
        let reactions = reactions_text(m);
        if !reactions.is_empty() || p.reactions.get().is_some() {
            let label = p.reactions.get_or_init(|| {
                let label = gtk::Label::builder()
                    .css_classes(["natter-reactions"])
                    .xalign(0.0)
                    .build();
                p.bubble.insert_child_after(&label, Some(&p.meta));
                label
            });
            label.set_visible(!reactions.is_empty());
            label.set_label(&reactions);
        }
        let (words, tooltip) = state_words(m);
        let clock = if m.edited && !m.retracted {
            format!("{} · {}", format::clock(m.timestamp), tr("edited"))
        } else {
            format::clock(m.timestamp)
        };
        if words.is_empty() {
            p.meta.set_label(&clock);
        } else {
            p.meta.set_label(&format!("{clock}  {words}"));
        }
        *p.state_tip.borrow_mut() = tooltip;
        let failed = outgoing && m.state == MessageState::Failed;
        if failed || p.retry.get().is_some() {
            let retry = p.retry.get_or_init(|| {
                let retry = gtk::Button::builder()
                    .label(tr("Retry"))
                    .css_classes(["flat", "caption"])
                    .halign(gtk::Align::End)
                    .build();
                let (id, cb) = (p.id.clone(), p.on_retry.clone());
                retry.connect_clicked(move |_| cb(id.get()));
                p.bubble.append(&retry);
                retry
            });
            retry.set_visible(failed);
        }
    }

    /// The day separator above the bubble, made the first time a day starts here.
    fn set_day(&self, day: Option<&str>) {
        let mut slot = self.imp().day.borrow_mut();
        match (day, slot.as_ref()) {
            (None, None) => {}
            (None, Some(label)) => label.set_visible(false),
            (Some(text), Some(label)) => {
                label.set_label(text);
                label.set_visible(true);
            }
            (Some(text), None) => {
                let label = gtk::Label::builder()
                    .label(text)
                    .css_classes(["natter-day", "dim-label", "caption-heading"])
                    .halign(gtk::Align::Center)
                    .margin_top(12)
                    .margin_bottom(6)
                    .build();
                label.insert_before(self, self.first_child().as_ref());
                *slot = Some(label);
            }
        }
    }
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

/// The menu of one message: reply, react, and for our own messages edit and delete.
fn message_menu(
    anchor: &gtk::Widget,
    text: &gtk::Label,
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
    // Made on the first click: the chooser lays out every emoji when it is created.
    let (p, cb) = (popover.clone(), on_action.clone());
    more.set_create_popup_func(move |button| {
        if button.popover().is_some() {
            return;
        }
        let chooser = gtk::EmojiChooser::new();
        let (p, cb) = (p.clone(), cb.clone());
        chooser.connect_emoji_picked(move |_, emoji| {
            p.popdown();
            cb(MessageAction::React(id, emoji.to_owned()));
        });
        button.set_popover(Some(&chooser));
    });
    quick.append(&more);
    list.append(&quick);
    // Copy: the selected part of the text, else all of it.
    let copy = gtk::Button::builder()
        .label(tr("Copy Text"))
        .css_classes(["flat"])
        .build();
    if let Some(l) = copy.child().and_then(|c| c.downcast::<gtk::Label>().ok()) {
        l.set_xalign(0.0);
    }
    let (p, t) = (popover.clone(), text.clone());
    copy.connect_clicked(move |_| {
        p.popdown();
        let all = t.text();
        let chosen = t
            .selection_bounds()
            .and_then(|(a, b)| {
                let (a, b) = (a.min(b) as usize, a.max(b) as usize);
                let piece: String = all.chars().skip(a).take(b - a).collect();
                (!piece.is_empty()).then_some(piece)
            })
            .unwrap_or_else(|| all.to_string());
        t.clipboard().set_text(&chosen);
    });
    list.append(&copy);
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
