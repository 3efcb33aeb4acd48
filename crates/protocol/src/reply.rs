//! XEP-0461: Message Replies, with the XEP-0428 fallback that quotes the answered text
//! for clients without replies.

use minidom::Element;

use crate::ns;
use crate::util::BuilderExt;

/// `<reply to='…' id='…'/>`: which message this one answers and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The author of the answered message (a JID), if given.
    pub to: Option<String>,
    /// The answered message's id (its origin-id / id in a chat).
    pub id: String,
}

impl Reply {
    pub fn from_payloads(payloads: &[Element]) -> Option<Reply> {
        let el = payloads.iter().find(|p| p.is("reply", ns::REPLY))?;
        let id = el
            .attr("id")
            .filter(|id| !id.is_empty() && id.len() <= 256)?;
        Some(Reply {
            to: el.attr("to").filter(|t| t.len() <= 3071).map(str::to_owned),
            id: id.to_owned(),
        })
    }
}

impl From<Reply> for Element {
    fn from(r: Reply) -> Element {
        Element::builder("reply", ns::REPLY)
            .with("to", r.to)
            .with("id", r.id)
            .build()
    }
}

/// The body without the parts a fallback for `for_ns` marks (XEP-0428: start and end
/// are code point offsets into the body). Ranges that do not fit the body are ignored.
pub fn strip_fallback(body: &str, payloads: &[Element], for_ns: &str) -> String {
    let mut ranges: Vec<(usize, usize)> = payloads
        .iter()
        .filter(|p| p.is("fallback", ns::FALLBACK) && p.attr("for") == Some(for_ns))
        .flat_map(|p| p.children().filter(|c| c.is("body", ns::FALLBACK)))
        .filter_map(|b| {
            let start = b.attr("start")?.parse::<usize>().ok()?;
            let end = b.attr("end")?.parse::<usize>().ok()?;
            (start < end).then_some((start, end))
        })
        .collect();
    if ranges.is_empty() {
        return body.to_owned();
    }
    let len = body.chars().count();
    ranges.retain(|&(_, end)| end <= len);
    body.chars()
        .enumerate()
        .filter(|(i, _)| !ranges.iter().any(|&(s, e)| *i >= s && *i < e))
        .map(|(_, c)| c)
        .collect()
}

/// The text a reply starts with for clients without XEP-0461 ("> quoted line" per
/// line of the answered message, then a newline), and the fallback element marking it.
pub fn quote_fallback(quoted: &str) -> (String, Element) {
    let mut text: String = quoted.lines().take(3).map(|l| format!("> {l}\n")).collect();
    if text.is_empty() {
        text.push_str(">\n");
    }
    let end = text.chars().count();
    let el = Element::builder("fallback", ns::FALLBACK)
        .with("for", ns::REPLY)
        .append(
            Element::builder("body", ns::FALLBACK)
                .with("start", "0")
                .with("end", end.to_string())
                .build(),
        )
        .build();
    (text, el)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(xml: &str) -> Vec<Element> {
        let el: Element = xml.parse().unwrap();
        el.children().cloned().collect()
    }

    #[test]
    fn reads_a_conversations_style_reply() {
        let p = payloads(
            "<message xmlns='jabber:client'>
               <body>&gt; lunch at noon?\nyes, see you</body>
               <reply xmlns='urn:xmpp:reply:0' to='friend@localhost/phone' id='o-1'/>
               <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>
                 <body start='0' end='17'/></fallback>
             </message>",
        );
        let r = Reply::from_payloads(&p).unwrap();
        assert_eq!(r.id, "o-1");
        assert_eq!(r.to.as_deref(), Some("friend@localhost/phone"));
        assert_eq!(
            strip_fallback("> lunch at noon?\nyes, see you", &p, ns::REPLY),
            "yes, see you"
        );
    }

    #[test]
    fn bad_ranges_leave_the_body_alone() {
        let p = payloads(
            "<message xmlns='jabber:client'>
               <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>
                 <body start='5' end='2'/><body start='0' end='999'/><body start='x' end='3'/>
               </fallback></message>",
        );
        assert_eq!(strip_fallback("héllo", &p, ns::REPLY), "héllo");
        // A fallback for another feature is not ours to strip.
        let other = payloads(
            "<message xmlns='jabber:client'><fallback xmlns='urn:xmpp:fallback:0' for='urn:other'>
               <body start='0' end='2'/></fallback></message>",
        );
        assert_eq!(strip_fallback("héllo", &other, ns::REPLY), "héllo");
    }

    #[test]
    fn quote_round_trip_counts_code_points() {
        let (text, el) = quote_fallback("café ☕\nsecond");
        assert_eq!(text, "> café ☕\n> second\n");
        let body = format!("{text}sure");
        let stripped = strip_fallback(&body, &[el], ns::REPLY);
        assert_eq!(stripped, "sure");
        let reply: Element = Reply {
            to: Some("a@b/c".into()),
            id: "o-1".into(),
        }
        .into();
        assert_eq!(Reply::from_payloads(&[reply]).unwrap().id, "o-1");
    }
}
