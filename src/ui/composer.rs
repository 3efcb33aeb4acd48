//! The composer: a multi-line entry (Enter sends, Shift+Enter starts a new line), an
//! emoji chooser and a send button.

use relm4::gtk;
use relm4::gtk::prelude::*;
use relm4::gtk::{gdk, glib};

use crate::i18n::tr;

pub struct Composer {
    pub root: gtk::Box,
    pub text: gtk::TextView,
    placeholder: gtk::Label,
}

impl Composer {
    pub fn new(on_send: impl Fn() + Clone + 'static) -> Composer {
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
        text.buffer()
            .connect_changed(move |b| p.set_visible(b.char_count() == 0));
        let keys = gtk::EventControllerKey::new();
        keys.set_propagation_phase(gtk::PropagationPhase::Capture);
        let send = on_send.clone();
        keys.connect_key_pressed(move |_, key, _, mods| {
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

        let chooser = gtk::EmojiChooser::new();
        let t = text.clone();
        chooser.connect_emoji_picked(move |_, emoji| {
            t.buffer().insert_at_cursor(emoji);
            t.grab_focus();
        });
        let emoji = gtk::MenuButton::builder()
            .icon_name("face-smile-symbolic")
            .tooltip_text(tr("Insert Emoji"))
            .popover(&chooser)
            .valign(gtk::Align::End)
            .css_classes(["flat", "circular"])
            .build();
        let button = gtk::Button::builder()
            .icon_name("mail-send-symbolic")
            .tooltip_text(tr("Send"))
            .valign(gtk::Align::End)
            .css_classes(["suggested-action", "circular"])
            .build();
        button.connect_clicked(move |_| on_send());
        let root = gtk::Box::builder()
            .spacing(6)
            .margin_start(12)
            .margin_end(12)
            .margin_top(6)
            .margin_bottom(12)
            .build();
        root.append(&emoji);
        root.append(&overlay);
        root.append(&button);
        Composer {
            root,
            text,
            placeholder,
        }
    }

    /// The text typed so far.
    pub fn draft(&self) -> String {
        let b = self.text.buffer();
        b.text(&b.start_iter(), &b.end_iter(), false).to_string()
    }

    pub fn set_draft(&self, draft: &str) {
        self.text.buffer().set_text(draft);
        self.placeholder.set_visible(draft.is_empty());
    }
}
