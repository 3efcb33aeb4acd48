//! XEP-0393: Message Styling, as Pango markup for a message's label.
//!
//! Blocks first (§5.1: quotations, preformatted blocks, plain lines), then the spans of
//! each plain line (§5.2: `*strong*`, `_emphasis_`, `~strike~`, `` `preformatted` ``).
//! The styling directives stay visible, formatted like the text they apply to (§6
//! recommends it) and dimmed; quotation markers become a dimmed bar. Links are found
//! first and are never split by styling: a directive inside a link is part of the link.
//!
//! Linear in the body's length: one pass over the lines, and every span opening looks
//! its closing up in a sorted list instead of scanning ahead.

use std::ops::Range;

use super::format;

/// Quotations nested deeper than this show this many bars (the text is the same).
const MAX_BARS: usize = 8;

/// Pango's layout time grows with a label's attributes times its length (a thousand
/// styled words cost a quarter of a second, 500 quoted lines 0.1 s): a message gets
/// at most this many, and what comes after is shown as plain text.
const MAX_ATTRIBUTES: usize = 256;
/// The attributes of a span (its style and two dimmed directives), and the most a
/// line-level element (a preformatted block's start) takes.
const SPAN_ATTRIBUTES: usize = 3;

/// Pango lays out a label of many short paragraphs in time that grows faster than
/// their number (16,000 one-word lines take seconds): lines after this many are joined.
const MAX_LINES: usize = 500;

/// Pango markup for `body`: escaped, styled, with clickable links.
pub fn markup(body: &str) -> String {
    // Most messages have nothing to style.
    if !body
        .bytes()
        .any(|b| matches!(b, b'*' | b'_' | b'~' | b'`' | b'>'))
        && body.bytes().filter(|&b| b == b'\n').count() < MAX_LINES
    {
        return format::body_markup(body);
    }
    let mut out = String::with_capacity(body.len() + body.len() / 2 + 16);
    let mut budget = MAX_ATTRIBUTES;
    // An open preformatted block: the quotation depth it is in.
    let mut pre: Option<usize> = None;
    let mut offset = 0;
    for (n, line) in body.split('\n').enumerate() {
        let line_start = offset;
        offset += line.len() + 1;
        if n > 0 {
            out.push('\n');
        }
        if budget < SPAN_ATTRIBUTES || n == MAX_LINES {
            if pre.is_some() {
                out.push_str("</tt>");
            }
            push_plain(&mut out, &body[line_start..], MAX_LINES - n);
            return out;
        }
        if let Some(level) = pre {
            match strip_quotes(line, Some(level)) {
                // Still inside the block's quotation.
                (depth, content) if depth == level => {
                    push_bars(&mut out, depth, &mut budget);
                    if is_fence_end(content) {
                        pre = None;
                        push_dim(&mut out, content);
                        out.push_str("</tt>");
                    } else {
                        format::push_linked(&mut out, content, &format::links(content), 0);
                    }
                    continue;
                }
                // The quotation ended, and the block with it (§5.1.2).
                _ => {
                    pre = None;
                    out.push_str("</tt>");
                }
            }
        }
        let (depth, content) = strip_quotes(line, None);
        push_bars(&mut out, depth, &mut budget);
        if content.starts_with("```") {
            // One monospace run for the whole block, its fences dimmed.
            pre = Some(depth);
            budget = budget.saturating_sub(SPAN_ATTRIBUTES);
            out.push_str("<tt>");
            push_dim(&mut out, content);
        } else {
            Line::new(content).push(&mut out, 0..content.len(), [false; 4], &mut budget);
        }
    }
    if pre.is_some() {
        out.push_str("</tt>");
    }
    out
}

/// Appends the rest of a body unstyled (links aside), its lines after the first `lines`
/// joined.
fn push_plain(out: &mut String, rest: &str, lines: usize) {
    let cut = rest
        .match_indices('\n')
        .nth(lines)
        .map_or(rest.len(), |(i, _)| i);
    let (kept, joined) = rest.split_at(cut);
    format::push_linked(out, kept, &format::links(kept), 0);
    let joined = joined.replace('\n', " ");
    format::push_linked(out, &joined, &format::links(&joined), 0);
}

