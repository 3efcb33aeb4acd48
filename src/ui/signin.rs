//! The sign-in page (first run, and "Add Account…"): address, password, and an advanced
//! part for a server host and port; errors in words; certificate decisions.

use natter_core::{CertificateProblem, ConnectError};
use relm4::adw::prelude::*;
use relm4::{adw, gtk};

use crate::i18n::tr;

/// What the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInForm {
    pub jid: String,
    pub password: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub direct_tls: bool,
}

pub struct SignInPage {
    pub root: gtk::Box,
    pub address: adw::EntryRow,
    pub password: adw::PasswordEntryRow,
    host: adw::EntryRow,
    port: adw::EntryRow,
    direct_tls: gtk::Switch,
    advanced: adw::ExpanderRow,
    error: gtk::Label,
    button: gtk::Button,
    spinner: gtk::Spinner,
    title: adw::WindowTitle,
    pub cancel: gtk::Button,
}

impl SignInPage {
    pub fn new(on_submit: impl Fn() + Clone + 'static) -> SignInPage {
        let title = gtk::Label::builder()
            .label(tr("Sign in to your XMPP account"))
            .css_classes(["title-1"])
            .wrap(true)
            .justify(gtk::Justification::Center)
            .build();
        let subtitle = gtk::Label::builder()
            .label(tr(
                "Use the address and password you already have on any XMPP server: the same account works in Natter, Dino, Gajim and Conversations.",
            ))
            .css_classes(["dim-label"])
            .wrap(true)
            .justify(gtk::Justification::Center)
            .build();
        let address = adw::EntryRow::builder().title(tr("Address")).build();
        address.set_input_purpose(gtk::InputPurpose::Email);
        let password = adw::PasswordEntryRow::builder()
            .title(tr("Password"))
            .build();
        let group = adw::PreferencesGroup::new();
        group.add(&address);
        group.add(&password);

        let host = adw::EntryRow::builder().title(tr("Server")).build();
        let port = adw::EntryRow::builder().title(tr("Port")).build();
        port.set_input_purpose(gtk::InputPurpose::Digits);
        let direct_tls = gtk::Switch::builder().valign(gtk::Align::Center).build();
        let tls_row = adw::ActionRow::builder()
            .title(tr("Direct TLS"))
            .subtitle(tr(
                "Encrypt from the first byte (XEP-0368) instead of STARTTLS",
            ))
            .activatable_widget(&direct_tls)
            .build();
        tls_row.add_suffix(&direct_tls);
        let advanced = adw::ExpanderRow::builder()
            .title(tr("Advanced"))
            .subtitle(tr("Only if the server cannot be found from the address"))
            .build();
        advanced.add_row(&host);
        advanced.add_row(&port);
        advanced.add_row(&tls_row);
        let advanced_group = adw::PreferencesGroup::new();
        advanced_group.add(&advanced);

        let error = gtk::Label::builder()
            .css_classes(["error"])
            .wrap(true)
            .justify(gtk::Justification::Center)
            .visible(false)
            .selectable(true)
            .build();
        let spinner = gtk::Spinner::new();
        let button_content = gtk::Box::builder()
            .spacing(6)
            .halign(gtk::Align::Center)
            .build();
        button_content.append(&spinner);
        button_content.append(&gtk::Label::new(Some(&tr("Sign In"))));
        let button = gtk::Button::builder()
            .child(&button_content)
            .css_classes(["suggested-action", "pill"])
            .halign(gtk::Align::Center)
            .build();
        let submit = on_submit.clone();
        button.connect_clicked(move |_| submit());
        // Enter in any field signs in, as users expect.
        for row in [
            address.upcast_ref::<adw::EntryRow>(),
            password.upcast_ref(),
            &host,
            &port,
        ] {
            let submit = on_submit.clone();
            let keys = gtk::EventControllerKey::new();
            keys.set_propagation_phase(gtk::PropagationPhase::Capture);
            keys.connect_key_pressed(move |_, key, _, _| {
                if matches!(key, gtk::gdk::Key::Return | gtk::gdk::Key::KP_Enter) {
                    submit();
                    return gtk::glib::Propagation::Stop;
                }
                gtk::glib::Propagation::Proceed
            });
            row.add_controller(keys);
        }

        let content = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(24)
            .margin_top(36)
            .margin_bottom(36)
            .margin_start(12)
            .margin_end(12)
            .build();
        content.append(&title);
        content.append(&subtitle);
        // Above the form, so that it is seen even with "Advanced" open.
        content.append(&error);
        content.append(&group);
        content.append(&advanced_group);
        content.append(&button);
        let clamp = adw::Clamp::builder()
            .maximum_size(420)
            .child(&content)
            .build();
        let scroller = gtk::ScrolledWindow::builder()
            .child(&clamp)
            .vexpand(true)
            .hscrollbar_policy(gtk::PolicyType::Never)
            .build();
        let cancel = gtk::Button::builder()
            .label(tr("Cancel"))
            .visible(false)
            .build();
        let title_widget = adw::WindowTitle::new(&tr("Welcome to Natter"), "");
        let header = adw::HeaderBar::builder()
            .title_widget(&title_widget)
            .build();
        header.pack_start(&cancel);
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&header);
        root.append(&scroller);
        SignInPage {
            root,
            address,
            password,
            host,
            port,
            direct_tls,
            advanced,
            error,
            button,
            spinner,
            title: title_widget,
            cancel,
        }
    }

    /// The form, or what is wrong with it in words.
    pub fn form(&self) -> Result<SignInForm, String> {
        let jid = self.address.text().trim().to_owned();
        let valid = match jid.split_once('@') {
            Some((user, domain)) => {
                !user.is_empty() && !domain.is_empty() && !jid.contains('/') && !jid.contains(' ')
            }
            None => false,
        };
        if !valid {
            return Err(tr("Enter your address, like name@example.org."));
        }
        let password = self.password.text().to_string();
        if password.is_empty() {
            return Err(tr("Enter your password."));
        }
        let host = Some(self.host.text().trim().to_owned()).filter(|h| !h.is_empty());
        let port = match self.port.text().trim() {
            "" => None,
            p => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(tr("The port is a number between 1 and 65535.")),
            },
        };
        Ok(SignInForm {
            jid: jid.to_lowercase(),
            password,
            host,
            port,
            direct_tls: self.direct_tls.is_active(),
        })
    }

    pub fn set_busy(&self, busy: bool) {
        self.spinner.set_spinning(busy);
        self.spinner.set_visible(busy);
        self.button.set_sensitive(!busy);
        if busy {
            self.error.set_visible(false);
        }
    }

    pub fn show_error(&self, text: &str) {
        self.set_busy(false);
        self.error.set_label(text);
        self.error.set_visible(true);
    }

    pub fn reset(&self, can_cancel: bool) {
        self.address.set_text("");
        self.password.set_text("");
        self.host.set_text("");
        self.port.set_text("");
        self.direct_tls.set_active(false);
        self.advanced.set_expanded(false);
        self.error.set_visible(false);
        self.set_busy(false);
        self.cancel.set_visible(can_cancel);
        self.title.set_title(&if can_cancel {
            tr("Add Account")
        } else {
            tr("Welcome to Natter")
        });
    }
}

