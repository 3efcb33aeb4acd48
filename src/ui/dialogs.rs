//! Small dialogs: confirmations, start a chat, add a contact, contact details, about.

use natter_core::store::Contact;
use natter_core::ResourcePresence;
use relm4::adw::prelude::*;
use relm4::{adw, gtk};

use crate::i18n::tr;

/// Whether `s` looks like a bare JID with a local part (the session checks it fully).
pub fn looks_like_address(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && !domain.is_empty()
                && !s.contains(char::is_whitespace)
                && !s.contains('/')
                && domain.matches('@').count() == 0
        }
        None => false,
    }
}

/// Asks before something that cannot be undone; `confirmed` runs only on "yes".
pub fn confirm(
    parent: &impl IsA<gtk::Window>,
    heading: &str,
    body: &str,
    action: &str,
    confirmed: impl Fn() + 'static,
) {
    let dialog = adw::MessageDialog::builder()
        .heading(heading)
        .body(body)
        .transient_for(parent)
        .modal(true)
        .build();
    dialog.add_response("cancel", &tr("_Cancel"));
    dialog.add_response("confirm", action);
    dialog.set_response_appearance("confirm", adw::ResponseAppearance::Destructive);
    dialog.set_default_response(Some("cancel"));
    dialog.set_close_response("cancel");
    dialog.connect_response(None, move |_, r| {
        if r == "confirm" {
            confirmed();
        }
    });
    dialog.present();
}

/// An account chooser when there is more than one account.
fn account_chooser(accounts: &[(i64, String)], default: Option<i64>) -> Option<gtk::DropDown> {
    if accounts.len() < 2 {
        return None;
    }
    let names: Vec<&str> = accounts.iter().map(|(_, j)| j.as_str()).collect();
    let dd = gtk::DropDown::from_strings(&names);
    if let Some(pos) = accounts.iter().position(|(id, _)| Some(*id) == default) {
        dd.set_selected(pos as u32);
    }
    Some(dd)
}

fn chosen(accounts: &[(i64, String)], dd: &Option<gtk::DropDown>) -> i64 {
    let pos = dd.as_ref().map_or(0, |d| d.selected() as usize);
    accounts
        .get(pos)
        .or(accounts.first())
        .map_or(0, |(id, _)| *id)
}

/// The words of an address dialog.
struct Words {
    heading: String,
    body: String,
    action: String,
}

fn address_dialog(
    parent: &impl IsA<gtk::Window>,
    words: Words,
    accounts: &[(i64, String)],
    default: Option<i64>,
    with_name: bool,
    done: impl Fn(i64, String, String) + 'static,
) {
    let Words {
        heading,
        body,
        action,
    } = words;
    let dialog = adw::MessageDialog::builder()
        .heading(heading.as_str())
        .body(body.as_str())
        .transient_for(parent)
        .modal(true)
        .build();
    let boxed = gtk::Box::new(gtk::Orientation::Vertical, 12);
    let chooser = account_chooser(accounts, default);
    if let Some(dd) = &chooser {
        boxed.append(dd);
    }
    let address = gtk::Entry::builder()
        .placeholder_text(tr("name@example.org"))
        .input_purpose(gtk::InputPurpose::Email)
        .activates_default(true)
        .build();
    boxed.append(&address);
    let name = gtk::Entry::builder()
        .placeholder_text(tr("Name (optional)"))
        .activates_default(true)
        .build();
    if with_name {
        boxed.append(&name);
    }
    dialog.set_extra_child(Some(&boxed));
    dialog.add_response("cancel", &tr("_Cancel"));
    dialog.add_response("ok", &action);
    dialog.set_response_appearance("ok", adw::ResponseAppearance::Suggested);
    dialog.set_response_enabled("ok", false);
    dialog.set_default_response(Some("ok"));
    dialog.set_close_response("cancel");
    let d = dialog.clone();
    address.connect_changed(move |e| d.set_response_enabled("ok", looks_like_address(&e.text())));
    let accounts = accounts.to_vec();
    let (a, n) = (address.clone(), name.clone());
    dialog.connect_response(None, move |_, r| {
        if r == "ok" && looks_like_address(&a.text()) {
            done(
                chosen(&accounts, &chooser),
                a.text().trim().to_lowercase(),
                n.text().trim().to_owned(),
            );
        }
    });
    dialog.present();
    address.grab_focus();
}

pub fn start_chat(
    parent: &impl IsA<gtk::Window>,
    accounts: &[(i64, String)],
    default: Option<i64>,
    done: impl Fn(i64, String) + 'static,
) {
    address_dialog(
        parent,
        Words {
            heading: tr("Start Chat"),
            body: tr("Enter the address of the person you want to write to."),
            action: tr("_Chat"),
        },
        accounts,
        default,
        false,
        move |id, jid, _| done(id, jid),
    );
}

