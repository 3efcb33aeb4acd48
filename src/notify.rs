//! Desktop notifications for incoming messages (GNotification): one per conversation,
//! replaced as more arrive, withdrawn when the conversation is read. Clicking one opens
//! the conversation (`app.open-conversation`).

use relm4::gtk::gio;
use relm4::gtk::prelude::*;

use crate::i18n::tr;
use crate::ui::conversations::ConvKey;

fn id(key: &ConvKey) -> String {
    format!("message-{}-{}", key.account_id, key.peer)
}

pub fn message(key: &ConvKey, name: &str, body: &str, unread: i64) {
    let n = gio::Notification::new(name);
    // Notifications are for incoming messages: a "/me" action is the contact's.
    let text = crate::ui::format::preview_text(name, body);
    let body = if unread > 1 {
        format!("{text}\n({unread} {})", tr("new messages"))
    } else {
        text
    };
    n.set_body(Some(&body));
    n.set_category(Some("im.received"));
    if let Some(path) = crate::ui::avatar::picture_path(&key.peer) {
        n.set_icon(&gio::FileIcon::new(&gio::File::for_path(path)));
    }
    n.set_default_action_and_target_value(
        "app.open-conversation",
        Some(&key.to_target().to_variant()),
    );
    relm4::main_application().send_notification(Some(&id(key)), &n);
    tracing::debug!(peer = %key.peer, "notification sent");
}

pub fn withdraw(key: &ConvKey) {
    relm4::main_application().withdraw_notification(&id(key));
}