/// A connection error in words a person understands, with what to do about it.
pub fn error_words(e: &ConnectError) -> String {
    match e {
        ConnectError::WrongPassword(_) => tr("The password is wrong. Check it and try again."),
        ConnectError::AuthRefused(why) => {
            format!("{} ({why})", tr("The server refused to sign you in."))
        }
        ConnectError::NoSafeMechanism(_) => {
            tr("The server offers no sign-in method that keeps your password safe.")
        }
        ConnectError::Certificate(p) => format!(
            "{} {}",
            tr("The server's certificate is not trusted:"),
            p.reason
        ),
        ConnectError::NoTls => {
            tr("The server does not offer encryption, so Natter will not sign in.")
        }
        ConnectError::ExtraCa(why) => {
            format!("{}: {why}", tr("The extra certificate file cannot be used"))
        }
        ConnectError::NotServed(domain) => {
            format!("{} {domain}.", tr("This server does not host accounts for"))
        }
        ConnectError::HostNotFound(_) => {
            tr("The server was not found. Check the address, or enter the server under Advanced.")
        }
        ConnectError::Unreachable(why) => format!(
            "{} ({why})",
            tr("The server cannot be reached. Check your connection and the server settings.")
        ),
        ConnectError::Protocol(why) => format!("{} ({why})", tr("The server misbehaved.")),
    }
}

/// The certificate decision: who issued it, for which names, the fingerprint. Calls
/// `decided(true)` only when the user explicitly chooses to trust it.
pub fn ask_trust(
    parent: &impl IsA<gtk::Window>,
    server: &str,
    problem: &CertificateProblem,
    decided: impl Fn(bool) + 'static,
) {
    let names = if problem.names.is_empty() {
        problem.subject.clone()
    } else {
        problem.names.join(", ")
    };
    let fingerprint = problem
        .sha256
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let mut reason = problem.reason.clone();
    if let Some(first) = reason.get(..1) {
        reason = first.to_uppercase() + &reason[1..];
    }
    let body = format!(
        "{}.\n\n{}: {}\n{}: {}\n{}: {}\n{}: {}\n\n{}:\n{}\n\n{}",
        reason,
        tr("Server"),
        server,
        tr("Issued by"),
        problem.issuer,
        tr("Valid for"),
        names,
        tr("Valid until"),
        problem.not_after,
        tr("SHA-256 fingerprint"),
        fingerprint,
        tr("Only trust it if you know the server uses this certificate (ask its administrator to compare the fingerprint). Someone may be impersonating the server."),
    );
    let dialog = adw::MessageDialog::builder()
        .heading(tr("Untrusted Certificate"))
        .body(body)
        .transient_for(parent)
        .modal(true)
        .build();
    dialog.add_response("cancel", &tr("_Cancel"));
    dialog.add_response("trust", &tr("_Trust This Certificate"));
    dialog.set_response_appearance("trust", adw::ResponseAppearance::Destructive);
    dialog.set_default_response(Some("cancel"));
    dialog.set_close_response("cancel");
    dialog.connect_response(None, move |_, response| decided(response == "trust"));
    dialog.present();
}