pub fn add_contact(
    parent: &impl IsA<gtk::Window>,
    accounts: &[(i64, String)],
    default: Option<i64>,
    done: impl Fn(i64, String, String) + 'static,
) {
    address_dialog(
        parent,
        Words {
            heading: tr("Add Contact"),
            body: tr("They will be asked to let you see when they are online."),
            action: tr("_Add"),
        },
        accounts,
        default,
        true,
        done,
    );
}

fn subscription_words(c: Option<&Contact>) -> String {
    let Some(c) = c else {
        return tr("Not in your contacts");
    };
    let mut words = match c.subscription.as_str() {
        "both" => tr("You see each other's status"),
        "to" => tr("You see their status; they do not see yours"),
        "from" => tr("They see your status; you do not see theirs"),
        _ => tr("Neither of you sees the other's status"),
    };
    if c.ask {
        words.push_str(&format!(" ({})", tr("request sent")));
    }
    words
}

pub fn contact_details(
    parent: &impl IsA<gtk::Window>,
    jid: &str,
    name: &str,
    contact: Option<&Contact>,
    presences: &[(String, ResourcePresence)],
    remove: impl Fn() + 'static,
) {
    let window = adw::Window::builder()
        .transient_for(parent)
        .modal(true)
        .default_width(420)
        .default_height(480)
        .title(tr("Contact Details"))
        .build();
    let page = adw::PreferencesPage::new();
    let picture = super::avatar::Avatar::new(96);
    picture.set(jid, name, super::avatar::Dot::None);
    picture.widget().set_halign(gtk::Align::Center);
    let header = adw::PreferencesGroup::new();
    header.add(picture.widget());
    page.add(&header);
    let about = adw::PreferencesGroup::new();
    about.add(
        &adw::ActionRow::builder()
            .title(tr("Name"))
            .subtitle(glib_escape(name))
            .build(),
    );
    let address = adw::ActionRow::builder()
        .title(tr("Address"))
        .subtitle(glib_escape(jid))
        .build();
    about.add(&address);
    about.add(
        &adw::ActionRow::builder()
            .title(tr("Status Sharing"))
            .subtitle(subscription_words(contact))
            .build(),
    );
    page.add(&about);
    let devices = adw::PreferencesGroup::builder()
        .title(tr("Online Devices"))
        .build();
    if presences.is_empty() {
        devices.add(&adw::ActionRow::builder().title(tr("Offline")).build());
    }
    for (resource, p) in presences {
        devices.add(
            &adw::ActionRow::builder()
                .title(glib_escape(resource))
                .subtitle(glib_escape(&crate::app::presence_words(p)))
                .build(),
        );
    }
    page.add(&devices);
    if contact.is_some() {
        let actions = adw::PreferencesGroup::new();
        let button = gtk::Button::builder()
            .label(tr("Remove Contact…"))
            .css_classes(["destructive-action", "pill"])
            .halign(gtk::Align::Center)
            .build();
        let w = window.clone();
        button.connect_clicked(move |_| {
            w.close();
            remove();
        });
        actions.add(&button);
        page.add(&actions);
    }
    let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
    content.append(&adw::HeaderBar::new());
    content.append(&page);
    window.set_content(Some(&content));
    window.present();
}

/// Row titles are markup in libadwaita 1.2: what the network sends is escaped.
fn glib_escape(s: &str) -> String {
    relm4::gtk::glib::markup_escape_text(s).to_string()
}

pub fn about(parent: &impl IsA<gtk::Window>) {
    let about = adw::AboutWindow::builder()
        .transient_for(parent)
        .application_name("Natter")
        .application_icon(crate::APP_ID)
        .version(env!("CARGO_PKG_VERSION"))
        .license_type(gtk::License::Gpl30)
        .comments(tr("Chat, call and share with anyone on XMPP"))
        .website("https://natter.im")
        .developers(vec!["The Natter developers"])
        .build();
    about.present();
}

#[cfg(test)]
mod tests {
    use super::looks_like_address;

    #[test]
    fn addresses() {
        assert!(looks_like_address("friend@localhost"));
        assert!(looks_like_address(" friend@example.org "));
        assert!(!looks_like_address("friend"));
        assert!(!looks_like_address("@example.org"));
        assert!(!looks_like_address("friend@"));
        assert!(!looks_like_address("a b@example.org"));
        assert!(!looks_like_address("a@b@c"));
        assert!(!looks_like_address("a@example.org/res"));
    }
}
