//! The composer: a multi-line entry (Enter sends, Shift+Enter starts a new line), an
//! emoji chooser and a send button; a bar above it while replying to or editing a
//! message (Escape or its close button cancels; Up in an empty entry edits the last
//! message we sent). It reports typing (XEP-0085): composing while the text changes,
//! paused five seconds after the last change.

use relm4::gtk;
use relm4::gtk::prelude::*;
use relm4::gtk::{gdk, glib};

use crate::i18n::tr;

/// How long after the last keystroke typing counts as paused (XEP-0085 suggests 30 s
/// for "paused"; Conversations and Dino use a few seconds).
const PAUSED_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// What the composer tells the chat besides "send".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposerEvent {
    /// The user started typing (`true`) or stopped for a while (`false`).
    Typing(bool),
    /// Up in an empty entry: edit the last message we sent.
    EditLast,
    /// Escape or the bar's close button: stop replying or editing.
    Cancel,
}

pub struct Composer {
    pub root: gtk::Box,
    pub text: gtk::TextView,
    placeholder: gtk::Label,
    context: gtk::Box,
    context_label: gtk::Label,
    /// Changes made by `set_draft` are not typing.
    quiet: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Composer {
    pub fn new(
        on_send: impl Fn() + Clone + 'static,
        on_event: impl Fn(ComposerEvent) + 'static,
    ) -> Composer {
        let on_event: std::rc::Rc<dyn Fn(ComposerEvent)> = std::rc::Rc::new(on_event);
        let text = gtk::TextView::builder()
            .wrap_mode(gtk::WrapMode::WordChar)
            .accepts_tab(false)
            .top_margin(8)
            .bottom_margin(8)
            .left_margin(10)
            .right_margin(10)
            .hexpand(true)
            .css_classes(["natter-composer"])
            .build();
        let placeholder = gtk::Label::builder()
            .label(tr("Write a message…"))
            .css_classes(["dim-label"])
            .halign(gtk::Align::Start)
            .valign(gtk::Align::Center)
            .margin_start(12)
            .can_target(false)
            .build();
        let p = placeholder.clone();
        let quiet = std::rc::Rc::new(std::cell::Cell::new(false));
        let typing = std::rc::Rc::new(std::cell::Cell::new(false));
        let pause: std::rc::Rc<std::cell::RefCell<Option<glib::SourceId>>> = Default::default();
        let (q, t, ev, pz) = (
            quiet.clone(),
            typing.clone(),
            on_event.clone(),
            pause.clone(),
        );
        text.buffer().connect_changed(move |b| {
            let empty = b.char_count() == 0;
            p.set_visible(empty);
            if q.get() {
                return;
            }
            if let Some(old) = pz.borrow_mut().take() {
                old.remove();
            }
            if empty {
                if t.replace(false) {
                    ev(ComposerEvent::Typing(false));
                }
                return;
            }
            if !t.replace(true) {
                ev(ComposerEvent::Typing(true));
            }
            let (t2, ev2, pz2) = (t.clone(), ev.clone(), pz.clone());
            *pz.borrow_mut() = Some(glib::timeout_add_local_once(PAUSED_AFTER, move || {
                pz2.borrow_mut().take();
                if t2.replace(false) {
                    ev2(ComposerEvent::Typing(false));
                }
            }));
        });
        let keys = gtk::EventControllerKey::new();
        keys.set_propagation_phase(gtk::PropagationPhase::Capture);
        let send = on_send.clone();
        let (ev, tv) = (on_event.clone(), text.clone());
        keys.connect_key_pressed(move |_, key, _, mods| {
            if key == gdk::Key::Escape {
                ev(ComposerEvent::Cancel);
                return glib::Propagation::Proceed;
            }
            if key == gdk::Key::Up && tv.buffer().char_count() == 0 {
                ev(ComposerEvent::EditLast);
                return glib::Propagation::Stop;
            }
            let enter = matches!(
                key,
                gdk::Key::Return | gdk::Key::KP_Enter | gdk::Key::ISO_Enter
            );
            if enter
                && !mods.intersects(gdk::ModifierType::SHIFT_MASK | gdk::ModifierType::CONTROL_MASK)
            {
                send();
                return glib::Propagation::Stop;
            }
            glib::Propagation::Proceed
        });
        text.add_controller(keys);
        let scroller = gtk::ScrolledWindow::builder()
            .child(&text)
            .hscrollbar_policy(gtk::PolicyType::Never)
            .propagate_natural_height(true)
            .max_content_height(160)
            .hexpand(true)
            .build();
        let overlay = gtk::Overlay::builder()
            .child(&scroller)
            .hexpand(true)
            .css_classes(["card", "natter-composer-frame"])
            .build();
        overlay.add_overlay(&placeholder);

        let emoji = gtk::MenuButton::builder()
            .icon_name("face-smile-symbolic")
            .tooltip_text(tr("Insert Emoji"))
            .valign(gtk::Align::End)
            .css_classes(["flat", "circular"])
            .build();
        // The chooser lays out every emoji of the colour font as soon as it exists
        // (PNG glyphs: a second of CPU and tens of MB): made on the first click only.
        let t = text.clone();
        emoji.set_create_popup_func(move |button| {
            if button.popover().is_some() {
                return;
            }
            let chooser = gtk::EmojiChooser::new();
            let t = t.clone();
            chooser.connect_emoji_picked(move |_, emoji| {
                t.buffer().insert_at_cursor(emoji);
                t.grab_focus();
            });
            button.set_popover(Some(&chooser));
        });
        let button = gtk::Button::builder()
            .icon_name("mail-send-symbolic")
            .tooltip_text(tr("Send"))
            .valign(gtk::Align::End)
            .css_classes(["suggested-action", "circular"])
            .build();
        button.connect_clicked(move |_| on_send());
        let line = gtk::Box::builder().spacing(6).build();
        line.append(&emoji);
        line.append(&overlay);
        line.append(&button);
        let context_label = gtk::Label::builder()
            .xalign(0.0)
            .hexpand(true)
            .ellipsize(gtk::pango::EllipsizeMode::End)
            .css_classes(["caption", "dim-label"])
            .build();
        let close = gtk::Button::builder()
            .icon_name("window-close-symbolic")
            .tooltip_text(tr("Cancel"))
            .css_classes(["flat", "circular"])
            .build();
        let ev = on_event.clone();
        close.connect_clicked(move |_| ev(ComposerEvent::Cancel));
        let context = gtk::Box::builder()
            .spacing(6)
            .margin_start(48)
            .visible(false)
            .build();
        context.append(&context_label);
        context.append(&close);
        let root = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(4)
            .margin_start(12)
            .margin_end(12)
            .margin_top(6)
            .margin_bottom(12)
            .build();
        root.append(&context);
        root.append(&line);
        Composer {
            root,
            text,
            placeholder,
            context,
            context_label,
            quiet,
        }
    }

    /// The text typed so far.
    pub fn draft(&self) -> String {
        let b = self.text.buffer();
        b.text(&b.start_iter(), &b.end_iter(), false).to_string()
    }

    pub fn set_draft(&self, draft: &str) {
        self.quiet.set(true);
        self.text.buffer().set_text(draft);
        self.quiet.set(false);
        self.placeholder.set_visible(draft.is_empty());
    }

    /// Shows what the next send does ("Replying to …", "Editing message"), or nothing.
    pub fn set_context(&self, words: Option<&str>) {
        self.context.set_visible(words.is_some());
        self.context_label.set_label(words.unwrap_or_default());
    }
}
