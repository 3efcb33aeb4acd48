//! gettext set-up: translations of the `natter` domain.

use gettextrs::{bind_textdomain_codeset, bindtextdomain, setlocale, textdomain, LocaleCategory};

pub const DOMAIN: &str = "natter";

pub fn init() {
    setlocale(LocaleCategory::LcAll, "");
    let dir = option_env!("NATTER_LOCALEDIR").unwrap_or("/usr/share/locale");
    // Missing catalogues only mean untranslated text: never fatal.
    let _ = bindtextdomain(DOMAIN, dir);
    let _ = bind_textdomain_codeset(DOMAIN, "UTF-8");
    let _ = textdomain(DOMAIN);
}

/// Translates `msgid`.
pub fn tr(msgid: &str) -> String {
    gettextrs::gettext(msgid)
}

/// Translates a message that depends on a count: `singular` for one, `plural` for
/// others (or the rule the language has).
pub fn ntr(singular: &str, plural: &str, n: u32) -> String {
    gettextrs::ngettext(singular, plural, n)
}
