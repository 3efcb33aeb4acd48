#!/usr/bin/python3
"""Independent XMPP audio/video call peer for interoperability tests.

Speaks Jingle Message Initiation (XEP-0353), Jingle (XEP-0166) RTP sessions
(XEP-0167) over ICE-UDP (XEP-0176) with DTLS-SRTP (XEP-0320), using
slixmpp for XMPP and aiortc's ORTC objects (RTCIceGatherer, RTCIceTransport,
RTCDtlsTransport, RTCRtpSender, RTCRtpReceiver) for media -- no SDP and no
RTCPeerConnection anywhere.

It sends a sine tone (and optionally moving colour bars) and reports what it
receives as one JSON object per line on stdout.  Logs go to stderr.

Run it with Debian's interpreter, which has python3-aiortc and
python3-slixmpp:  /usr/bin/python3 tests/peers/jingle_peer.py --help
"""

import argparse
import asyncio
import json
import logging
import math
import os
import secrets
import signal
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

T0 = time.monotonic()


def emit(event, **fields):
    """Write one JSON event line to stdout and flush it."""
    obj = {"event": event, "t": round(time.monotonic() - T0, 3)}
    obj.update(fields)
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


try:
    import numpy as np
    from aiortc import (
        MediaStreamTrack,
        RTCCertificate,
        RTCDtlsFingerprint,
        RTCDtlsParameters,
        RTCDtlsTransport,
        RTCIceCandidate,
        RTCIceGatherer,
        RTCIceParameters,
        RTCIceServer,
        RTCIceTransport,
        RTCRtcpParameters,
        RTCRtpCodecParameters,
        RTCRtpReceiver,
        RTCRtpSender,
    )
    from aiortc.mediastreams import MediaStreamError
    from aiortc.rtcrtpparameters import (
        RTCRtcpFeedback,
        RTCRtpDecodingParameters,
        RTCRtpEncodingParameters,
        RTCRtpReceiveParameters,
        RTCRtpSendParameters,
    )
    from aiortc.rtcrtpreceiver import RemoteStreamTrack
    from av import AudioFrame, VideoFrame
    from slixmpp import ClientXMPP
    from slixmpp.exceptions import IqError, IqTimeout
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
except ImportError as exc:  # pragma: no cover - environment problem
    emit("error", message=f"missing Python module ({exc}); run with /usr/bin/python3 "
         "and install python3-aiortc python3-slixmpp")
    sys.exit(1)

log = logging.getLogger("jingle_peer")

NS_CLIENT = "jabber:client"
NS_JMI = "urn:xmpp:jingle-message:0"
NS_JINGLE = "urn:xmpp:jingle:1"
NS_JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_RTP_INFO = "urn:xmpp:jingle:apps:rtp:info:1"
NS_RTP_AUDIO = "urn:xmpp:jingle:apps:rtp:audio"
NS_RTP_VIDEO = "urn:xmpp:jingle:apps:rtp:video"
NS_RTCP_FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
NS_SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"
NS_ICE = "urn:xmpp:jingle:transports:ice-udp:1"
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_HINTS = "urn:xmpp:hints"

# Jingle reasons after which the run counts as failed (exit code 1).
ERROR_REASONS = {
    "connectivity-error", "failed-application", "failed-transport",
    "general-error", "incompatible-parameters", "media-error",
    "security-error", "unsupported-applications", "unsupported-transports",
    "timeout",
}


def q(ns, tag):
    return "{%s}%s" % (ns, tag)


def local_name(tag):
    return tag.rsplit("}", 1)[-1]


def ns_of(tag):
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def make_reason(condition, text=None):
    reason = ET.Element(q(NS_JINGLE, "reason"))
    ET.SubElement(reason, q(NS_JINGLE, condition))
    if text:
        ET.SubElement(reason, q(NS_JINGLE, "text")).text = text
    return reason


def parse_reason(parent):
    """Return the condition name of a <reason/> child of parent, or None."""
    if parent is None:
        return None
    reason = parent.find(q(NS_JINGLE, "reason"))
    if reason is None:
        return None
    for child in reason:
        if local_name(child.tag) != "text":
            return local_name(child.tag)
    return None


