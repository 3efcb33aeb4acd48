//! Adding a content to a running session (XEP-0166 §6.7–6.8: content-add,
//! content-accept, content-reject, content-remove): turning the camera on in an audio
//! call, as Dino and Conversations do.
//!
//! Ours: [`CallInput::AddVideo`](super::CallInput::AddVideo) creates a video content with
//! a new ICE transport (same certificate; ICE roles follow the session, so the session
//! initiator stays controlling), sends `content-add` after the gathering grace period
//! (`actpass`, the offerer of the content), and waits for `content-accept` (connect; the
//! answer's setup picks the DTLS role) or `content-reject` (drop it; the call goes on).
//!
//! Theirs: a video `content-add` in an active call is accepted automatically — we answer
//! with `content-accept` and send our camera too, from the same media source as the
//! rest of the call (no prompt, no receive-only mode: simple, and what users of an audio
//! call who get video from the other side expect). A content we cannot take (no codec in
//! common, not video, a second video, the call not active yet, a clash with our own
//! pending add) is answered with `content-reject`.
//!
//! Once an added content is connected, [`CallOutput::MediaAdded`] hands it to the media
//! engine, which adds it to the running pipeline.

use std::collections::HashMap;
use std::time::Duration;

use natter_protocol::jingle::{Action, Content, Creator, Jingle, ReasonCondition, Senders};
use natter_protocol::jingle_dtls::Setup;
use natter_protocol::jingle_ice_udp::IceUdpTransport;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{
    reason, CallDirection, CallOutput, CallState, CallTask, ContentState, Inner, GATHER_GRACE,
};
use crate::negotiation::{self, MediaKind};
use crate::DtlsRole;

/// How long the peer may take to answer our content-add (a user may be asked).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A content being added; `at` is when its next step is due.
pub(super) struct PendingAdd {
    pub(super) name: String,
    pub(super) step: Step,
    pub(super) at: Instant,
}

pub(super) enum Step {
    /// Ours: gathering; the content-add goes out at `at`.
    Gathering,
    /// Ours: the content-add is out; the answer is due by `at`.
    Offered,
    /// Theirs: our content-accept goes out at `at`, then we connect.
    Accepting {
        remote: IceUdpTransport,
        role: DtlsRole,
    },
}

/// A name for a new content of `kind` not used by any content of the session.
pub(super) fn unique_name(kind: MediaKind, taken: &[&str]) -> String {
    let base = kind.as_str();
    if !taken.contains(&base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| !taken.contains(&n.as_str()))
        .unwrap_or_else(|| base.to_owned())
}

/// Our DTLS role for an answer to an offer with `setup` (as for session-initiate): we
/// answer `active` (we send the ClientHello) unless the offerer already is.
fn answer_role(setup: Option<Setup>) -> (DtlsRole, Setup) {
    match setup {
        Some(Setup::Active) => (DtlsRole::Server, Setup::Passive),
        _ => (DtlsRole::Client, Setup::Active),
    }
}

/// Our DTLS role once the peer answered our `actpass` with `setup`.
fn offer_role(setup: Option<Setup>) -> DtlsRole {
    match setup {
        Some(Setup::Passive) => DtlsRole::Client,
        _ => DtlsRole::Server,
    }
}

impl CallTask {
    fn our_creator(&self) -> Creator {
        match self.direction {
            CallDirection::Outgoing => Creator::Initiator,
            CallDirection::Incoming => Creator::Responder,
        }
    }

