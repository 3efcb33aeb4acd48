//! XEP-0377: Blocking Command Reports (spam reporting)
//!
//! A `<report/>` inside a XEP-0191 `<block/>` item tells the server why we block: the
//! `urn:xmpp:reporting:1` form of version 0.4, with the reason as an attribute.

use minidom::Element;

use crate::error::ParseError;
use crate::ns;
use crate::util::{check, opt_string, req_attr};

/// Why an entity is reported (XEP-0377 §4 registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Spam,
    Abuse,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Spam => "urn:xmpp:reporting:spam",
            Reason::Abuse => "urn:xmpp:reporting:abuse",
        }
    }
}

/// `<report xmlns='urn:xmpp:reporting:1' reason='…'><text>…</text></report>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub reason: Reason,
    pub text: Option<String>,
}

impl TryFrom<Element> for Report {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "report", ns::REPORTING)?;
        let reason = match req_attr(&el, "report", "reason")? {
            "urn:xmpp:reporting:spam" => Reason::Spam,
            "urn:xmpp:reporting:abuse" => Reason::Abuse,
            other => return Err(ParseError::bad_value("report", "reason", other)),
        };
        let text = el
            .get_child("text", ns::REPORTING)
            .map(|t| t.text())
            .filter(|t| !t.is_empty());
        Ok(Report { reason, text })
    }
}

impl From<Report> for Element {
    fn from(r: Report) -> Element {
        let mut b = Element::builder("report", ns::REPORTING).attr(
            minidom::rxml::xml_ncname!("reason").into(),
            r.reason.as_str(),
        );
        if let Some(text) = r.text {
            b = b.append(Element::builder("text", ns::REPORTING).append(text).build());
        }
        b.build()
    }
}

/// A XEP-0191 `<block/>` of one JID, with a report when given.
pub fn block(jid: &str, report: Option<Report>) -> Element {
    let mut item =
        Element::builder("item", ns::BLOCKING).attr(minidom::rxml::xml_ncname!("jid").into(), jid);
    if let Some(report) = report {
        item = item.append(Element::from(report));
    }
    Element::builder("block", ns::BLOCKING)
        .append(item.build())
        .build()
}

/// The report on the one item of a `<block/>`, if any.
pub fn report_of(block: &Element) -> Option<Report> {
    block
        .get_child("item", ns::BLOCKING)?
        .get_child("report", ns::REPORTING)
        .and_then(|r| Report::try_from(r.clone()).ok())
}

/// The blocked JID of a one-item `<block/>`.
pub fn blocked_jid(block: &Element) -> Option<String> {
    opt_string(block.get_child("item", ns::BLOCKING)?, "jid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{parse, reserialise};

    /// XEP-0377 §3, Example 1 (0.4): a spam report with a block.
    const EXAMPLE: &str = "<block xmlns='urn:xmpp:blocking'>\
        <item jid='romeo@example.net'>\
        <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>\
        <text xmlns='urn:xmpp:reporting:1' xml:lang='en'>Never came trouble to my house like this.</text>\
        </report></item></block>";

    #[test]
    fn parses_serialises_compares() {
        let el: Element = EXAMPLE.parse().unwrap();
        let report = report_of(&el).unwrap();
        assert_eq!(report.reason, Reason::Spam);
        assert_eq!(
            report.text.as_deref(),
            Some("Never came trouble to my house like this.")
        );
        assert_eq!(reserialise(&report), report);
        let built = block("romeo@example.net", Some(report.clone()));
        assert_eq!(blocked_jid(&built).as_deref(), Some("romeo@example.net"));
        assert_eq!(report_of(&built), Some(report));
        let bare: Report =
            parse("<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:abuse'/>");
        assert_eq!(
            bare,
            Report {
                reason: Reason::Abuse,
                text: None
            }
        );
    }

    #[test]
    fn unknown_reason_is_refused() {
        let el: Element = "<report xmlns='urn:xmpp:reporting:1' reason='x'/>"
            .parse()
            .unwrap();
        assert!(Report::try_from(el).is_err());
        assert!(report_of(&block("a@b", None)).is_none());
    }
}