/// The quotation depth of `line` and its text without the markers (§5.1.3: a '>', then
/// the first whitespace character trimmed), at most `limit` levels deep.
fn strip_quotes(line: &str, limit: Option<usize>) -> (usize, &str) {
    let mut depth = 0;
    let mut rest = line;
    while limit.is_none_or(|l| depth < l) {
        let Some(inner) = rest.strip_prefix('>') else {
            break;
        };
        depth += 1;
        rest = match inner.chars().next() {
            Some(c) if c.is_whitespace() => &inner[c.len_utf8()..],
            _ => inner,
        };
    }
    (depth, rest)
}

/// A line that is exactly "```" ends a preformatted block ("\r" from CRLF bodies aside).
fn is_fence_end(content: &str) -> bool {
    content.strip_suffix('\r').unwrap_or(content) == "```"
}

fn push_bars(out: &mut String, depth: usize, budget: &mut usize) {
    if depth == 0 {
        return;
    }
    *budget = budget.saturating_sub(1);
    out.push_str("<span alpha=\"45%\">");
    for _ in 0..depth.min(MAX_BARS) {
        out.push('▎');
    }
    out.push_str("</span> ");
}

/// A dimmed fence line of a preformatted block.
fn push_dim(out: &mut String, content: &str) {
    out.push_str("<span alpha=\"50%\">");
    format::push_escaped(out, content);
    out.push_str("</span>");
}

/// The span kinds, by directive.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Span {
    Strong,
    Emphasis,
    Strike,
    Preformatted,
}

