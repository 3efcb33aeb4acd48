//! A call's transports at work: connecting each content (ICE then DTLS), the events of
//! its ICE agent (trickled candidates), connected media, and ICE restarts (XEP-0176 §7.3).

use super::*;

impl CallTask {
    /// A transport-info with only our (new) ICE credentials: the restart signal.
    pub(super) fn send_credentials(
        &self,
        creator: Creator,
        name: String,
        transport: &IceTransport,
    ) {
        let (ufrag, pwd) = transport.credentials();
        let mut j = Jingle::new(Action::TransportInfo, self.sid.clone());
        let mut content = Content::new(creator, name);
        content.transport = Some(IceUdpTransport {
            ufrag: Some(ufrag),
            pwd: Some(pwd),
            candidates: vec![],
            fingerprint: None,
        });
        j.contents.push(content);
        self.iq(j);
    }

    /// Restarts ICE on every content (a network change on our side).
    pub(super) async fn restart_ice(&mut self) {
        if self.state != CallState::Active {
            return;
        }
        for i in 0..self.contents.len() {
            let (creator, name, transport) = {
                let c = &self.contents[i];
                (c.creator, c.name.clone(), c.transport.clone())
            };
            if transport.remote_ufrag().is_none() {
                continue;
            }
            match transport.restart_local().await {
                Ok(()) => {
                    info!(sid = %self.sid, content = %name, "restarting ICE");
                    self.send_credentials(creator, name, &transport);
                }
                Err(e) => warn!(sid = %self.sid, content = %name, "cannot restart ICE: {e}"),
            }
        }
    }

    pub(super) fn connect(
        &mut self,
        name: &str,
        remote: IceUdpTransport,
        role: DtlsRole,
        inner: &mpsc::UnboundedSender<Inner>,
    ) {
        let Some(c) = self.contents.iter_mut().find(|c| c.name == name) else {
            return;
        };
        let (Some(ufrag), Some(pwd), Some(fp)) = (remote.ufrag, remote.pwd, remote.fingerprint)
        else {
            let _ = inner.send(Inner::Connected(
                name.to_owned(),
                Err(TransportError::Dtls(
                    "the peer sent no ICE credentials or DTLS fingerprint".into(),
                )),
            ));
            return;
        };
        if !fp.hash.eq_ignore_ascii_case("sha-256") {
            let _ = inner.send(Inner::Connected(
                name.to_owned(),
                Err(TransportError::Dtls(format!(
                    "unsupported fingerprint hash {}",
                    fp.hash
                ))),
            ));
            return;
        }
        let Some(cert) = self.certificate.clone() else {
            return;
        };
        c.connecting = true;
        let transport = c.transport.clone();
        let config = self.config.transport.clone();
        let tx = inner.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let r = transport
                .connect(&ufrag, &pwd, role, &fp.value, &cert, &config)
                .await;
            let _ = tx.send(Inner::Connected(name, r));
        });
    }

    pub(super) async fn on_inner(&mut self, inner: Inner) {
        match inner {
            Inner::Transport(name, TransportEvent::Candidate(cand)) => {
                let Some(c) = self.contents.iter().find(|c| c.name == name) else {
                    return;
                };
                if self.signalled && c.announced {
                    let mut j = Jingle::new(Action::TransportInfo, self.sid.clone());
                    let mut content = Content::new(c.creator, c.name.clone());
                    let (ufrag, pwd) = c.transport.credentials();
                    content.transport = Some(IceUdpTransport {
                        ufrag: Some(ufrag.to_owned()),
                        pwd: Some(pwd.to_owned()),
                        candidates: vec![cand],
                        fingerprint: None,
                    });
                    j.contents.push(content);
                    self.iq(j);
                } else {
                    self.held.push((name, cand));
                }
            }
            Inner::Transport(name, TransportEvent::GatheringDone) => {
                if let Some(c) = self.contents.iter_mut().find(|c| c.name == name) {
                    c.gathered = true;
                }
                // Everything is known: no reason to wait out the grace period.
                if self.flush_at.is_some() && self.contents.iter().all(|c| c.gathered) {
                    self.flush_at = Some(Instant::now());
                }
            }
            Inner::Transport(name, TransportEvent::Ice(state)) => {
                debug!(sid = %self.sid, content = %name, %state, "ICE");
            }
            Inner::Connected(name, Ok((sender, incoming))) => {
                let Some(c) = self.contents.iter().find(|c| c.name == name) else {
                    return;
                };
                let Some(negotiated) = c.negotiated.clone() else {
                    return;
                };
                if c.added {
                    info!(sid = %self.sid, content = %name, "added content connected");
                    let media = ContentMedia {
                        name,
                        negotiated,
                        local_ssrc: c.ssrc,
                        sender,
                        incoming,
                    };
                    self.emit(CallOutput::MediaAdded(media));
                    return;
                }
                self.connected.push(ContentMedia {
                    name,
                    negotiated,
                    local_ssrc: c.ssrc,
                    sender,
                    incoming,
                });
                if self.connected.len() == self.contents.iter().filter(|c| !c.added).count() {
                    self.deadline = None;
                    let media = std::mem::take(&mut self.connected);
                    self.emit(CallOutput::Media(media));
                    self.set_state(CallState::Active);
                }
            }
            Inner::Connected(name, Err(e)) => {
                warn!(sid = %self.sid, content = %name, "transport failed: {e}");
                if self.contents.iter().any(|c| c.name == name && c.added) {
                    // An added content failing does not end the call.
                    self.remove_added(&name, ReasonCondition::ConnectivityError, &e.to_string())
                        .await;
                    return;
                }
                let condition = match e {
                    TransportError::FingerprintMismatch | TransportError::Dtls(_) => {
                        ReasonCondition::SecurityError
                    }
                    TransportError::Timeout(_) | TransportError::Ice(_) => {
                        ReasonCondition::ConnectivityError
                    }
                };
                self.terminate(condition, Some(&e.to_string()));
            }
        }
    }
}