    pub(super) async fn add_video(&mut self, inner: &mpsc::UnboundedSender<Inner>) {
        if self.state != CallState::Active || !self.signalled {
            debug!(sid = %self.sid, state = ?self.state, "video can only be added to an active call");
            return;
        }
        if self.adding.is_some() || self.contents.iter().any(|c| c.kind == MediaKind::Video) {
            debug!(sid = %self.sid, "the call has or is adding video already");
            return;
        }
        let taken: Vec<&str> = self.contents.iter().map(|c| c.name.as_str()).collect();
        let name = unique_name(MediaKind::Video, &taken);
        let ssrc = rand::random::<u32>();
        let local = negotiation::offer(MediaKind::Video, self.config.caps, ssrc);
        let creator = self.our_creator();
        if let Err(e) = self
            .new_content(name.clone(), creator, MediaKind::Video, local, ssrc, inner)
            .await
        {
            warn!(sid = %self.sid, "cannot add video: {e}");
            self.emit(CallOutput::ContentDropped {
                name,
                kind: MediaKind::Video,
                reason: e.to_string(),
            });
            return;
        }
        if let Some(c) = self.contents.last_mut() {
            c.added = true;
            c.announced = false;
        }
        info!(sid = %self.sid, content = %name, "adding video");
        self.adding = Some(PendingAdd {
            name,
            step: Step::Gathering,
            at: Instant::now() + GATHER_GRACE,
        });
    }

    pub(super) async fn on_add_timer(&mut self, inner: &mpsc::UnboundedSender<Inner>) {
        let Some(pending) = self.adding.take() else {
            return;
        };
        match pending.step {
            Step::Gathering => {
                let Some(content) = self.announce(&pending.name, Setup::Actpass) else {
                    return;
                };
                let mut j = Jingle::new(Action::ContentAdd, self.sid.clone());
                j.contents.push(content);
                self.iq(j);
                self.adding = Some(PendingAdd {
                    step: Step::Offered,
                    at: Instant::now() + ANSWER_TIMEOUT,
                    ..pending
                });
            }
            Step::Offered => {
                warn!(sid = %self.sid, content = %pending.name, "no answer to our content-add");
                self.remove_added(&pending.name, ReasonCondition::Timeout, "no answer")
                    .await;
            }
            Step::Accepting { remote, role } => {
                let setup = match role {
                    DtlsRole::Server => Setup::Passive,
                    DtlsRole::Client => Setup::Active,
                };
                let Some(content) = self.announce(&pending.name, setup) else {
                    return;
                };
                let mut j = Jingle::new(Action::ContentAccept, self.sid.clone());
                j.contents.push(content);
                self.iq(j);
                self.connect(&pending.name, remote, role, inner);
            }
        }
    }

    /// The `<content/>` announcing added content `name` (with the candidates held so
    /// far); from now on its candidates trickle.
    fn announce(&mut self, name: &str, setup: Setup) -> Option<Content> {
        let c = self.contents.iter().find(|c| c.name == name)?;
        let mut content = Content::new(c.creator, c.name.clone());
        content.senders = Senders::Both;
        content.description = Some(c.local.clone());
        content.transport = self.transport_element(c, setup);
        self.held.retain(|(n, _)| n != name);
        if let Some(c) = self.contents.iter_mut().find(|c| c.name == name) {
            c.announced = true;
        }
        Some(content)
    }

    /// Forgets added content `name`: closes its transport and tells the owner.
    async fn drop_added(&mut self, name: &str, why: &str) -> Option<ContentState> {
        let i = self
            .contents
            .iter()
            .position(|c| c.name == name && c.added)?;
        let c = self.contents.remove(i);
        self.held.retain(|(n, _)| n != name);
        if self.adding.as_ref().is_some_and(|a| a.name == name) {
            self.adding = None;
        }
        c.transport.close().await;
        self.emit(CallOutput::ContentDropped {
            name: name.to_owned(),
            kind: c.kind,
            reason: why.to_owned(),
        });
        Some(c)
    }

    /// Removes added content `name` from the session (content-remove) and drops it.
    pub(super) async fn remove_added(
        &mut self,
        name: &str,
        condition: ReasonCondition,
        text: &str,
    ) {
        let Some(c) = self.drop_added(name, text).await else {
            return;
        };
        if c.announced {
            let mut j = Jingle::new(Action::ContentRemove, self.sid.clone());
            j.contents.push(Content::new(c.creator, c.name.clone()));
            j.reason = Some(reason(condition, Some(text)));
            self.iq(j);
        }
    }

