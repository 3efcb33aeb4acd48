//! Words and markup the UI shows: times, day separators, previews, links, and XEP-0245
//! "/me" actions.

use std::ops::Range;

use natter_core::store::{Direction, Message};
use relm4::gtk::glib;

use crate::i18n::tr;

fn local(ts_ms: i64) -> Option<glib::DateTime> {
    glib::DateTime::from_unix_local(ts_ms.div_euclid(1000)).ok()
}

/// A local calendar day, for day separators and grouping. Remembered per quarter hour
/// (every time zone's offset is a multiple of 15 minutes): a page of history asks for
/// it once per message, and building a local time each time costs.
pub fn day_key(ts_ms: i64) -> i32 {
    thread_local! {
        static DAYS: std::cell::RefCell<std::collections::HashMap<i64, i32>> =
            std::cell::RefCell::default();
    }
    let quarter = ts_ms.div_euclid(15 * 60 * 1000);
    DAYS.with(|days| {
        if let Some(day) = days.borrow().get(&quarter) {
            return *day;
        }
        let day = local(ts_ms).map_or(0, |d| d.year() * 1000 + d.day_of_year());
        let mut days = days.borrow_mut();
        if days.len() > 100_000 {
            days.clear();
        }
        days.insert(quarter, day);
        day
    })
}

