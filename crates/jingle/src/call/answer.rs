//! The session's offer/answer (XEP-0166 §6.2–6.3): answering a session-initiate as the
//! responder, and reading the session-accept as the initiator.

use std::collections::HashMap;

use super::*;

impl CallTask {
    pub(super) async fn on_initiate(&mut self, j: Jingle, inner: &mpsc::UnboundedSender<Inner>) {
        if let Err(e) = self.certificate() {
            self.terminate(ReasonCondition::FailedApplication, Some(&e.to_string()));
            return;
        }
        // Answer every RTP content we understand; a call with none is unsupported.
        let mut remote: HashMap<String, IceUdpTransport> = HashMap::new();
        for content in j.contents {
            let (Some(desc), Some(transport)) = (content.description, content.transport) else {
                continue;
            };
            let ssrc = rand::random::<u32>();
            let (answer, agreed) = match negotiation::answer(&desc, self.config.caps, ssrc) {
                Ok(a) => a,
                Err(e) => {
                    warn!(sid = %self.sid, content = %content.name, "{e}");
                    continue;
                }
            };
            if let Err(e) = self
                .new_content(
                    content.name.clone(),
                    content.creator,
                    agreed.kind,
                    answer,
                    ssrc,
                    inner,
                )
                .await
            {
                self.terminate(ReasonCondition::FailedTransport, Some(&e.to_string()));
                return;
            }
            if let Some(c) = self.contents.last_mut() {
                c.negotiated = Some(agreed);
            }
            remote.insert(content.name, transport);
        }
        if self.contents.is_empty() {
            self.signalled = true;
            self.terminate(
                ReasonCondition::UnsupportedApplications,
                Some("no audio or video we can play"),
            );
            return;
        }
        for c in &self.contents {
            if let Some(t) = remote.get(&c.name) {
                for cand in &t.candidates {
                    if let Err(e) = c.transport.add_remote_candidate(cand) {
                        debug!("remote candidate not usable: {e}");
                    }
                }
            }
        }
        for (name, t) in remote {
            let role = match t.fingerprint.as_ref().and_then(|f| f.setup) {
                // We answer `active` to actpass (and to passive): we send the ClientHello.
                // An `active` offer leaves us the server.
                Some(Setup::Active) => DtlsRole::Server,
                _ => DtlsRole::Client,
            };
            self.pending_connect.push((name, t, role));
        }
        self.flush_at = Some(Instant::now() + GATHER_GRACE);
    }

    pub(super) fn send_accept(&mut self) {
        let mut accept = Jingle::new(Action::SessionAccept, self.sid.clone());
        accept.responder = Some(self.own_jid.clone());
        let setup = if self
            .pending_connect
            .iter()
            .any(|(_, _, role)| *role == DtlsRole::Server)
        {
            Setup::Passive
        } else {
            Setup::Active
        };
        for c in &self.contents {
            let mut content = Content::new(c.creator, c.name.clone());
            content.description = Some(c.local.clone());
            content.transport = self.transport_element(c, setup);
            accept.contents.push(content);
        }
        self.held.clear();
        self.signalled = true;
        self.iq(accept);
        self.deadline =
            Some(Instant::now() + self.config.transport.connect_timeout + Duration::from_secs(15));
    }

    pub(super) async fn on_accept(&mut self, j: Jingle, inner: &mpsc::UnboundedSender<Inner>) {
        if self.state != CallState::Connecting || !self.signalled {
            return;
        }
        let mut transports = Vec::new();
        for content in j.contents {
            let Some(c) = self.contents.iter_mut().find(|c| c.name == content.name) else {
                continue;
            };
            let (Some(desc), Some(t)) = (content.description, content.transport) else {
                continue;
            };
            match negotiation::accept_answer(&c.local, &desc, self.config.caps) {
                Ok(n) => c.negotiated = Some(n),
                Err(e) => {
                    warn!(sid = %self.sid, content = %c.name, "bad answer: {e}");
                    continue;
                }
            }
            for cand in &t.candidates {
                if let Err(e) = c.transport.add_remote_candidate(cand) {
                    debug!("remote candidate not usable: {e}");
                }
            }
            transports.push((c.name.clone(), t));
        }
        // Contents the peer did not accept are dropped.
        self.contents.retain(|c| c.negotiated.is_some());
        if self.contents.is_empty() {
            self.terminate(
                ReasonCondition::IncompatibleParameters,
                Some("no content was accepted with a codec we offered"),
            );
            return;
        }
        for (name, t) in transports {
            // We offered actpass: the answerer chose; `passive` makes us the client.
            let role = match t.fingerprint.as_ref().and_then(|f| f.setup) {
                Some(Setup::Passive) => DtlsRole::Client,
                _ => DtlsRole::Server,
            };
            self.connect(&name, t, role, inner);
        }
    }
}