impl Span {
    fn of(b: u8) -> Option<Span> {
        match b {
            b'*' => Some(Span::Strong),
            b'_' => Some(Span::Emphasis),
            b'~' => Some(Span::Strike),
            b'`' => Some(Span::Preformatted),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn directive(self) -> char {
        match self {
            Span::Strong => '*',
            Span::Emphasis => '_',
            Span::Strike => '~',
            Span::Preformatted => '`',
        }
    }

    fn tags(self) -> (&'static str, &'static str) {
        match self {
            Span::Strong => ("<b>", "</b>"),
            Span::Emphasis => ("<i>", "</i>"),
            Span::Strike => ("<s>", "</s>"),
            Span::Preformatted => ("<tt>", "</tt>"),
        }
    }
}

/// One plain line, parsed for spans.
struct Line<'a> {
    text: &'a str,
    links: Vec<Range<usize>>,
    /// Directives outside links that may open a span, in order.
    openings: Vec<usize>,
    /// Per span kind: directives outside links that may close a span, in order.
    closings: [Vec<usize>; 4],
}

impl<'a> Line<'a> {
    fn new(text: &'a str) -> Line<'a> {
        let links = format::links(text);
        let bytes = text.as_bytes();
        let mut openings = Vec::new();
        let mut closings: [Vec<usize>; 4] = Default::default();
        let mut next_link = links.iter().peekable();
        for (i, &b) in bytes.iter().enumerate() {
            let Some(kind) = Span::of(b) else {
                continue;
            };
            while next_link.next_if(|l| l.end <= i).is_some() {}
            if next_link.peek().is_some_and(|l| l.start <= i) {
                continue;
            }
            // Directives are ASCII, so `i` and `i + 1` are character boundaries.
            let before = text[..i].chars().next_back();
            let after = text[i + 1..].chars().next();
            // §5.2: an opening directive starts the line or follows whitespace (or
            // another directive: `*`bold code`*`) and is not followed by whitespace;
            // a closing one does not follow whitespace.
            let opens = before.is_none_or(|c| c.is_whitespace() || is_directive(c))
                && after.is_some_and(|c| !c.is_whitespace() && c != char::from(b));
            if opens {
                openings.push(i);
            }
            if before.is_some_and(|c| !c.is_whitespace()) {
                closings[kind.index()].push(i);
            }
        }
        Line {
            text,
            links,
            openings,
            closings,
        }
    }

    /// The first closing of `kind` for a span opened at `open`, if it is before `end`:
    /// lazily matched, never empty.
    fn closing(&self, kind: Span, open: usize, end: usize) -> Option<usize> {
        let closings = &self.closings[kind.index()];
        let at = closings.partition_point(|&c| c <= open + 1);
        closings.get(at).copied().filter(|&c| c < end)
    }

    /// Appends `range` of the line: spans of the kinds not already `open` inside it,
    /// while the `budget` of attributes lasts.
    fn push(&self, out: &mut String, range: Range<usize>, open: [bool; 4], budget: &mut usize) {
        let mut plain = range.start;
        let first = self.openings.partition_point(|&o| o < range.start);
        for &at in &self.openings[first..] {
            if at >= range.end || *budget < SPAN_ATTRIBUTES {
                break;
            }
            if at < plain {
                // Inside a span already written.
                continue;
            }
            let Some(kind) = Span::of(self.text.as_bytes()[at]) else {
                continue;
            };
            if open[kind.index()] {
                continue;
            }
            let Some(close) = self.closing(kind, at, range.end) else {
                continue;
            };
            *budget = budget.saturating_sub(SPAN_ATTRIBUTES);
            format::push_linked(out, &self.text[plain..at], &self.links, plain);
            let (start_tag, end_tag) = kind.tags();
            out.push_str(start_tag);
            push_directive(out, kind);
            if kind == Span::Preformatted {
                // §5.2.5: no styling inside.
                format::push_linked(out, &self.text[at + 1..close], &self.links, at + 1);
            } else {
                let mut inner = open;
                inner[kind.index()] = true;
                self.push(out, at + 1..close, inner, budget);
            }
            push_directive(out, kind);
            out.push_str(end_tag);
            plain = close + 1;
        }
        format::push_linked(out, &self.text[plain..range.end], &self.links, plain);
    }
}

fn is_directive(c: char) -> bool {
    matches!(c, '*' | '_' | '~' | '`')
}

fn push_directive(out: &mut String, kind: Span) {
    out.push_str("<span alpha=\"50%\">");
    out.push(kind.directive());
    out.push_str("</span>");
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "<span alpha=\"50%\">";

    /// The markup with the dimmed directives shown as plain characters.
    fn m(body: &str) -> String {
        let out = markup(body);
        // Every output is valid Pango markup (with GtkLabel's links as spans).
        let mut pango = out.replace("</a>", "</span>");
        while let Some(start) = pango.find("<a href=\"") {
            let end = pango[start..]
                .find("\">")
                .map_or(pango.len(), |e| start + e + 2);
            pango.replace_range(start..end, "<span>");
        }
        relm4::gtk::pango::parse_markup(&pango, '\0')
            .unwrap_or_else(|e| panic!("{out:?} is not markup: {e}"));
        out.replace(&format!("{D}*</span>"), "*")
            .replace(&format!("{D}_</span>"), "_")
            .replace(&format!("{D}~</span>"), "~")
            .replace(&format!("{D}`</span>"), "`")
    }

    #[test]
    fn the_xeps_span_examples() {
        assert_eq!(m("*strong*"), "<b>*strong*</b>");
        assert_eq!(m("plain *strong* plain"), "plain <b>*strong*</b> plain");
        assert_eq!(
            m("*strong* plain *strong*"),
            "<b>*strong*</b> plain <b>*strong*</b>"
        );
        assert_eq!(m("*strong*plain*"), "<b>*strong*</b>plain*");
        assert_eq!(m("* plain *strong*"), "* plain <b>*strong*</b>");
        for plain in [
            "not strong*",
            "*not strong",
            "*not *strong",
            "**",
            "****",
            "*not \n strong*",
        ] {
            assert_eq!(m(plain), plain, "{plain:?}");
        }
        assert_eq!(
            m("The full title is _Twelfth Night, or What You Will_ but\n_most_ people shorten it."),
            "The full title is <i>_Twelfth Night, or What You Will_</i> but\n\
             <i>_most_</i> people shorten it."
        );
        assert_eq!(
            m("Everyone ~dis~likes cake."),
            "Everyone <s>~dis~</s>likes cake."
        );
        assert_eq!(
            m("Wow, I can write in `monospace`!"),
            "Wow, I can write in <tt>`monospace`</tt>!"
        );
        assert_eq!(m("This is `*monospace*`"), "This is <tt>`*monospace*`</tt>");
        assert_eq!(
            m("This is *`monospace and bold`*"),
            "This is <b>*<tt>`monospace and bold`</tt>*</b>"
        );
        assert_eq!(
            m("_emphasized span containing *strong span*_"),
            "<i>_emphasized span containing <b>*strong span*</b>_</i>"
        );
        assert_eq!(
            m("(Two spans, both *alike in dignity*)"),
            "(Two spans, both <b>*alike in dignity*</b>)"
        );
    }

    #[test]
    fn spans_do_not_cross_or_nest_themselves() {
        assert_eq!(m("*a _b* c_"), "<b>*a _b*</b> c_");
        assert_eq!(m("my_var_name and 2*3*4"), "my_var_name and 2*3*4");
        assert_eq!(m("* *"), "* *");
        assert_eq!(m("*a *"), "*a *");
        assert_eq!(m("~~"), "~~");
    }

    #[test]
    fn the_xeps_block_examples() {
        assert_eq!(
            m("There are three blocks in this body marked by parens,\n\
               but there is no *formatting\nas spans* may not escape blocks."),
            "There are three blocks in this body marked by parens,\n\
             but there is no *formatting\nas spans* may not escape blocks."
        );
        let bar = |n: usize| format!("<span alpha=\"45%\">{}</span> ", "▎".repeat(n));
        let fence = |s: &str| format!("{D}{s}</span>");
        assert_eq!(
            m("```ignored\n(println \"Hello, world!\")\n```\n\nThis should show up as *monospace*"),
            format!(
                "<tt>{}\n(println &quot;Hello, world!&quot;)\n{}</tt>\n\n\
                 This should show up as <b>*monospace*</b>",
                fence("```ignored"),
                fence("```")
            )
        );
        // No closing fence: the block ends with the quotation that holds it.
        assert_eq!(
            m("> ```\n> (println *x*)\n\nThe entire blockquote is *pre*"),
            format!(
                "{b}<tt>{}\n{b}(println *x*)\n</tt>\nThe entire blockquote is <b>*pre*</b>",
                fence("```"),
                b = bar(1)
            )
        );
        assert_eq!(
            m("> That that is, is.\n\nSaid the old hermit of Prague."),
            format!(
                "{}That that is, is.\n\nSaid the old hermit of Prague.",
                bar(1)
            )
        );
        assert_eq!(
            m(">> That that is, is.\n> Said the *old* hermit of Prague.\n\nWho?"),
            format!(
                "{}That that is, is.\n{}Said the <b>*old*</b> hermit of Prague.\n\nWho?",
                bar(2),
                bar(1)
            )
        );
        // Only the first whitespace after '>' belongs to the marker.
        assert_eq!(m(">  indented"), format!("{} indented", bar(1)));
        // A fence in the middle of a line is text; a block never styles its lines.
        assert_eq!(m("a ``` b"), "a ``` b");
        assert_eq!(
            m("```\n*a*\n> b\n```\n*c*"),
            format!(
                "<tt>{}\n*a*\n&gt; b\n{}</tt>\n<b>*c*</b>",
                fence("```"),
                fence("```")
            )
        );
        // A preformatted block that never ends.
        assert_eq!(m("```\nx"), format!("<tt>{}\nx</tt>", fence("```")));
    }

    #[test]
    fn links_are_whole_and_clickable_inside_spans() {
        assert_eq!(
            m("*see https://natter.im/a*b*c*"),
            "<b>*see <a href=\"https://natter.im/a*b*c\">https://natter.im/a*b*c</a>*</b>"
        );
        assert_eq!(
            m("_https://natter.im/x_y_"),
            "<i>_<a href=\"https://natter.im/x_y\">https://natter.im/x_y</a>_</i>"
        );
        // A directive inside a link never closes a span.
        assert_eq!(
            m("*a https://natter.im/*x"),
            "*a <a href=\"https://natter.im/*x\">https://natter.im/*x</a>"
        );
        assert_eq!(
            m("`https://natter.im/?q=*x`"),
            "<tt>`<a href=\"https://natter.im/?q=*x\">https://natter.im/?q=*x</a>`</tt>"
        );
        assert_eq!(
            m("> look: https://natter.im/~me"),
            "<span alpha=\"45%\">▎</span> look: \
             <a href=\"https://natter.im/~me\">https://natter.im/~me</a>"
        );
    }

    #[test]
    fn markup_in_the_body_is_text() {
        assert_eq!(
            m("<b>not bold</b> & *\"bold\"*"),
            "&lt;b&gt;not bold&lt;/b&gt; &amp; <b>*&quot;bold&quot;*</b>"
        );
        assert_eq!(
            m("`<span foreground=\"red\">`"),
            "<tt>`&lt;span foreground=&quot;red&quot;&gt;`</tt>"
        );
        assert_eq!(m("*ü* _日本_"), "<b>*ü*</b> <i>_日本_</i>");
        // Control characters, CRLF and odd whitespace still make valid markup.
        m("*a\u{1}b* _\u{7f}_ ~x\r\n~ `\u{a0}`\u{2003}*y*\r\n```\u{0}\r\nz\u{0}\r\n```\r\n");
    }

    #[test]
    fn hostile_bodies_are_linear_and_valid() {
        let cases = [
            "*a ".repeat(35_000),
            "_".repeat(100_000),
            "*_~`".repeat(25_000),
            "> ".repeat(50_000) + "deep",
            ">\n".repeat(50_000),
            "```\n".repeat(25_000),
            "(https://".repeat(11_000),
            "*https:// ".repeat(10_000),
            format!("*{}*", "x _y ~z `w ".repeat(9_000)),
            "a* ".repeat(35_000) + "*b",
            "*a _b ~c `d` e~ f_ g* ".repeat(5_000),
        ];
        for body in cases {
            let start = std::time::Instant::now();
            let out = markup(&body);
            let took = start.elapsed();
            m(&body);
            assert!(
                // Generous for a debug build on a busy machine; quadratic would be minutes.
                took < std::time::Duration::from_secs(1),
                "{} bytes took {took:?}: {}",
                body.len(),
                &body[..20]
            );
            assert!(out.len() < body.len() * 40 + 100);
        }
        // Pango gets a bounded number of attributes; the rest is plain text.
        let many = m(&"*b* ".repeat(1000));
        assert_eq!(
            many.matches("<b>").count(),
            MAX_ATTRIBUTES / SPAN_ATTRIBUTES
        );
        assert!(many.ends_with("*b* *b* "), "{many}");
        let quotes = m(&"> q\n".repeat(1000));
        assert_eq!(
            quotes.matches('▎').count(),
            MAX_LINES.min(MAX_ATTRIBUTES - 2)
        );
        assert!(quotes.ends_with("&gt; q &gt; q "), "{quotes}");
        let blocks = m(&"```\n".repeat(1000));
        assert!(blocks.matches("<tt>").count() < MAX_ATTRIBUTES / 2);
        assert_eq!(blocks.matches('\n').count(), MAX_LINES);
        // Lines after the first MAX_LINES are joined; nothing is lost.
        let lines = m(&"q\n".repeat(2000));
        assert_eq!(lines.matches('\n').count(), MAX_LINES);
        assert_eq!(lines.matches('q').count(), 2000);
        // Deep quotations show a bounded number of bars.
        let deep = m(&("> ".repeat(50_000) + "deep"));
        assert_eq!(deep.matches('▎').count(), MAX_BARS);
    }
}