/// "14:05": the time of a message.
pub fn clock(ts_ms: i64) -> String {
    local(ts_ms)
        .and_then(|d| d.format("%H:%M").ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The day separator: "Today", "Yesterday", "Monday", "14 November", "14 November 2025".
pub fn day_label(ts_ms: i64, now_ms: i64) -> String {
    let (Some(d), Some(now)) = (local(ts_ms), local(now_ms)) else {
        return String::new();
    };
    let days = day_number(&now) - day_number(&d);
    let format = match days {
        0 => return tr("Today"),
        1 => return tr("Yesterday"),
        2..=6 => "%A",
        _ if d.year() == now.year() => "%e %B",
        _ => "%e %B %Y",
    };
    d.format(format)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Days since an arbitrary epoch, in local time.
fn day_number(d: &glib::DateTime) -> i64 {
    glib::DateTime::from_local(d.year(), d.month(), d.day_of_month(), 12, 0, 0.0)
        .map_or(0, |noon| noon.to_unix().div_euclid(86_400))
}

/// The time shown in the conversation list: "14:05" today, "Yesterday", a weekday
/// within a week, else a short date.
pub fn list_time(ts_ms: i64, now_ms: i64) -> String {
    let (Some(d), Some(now)) = (local(ts_ms), local(now_ms)) else {
        return String::new();
    };
    match day_number(&now) - day_number(&d) {
        0 => clock(ts_ms),
        1 => tr("Yesterday"),
        2..=6 => d.format("%a").map(|s| s.to_string()).unwrap_or_default(),
        _ => d.format("%x").map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// One line of a message for the conversation list.
pub fn preview(body: &str) -> String {
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// Initials for an avatar: first letters of the first two words of a name, or the
/// first letter of a JID's local part.
pub fn initials(name: &str) -> String {
    let base = name.split('@').next().unwrap_or(name);
    let words: Vec<&str> = base
        .split(|c: char| c.is_whitespace() || c == '.' || c == '_' || c == '-')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = String::new();
    for w in words.iter().take(if name.contains('@') { 1 } else { 2 }) {
        if let Some(c) = w.chars().next() {
            out.extend(c.to_uppercase());
        }
    }
    if out.is_empty() {
        out.push('?');
    }
    out
}

const SCHEMES: [&str; 4] = ["https://", "http://", "xmpp:", "mailto:"];

/// Pango markup for a message body: everything escaped, web, `xmpp:` and `mailto:`
/// links made clickable.
pub fn body_markup(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    push_linked(&mut out, body, &links(body), 0);
    out
}

/// Where the links in `text` are, as byte ranges in order; one pass over the text.
pub(crate) fn links(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut prev = None;
    let mut after_link = 0;
    for (i, c) in text.char_indices() {
        let may_start = i >= after_link && prev.is_none_or(may_precede_link);
        prev = Some(c);
        if !may_start {
            continue;
        }
        let Some(scheme) = SCHEMES.iter().find(|s| {
            bytes
                .get(i..i + s.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(s.as_bytes()))
        }) else {
            continue;
        };
        let tail = &text[i..];
        let mut end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        while let Some(last) = tail[..end]
            .chars()
            .next_back()
            .filter(|&c| ends_sentence(c))
        {
            end -= last.len_utf8();
        }
        // A scheme with nothing after it is text.
        if end > scheme.len() {
            found.push(i..i + end);
            after_link = i + end;
        }
    }
    found
}

/// A link starts a word, or follows an opening bracket or quote, or a XEP-0393 styling
/// directive (`*https://natter.im*`).
fn may_precede_link(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | '<' | '"' | '\'' | '*' | '_' | '~' | '`')
}

/// Punctuation that ends a sentence, a bracket, a quote or a XEP-0393 span is not part of
/// the link it follows (a `*` inside a link is).
fn ends_sentence(c: char) -> bool {
    ".,;:!?)\"'>”’»*_~`".contains(c)
}

/// Appends `text`, escaped, with its `links` (ranges of `text` offset by `base`, each
/// inside `text` or outside it altogether) as clickable links.
pub(crate) fn push_linked(out: &mut String, text: &str, links: &[Range<usize>], base: usize) {
    let mut at = 0;
    let first = links.partition_point(|l| l.start < base);
    for link in &links[first..] {
        let (start, end) = (link.start - base, link.end - base);
        if end > text.len() {
            break;
        }
        push_escaped(out, &text[at..start]);
        out.push_str("<a href=\"");
        push_escaped(out, &text[start..end]);
        out.push_str("\">");
        push_escaped(out, &text[start..end]);
        out.push_str("</a>");
        at = end;
    }
    push_escaped(out, &text[at..]);
}

/// Appends `text` escaped for markup, as `glib::markup_escape_text` does (control
/// characters as references) but without a C string for every piece of a message.
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    let mut at = 0;
    for (i, c) in text.char_indices() {
        let entity = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&apos;",
            // Not even a reference can carry NUL (nor can a C string).
            '\u{0}' => "\u{fffd}",
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}') => "",
            _ => continue,
        };
        out.push_str(&text[at..i]);
        if entity.is_empty() {
            out.push_str(&format!("&#x{:x};", u32::from(c)));
        } else {
            out.push_str(entity);
        }
        at = i + c.len_utf8();
    }
    out.push_str(&text[at..]);
}

/// XEP-0245: what a message that starts with exactly "/me " says its sender does.
pub fn me_action(body: &str) -> Option<&str> {
    body.strip_prefix("/me ")
}

/// Who wrote `m`, in the words "/me" messages use: `peer_name` for the contact's, and the
/// local part of our address for ours (we have no nickname of our own).
pub fn sender_name(m: &Message, peer_name: &str) -> String {
    match m.direction {
        Direction::Incoming => peer_name.to_owned(),
        Direction::Outgoing => m
            .sender
            .split(['@', '/'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// A message's text as the conversation list and notifications show it, on one line:
/// "/me waves" from Anna is "* Anna waves".
pub fn preview_text(sender: &str, body: &str) -> String {
    match me_action(body) {
        Some(action) => preview(&format!("* {sender} {action}")),
        None => preview(body),
    }
}

/// The conversation list's preview of `m` (Pango markup: a "/me" action in italics).
pub fn preview_markup(m: &Message, peer_name: &str) -> String {
    let text = preview_text(&sender_name(m, peer_name), &m.body);
    let mut out = String::with_capacity(text.len() + 8);
    let action = me_action(&m.body).is_some();
    if action {
        out.push_str("<i>");
    }
    push_escaped(&mut out, &text);
    if action {
        out.push_str("</i>");
    }
    out
}

thread_local! {
    static CHAT_PEER_NAME: std::cell::RefCell<String> = std::cell::RefCell::default();
}

/// The name of the contact whose chat is open, for its "/me" messages in the chat view
/// (which shows one conversation at a time).
pub fn set_chat_peer_name(name: &str) {
    CHAT_PEER_NAME.with(|n| {
        let mut n = n.borrow_mut();
        n.clear();
        n.push_str(name);
    });
}

pub fn chat_peer_name() -> String {
    CHAT_PEER_NAME.with(|n| n.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_clickable_and_the_rest_is_escaped() {
        assert_eq!(
            body_markup("see https://natter.im/a?b=1&c=2. <b>not bold</b>"),
            "see <a href=\"https://natter.im/a?b=1&amp;c=2\">https://natter.im/a?b=1&amp;c=2</a>. \
             &lt;b&gt;not bold&lt;/b&gt;"
        );
        assert_eq!(
            body_markup("(xmpp:friend@localhost)"),
            "(<a href=\"xmpp:friend@localhost\">xmpp:friend@localhost</a>)"
        );
        assert_eq!(body_markup("nohttps://x"), "nohttps://x");
        assert_eq!(body_markup("https:// alone"), "https:// alone");
        assert_eq!(
            body_markup("ünï https://ä.example/ö"),
            "ünï <a href=\"https://ä.example/ö\">https://ä.example/ö</a>"
        );
        // Hostile input never produces markup of its own.
        let evil = "https://x\"><span foreground=\"red\">";
        let m = body_markup(evil);
        // Only our own <a href="…"> and </a> are tags; everything else is text.
        let mut rest = m.replace("</a>", "");
        while let Some(start) = rest.find("<a href=\"") {
            let end = rest[start + 9..].find('"').map(|e| start + 9 + e + 2);
            let Some(end) = end else { break };
            assert_eq!(&rest[end - 1..end], ">", "{m}");
            rest.replace_range(start..end, "");
        }
        assert!(!rest.contains('<') && !rest.contains('>'), "{m}");
    }

    #[test]
    fn links_leave_closing_directives_and_punctuation_out() {
        fn found(t: &str) -> Vec<&str> {
            links(t).into_iter().map(|r| &t[r]).collect()
        }
        assert_eq!(found("*https://natter.im/a*b*"), ["https://natter.im/a*b"]);
        assert_eq!(
            found("`xmpp:a@b`, _mailto:c@d_."),
            ["xmpp:a@b", "mailto:c@d"]
        );
        assert_eq!(
            found("HTTPS://natter.im x:https://no"),
            ["HTTPS://natter.im"]
        );
        assert!(found("https:// *https://* (https://)").is_empty());
    }

    #[test]
    fn me_actions() {
        assert_eq!(me_action("/me waves"), Some("waves"));
        for not in [
            "/mewaves",
            " /me waves",
            "/ME waves",
            "/me",
            "say /me waves",
        ] {
            assert_eq!(me_action(not), None, "{not:?}");
        }
        assert_eq!(
            preview_text("Anna", "/me waves\nhello"),
            "* Anna waves hello"
        );
        assert_eq!(preview_text("Anna", "/me\twaves"), "/me waves");
    }

    #[test]
    fn escaping_is_glibs() {
        let text = "a&b<c>d\"e'f\u{1}\u{b}\t\n\r\u{7f}\u{85}\u{9f}ü日z";
        let mut out = String::new();
        push_escaped(&mut out, text);
        assert_eq!(out, glib::markup_escape_text(text).as_str());
        out.clear();
        push_escaped(&mut out, "a\u{0}b");
        assert_eq!(out, "a\u{fffd}b");
    }

    #[test]
    fn initials_and_previews() {
        assert_eq!(initials("Friend Bot"), "FB");
        assert_eq!(initials("friend@localhost"), "F");
        assert_eq!(initials("émilie.dupont@example.org"), "É");
        assert_eq!(initials(""), "?");
        assert_eq!(preview("two\nlines   here"), "two lines here");
        assert_eq!(preview(&"x".repeat(200)).chars().count(), 121);
    }

    #[test]
    fn days_and_times() {
        let now = glib::DateTime::from_local(2026, 11, 22, 15, 30, 0.0)
            .unwrap()
            .to_unix()
            * 1000;
        assert_eq!(day_label(now - 3_600_000, now), "Today");
        assert_eq!(day_label(now - 86_400_000, now), "Yesterday");
        assert_eq!(list_time(now - 3_600_000, now), "14:30");
        assert_ne!(day_key(now), day_key(now - 86_400_000));
        assert!(!day_label(now - 40 * 86_400_000, now).is_empty());
    }
}