    /// The peer answered our content-add IQ with an error.
    pub(super) async fn add_refused(&mut self, error: &str) {
        if let Some(name) = self.adding.as_ref().map(|a| a.name.clone()) {
            self.drop_added(&name, error).await;
        }
    }

    fn reject_content(&self, creator: Creator, name: &str, condition: ReasonCondition, text: &str) {
        info!(sid = %self.sid, content = %name, "rejecting content-add: {text}");
        let mut j = Jingle::new(Action::ContentReject, self.sid.clone());
        j.contents.push(Content::new(creator, name.to_owned()));
        j.reason = Some(reason(condition, Some(text)));
        self.iq(j);
    }

    /// Why we cannot take an added content, if we cannot.
    fn refuse_add(&self, content: &Content) -> Option<(ReasonCondition, &'static str)> {
        if self.state != CallState::Active || !self.signalled {
            return Some((ReasonCondition::FailedApplication, "the call is not active"));
        }
        if self.adding.is_some() {
            return Some((
                ReasonCondition::FailedApplication,
                "another content is being added",
            ));
        }
        if self.contents.iter().any(|c| c.name == content.name) {
            return Some((
                ReasonCondition::GeneralError,
                "a content of that name exists",
            ));
        }
        let Some(desc) = &content.description else {
            return Some((ReasonCondition::UnsupportedApplications, "not RTP"));
        };
        let Some(t) = &content.transport else {
            return Some((ReasonCondition::UnsupportedTransports, "not ICE-UDP"));
        };
        if t.ufrag.is_none() || t.pwd.is_none() || t.fingerprint.is_none() {
            return Some((
                ReasonCondition::UnsupportedTransports,
                "no ICE credentials or DTLS fingerprint",
            ));
        }
        if MediaKind::parse(&desc.media) != Some(MediaKind::Video) {
            return Some((
                ReasonCondition::UnsupportedApplications,
                "only video can be added",
            ));
        }
        if self.contents.iter().any(|c| c.kind == MediaKind::Video) {
            return Some((
                ReasonCondition::FailedApplication,
                "the call has video already",
            ));
        }
        None
    }

