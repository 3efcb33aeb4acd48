//! XEP-0215: External Service Discovery (`urn:xmpp:extdisco:2`)
//!
//! Used to learn the STUN/TURN servers (and their credentials) offered by
//! the user's server. The `action` attribute of pushes and extended
//! (data form) information are skipped.

use minidom::Element;

use crate::ns;
use crate::util::{check, opt_bool, opt_parse, opt_string, req_attr, BuilderExt};
use crate::ParseError;

/// One `<service/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// Service type (attribute `type`): "stun", "turn", "stuns", "turns", …
    pub kind: String,
    /// Underlying transport: "udp" or "tcp".
    pub transport: Option<String>,
    /// Username for the service.
    pub username: Option<String>,
    /// Password for the service.
    pub password: Option<String>,
    /// When the credentials expire (XEP-0082 dateTime, kept as text).
    pub expires: Option<String>,
    /// Whether credentials are needed (and must be requested if absent).
    pub restricted: bool,
    /// Human-readable name.
    pub name: Option<String>,
}

impl TryFrom<Element> for Service {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        const E: &str = "service";
        check(&el, E, ns::EXTDISCO)?;
        Ok(Service {
            host: req_attr(&el, E, "host")?.to_owned(),
            port: opt_parse(&el, E, "port")?,
            kind: req_attr(&el, E, "type")?.to_owned(),
            transport: opt_string(&el, "transport"),
            username: opt_string(&el, "username"),
            password: opt_string(&el, "password"),
            expires: opt_string(&el, "expires"),
            restricted: opt_bool(&el, E, "restricted")?.unwrap_or(false),
            name: opt_string(&el, "name"),
        })
    }
}

impl From<Service> for Element {
    fn from(s: Service) -> Element {
        Element::builder("service", ns::EXTDISCO)
            .with("host", s.host)
            .with("port", s.port)
            .with("type", s.kind)
            .with("transport", s.transport)
            .with("username", s.username)
            .with("password", s.password)
            .with("expires", s.expires)
            .with("restricted", s.restricted.then_some("true"))
            .with("name", s.name)
            .build()
    }
}

fn services_of(el: &Element) -> Result<Vec<Service>, ParseError> {
    el.children()
        .filter(|c| c.is("service", ns::EXTDISCO))
        .map(|c| Service::try_from(c.clone()))
        .collect()
}

/// A `<services/>` element (request or result).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Services {
    /// The `type` attribute restricting the request/result to one kind.
    pub kind_filter: Option<String>,
    /// The services.
    pub services: Vec<Service>,
}

impl Services {
    /// The payload of an IQ-get asking for all services.
    pub fn request() -> Element {
        Element::bare("services", ns::EXTDISCO)
    }

    /// The payload of an IQ-get asking for services of one type.
    pub fn request_kind(kind: &str) -> Element {
        Element::builder("services", ns::EXTDISCO)
            .with("type", kind)
            .build()
    }
}

impl TryFrom<Element> for Services {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "services", ns::EXTDISCO)?;
        Ok(Services {
            kind_filter: opt_string(&el, "type"),
            services: services_of(&el)?,
        })
    }
}

impl From<Services> for Element {
    fn from(s: Services) -> Element {
        Element::builder("services", ns::EXTDISCO)
            .with("type", s.kind_filter)
            .append_all(s.services.into_iter().map(Element::from))
            .build()
    }
}

/// A `<credentials/>` element (request or result).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The services; in a request only host, type and maybe port are set.
    pub services: Vec<Service>,
}

impl Credentials {
    /// The payload of an IQ-get asking for credentials for one service.
    pub fn request(host: &str, kind: &str, port: Option<u16>) -> Element {
        Element::builder("credentials", ns::EXTDISCO)
            .append(
                Element::builder("service", ns::EXTDISCO)
                    .with("host", host)
                    .with("type", kind)
                    .with("port", port)
                    .build(),
            )
            .build()
    }
}

impl TryFrom<Element> for Credentials {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "credentials", ns::EXTDISCO)?;
        Ok(Credentials {
            services: services_of(&el)?,
        })
    }
}

