//! natter-jingle: Jingle RTP sessions (XEP-0166/0167/0176/0320) — signalling state, ICE
//! through webrtc-ice, DTLS-SRTP through `dtls` and webrtc-srtp. GTK-free and GStreamer-free:
//! plain RTP/RTCP packets go in and out of a [`transport`] as bytes.