    pub(super) async fn on_content_add(&mut self, j: Jingle, inner: &mpsc::UnboundedSender<Inner>) {
        for content in j.contents {
            if let Some((condition, text)) = self.refuse_add(&content) {
                self.reject_content(content.creator, &content.name, condition, text);
                continue;
            }
            let (Some(desc), Some(remote)) = (content.description, content.transport) else {
                continue;
            };
            let ssrc = rand::random::<u32>();
            let (answer, agreed) = match negotiation::answer(&desc, self.config.caps, ssrc) {
                Ok(a) => a,
                Err(e) => {
                    self.reject_content(
                        content.creator,
                        &content.name,
                        ReasonCondition::UnsupportedApplications,
                        &e.to_string(),
                    );
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
                self.reject_content(
                    content.creator,
                    &content.name,
                    ReasonCondition::FailedTransport,
                    &e.to_string(),
                );
                continue;
            }
            let Some(c) = self.contents.last_mut() else {
                continue;
            };
            c.negotiated = Some(agreed);
            c.added = true;
            c.announced = false;
            for cand in &remote.candidates {
                if let Err(e) = c.transport.add_remote_candidate(cand) {
                    debug!("remote candidate not usable: {e}");
                }
            }
            let (role, _) = answer_role(remote.fingerprint.as_ref().and_then(|f| f.setup));
            info!(sid = %self.sid, content = %content.name, "accepting the peer's video");
            self.adding = Some(PendingAdd {
                name: content.name,
                step: Step::Accepting { remote, role },
                at: Instant::now() + GATHER_GRACE,
            });
        }
    }

    pub(super) async fn on_content_accept(
        &mut self,
        j: Jingle,
        inner: &mpsc::UnboundedSender<Inner>,
    ) {
        let Some(pending) = self.adding.take() else {
            debug!(sid = %self.sid, "content-accept without a content-add: ignored");
            return;
        };
        if !matches!(pending.step, Step::Offered) {
            self.adding = Some(pending);
            return;
        }
        let mut answers: HashMap<String, Content> = j
            .contents
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        let Some(content) = answers.remove(&pending.name) else {
            debug!(sid = %self.sid, "content-accept for another content: ignored");
            self.adding = Some(pending);
            return;
        };
        let name = pending.name;
        let caps = self.config.caps;
        let Some(c) = self.contents.iter_mut().find(|c| c.name == name) else {
            return;
        };
        let (Some(desc), Some(t)) = (content.description, content.transport) else {
            self.remove_added(
                &name,
                ReasonCondition::IncompatibleParameters,
                "empty answer",
            )
            .await;
            return;
        };
        match negotiation::accept_answer(&c.local, &desc, caps) {
            Ok(n) => c.negotiated = Some(n),
            Err(e) => {
                warn!(sid = %self.sid, content = %name, "bad answer to content-add: {e}");
                self.remove_added(
                    &name,
                    ReasonCondition::IncompatibleParameters,
                    &e.to_string(),
                )
                .await;
                return;
            }
        }
        for cand in &t.candidates {
            if let Err(e) = c.transport.add_remote_candidate(cand) {
                debug!("remote candidate not usable: {e}");
            }
        }
        info!(sid = %self.sid, content = %name, "the peer accepted our video");
        let role = offer_role(t.fingerprint.as_ref().and_then(|f| f.setup));
        self.connect(&name, t, role, inner);
    }

    pub(super) async fn on_content_reject(&mut self, j: Jingle) {
        let why = j
            .reason
            .map(|r| r.text.unwrap_or_else(|| r.condition.as_str().to_owned()))
            .unwrap_or_else(|| "rejected".to_owned());
        for content in j.contents {
            let ours = self
                .adding
                .as_ref()
                .is_some_and(|a| a.name == content.name && matches!(a.step, Step::Offered));
            if ours {
                info!(sid = %self.sid, content = %content.name, %why, "the peer rejected our content-add");
                self.drop_added(&content.name, &why).await;
            }
        }
    }

    pub(super) async fn on_content_remove(&mut self, j: Jingle) {
        let why = j
            .reason
            .map(|r| r.text.unwrap_or_else(|| r.condition.as_str().to_owned()))
            .unwrap_or_else(|| "removed".to_owned());
        for content in j.contents {
            // Only added contents can go; removing the session's own contents would
            // leave the running pipeline half-fed (the peer can end the call instead).
            if self.drop_added(&content.name, &why).await.is_none() {
                debug!(sid = %self.sid, content = %content.name, "content-remove of a session content ignored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use natter_protocol::jingle_dtls::Fingerprint;

    use super::*;
    use crate::call::{CallConfig, CallOutput};
    use crate::negotiation::Capabilities;
    use crate::TransportConfig;

    /// A call of bob's with alice, signalled and in `state`.
    fn task(state: CallState) -> (CallTask, mpsc::UnboundedReceiver<CallOutput>) {
        let (out, rx) = mpsc::unbounded_channel();
        let mut t = CallTask::new(
            "sid1".into(),
            "bob@localhost/b".into(),
            "alice@localhost/a".into(),
            CallDirection::Incoming,
            vec![MediaKind::Audio],
            CallConfig {
                transport: TransportConfig::default(),
                caps: Capabilities { h264: false },
            },
            out,
        );
        t.state = state;
        t.signalled = true;
        (t, rx)
    }

    fn content_add(media: MediaKind, caps: Capabilities) -> Jingle {
        let mut j = Jingle::new(Action::ContentAdd, "sid1");
        let mut c = Content::new(Creator::Initiator, "video");
        c.description = Some(negotiation::offer(media, caps, 42));
        c.transport = Some(IceUdpTransport {
            ufrag: Some("u".into()),
            pwd: Some("p".repeat(22)),
            candidates: vec![],
            fingerprint: Some(Fingerprint {
                hash: "sha-256".into(),
                setup: Some(Setup::Actpass),
                value: "AA:BB".into(),
            }),
        });
        j.contents.push(c);
        j
    }

    /// The one IQ the task sent, as Jingle.
    fn sent(rx: &mut mpsc::UnboundedReceiver<CallOutput>) -> Jingle {
        loop {
            match rx.try_recv() {
                Ok(CallOutput::Iq { payload, .. }) => {
                    return Jingle::try_from(payload).expect("jingle")
                }
                Ok(_) => continue,
                Err(e) => panic!("no IQ sent: {e}"),
            }
        }
    }

    async fn rejected(state: CallState, j: Jingle) -> Jingle {
        let (mut t, mut rx) = task(state);
        let (inner, _inner_rx) = mpsc::unbounded_channel();
        t.on_content_add(j, &inner).await;
        assert!(t.adding.is_none() && t.contents.is_empty());
        let answer = sent(&mut rx);
        assert_eq!(answer.action, Action::ContentReject);
        assert_eq!(answer.contents.len(), 1);
        assert_eq!(answer.contents[0].name, "video");
        assert_eq!(answer.contents[0].creator, Creator::Initiator);
        answer
    }

    #[tokio::test]
    async fn added_audio_is_rejected() {
        let j = content_add(MediaKind::Audio, Capabilities { h264: false });
        let r = rejected(CallState::Active, j).await;
        assert_eq!(
            r.reason.map(|r| r.condition),
            Some(ReasonCondition::UnsupportedApplications)
        );
    }

    #[tokio::test]
    async fn video_before_the_call_is_active_is_rejected() {
        let j = content_add(MediaKind::Video, Capabilities { h264: false });
        let r = rejected(CallState::Connecting, j).await;
        assert_eq!(
            r.reason.map(|r| r.condition),
            Some(ReasonCondition::FailedApplication)
        );
    }

    #[tokio::test]
    async fn video_without_a_codec_in_common_is_rejected() {
        let mut j = content_add(MediaKind::Video, Capabilities { h264: true });
        if let Some(d) = j.contents[0].description.as_mut() {
            d.payload_types
                .retain(|pt| pt.name.as_deref() == Some("H264"));
        }
        let r = rejected(CallState::Active, j).await;
        let reason = r.reason.expect("reason");
        assert_eq!(reason.condition, ReasonCondition::UnsupportedApplications);
        assert!(reason.text.is_some_and(|t| t.contains("no codec")));
    }

    #[tokio::test]
    async fn adding_video_needs_an_active_call() {
        let (mut t, mut rx) = task(CallState::Connecting);
        let (inner, _inner_rx) = mpsc::unbounded_channel();
        t.add_video(&inner).await;
        assert!(t.adding.is_none() && t.contents.is_empty());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn names_are_unique() {
        assert_eq!(unique_name(MediaKind::Video, &["audio"]), "video");
        assert_eq!(
            unique_name(MediaKind::Video, &["audio", "video"]),
            "video-2"
        );
        assert_eq!(
            unique_name(MediaKind::Video, &["video", "video-2"]),
            "video-3"
        );
    }

    #[test]
    fn dtls_roles_follow_the_setup() {
        assert_eq!(
            answer_role(Some(Setup::Actpass)),
            (DtlsRole::Client, Setup::Active)
        );
        assert_eq!(answer_role(None), (DtlsRole::Client, Setup::Active));
        assert_eq!(
            answer_role(Some(Setup::Active)),
            (DtlsRole::Server, Setup::Passive)
        );
        assert_eq!(offer_role(Some(Setup::Passive)), DtlsRole::Client);
        assert_eq!(offer_role(Some(Setup::Active)), DtlsRole::Server);
    }
}