impl From<Credentials> for Element {
    fn from(c: Credentials) -> Element {
        Element::builder("credentials", ns::EXTDISCO)
            .append_all(c.services.into_iter().map(Element::from))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_all_rejected, parse, reserialise};

    #[test]
    fn xep_all_services_result_roundtrip() {
        let s: Services = parse(
            "<services xmlns='urn:xmpp:extdisco:2'>
               <service host='stun.shakespeare.lit' port='9998' transport='udp' type='stun'/>
               <service host='relay.shakespeare.lit' password='jj929jkj5sadjfj93v3n'
                        port='9999' transport='udp' type='turn' username='nb78932lkjlskjfdb7g8'/>
               <service host='192.0.2.1' port='8888' transport='udp' type='stun'/>
               <service host='192.0.2.1' port='8889' password='93jn3bakj9s832lrjbbz'
                        transport='udp' type='turn' username='auu98sjl2wk3e9fjdsl7'/>
               <service host='ftp.shakespeare.lit' name='Shakespearean File Server'
                        password='guest' port='20' transport='tcp' type='ftp' username='guest'/>
             </services>",
        );
        assert_eq!(s.kind_filter, None);
        assert_eq!(s.services.len(), 5);
        assert_eq!(
            s.services[1],
            Service {
                host: "relay.shakespeare.lit".into(),
                port: Some(9999),
                kind: "turn".into(),
                transport: Some("udp".into()),
                username: Some("nb78932lkjlskjfdb7g8".into()),
                password: Some("jj929jkj5sadjfj93v3n".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            s.services[4].name.as_deref(),
            Some("Shakespearean File Server")
        );
        assert_eq!(reserialise(&s), s);
    }

    #[test]
    fn filtered_restricted_and_expiring() {
        let s: Services = parse(
            "<services xmlns='urn:xmpp:extdisco:2' type='turn'>
               <service host='turn.example.org' port='3478' type='turns' transport='tcp'
                        restricted='1' expires='2026-01-01T12:00:00Z'>
                 <x xmlns='jabber:x:data' type='result'/>
               </service>
             </services>",
        );
        assert_eq!(s.kind_filter.as_deref(), Some("turn"));
        assert!(s.services[0].restricted);
        assert_eq!(
            s.services[0].expires.as_deref(),
            Some("2026-01-01T12:00:00Z")
        );
        assert_eq!(reserialise(&s), s);
    }

    #[test]
    fn requests() {
        let r: Services = Services::try_from(Services::request()).unwrap();
        assert_eq!(r, Services::default());
        let el = Services::request_kind("turn");
        assert_eq!(el.attr("type"), Some("turn"));
        let c = Credentials::try_from(Credentials::request("turn.shakespeare.lit", "turn", None))
            .unwrap();
        assert_eq!(c.services[0].host, "turn.shakespeare.lit");
        assert_eq!(c.services[0].kind, "turn");
        let c: Credentials = parse(
            "<credentials xmlns='urn:xmpp:extdisco:2'>
               <service host='turn.shakespeare.lit' type='turn'
                        password='jj929jkj5sadjfj93v3n' username='nb78932lkjlskjfdb7g8'/>
             </credentials>",
        );
        assert_eq!(
            c.services[0].username.as_deref(),
            Some("nb78932lkjlskjfdb7g8")
        );
        assert_eq!(reserialise(&c), c);
    }

    #[test]
    fn malformed_is_rejected() {
        assert_all_rejected::<Services>(&[
            "<services xmlns='urn:xmpp:extdisco:1'/>",
            "<services xmlns='urn:xmpp:extdisco:2'><service type='stun'/></services>",
            "<services xmlns='urn:xmpp:extdisco:2'><service host='h'/></services>",
            "<services xmlns='urn:xmpp:extdisco:2'><service host='h' type='stun' port='70000'/></services>",
            "<services xmlns='urn:xmpp:extdisco:2'><service host='h' type='stun' port=''/></services>",
            "<services xmlns='urn:xmpp:extdisco:2'><service host='h' type='turn' restricted='yes'/></services>",
        ]);
        assert_all_rejected::<Credentials>(&[
            "<services xmlns='urn:xmpp:extdisco:2'/>",
            "<credentials xmlns='urn:xmpp:extdisco:2'><service type='turn'/></credentials>",
        ]);
    }
}