class CallFailed(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------
# aiortc / aioice adjustments (runtime only; the installed packages are
# untouched).
# --------------------------------------------------------------------------

def patch_aioice_for_trickle():
    """Do not declare ICE failed while more remote candidates may come.

    aioice 0.8 ends the checks with "failed" as soon as every pair formed
    so far has failed, even when end-of-candidates was never signalled.
    Jingle peers trickle candidates with transport-info, and XEP-0176 has no
    end-of-candidates marker, so a failure verdict is deferred until
    end-of-candidates; our own --ice-timeout bounds the wait instead.
    """
    from aioice import ice as aioice_ice

    original = aioice_ice.Connection.check_complete
    succeeded = aioice_ice.CandidatePair.State.SUCCEEDED

    def check_complete(self, pair):
        if (self._remote_candidates_end or self._check_list_done
                or (pair.state == succeeded and pair.nominated)):
            return original(self, pair)
        # Make the original skip only its "all failed" verdict.
        self._check_list_done = True
        try:
            return original(self, pair)
        finally:
            self._check_list_done = False

    aioice_ice.Connection.check_complete = check_complete


def patch_opus_decoder():
    """Let aiortc's Opus decoder accept packets of any duration.

    aiortc 1.4.0 decodes into a fixed 20 ms buffer and asserts the packet
    held exactly 20 ms, which kills the decoder thread on 10/40/60 ms
    packets from other implementations.
    """
    from aiortc.codecs import opus as aiortc_opus

    max_samples = 5760  # 120 ms at 48 kHz, the largest Opus packet

    def decode(self, encoded_frame):
        frame = AudioFrame(format="s16", layout="stereo", samples=max_samples)
        count = aiortc_opus.lib.opus_decode(
            self.decoder,
            encoded_frame.data,
            len(encoded_frame.data),
            aiortc_opus.ffi.cast("int16_t *", frame.planes[0].buffer_ptr),
            max_samples,
            0,
        )
        if count <= 0:
            return []
        pcm = np.frombuffer(frame.planes[0], dtype=np.int16, count=count * 2)
        out = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        out.pts = encoded_frame.timestamp
        out.sample_rate = aiortc_opus.SAMPLE_RATE
        out.time_base = aiortc_opus.TIME_BASE
        return [out]

    aiortc_opus.OpusDecoder.decode = decode


# --------------------------------------------------------------------------
# Codecs
# --------------------------------------------------------------------------

class PayloadType:
    def __init__(self, pt, name, clockrate, channels=1, params=None, feedback=None):
        self.id = pt
        self.name = name
        self.clockrate = clockrate
        self.channels = channels
        self.params = dict(params or {})
        self.feedback = list(feedback or [])  # (type, subtype or None)

    def __repr__(self):
        return f"{self.name}/{self.clockrate}/{self.channels} pt={self.id}"

    @classmethod
    def from_xml(cls, el, shared_feedback=()):
        params = {}
        for p in el.findall(q(NS_RTP, "parameter")):
            if p.get("name") is not None:
                params[p.get("name")] = p.get("value", "")
        feedback = list(shared_feedback)
        for fb in el.findall(q(NS_RTCP_FB, "rtcp-fb")):
            feedback.append((fb.get("type"), fb.get("subtype")))
        return cls(
            int(el.get("id")),
            el.get("name", ""),
            int(el.get("clockrate", "8000")),
            int(el.get("channels", "1")),
            params,
            feedback,
        )

    def to_xml(self):
        el = ET.Element(q(NS_RTP, "payload-type"), id=str(self.id), name=self.name,
                        clockrate=str(self.clockrate))
        if self.channels != 1:
            el.set("channels", str(self.channels))
        for name, value in self.params.items():
            ET.SubElement(el, q(NS_RTP, "parameter"), name=name, value=str(value))
        for fb_type, subtype in self.feedback:
            fb = ET.SubElement(el, q(NS_RTCP_FB, "rtcp-fb"), type=fb_type)
            if subtype:
                fb.set("subtype", subtype)
        return el

    def to_aiortc(self, kind):
        name = self.name.lower()
        channels = self.channels if kind == "audio" else None
        if name == "opus":
            channels = 2
        return RTCRtpCodecParameters(
            mimeType=f"{kind}/{self.name}",
            clockRate=self.clockrate,
            channels=channels,
            payloadType=self.id,
            rtcpFeedback=[RTCRtcpFeedback(type=t, parameter=s) for t, s in self.feedback],
            parameters=dict(self.params),
        )


VIDEO_FEEDBACK = [("nack", None), ("nack", "pli"), ("ccm", "fir"), ("goog-remb", None)]
# What aiortc really acts on (it neither sends nor answers FIR).
SUPPORTED_FEEDBACK = {("nack", None), ("nack", "pli"), ("goog-remb", None)}


def offered_payload_types(kind):
    if kind == "audio":
        return [PayloadType(111, "opus", 48000, 2, {"useinbandfec": "1"})]
    return [PayloadType(96, "VP8", 90000, 1, {}, VIDEO_FEEDBACK)]


def supported(kind, pt):
    name = pt.name.lower()
    if kind == "audio":
        return ((name == "opus" and pt.clockrate == 48000)
                or (name in ("pcmu", "pcma") and pt.clockrate == 8000))
    return name == "vp8" and pt.clockrate == 90000


def choose_for_answer(kind, remote_pts):
    """Pick one offered payload type, keeping the offerer's id."""
    for pt in remote_pts:
        if supported(kind, pt):
            params = {}
            if pt.name.lower() == "opus":
                params = {"useinbandfec": "1"}
            feedback = [fb for fb in pt.feedback if fb in SUPPORTED_FEEDBACK]
            return PayloadType(pt.id, pt.name, pt.clockrate, pt.channels, params, feedback)
    return None


# --------------------------------------------------------------------------
# Media sources and analysis
# --------------------------------------------------------------------------

class ToneTrack(MediaStreamTrack):
    """A sine tone: 48 kHz, mono s16, 20 ms frames, -13.5 dBFS RMS."""

    kind = "audio"
    RATE = 48000
    SAMPLES = 960

    def __init__(self, freq):
        super().__init__()
        self.freq = float(freq)
        self.amplitude = 0.3 * 32767
        self._pts = 0
        self._start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += self.SAMPLES
            wait = self._start + self._pts / self.RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (self._pts + np.arange(self.SAMPLES)) / self.RATE
        samples = (self.amplitude * np.sin(2 * math.pi * self.freq * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, self.RATE)
        return frame


class ColourBarsTrack(MediaStreamTrack):
    """Eight vertical colour bars scrolling sideways, produced as yuv420p."""

    kind = "video"
    BARS = [(235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16),
            (235, 16, 235), (235, 16, 16), (16, 16, 235), (16, 16, 16)]

    def __init__(self, width, height, fps):
        super().__init__()
        self.width = width - width % 2
        self.height = height - height % 2
        self.fps = fps
        self._index = 0
        self._start = None
        w, h = self.width, self.height
        bar = np.minimum(np.arange(w) * len(self.BARS) // w, len(self.BARS) - 1)
        rgb = np.array(self.BARS, dtype=np.float64)[bar]  # (w, 3)
        r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        y = 0.257 * r + 0.504 * g + 0.098 * b + 16
        u = -0.148 * r - 0.291 * g + 0.439 * b + 128
        v = 0.439 * r - 0.368 * g - 0.071 * b + 128
        self._y = np.tile(np.clip(y, 0, 255).astype(np.uint8), (h, 1))
        self._u = np.tile(np.clip(u[::2], 0, 255).astype(np.uint8), (h // 2, 1))
        self._v = np.tile(np.clip(v[::2], 0, 255).astype(np.uint8), (h // 2, 1))

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._index += 1
            wait = self._start + self._index / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        shift = (self._index * 8) % self.width
        y = np.roll(self._y, shift, axis=1)
        u = np.roll(self._u, shift // 2, axis=1)
        v = np.roll(self._v, shift // 2, axis=1)
        # a dark box that walks down the picture so every frame differs
        row = (self._index * 4) % max(1, self.height - 32)
        y[row:row + 32, 16:48] = 16
        data = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
        frame = VideoFrame.from_ndarray(data.reshape(self.height * 3 // 2, self.width),
                                        format="yuv420p")
        frame.pts = int(self._index * 90000 / self.fps)
        frame.time_base = Fraction(1, 90000)
        return frame


def analyse_audio(samples, rate):
    """Dominant frequency (Hz) and RMS (dBFS) of int16-scaled mono samples."""
    x = samples.astype(np.float64) / 32768.0
    rms = math.sqrt(float(np.mean(x * x))) if len(x) else 0.0
    rms_db = 20 * math.log10(max(rms, 1e-10))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    lowest = int(20 * len(x) / rate) + 1  # ignore DC and < 20 Hz
    spectrum[:lowest] = 0
    k = int(np.argmax(spectrum))
    freq = k * rate / len(x)
    if 0 < k < len(spectrum) - 1:
        a, b, c = (math.log(max(v, 1e-12)) for v in spectrum[k - 1:k + 2])
        denom = a - 2 * b + c
        if denom != 0:
            freq = (k + 0.5 * (a - c) / denom) * rate / len(x)
    return freq, rms_db


# --------------------------------------------------------------------------
# One Jingle content: ICE + DTLS + RTP sender/receiver
# --------------------------------------------------------------------------

class MediaContent:
    def __init__(self, peer, name, kind, creator="initiator"):
        self.peer = peer
        self.args = peer.args
        self.name = name
        self.kind = kind
        self.creator = creator
        self.gatherer = RTCIceGatherer(iceServers=peer.ice_servers)
        if self.args.no_ipv6:
            self.gatherer._connection._use_ipv6 = False
        self.ice = RTCIceTransport(self.gatherer)
        self.dtls = RTCDtlsTransport(self.ice, [peer.certificate])
        self.ssrc = secrets.randbelow(0xFFFFFFFE) + 1
        self.codec = None            # negotiated PayloadType
        self.remote_ssrc = None
        self.remote_ufrag = None
        self.remote_pwd = None
        self.remote_fingerprint = None
        self.remote_hash = None
        self.remote_setup = None
        self.remote_seen = set()
        self.gathered = asyncio.Event()
        self.gather_error = None
        self.sender = None
        self.receiver = None
        self.consumer = None
        # receive statistics
        self.frames_in = 0
        self.last_freq = None
        self.last_rms_db = None
        self.width = None
        self.height = None
        self.ice.on("statechange", self._ice_state)
        self.dtls.on("statechange", self._dtls_state)

    def _ice_state(self):
        emit("ice", content=self.name, state=self.ice.state)
        self.peer.on_transport_state(self)

    def _dtls_state(self):
        emit("dtls", content=self.name, state=self.dtls.state, role=self.dtls._role)
        self.peer.on_transport_state(self)

    # -- ICE candidates ---------------------------------------------------
    async def gather(self):
        try:
            await self.gatherer.gather()
            if self.args.relay_only:
                conn = self.gatherer._connection
                for protocol in list(conn._protocols):
                    if protocol.local_candidate.type != "relay":
                        conn._protocols.remove(protocol)
                        await protocol.close()
                conn._local_candidates = [c for c in conn._local_candidates
                                          if c.type == "relay"]
                # Closing a socket makes aioice queue a "connection lost"
                # marker that would end the DTLS reader: drop it.
                kept = []
                while not conn._queue.empty():
                    item = conn._queue.get_nowait()
                    if item[0] is not None:
                        kept.append(item)
                for item in kept:
                    conn._queue.put_nowait(item)
                if not conn._local_candidates:
                    raise RuntimeError("no relay candidate (TURN allocation failed?)")
        except Exception as exc:  # noqa: BLE001 - reported as a call failure
            log.exception("gathering failed for %s", self.name)
            self.gather_error = str(exc) or exc.__class__.__name__
        self.gathered.set()
        if not self.gather_error:
            log.info("%s: local candidates %s", self.name,
                     [f"{c.type} {c.ip}:{c.port}" for c in self.local_candidates()])

    def local_candidates(self):
        return [c for c in self.gatherer.getLocalCandidates() if c.component == 1]

    def candidates_xml(self):
        out = []
        for c in self.local_candidates():
            el = ET.Element(q(NS_ICE, "candidate"), component="1",
                            foundation=str(c.foundation), generation="0",
                            id=secrets.token_hex(5), ip=c.ip, network="0",
                            port=str(c.port), priority=str(c.priority),
                            protocol="udp", type=c.type)
            if c.relatedAddress:
                el.set("rel-addr", c.relatedAddress)
                el.set("rel-port", str(c.relatedPort))
            out.append(el)
        return out

    async def add_remote_transport(self, transport):
        """Take ufrag/pwd/fingerprint (first seen wins) and candidates."""
        if transport is None:
            return
        if self.remote_ufrag is None and transport.get("ufrag"):
            self.remote_ufrag = transport.get("ufrag")
            self.remote_pwd = transport.get("pwd")
        elif transport.get("ufrag") and transport.get("ufrag") != self.remote_ufrag:
            log.warning("%s: ufrag changed (ICE restart?) -- not supported, ignored",
                        self.name)
        fp = transport.find(q(NS_DTLS, "fingerprint"))
        if fp is not None and self.remote_fingerprint is None:
            self.remote_fingerprint = (fp.text or "").strip()
            self.remote_hash = (fp.get("hash") or "").lower()
            self.remote_setup = fp.get("setup", "actpass")
        added = []
        for el in transport.findall(q(NS_ICE, "candidate")):
            try:
                component = int(el.get("component", "1"))
                protocol = el.get("protocol", "udp").lower()
                key = (el.get("ip"), int(el.get("port")))
                if component != 1 or protocol != "udp":
                    log.debug("%s: ignoring candidate %s (component %s, %s)",
                              self.name, key, component, protocol)
                    continue
                if key in self.remote_seen:
                    continue
                self.remote_seen.add(key)
                rel_port = el.get("rel-port")
                candidate = RTCIceCandidate(
                    component=1,
                    foundation=el.get("foundation", "1"),
                    ip=el.get("ip"),
                    port=int(el.get("port")),
                    priority=int(el.get("priority", "1")),
                    protocol="udp",
                    type=el.get("type", "host"),
                    relatedAddress=el.get("rel-addr"),
                    relatedPort=int(rel_port) if rel_port else None,
                )
            except (TypeError, ValueError) as exc:
                log.warning("%s: bad candidate %s: %s", self.name, el.attrib, exc)
                continue
            await self.ice.addRemoteCandidate(candidate)
            added.append(f"{candidate.type} {candidate.ip}:{candidate.port}")
        if added:
            log.info("%s: remote candidates %s", self.name, added)
        return added

    # -- XML --------------------------------------------------------------
    def description_xml(self, pts):
        desc = ET.Element(q(NS_RTP, "description"), media=self.kind)
        for pt in pts:
            desc.append(pt.to_xml())
        ET.SubElement(desc, q(NS_RTP, "rtcp-mux"))
        source = ET.SubElement(desc, q(NS_SSMA, "source"), ssrc=str(self.ssrc))
        ET.SubElement(source, q(NS_SSMA, "parameter"), name="cname",
                      value=self.peer.cname)
        return desc

    def transport_xml(self, setup=None, candidates=None):
        params = self.gatherer.getLocalParameters()
        transport = ET.Element(q(NS_ICE, "transport"), ufrag=params.usernameFragment,
                               pwd=params.password)
        if setup:
            fp = ET.SubElement(transport, q(NS_DTLS, "fingerprint"), hash="sha-256",
                               setup=setup)
            fp.text = self.dtls.getLocalParameters().fingerprints[0].value
            if self.args.bad_fingerprint:
                # Signal a certificate we do not use: the peer must refuse the handshake.
                fp.text = ":".join("%02X" % ((int(b, 16) + 1) % 256)
                                   for b in fp.text.split(":"))
        for el in self.candidates_xml() if candidates is None else candidates:
            transport.append(el)
        return transport

    def content_xml(self, pts, setup, trickle=False):
        content = ET.Element(q(NS_JINGLE, "content"), creator=self.creator,
                             name=self.name, senders="both")
        content.append(self.description_xml(pts))
        content.append(self.transport_xml(setup, [] if trickle else None))
        return content

    # -- connection -------------------------------------------------------
    def dtls_role(self, initiator):
        setup = (self.remote_setup or "actpass").lower()
        if initiator:
            # we offered actpass; the answer decides
            return "client" if setup == "passive" else "server"
        # we answer: active (client) unless the offer insists on being active
        return "server" if setup == "active" else "client"

    async def connect(self, initiator):
        await self.gathered.wait()
        if self.gather_error:
            raise CallFailed("failed-transport", f"{self.name}: {self.gather_error}")
        if not self.remote_ufrag or not self.remote_pwd:
            raise CallFailed("failed-transport", f"{self.name}: no remote ICE ufrag/pwd")
        if not self.remote_fingerprint:
            raise CallFailed("security-error", f"{self.name}: no DTLS fingerprint")
        if self.remote_hash != "sha-256":
            raise CallFailed("security-error",
                             f"{self.name}: fingerprint hash {self.remote_hash} unsupported")
        if initiator:
            self.gatherer._connection.ice_controlling = True
        start = asyncio.ensure_future(self.ice.start(
            RTCIceParameters(usernameFragment=self.remote_ufrag, password=self.remote_pwd)))
        done, _ = await asyncio.wait({start}, timeout=self.args.ice_timeout)
        if not done:
            start.cancel()
            raise CallFailed("connectivity-error",
                             f"{self.name}: ICE not connected after {self.args.ice_timeout}s")
        if self.ice.state != "completed":
            raise CallFailed("connectivity-error", f"{self.name}: ICE failed")
        pair = self.gatherer._connection._nominated.get(1)
        if pair is not None:
            emit("ice", content=self.name, state="selected",
                 local=f"{pair.local_candidate.host}:{pair.local_candidate.port}",
                 local_type=pair.local_candidate.type,
                 remote=f"{pair.remote_candidate.host}:{pair.remote_candidate.port}",
                 remote_type=pair.remote_candidate.type)

        self.dtls._set_role(self.dtls_role(initiator))
        try:
            await asyncio.wait_for(self.dtls.start(RTCDtlsParameters(fingerprints=[
                RTCDtlsFingerprint(algorithm="sha-256", value=self.remote_fingerprint)])),
                timeout=self.args.ice_timeout)
        except asyncio.TimeoutError:
            raise CallFailed("connectivity-error", f"{self.name}: DTLS handshake timed out")
        if self.dtls.state != "connected":
            if self.dtls.encrypted:
                raise CallFailed("security-error",
                                 f"{self.name}: DTLS fingerprint mismatch")
            raise CallFailed("security-error",
                             f"{self.name}: DTLS handshake failed (details with -vv)")
        await self.start_media()

    async def start_media(self):
        codec = self.codec.to_aiortc(self.kind)
        rtcp = RTCRtcpParameters(cname=self.peer.cname, mux=True, ssrc=self.ssrc)

        self.receiver = RTCRtpReceiver(self.kind, self.dtls)
        # The ORTC receiver has no track until someone gives it one.
        self.receiver._track = RemoteStreamTrack(kind=self.kind)
        # RTCP (RR, NACK, PLI, REMB) from the receiver goes out under our SSRC.
        self.receiver._set_rtcp_ssrc(self.ssrc)
        encodings = []
        if self.remote_ssrc:
            encodings = [RTCRtpDecodingParameters(ssrc=self.remote_ssrc,
                                                  payloadType=codec.payloadType)]
        await self.receiver.receive(RTCRtpReceiveParameters(
            codecs=[codec], encodings=encodings, rtcp=rtcp))

        if self.kind == "audio":
            track = ToneTrack(self.args.tone)
        else:
            track = ColourBarsTrack(self.args.width, self.args.height, self.args.fps)
        self.sender = RTCRtpSender(track, self.dtls)
        self.sender._ssrc = self.ssrc  # the sender ignores encodings[].ssrc
        await self.sender.send(RTCRtpSendParameters(
            codecs=[codec],
            encodings=[RTCRtpEncodingParameters(ssrc=self.ssrc,
                                                payloadType=codec.payloadType)],
            rtcp=rtcp))
        self.consumer = asyncio.ensure_future(self.consume())
        log.info("%s: media started, sending %s ssrc=%d", self.name, self.codec, self.ssrc)

    async def consume(self):
        track = self.receiver.track
        pending = []
        pending_len = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames_in += 1
            if self.kind == "video":
                self.width, self.height = frame.width, frame.height
                continue
            data = frame.to_ndarray()
            channels = len(frame.layout.channels)
            if frame.format.is_planar:
                mono = data[0]
            else:
                mono = data.reshape(-1, channels)[:, 0]
            pending.append(mono)
            pending_len += len(mono)
            if pending_len >= frame.sample_rate // 2:
                self.last_freq, self.last_rms_db = analyse_audio(
                    np.concatenate(pending), frame.sample_rate)
                pending, pending_len = [], 0

    async def packets_received(self):
        if self.receiver is None:
            return 0
        stats = await self.receiver.getStats()
        return sum(s.packetsReceived for s in stats.values()
                   if getattr(s, "type", None) == "inbound-rtp")

    async def report(self):
        if self.kind == "audio" and self.last_freq is not None:
            emit("media", content=self.name, kind="audio",
                 freq=round(self.last_freq, 1), rms_db=round(self.last_rms_db, 1),
                 packets=await self.packets_received(), frames=self.frames_in)
        elif self.kind == "video" and self.frames_in:
            emit("media", content=self.name, kind="video", frames=self.frames_in,
                 width=self.width, height=self.height,
                 packets=await self.packets_received())

    def summary(self):
        if self.kind == "audio":
            return {"kind": "audio", "freq": None if self.last_freq is None
                    else round(self.last_freq, 1),
                    "rms_db": None if self.last_rms_db is None
                    else round(self.last_rms_db, 1),
                    "frames": self.frames_in}
        return {"kind": "video", "frames": self.frames_in, "width": self.width,
                "height": self.height}

    async def close(self):
        async def quietly(coro, what):
            try:
                await asyncio.wait_for(coro, timeout=3)
            except Exception as exc:  # noqa: BLE001 - best effort teardown
                log.debug("%s: %s stop: %r", self.name, what, exc)

        if self.consumer is not None:
            self.consumer.cancel()
        if self.sender is not None:
            await quietly(self.sender.stop(), "sender")
        if self.receiver is not None:
            await quietly(self.receiver.stop(), "receiver")
        await quietly(self.dtls.stop(), "dtls")
        await quietly(self.ice.stop(), "ice")


# --------------------------------------------------------------------------
# Call state
# --------------------------------------------------------------------------

class Call:
    def __init__(self, sid, initiator, peer_bare, media):
        self.sid = sid
        self.initiator = initiator
        self.peer_bare = peer_bare     # str, bare JID of the other party
        self.peer_full = None          # str, full JID we speak Jingle with
        self.media = media
        self.state = "proposed"        # proposed, proceeding, pending, connecting, active
        self.via_jmi = True
        self.contents = {}             # name -> MediaContent
        self.jingle_started = False
        self.ended = False
        self.queue = asyncio.Queue()
        self.worker = None
        self.tasks = []


class Peer(ClientXMPP):
    def __init__(self, args):
        super().__init__(f"{args.jid}/{args.resource}", args.password)
        self.args = args
        if args.ca:
            self.ca_certs = Path(args.ca)
        self.done = asyncio.get_event_loop().create_future()
        self.call = None
        self.certificate = RTCCertificate.generateCertificate()
        self.cname = secrets.token_hex(8)
        self.ice_servers = []
        if args.stun:
            self.ice_servers.append(RTCIceServer(urls=f"stun:{args.stun}"))
        if args.turn:
            url = args.turn if args.turn.startswith(("turn:", "turns:")) else f"turn:{args.turn}"
            self.ice_servers.append(RTCIceServer(urls=url, username=args.turn_user,
                                                 credential=args.turn_pass))
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.register_handler(Callback(
            "JMI", MatchXPath(q(NS_CLIENT, "message")), self.on_message_stanza))
        self.register_handler(Callback(
            "Jingle", MatchXPath(f"{q(NS_CLIENT, 'iq')}/{q(NS_JINGLE, 'jingle')}"),
            self.on_jingle_iq))
        self.reporter = None
        self.timers = []

    # -- lifecycle ----------------------------------------------------------
    def finish(self, code):
        if not self.done.done():
            self.done.set_result(code)

    def fail(self, message):
        if not self.done.done():
            emit("error", message=message)
            self.finish(1)

    def later(self, delay, coro_fn):
        async def run():
            await asyncio.sleep(delay)
            await coro_fn()
        task = asyncio.ensure_future(run())
        self.timers.append(task)
        return task

    async def on_session_start(self, _event):
        for feature in (NS_JINGLE, NS_RTP, NS_RTP_AUDIO, NS_RTP_VIDEO, NS_ICE, NS_DTLS,
                        NS_JMI, NS_RTCP_FB, NS_SSMA):
            self["xep_0030"].add_feature(feature)
        self.send_presence()
        # One round trip to the server: once it answers, it has processed our presence,
        # so a call proposed to our bare JID from now on reaches this resource.
        try:
            await self["xep_0030"].get_info(jid=self.boundjid.domain, timeout=10)
        except Exception as exc:  # noqa: BLE001 - only a readiness barrier
            log.debug("disco#info barrier failed: %s", exc)
        emit("online", jid=self.boundjid.full)
        self.later(self.args.duration, self.on_duration_elapsed)
        if self.args.mode == "call":
            await self.start_call()

    def on_failed_auth(self, _event):
        self.fail("authentication failed")

    def on_connection_failed(self, event):
        self.fail(f"connection failed: {event}")

    def on_disconnected(self, _event):
        if not self.done.done():
            self.fail("disconnected from server")

    async def on_duration_elapsed(self):
        call = self.call
        if call is not None and not call.ended and call.state == "active":
            log.info("--duration elapsed, hanging up")
            await self.hangup("success")
        elif call is not None and not call.ended:
            await self.abandon(f"timed out after {self.args.duration}s in state {call.state}")
        else:
            self.fail(f"timed out after {self.args.duration}s without a call")

    async def on_signal(self, name):
        log.info("got %s", name)
        call = self.call
        if call is None or call.ended:
            emit("ended", reason="signal", by="local")
            self.finish(0)
        elif call.state in ("connecting", "active", "pending"):
            await self.hangup("success")
        elif call.initiator:
            await self.retract()
        else:
            self.reject(call, "decline")

    # -- stanza helpers ----------------------------------------------------
    def send_jmi(self, to, kind, sid, children=(), **extra):
        msg = self.make_message(mto=to, mtype="chat")
        el = ET.Element(q(NS_JMI, kind), id=sid)
        for child in children:
            el.append(child)
        msg.append(el)
        msg.append(ET.Element(q(NS_HINTS, "store")))
        msg.send()
        emit("jmi", type=kind, dir="out", id=sid, to=str(to), **extra)

    def jingle_element(self, call, action):
        jingle = ET.Element(q(NS_JINGLE, "jingle"), action=action, sid=call.sid)
        if action == "session-initiate":
            jingle.set("initiator", self.boundjid.full)
        elif action == "session-accept":
            jingle.set("responder", self.boundjid.full)
        return jingle

    async def send_jingle(self, call, jingle, timeout=15, **extra):
        iq = self.make_iq_set(ito=call.peer_full)
        iq.append(jingle)
        emit("jingle", action=jingle.get("action"), dir="out", sid=call.sid, **extra)
        return await iq.send(timeout=timeout)

    def ack(self, iq):
        iq.reply().send()

    def unknown_session(self, iq):
        reply = iq.reply()
        reply["type"] = "error"
        reply["error"]["type"] = "cancel"
        reply["error"]["condition"] = "item-not-found"
        reply["error"].xml.append(ET.Element(q(NS_JINGLE_ERRORS, "unknown-session")))
        reply.send()

    # -- JMI ---------------------------------------------------------------
    async def start_call(self):
        media = ["audio"] + (["video"] if self.args.video else [])
        sid = str(uuid.uuid4())
        call = Call(sid, True, self.args.target, media)
        self.call = call
        for kind in media:
            content = MediaContent(self, kind, kind)
            call.contents[kind] = content
            call.tasks.append(asyncio.ensure_future(content.gather()))
        # no shared presence: tell the callee we exist (XEP-0353 section 3.1)
        self.send_presence(pto=self.args.target)
        descs = [ET.Element(q(NS_RTP, "description"), media=kind) for kind in media]
        self.send_jmi(self.args.target, "propose", sid, descs, media=media)
        if self.args.retract_after is not None:
            self.later(self.args.retract_after, self.retract_if_unanswered)

    async def retract_if_unanswered(self):
        call = self.call
        if call is not None and not call.ended and call.state == "proposed":
            await self.retract()

    async def retract(self):
        call = self.call
        self.send_jmi(call.peer_bare, "retract", call.sid, [make_reason("cancel", "Retracted")])
        await self.end_locally(call, "cancel")

    def reject(self, call, condition):
        reason = make_reason(condition)
        self.send_jmi(call.peer_full, "reject", call.sid, [reason])
        self.send_jmi(self.boundjid.bare, "reject", call.sid, [make_reason(condition)])
        call.ended = True
        asyncio.ensure_future(self.close_call(call))
        emit("ended", reason=condition, by="local")
        self.finish(0)

    def on_message_stanza(self, msg):
        el = None
        for child in msg.xml:
            if ns_of(child.tag) == NS_JMI:
                el = child
                break
        if el is None:
            return
        kind = local_name(el.tag)
        sid = el.get("id")
        sender = msg["from"]
        call = self.call
        if msg["type"] == "error":
            if call is not None and call.sid == sid and not call.ended:
                condition = msg["error"]["condition"]
                asyncio.ensure_future(self.abandon(
                    f"JMI {kind} bounced with error {condition}"))
            return
        if sender.full == self.boundjid.full:
            return  # our own message to our bare JID
        emit("jmi", type=kind, dir="in", id=sid, **{"from": sender.full},
             **({"reason": parse_reason(el)} if parse_reason(el) else {}),
             **({"media": [d.get("media") for d in el.findall(q(NS_RTP, "description"))]}
                if kind == "propose" else {}))

        if kind == "propose":
            self.on_propose(sender, sid, el)
            return
        if call is None or call.sid != sid or call.ended:
            log.debug("JMI %s for unknown/ended session %s ignored", kind, sid)
            return
        own_device = sender.bare == self.boundjid.bare
        if kind == "proceed" and call.initiator and not own_device:
            if sender.bare != call.peer_bare or call.state != "proposed":
                return
            call.peer_full = sender.full
            call.state = "proceeding"
            call.worker = asyncio.ensure_future(self.run_initiator(call))
        elif kind == "reject" and call.initiator and call.state == "proposed":
            asyncio.ensure_future(self.end_locally(call, parse_reason(el) or "decline",
                                                   by="remote"))
        elif kind == "retract" and not call.initiator and not own_device:
            if call.state in ("proposed", "proceeding"):
                asyncio.ensure_future(self.end_locally(call, parse_reason(el) or "cancel",
                                                       by="remote"))
        elif kind in ("accept", "reject") and own_device and not call.initiator:
            if call.state == "proposed":  # another of our devices took it
                asyncio.ensure_future(self.end_locally(
                    call, "answered-elsewhere" if kind == "accept" else "rejected-elsewhere",
                    by="remote"))
        elif kind == "finish":
            if call.state in ("pending", "connecting", "active", "proceeding"):
                asyncio.ensure_future(self.end_call(call, parse_reason(el) or "success",
                                                    local=False))
        elif kind == "ringing":
            pass

    def on_propose(self, sender, sid, el):
        if self.args.mode != "answer":
            log.info("ignoring propose: not in answer mode")
            return
        if sender.bare == self.boundjid.bare:
            return
        if self.call is not None and not self.call.ended:
            log.info("busy: rejecting propose %s", sid)
            self.send_jmi(sender.full, "reject", sid, [make_reason("busy")])
            return
        media = [d.get("media") for d in el.findall(q(NS_RTP, "description"))]
        call = Call(sid, False, sender.bare, media)
        call.peer_full = sender.full
        self.call = call
        self.send_jmi(sender.full, "ringing", sid)
        if self.args.reject:
            self.reject(call, "decline")
            return
        self.later(self.args.answer_delay, lambda: self.accept_propose(call))

    async def accept_propose(self, call):
        if call.ended or call.state != "proposed":
            return
        call.state = "proceeding"
        self.send_jmi(self.boundjid.bare, "accept", call.sid)
        self.send_jmi(call.peer_full, "proceed", call.sid)
        self.send_presence(pto=call.peer_full)

    # -- Jingle IQs ----------------------------------------------------------
    def on_jingle_iq(self, iq):
        if iq["type"] != "set":
            return
        jingle = iq.xml.find(q(NS_JINGLE, "jingle"))
        action = jingle.get("action")
        sid = jingle.get("sid")
        sender = iq["from"].full
        call = self.call
        if action == "session-initiate":
            if (call is not None and not call.ended and call.sid == sid
                    and not call.initiator and call.state == "proceeding"
                    and iq["from"].bare == call.peer_bare):
                call.peer_full = sender
            elif ((call is None or call.ended) and self.args.mode == "answer"
                  and self.args.answer_delay == 0 and not self.args.reject):
                # a bare Jingle call without JMI: take it as well
                call = Call(sid, False, iq["from"].bare, [])
                call.via_jmi = False
                call.peer_full = sender
                self.call = call
            else:
                self.ack(iq)
                log.info("busy/unexpected session-initiate %s: terminating it", sid)
                stray = Call(sid, False, iq["from"].bare, [])
                stray.peer_full = sender
                jingle_out = self.jingle_element(stray, "session-terminate")
                jingle_out.append(make_reason("busy"))
                asyncio.ensure_future(self.send_jingle(stray, jingle_out))
                return
            call.state = "pending"
            call.jingle_started = True
            self.ack(iq)
            call.worker = asyncio.ensure_future(self.run_responder(call))
            call.queue.put_nowait(jingle)
            return
        if call is None or call.sid != sid or call.peer_full != sender or call.ended:
            log.info("jingle %s for unknown session %s from %s", action, sid, sender)
            self.unknown_session(iq)
            return
        self.ack(iq)
        call.queue.put_nowait(jingle)

    async def next_action(self, call):
        jingle = await call.queue.get()
        action = jingle.get("action")
        fields = {}
        reason = parse_reason(jingle)
        if reason:
            fields["reason"] = reason
        if action == "session-info":
            fields["info"] = [local_name(c.tag) for c in jingle]
        if action == "transport-info":
            fields["candidates"] = [
                f"{c.get('name')}: {cand.get('type')} {cand.get('ip')}:{cand.get('port')}"
                for c in jingle.findall(q(NS_JINGLE, "content"))
                for cand in c.findall(f"{q(NS_ICE, 'transport')}/{q(NS_ICE, 'candidate')}")]
        if action not in ("session-initiate", "session-accept"):
            emit("jingle", action=action, dir="in", sid=call.sid, **fields)
        return jingle, action

    async def handle_common(self, call, jingle, action):
        """Actions handled the same way in every state; True if consumed."""
        if action == "transport-info":
            for content in jingle.findall(q(NS_JINGLE, "content")):
                mc = call.contents.get(content.get("name"))
                if mc is None:
                    log.warning("transport-info for unknown content %s", content.get("name"))
                    continue
                await mc.add_remote_transport(content.find(q(NS_ICE, "transport")))
            return True
        if action == "session-terminate":
            await self.end_call(call, parse_reason(jingle) or "success", local=False)
            return True
        if action == "session-info":
            return True
        if action == "content-add":
            reject = self.jingle_element(call, "content-reject")
            for content in jingle.findall(q(NS_JINGLE, "content")):
                reject.append(ET.Element(q(NS_JINGLE, "content"),
                                         creator=content.get("creator", "initiator"),
                                         name=content.get("name", "")))
            reject.append(make_reason("failed-application", "content-add unsupported"))
            asyncio.ensure_future(self.send_quietly(call, reject))
            return True
        log.info("jingle action %s ignored", action)
        return False

    async def send_quietly(self, call, jingle, **extra):
        try:
            await self.send_jingle(call, jingle, timeout=5, **extra)
        except (IqError, IqTimeout) as exc:
            log.info("%s not acknowledged: %r", jingle.get("action"), exc)

    async def run_initiator(self, call):
        try:
            for mc in call.contents.values():
                await mc.gathered.wait()
                if mc.gather_error:
                    raise CallFailed("failed-transport", f"{mc.name}: {mc.gather_error}")
            jingle = self.jingle_element(call, "session-initiate")
            for mc in call.contents.values():
                jingle.append(mc.content_xml(offered_payload_types(mc.kind), "actpass",
                                             self.args.trickle))
            call.state = "pending"
            call.jingle_started = True
            try:
                await self.send_jingle(call, jingle, media=call.media)
            except (IqError, IqTimeout) as exc:
                raise CallFailed("general-error", f"session-initiate refused: {exc!r}")
            if self.args.trickle:
                call.tasks.append(asyncio.ensure_future(self.trickle(call)))
            while True:
                jingle, action = await self.next_action(call)
                if action == "session-accept":
                    await self.process_accept(call, jingle)
                    break
                await self.handle_common(call, jingle, action)
                if call.ended:
                    return
            await self.establish(call)
            while not call.ended:
                jingle, action = await self.next_action(call)
                await self.handle_common(call, jingle, action)
        except CallFailed as exc:
            await self.end_call(call, exc.reason, local=True, error=str(exc))
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - report any bug as an error
            log.exception("initiator failed")
            await self.end_call(call, "general-error", local=True, error=repr(exc))

    async def process_accept(self, call, jingle):
        chosen = {}
        for content in jingle.findall(q(NS_JINGLE, "content")):
            mc = call.contents.get(content.get("name"))
            if mc is None:
                log.warning("session-accept names unknown content %s", content.get("name"))
                continue
            desc = content.find(q(NS_RTP, "description"))
            if desc is None:
                raise CallFailed("failed-application", f"{mc.name}: no description")
            shared_fb = [(fb.get("type"), fb.get("subtype"))
                         for fb in desc.findall(q(NS_RTCP_FB, "rtcp-fb"))]
            offered = {pt.id: pt for pt in offered_payload_types(mc.kind)}
            for el in desc.findall(q(NS_RTP, "payload-type")):
                pt = PayloadType.from_xml(el, shared_fb)
                if pt.id in offered:
                    mc.codec = offered[pt.id]
                    break
            if mc.codec is None:
                raise CallFailed("failed-application", f"{mc.name}: no usable payload type")
            src = desc.find(q(NS_SSMA, "source"))
            if src is not None and src.get("ssrc"):
                mc.remote_ssrc = int(src.get("ssrc"))
            if desc.find(q(NS_RTP, "rtcp-mux")) is None:
                log.warning("%s: answer lacks <rtcp-mux/>; muxing anyway", mc.name)
            await mc.add_remote_transport(content.find(q(NS_ICE, "transport")))
            chosen[mc.name] = repr(mc.codec)
        missing = [n for n, mc in call.contents.items() if mc.codec is None]
        if missing:
            raise CallFailed("failed-application", f"contents not accepted: {missing}")
        emit("jingle", action="session-accept", dir="in", sid=call.sid, codecs=chosen,
             setup={n: mc.remote_setup for n, mc in call.contents.items()})

    async def run_responder(self, call):
        try:
            jingle, action = await self.next_action(call)
            await self.process_initiate(call, jingle)
            await self.establish(call)
            while not call.ended:
                jingle, action = await self.next_action(call)
                await self.handle_common(call, jingle, action)
        except CallFailed as exc:
            await self.end_call(call, exc.reason, local=True, error=str(exc))
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001
            log.exception("responder failed")
            await self.end_call(call, "general-error", local=True, error=repr(exc))

    async def process_initiate(self, call, jingle):
        offered = {}
        for content in jingle.findall(q(NS_JINGLE, "content")):
            name = content.get("name")
            desc = content.find(q(NS_RTP, "description"))
            transport = content.find(q(NS_ICE, "transport"))
            if desc is None:
                raise CallFailed("unsupported-applications", f"{name}: not an RTP content")
            if transport is None:
                raise CallFailed("unsupported-transports", f"{name}: not ICE-UDP")
            kind = desc.get("media")
            shared_fb = [(fb.get("type"), fb.get("subtype"))
                         for fb in desc.findall(q(NS_RTCP_FB, "rtcp-fb"))]
            pts = [PayloadType.from_xml(el, shared_fb)
                   for el in desc.findall(q(NS_RTP, "payload-type"))]
            offered[name] = [repr(p) for p in pts]
            mc = MediaContent(self, name, kind, content.get("creator", "initiator"))
            mc.codec = choose_for_answer(kind, pts)
            if mc.codec is None:
                raise CallFailed("failed-application", f"{name}: no supported codec in {pts}")
            src = desc.find(q(NS_SSMA, "source"))
            if src is not None and src.get("ssrc"):
                mc.remote_ssrc = int(src.get("ssrc"))
            if desc.find(q(NS_RTP, "encryption")) is not None:
                log.info("%s: ignoring SDES <encryption/> (DTLS-SRTP only)", name)
            call.contents[name] = mc
            call.tasks.append(asyncio.ensure_future(mc.gather()))
            await mc.add_remote_transport(transport)
        emit("jingle", action="session-initiate", dir="in", sid=call.sid,
             **{"from": call.peer_full}, offered=offered,
             setup={n: mc.remote_setup for n, mc in call.contents.items()})
        if not call.contents:
            raise CallFailed("failed-application", "session-initiate without contents")
        call.media = [mc.kind for mc in call.contents.values()]
        for mc in call.contents.values():
            await mc.gathered.wait()
            if mc.gather_error:
                raise CallFailed("failed-transport", f"{mc.name}: {mc.gather_error}")
            if not mc.remote_fingerprint:
                raise CallFailed("security-error", f"{mc.name}: offer has no DTLS fingerprint")
        accept = self.jingle_element(call, "session-accept")
        for mc in call.contents.values():
            setup = "passive" if mc.dtls_role(False) == "server" else "active"
            accept.append(mc.content_xml([mc.codec], setup, self.args.trickle))
        try:
            await self.send_jingle(call, accept,
                                   codecs={n: repr(mc.codec) for n, mc in call.contents.items()})
        except (IqError, IqTimeout) as exc:
            raise CallFailed("general-error", f"session-accept refused: {exc!r}")
        if self.args.trickle:
            call.tasks.append(asyncio.ensure_future(self.trickle(call)))

    async def trickle(self, call):
        """Send our candidates one by one in transport-info IQs."""
        for mc in list(call.contents.values()):
            for candidate in mc.candidates_xml():
                await asyncio.sleep(self.args.trickle)
                if call.ended:
                    return
                jingle = self.jingle_element(call, "transport-info")
                content = ET.SubElement(jingle, q(NS_JINGLE, "content"),
                                        creator=mc.creator, name=mc.name)
                content.append(mc.transport_xml(candidates=[candidate]))
                await self.send_quietly(call, jingle, candidates=[
                    f"{mc.name}: {candidate.get('type')} {candidate.get('ip')}:"
                    f"{candidate.get('port')}"])

    async def establish(self, call):
        call.state = "connecting"
        # Read further actions (transport-info, terminate) while connecting.
        pump = asyncio.ensure_future(self.pump_while_connecting(call))
        connects = [asyncio.ensure_future(mc.connect(call.initiator))
                    for mc in call.contents.values()]
        try:
            await asyncio.gather(*connects)
        except BaseException:
            for task in connects:
                task.cancel()
            raise
        finally:
            pump.cancel()
            try:
                await pump
            except asyncio.CancelledError:
                pass
        if call.ended:
            return
        call.state = "active"
        emit("connected", contents=list(call.contents))
        self.reporter = asyncio.ensure_future(self.report_loop(call))
        if self.args.hangup_after is not None:
            self.later(self.args.hangup_after, lambda: self.hangup_if_active(call))

    async def pump_while_connecting(self, call):
        while True:
            jingle, action = await self.next_action(call)
            await self.handle_common(call, jingle, action)
            if call.ended:
                return

    async def hangup_if_active(self, call):
        if not call.ended and self.call is call:
            await self.hangup("success")

    async def hangup(self, condition):
        await self.end_call(self.call, condition, local=True)

    def on_transport_state(self, mc):
        call = self.call
        if call is None or call.ended or call.state != "active":
            return
        if mc.ice.state in ("failed", "closed") or mc.dtls.state in ("failed", "closed"):
            # Often just the remote hanging up first; wait for its terminate.
            self.later(5, lambda: self.check_lost(call, mc))

    async def check_lost(self, call, mc):
        if not call.ended:
            await self.end_call(call, "connectivity-error", local=True,
                                error=f"{mc.name}: media connection lost "
                                      f"(ice {mc.ice.state}, dtls {mc.dtls.state})")

    async def report_loop(self, call):
        while not call.ended:
            await asyncio.sleep(1)
            for mc in list(call.contents.values()):
                try:
                    await mc.report()
                except Exception:  # noqa: BLE001
                    log.exception("report failed")

    # -- ending ------------------------------------------------------------
    async def close_call(self, call):
        if self.reporter is not None:
            self.reporter.cancel()
        for task in call.tasks:
            task.cancel()
        await asyncio.gather(*(mc.close() for mc in call.contents.values()),
                             return_exceptions=True)

    async def end_locally(self, call, reason, by="local"):
        """End before any Jingle session exists (JMI only)."""
        if call.ended:
            return
        call.ended = True

        async def teardown():
            self.stop_worker(call)
            await self.close_call(call)
            emit("ended", reason=reason, by=by)
            self.finish(1 if reason in ERROR_REASONS else 0)

        await self.detached(teardown())

    def stop_worker(self, call):
        if call.worker is not None and not call.worker.done():
            call.worker.cancel()

    async def detached(self, coro):
        """Run teardown so that cancelling the caller cannot interrupt it."""
        task = asyncio.ensure_future(coro)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass

    async def abandon(self, message):
        call = self.call
        if call.state == "proposed" and call.initiator:
            self.send_jmi(call.peer_bare, "retract", call.sid,
                          [make_reason("cancel", "Timed out")])
        elif call.jingle_started:
            await self.end_call(call, "timeout", local=True, error=message)
            return
        await self.end_locally(call, "timeout")
        emit("error", message=message)

    async def end_call(self, call, reason, local, error=None):
        if call is None or call.ended:
            return
        call.ended = True
        await self.detached(self.teardown(call, reason, local, error))

    async def teardown(self, call, reason, local, error):
        self.stop_worker(call)
        if local and call.jingle_started and call.peer_full:
            jingle = self.jingle_element(call, "session-terminate")
            jingle.append(make_reason(reason, error))
            try:
                await self.send_jingle(call, jingle, timeout=5, reason=reason)
            except (IqError, IqTimeout) as exc:
                log.info("session-terminate not acknowledged: %r", exc)
        if call.via_jmi:
            self.send_jmi(call.peer_bare, "finish", call.sid, [make_reason(reason)])
        summary = {mc.name: mc.summary() for mc in call.contents.values()}
        await self.close_call(call)
        emit("summary", contents=summary)
        emit("ended", reason=reason, by="local" if local else "remote")
        if error:
            emit("error", message=error)
        self.finish(1 if (error or reason in ERROR_REASONS) else 0)


# --------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="XMPP Jingle audio/video call peer (aiortc + slixmpp) for interop tests.",
        epilog="Events are printed as JSON lines on stdout; logs go to stderr.")
    parser.add_argument("mode", choices=["call", "answer"],
                        help="call PEER_BARE_JID, or answer an incoming call")
    parser.add_argument("target", nargs="?", help="bare JID to call (mode 'call')")
    parser.add_argument("--jid", required=True, help="own bare JID, e.g. bob@localhost")
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", default="127.0.0.1", help="server address")
    parser.add_argument("--port", type=int, default=5222)
    parser.add_argument("--ca", help="CA certificate to verify the server's STARTTLS cert")
    parser.add_argument("--resource", default="jingle-peer")
    parser.add_argument("--video", action="store_true", help="(call) add a video content")
    parser.add_argument("--tone", type=float, default=440.0, help="sine frequency sent, Hz")
    parser.add_argument("--video-size", default="640x480", help="WIDTHxHEIGHT of sent video")
    parser.add_argument("--fps", type=float, default=15.0, help="sent video frame rate")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="give up after SECONDS: an active call is hung up "
                             "(success, exit 0), anything else is an error (exit 1)")
    parser.add_argument("--hangup-after", type=float, metavar="SECONDS",
                        help="hang up SECONDS after media is connected")
    parser.add_argument("--reject", action="store_true", help="(answer) decline the call")
    parser.add_argument("--answer-delay", type=float, default=0.0, metavar="SECONDS",
                        help="(answer) ring this long before accepting")
    parser.add_argument("--retract-after", type=float, metavar="SECONDS",
                        help="(call) retract the proposal if not answered by then")
    parser.add_argument("--ice-timeout", type=float, default=20.0,
                        help="seconds allowed for ICE and for DTLS each")
    parser.add_argument("--stun", metavar="HOST:PORT")
    parser.add_argument("--turn", metavar="turn:HOST:PORT")
    parser.add_argument("--turn-user")
    parser.add_argument("--turn-pass")
    parser.add_argument("--relay-only", action="store_true",
                        help="offer and use only relay candidates (needs --turn)")
    parser.add_argument("--no-ipv6", action="store_true", help="gather IPv4 candidates only")
    parser.add_argument("--bad-fingerprint", action="store_true",
                        help="signal a DTLS fingerprint that does not match our certificate")
    parser.add_argument("--trickle", type=float, metavar="SECONDS",
                        help="send no candidates in session-initiate/accept but one "
                             "transport-info per candidate, SECONDS apart")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: debug incl. full stanzas; -vv: also aiortc/aioice debug")
    args = parser.parse_intermixed_args(argv)
    if args.mode == "call" and not args.target:
        parser.error("call needs the bare JID to call")
    if args.mode == "answer" and args.target:
        parser.error("answer takes no JID")
    if args.relay_only and not args.turn:
        parser.error("--relay-only needs --turn")
    try:
        args.width, args.height = (int(v) for v in args.video_size.lower().split("x"))
    except ValueError:
        parser.error("--video-size must look like 640x480")
    return args


def setup_logging(verbose):
    logging.basicConfig(stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        logging.getLogger("slixmpp").setLevel(logging.DEBUG)
        level = logging.DEBUG if verbose > 1 else logging.INFO
        logging.getLogger("aiortc").setLevel(level)
        logging.getLogger("aioice").setLevel(level)


async def amain(args):
    peer = Peer(args)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(
            signum, lambda s=signum: asyncio.ensure_future(peer.on_signal(s.name)))
    peer.connect((args.host, args.port))
    code = await peer.done
    for timer in peer.timers:
        timer.cancel()
    try:
        await asyncio.wait_for(peer.disconnect(), timeout=5)
    except Exception as exc:  # noqa: BLE001
        log.debug("disconnect: %r", exc)
    return code


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)
    patch_aioice_for_trickle()
    patch_opus_decoder()
    try:
        code = asyncio.run(amain(args))
    except Exception as exc:  # noqa: BLE001
        log.exception("fatal")
        emit("error", message=repr(exc))
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Decoder threads and executor workers must not keep us alive.
    os._exit(code)


if __name__ == "__main__":
    main()
