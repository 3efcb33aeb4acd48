//! Message search: an entry and the messages that match it across every account and
//! conversation, newest first. It takes the conversation list's place in the sidebar;
//! choosing a result opens its conversation at that message.

use std::cell::Cell;
use std::rc::Rc;

use natter_core::store::{Direction, SearchHit};
use relm4::adw::prelude::*;
use relm4::gtk::glib;
use relm4::{adw, gtk};

use super::conversations::ConvKey;
use super::format;
use crate::i18n::tr;

/// Results shown for one query (the newest matches; more words narrow them down).
pub const MAX_RESULTS: u32 = 50;

/// One match, as a result row shows it.
#[derive(Debug, Clone)]
pub struct SearchResult {
    pub key: ConvKey,
    /// The conversation's name.
    pub name: String,
    pub hit: SearchHit,
}

pub struct SearchPanel {
    pub root: gtk::Box,
    pub entry: gtk::SearchEntry,
    list: gtk::ListBox,
    stack: gtk::Stack,
    /// Changes with each query, so that an older query's late answer is dropped.
    generation: Rc<Cell<u64>>,
    results: Rc<std::cell::RefCell<Vec<SearchResult>>>,
}

/// A snippet from the store (matches between `\u{1}` and `\u{2}`) as Pango markup with
/// the matched words in bold.
pub fn snippet_markup(snippet: &str) -> String {
    let mut out = String::with_capacity(snippet.len() + 16);
    let mut open = false;
    for part in snippet.split_inclusive(['\u{1}', '\u{2}']) {
        let (text, mark) = match part.chars().last() {
            Some(c @ ('\u{1}' | '\u{2}')) => (&part[..part.len() - c.len_utf8()], Some(c)),
            _ => (part, None),
        };
        // One line: the body's line breaks would make rows of different heights.
        let text = text.replace(['\n', '\r'], " ");
        out.push_str(&glib::markup_escape_text(&text));
        match mark {
            Some('\u{1}') if !open => {
                out.push_str("<b>");
                open = true;
            }
            Some('\u{2}') if open => {
                out.push_str("</b>");
                open = false;
            }
            _ => {}
        }
    }
    if open {
        out.push_str("</b>");
    }
    out
}

impl SearchPanel {
    /// `on_query` gets each new query (with its generation, see [`Self::show`]);
    /// `on_open` the chosen result; `on_close` asks to go back to the conversations.
    pub fn new(
        on_query: impl Fn(u64, String) + 'static,
        on_open: impl Fn(SearchResult) + 'static,
        on_close: impl Fn() + 'static,
    ) -> SearchPanel {
        let entry = gtk::SearchEntry::builder()
            .placeholder_text(tr("Search messages"))
            .hexpand(true)
            .build();
        let entry_box = gtk::Box::builder()
            .margin_start(6)
            .margin_end(6)
            .margin_top(6)
            .margin_bottom(6)
            .build();
        entry_box.append(&entry);

        let list = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::None)
            .css_classes(["navigation-sidebar"])
            .build();
        let scrolled = gtk::ScrolledWindow::builder()
            .child(&list)
            .vexpand(true)
            .hscrollbar_policy(gtk::PolicyType::Never)
            .build();
        let start = adw::StatusPage::builder()
            .icon_name("system-search-symbolic")
            .title(tr("Search Messages"))
            .description(tr("Find words in all your conversations"))
            .vexpand(true)
            .css_classes(["compact"])
            .build();
        let none = adw::StatusPage::builder()
            .icon_name("system-search-symbolic")
            .title(tr("No Results Found"))
            .description(tr("Try other words"))
            .vexpand(true)
            .css_classes(["compact"])
            .build();
        let stack = gtk::Stack::new();
        stack.add_named(&start, Some("start"));
        stack.add_named(&none, Some("none"));
        stack.add_named(&scrolled, Some("results"));
        stack.set_visible_child_name("start");

        let root = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .vexpand(true)
            .build();
        root.append(&entry_box);
        root.append(&stack);

