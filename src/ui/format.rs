//! Words and markup the UI shows: times, day separators, previews, links.

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
    let mut rest = body;
    while !rest.is_empty() {
        let next = SCHEMES
            .iter()
            .filter_map(|s| find_link_start(rest, s))
            .min();
        let Some(start) = next else {
            out.push_str(&glib::markup_escape_text(rest));
            break;
        };
        out.push_str(&glib::markup_escape_text(&rest[..start]));
        let tail = &rest[start..];
        let mut end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        // Punctuation that ends a sentence is not part of the link.
        while end > 0 {
            let last = tail[..end].chars().next_back().unwrap_or(' ');
            if matches!(
                last,
                '.' | ',' | ';' | ':' | '!' | '?' | ')' | '"' | '\'' | '>' | '”' | '’' | '»'
            ) {
                end -= last.len_utf8();
            } else {
                break;
            }
        }
        let link = &tail[..end];
        let is_link = SCHEMES
            .iter()
            .any(|s| link.len() > s.len() && link.starts_with(s));
        if is_link {
            let escaped = glib::markup_escape_text(link);
            out.push_str(&format!("<a href=\"{escaped}\">{escaped}</a>"));
        } else {
            out.push_str(&glib::markup_escape_text(link));
        }
        if end == 0 {
            // A scheme with nothing after it: take one character and move on.
            let step = tail.chars().next().map_or(1, char::len_utf8);
            out.push_str(&glib::markup_escape_text(&tail[end..step]));
            rest = &tail[step..];
        } else {
            rest = &tail[end..];
        }
    }
    out
}

/// Where a link with `scheme` starts in `text`: at the start or after a space or
/// an opening bracket.
fn find_link_start(text: &str, scheme: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(scheme) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        if before.is_none_or(|c| c.is_whitespace() || matches!(c, '(' | '<' | '"' | '\'')) {
            return Some(at);
        }
        from = at + scheme.len();
    }
    None
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
