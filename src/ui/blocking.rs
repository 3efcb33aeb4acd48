//! Blocking a contact (XEP-0191), with an optional spam report (XEP-0377): the
//! question before it, and the bar a blocked chat shows.

use relm4::adw::prelude::*;
use relm4::{adw, gtk};

use crate::i18n::tr;

/// Asks whether to block `name` (`jid`); `block(report_spam)` runs only on "Block".
pub fn ask(
    parent: &impl IsA<gtk::Window>,
    name: &str,
    jid: &str,
    block: impl Fn(bool) + 'static,
) -> adw::MessageDialog {
    let who = if name == jid {
        jid.to_owned()
    } else {
        format!("{name} ({jid})")
    };
    let dialog = adw::MessageDialog::builder()
        .heading(tr("Block Contact?"))
        .body(format!(
            "{who} {}",
            tr("will not be able to send you messages, call you or see when you are online. You can unblock them later.")
        ))
        .transient_for(parent)
        .modal(true)
        .build();
    let report = gtk::CheckButton::with_mnemonic(&tr("_Report as spam to your server"));
    report.set_halign(gtk::Align::Center);
    dialog.set_extra_child(Some(&report));
    dialog.add_response("cancel", &tr("_Cancel"));
    dialog.add_response("block", &tr("_Block"));
    dialog.set_response_appearance("block", adw::ResponseAppearance::Destructive);
    dialog.set_default_response(Some("cancel"));
    dialog.set_close_response("cancel");
    dialog.connect_response(None, move |_, r| {
        if r == "block" {
            block(report.is_active());
        }
    });
    dialog.present();
    dialog
}

/// The bar over a blocked chat: what is going on, and the way back.
pub struct BlockedBar {
    pub root: gtk::Revealer,
    label: gtk::Label,
}

impl BlockedBar {
    pub fn new(unblock: impl Fn() + 'static) -> Self {
        let label = gtk::Label::builder()
            .hexpand(true)
            .wrap(true)
            .xalign(0.0)
            .build();
        let button = gtk::Button::builder()
            .label(tr("Unblock"))
            .valign(gtk::Align::Center)
            .build();
        button.connect_clicked(move |_| unblock());
        let bar = gtk::Box::builder()
            .spacing(12)
            .css_classes(["natter-banner", "warning"])
            .build();
        bar.append(&gtk::Image::from_icon_name("action-unavailable-symbolic"));
        bar.append(&label);
        bar.append(&button);
        let root = gtk::Revealer::builder()
            .child(&bar)
            .transition_type(gtk::RevealerTransitionType::SlideDown)
            .build();
        BlockedBar { root, label }
    }

    /// Shows the bar for `name` when blocked, hides it otherwise.
    pub fn show(&self, name: &str, blocked: bool) {
        if blocked {
            self.label.set_label(&format!(
                "{} {name}. {}",
                tr("You blocked"),
                tr("Their messages and calls do not reach you.")
            ));
        }
        self.root.set_reveal_child(blocked);
    }
}