        let generation = Rc::new(Cell::new(0u64));
        let results: Rc<std::cell::RefCell<Vec<SearchResult>>> = Rc::default();
        let (g, st) = (generation.clone(), stack.clone());
        entry.connect_search_changed(move |e| {
            let text = e.text().trim().to_owned();
            g.set(g.get() + 1);
            if text.is_empty() {
                st.set_visible_child_name("start");
                return;
            }
            on_query(g.get(), text);
        });
        entry.connect_stop_search(move |_| on_close());
        let r = results.clone();
        list.connect_row_activated(move |_, row| {
            let chosen = usize::try_from(row.index())
                .ok()
                .and_then(|i| r.borrow().get(i).cloned());
            if let Some(result) = chosen {
                on_open(result);
            }
        });
        // Down from the entry goes to the results.
        let l = list.clone();
        let keys = gtk::EventControllerKey::new();
        keys.connect_key_pressed(move |_, key, _, _| {
            if key == gtk::gdk::Key::Down {
                if let Some(first) = l.row_at_index(0) {
                    first.grab_focus();
                    return glib::Propagation::Stop;
                }
            }
            glib::Propagation::Proceed
        });
        entry.add_controller(keys);

        SearchPanel {
            root,
            entry,
            list,
            stack,
            generation,
            results,
        }
    }

    /// Shows the results of query `generation` (newest first), unless a newer query was
    /// typed since.
    pub fn show(&self, generation: u64, results: Vec<SearchResult>) {
        if generation != self.generation.get() {
            return;
        }
        while let Some(row) = self.list.row_at_index(0) {
            self.list.remove(&row);
        }
        let now = glib::real_time() / 1000;
        for r in &results {
            self.list.append(&result_row(r, now));
        }
        self.stack.set_visible_child_name(if results.is_empty() {
            "none"
        } else {
            "results"
        });
        *self.results.borrow_mut() = results;
    }

    /// Starts a new search: the entry focused, its text selected.
    pub fn focus(&self) {
        self.entry.grab_focus();
    }
}

fn result_row(r: &SearchResult, now: i64) -> gtk::ListBoxRow {
    let m = &r.hit.message;
    let who = if m.direction == Direction::Outgoing {
        tr("You")
    } else {
        r.name.clone()
    };
    let name = gtk::Label::builder()
        .label(&r.name)
        .xalign(0.0)
        .hexpand(true)
        .ellipsize(gtk::pango::EllipsizeMode::End)
        .css_classes(["heading"])
        .build();
    let time = gtk::Label::builder()
        .label(format::list_time(m.timestamp, now))
        .css_classes(["dim-label", "caption"])
        .build();
    let top = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    top.append(&name);
    top.append(&time);
    let snippet = gtk::Label::builder()
        .xalign(0.0)
        .wrap(true)
        .wrap_mode(gtk::pango::WrapMode::WordChar)
        .lines(2)
        .ellipsize(gtk::pango::EllipsizeMode::End)
        .css_classes(["natter-search-snippet"])
        .build();
    snippet.set_markup(&format!(
        "<span alpha=\"70%\">{}:</span> {}",
        glib::markup_escape_text(&who),
        snippet_markup(&r.hit.snippet)
    ));
    let column = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(2)
        .margin_top(6)
        .margin_bottom(6)
        .margin_start(6)
        .margin_end(6)
        .build();
    column.append(&top);
    column.append(&snippet);
    gtk::ListBoxRow::builder().child(&column).build()
}

#[cfg(test)]
mod tests {
    use super::snippet_markup;

    #[test]
    fn matches_are_bold_and_text_is_escaped() {
        assert_eq!(
            snippet_markup("say \u{1}hello\u{2} <b>&"),
            "say <b>hello</b> &lt;b&gt;&amp;"
        );
    }

    #[test]
    fn unbalanced_marks_still_give_valid_markup() {
        assert_eq!(snippet_markup("\u{1}open"), "<b>open</b>");
        assert_eq!(snippet_markup("close\u{2} x"), "close x");
        assert_eq!(snippet_markup("a\nb"), "a b");
    }
}
