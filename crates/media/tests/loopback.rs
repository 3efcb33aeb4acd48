//! Real pipelines, two calls back to back in one process: tones and pictures must cross
//! both ways, and mute, camera off, key frames, payload types and garbage must behave.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{hears, holds_for, serial, test_config, wait_until, Call, Noise};
use natter_media::{Codec, StreamSpec};

fn opus(pt: u8, ssrc: u32) -> StreamSpec {
    let mut spec = StreamSpec::new(Codec::Opus, pt, ssrc);
    spec.fmtp.push(("useinbandfec".into(), "1".into()));
    spec
}

#[test]
fn tones_cross_both_ways() {
    let _serial = serial();
    let started = Instant::now();
    let call = Call::new(
        test_config(440.0),
        test_config(880.0),
        &[(opus(111, 0x1111), opus(111, 0x2222))],
    );
    call.start();
    let both = || hears(&call.b, 0, 440.0) && hears(&call.a, 0, 880.0);
    assert!(
        wait_until(Duration::from_secs(20), both),
        "A→B {:?}, B→A {:?}",
        call.b.stats(0),
        call.a.stats(0)
    );
    // And every 100 ms for the next two seconds: not a lucky spectrum.
    assert!(
        holds_for(Duration::from_secs(2), both),
        "B {:?} A {:?}",
        call.b.stats(0),
        call.a.stats(0)
    );
    let (a, b) = (call.a.stats(0), call.b.stats(0));
    assert!(
        a.packets_sent > 20 && b.packets_received > 20,
        "{a:?} {b:?}"
    );
    assert_eq!(b.packets_rejected, 0);
    // The first decoded audio is stamped once, after the call started, and stays put.
    for side in [&a, &b] {
        let first = side.first_decoded_at.expect("first decoded audio stamped");
        assert!(first > started && first < Instant::now(), "{side:?}");
    }
    assert_eq!(call.b.stats(0).first_decoded_at, b.first_decoded_at);
    call.assert_no_errors();
    eprintln!("tones_cross_both_ways: {:?}", started.elapsed());
}

#[test]
fn echo_cancellation_keeps_the_call_working() {
    let _serial = serial();
    let started = Instant::now();
    let mut a = test_config(440.0);
    a.echo_cancellation = true;
    let mut b = test_config(880.0);
    b.echo_cancellation = true;
    let call = Call::new(a, b, &[(opus(111, 1), opus(111, 2))]);
    call.start();
    let both = || hears(&call.b, 0, 440.0) && hears(&call.a, 0, 880.0);
    assert!(
        wait_until(Duration::from_secs(20), both),
        "A→B {:?}, B→A {:?}",
        call.b.stats(0),
        call.a.stats(0)
    );
    // Noise suppression must not learn the steady tone away.
    assert!(
        holds_for(Duration::from_secs(2), both),
        "B {:?} A {:?}",
        call.b.stats(0),
        call.a.stats(0)
    );
    call.assert_no_errors();
    eprintln!(
        "echo_cancellation_keeps_the_call_working: {:?}",
        started.elapsed()
    );
}

#[test]
fn audio_and_video_cross_both_ways() {
    let _serial = serial();
    let started = Instant::now();
    let call = Call::new(
        test_config(440.0),
        test_config(880.0),
        &[
            (opus(111, 0xa1), opus(111, 0xb1)),
            (
                StreamSpec::new(Codec::Vp8, 96, 0xa2),
                StreamSpec::new(Codec::Vp8, 96, 0xb2),
            ),
        ],
    );
    call.start();
    let pictures = || {
        [&call.a, &call.b].iter().all(|side| {
            let s = side.stats(1);
            s.frames_decoded > 30 && (s.width, s.height) == (640, 480)
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), pictures),
        "A sees {:?}, B sees {:?}",
        call.a.stats(1),
        call.b.stats(1)
    );
    assert!(
        call.a.stats(1).first_decoded_at.is_some() && call.b.stats(1).first_decoded_at.is_some(),
        "first decoded frames stamped"
    );
    assert!(hears(&call.b, 0, 440.0) && hears(&call.a, 0, 880.0));
    for side in [&call.a, &call.b] {
        let last = side.screen.last.lock().map(|f| f.clone()).ok().flatten();
        let frame = last.expect("a decoded frame");
        assert_eq!((frame.width, frame.height), (640, 480));
        assert!(frame.stride >= 640 * 4);
        assert_eq!(frame.data.len(), frame.stride * 480);
        // SMPTE bars are far from black.
        assert!(side.screen.brightness().unwrap_or(0.0) > 60.0);
    }

    // A key frame on request, not only every 60 frames.
    let before = call.a.stats(1).keyframes_sent;
    call.a.media.request_keyframe(call.a.ids[1]);
    assert!(wait_until(Duration::from_millis(500), || call
        .a
        .stats(1)
        .keyframes_sent
        > before));

    // Camera off: B sees black; back on: B sees the bars again.
    call.a.media.set_camera_enabled(false);
    assert!(
        wait_until(Duration::from_secs(20), || call
            .b
            .screen
            .brightness()
            .is_some_and(|b| b < 8.0)),
        "B still sees {:?}",
        call.b.screen.brightness()
    );
    let sent = call.a.stats(1).packets_sent;
    call.a.media.set_camera_enabled(true);
    assert!(wait_until(Duration::from_secs(20), || call
        .b
        .screen
        .brightness()
        .is_some_and(|b| b > 60.0)));
    assert!(call.a.stats(1).packets_sent > sent, "RTP kept flowing");
    call.assert_no_errors();
    eprintln!("audio_and_video_cross_both_ways: {:?}", started.elapsed());
}

#[test]
fn mute_sends_silence() {
    let _serial = serial();
    let started = Instant::now();
    let call = Call::new(
        test_config(440.0),
        test_config(880.0),
        &[(opus(111, 7), opus(111, 8))],
    );
    call.start();
    assert!(wait_until(Duration::from_secs(20), || hears(
        &call.b, 0, 440.0
    )));
    call.a.media.set_muted(true);
    let silent = || call.b.stats(0).rms_db.is_some_and(|r| r < -60.0);
    assert!(
        wait_until(Duration::from_secs(20), silent),
        "B still hears {:?}",
        call.b.stats(0)
    );
    // Muting is not hanging up: packets keep flowing, and B→A is untouched.
    let received = call.b.stats(0).packets_received;
    std::thread::sleep(Duration::from_millis(300));
    assert!(call.b.stats(0).packets_received > received);
    assert!(hears(&call.a, 0, 880.0));
    call.a.media.set_muted(false);
    assert!(wait_until(Duration::from_secs(20), || hears(
        &call.b, 0, 440.0
    )));
    call.assert_no_errors();
    eprintln!("mute_sends_silence: {:?}", started.elapsed());
}

#[test]
fn garbage_does_not_break_the_call() {
    let _serial = serial();
    let started = Instant::now();
    let call = Call::new(
        test_config(440.0),
        test_config(880.0),
        &[
            (opus(111, 0x51), opus(111, 0x52)),
            (
                StreamSpec::new(Codec::Vp8, 100, 0x61),
                StreamSpec::new(Codec::Vp8, 100, 0x62),
            ),
        ],
    );
    call.start();
    assert!(wait_until(Duration::from_secs(20), || hears(
        &call.b, 0, 440.0
    ) && call
        .b
        .stats(1)
        .frames_decoded
        > 10));

    // Scrambled payloads inside A's real, well-sequenced packets reach B's depayloaders
    // and decoders (bit rot, or a peer's encoder gone wrong).
    for wire in &call.a.wires {
        wire.corrupt_every.store(3, Ordering::Relaxed);
    }
    let b = &call.b.media;
    let (audio, video) = (call.b.ids[0], call.b.ids[1]);
    let mut noise = Noise::new(0x5eed);
    for round in 0..400u32 {
        for (id, pt, ssrc) in [(audio, 111u8, 0x51u32), (video, 100, 0x61)] {
            let len = (noise.next() % 1500) as usize;
            b.push_incoming(id, &noise.bytes(len));
            b.push_incoming(id, &[]);
            b.push_incoming(id, &[0x80]);
            // Truncated header, wrong payload type, CSRCs that are not there.
            b.push_incoming(id, &[0x80, pt, 0, 1, 0, 0]);
            b.push_incoming(id, &[0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3]);
            b.push_incoming(id, &[0x8f, pt, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9]);
            // Truncated RTCP, and well-formed RTCP of random content from a stranger.
            b.push_incoming(id, &[0x80, 200, 0, 6, 0, 0]);
            let mut rtcp = vec![0x80, 200 + (noise.next() % 8) as u8, 0, 6];
            rtcp.extend(noise.bytes(24));
            b.push_incoming(id, &rtcp);
            // Well-formed RTP of the negotiated type with random sequence numbers,
            // timestamps and payloads, from a stranger's SSRC and from A's own.
            for ssrc in [0xdead_beef_u32, ssrc] {
                let mut p = vec![0x80, pt];
                p.extend_from_slice(&(noise.next() as u16).to_be_bytes());
                p.extend_from_slice(&(noise.next() as u32).to_be_bytes());
                p.extend_from_slice(&ssrc.to_be_bytes());
                let len = 1 + (noise.next() % 1000) as usize;
                p.extend(noise.bytes(len));
                b.push_incoming(id, &p);
            }
        }
        if round % 50 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for wire in &call.a.wires {
        wire.corrupt_every.store(0, Ordering::Relaxed);
    }
    assert!(call.b.stats(0).packets_rejected > 1000);

    // The real streams recover.
    let frames = call.b.stats(1).frames_decoded;
    assert!(
        wait_until(Duration::from_secs(20), || hears(&call.b, 0, 440.0)
            && call.b.stats(1).frames_decoded > frames + 30),
        "after garbage: {:?} {:?}",
        call.b.stats(0),
        call.b.stats(1)
    );
    assert!(hears(&call.a, 0, 880.0));
    call.assert_no_errors();
    eprintln!("garbage_does_not_break_the_call: {:?}", started.elapsed());
}

#[test]
fn negotiated_payload_types_are_used_and_required() {
    let _serial = serial();
    let started = Instant::now();
    // Opus as 96 (where VP8 usually sits) and VP8 as 100; on the third stream B expects
    // Opus as 112 while A sends 113.
    let call = Call::new(
        test_config(440.0),
        test_config(880.0),
        &[
            (opus(96, 0x71), opus(96, 0x72)),
            (
                StreamSpec::new(Codec::Vp8, 100, 0x73),
                StreamSpec::new(Codec::Vp8, 100, 0x74),
            ),
            (opus(113, 0x75), opus(112, 0x76)),
        ],
    );
    call.start();
    assert!(
        wait_until(Duration::from_secs(20), || hears(&call.b, 0, 440.0)
            && hears(&call.a, 0, 880.0)
            && call.b.stats(1).frames_decoded > 10
            && call.a.stats(1).frames_decoded > 10),
        "{:?} {:?}",
        call.b.stats(0),
        call.b.stats(1)
    );
    let pts = |side: &common::Side, i: usize| {
        side.wires[i]
            .payload_types
            .lock()
            .map(|p| p.iter().copied().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(pts(&call.a, 0), [96]);
    assert_eq!(pts(&call.a, 1), [100]);
    assert_eq!(pts(&call.a, 2), [113]);
    assert_eq!(pts(&call.b, 2), [112]);
    // Mismatched: everything rejected, nothing decoded, in both directions.
    for side in [&call.a, &call.b] {
        let s = side.stats(2);
        assert_eq!(s.packets_received, 0, "{s:?}");
        assert!(s.packets_rejected > 10, "{s:?}");
        assert_eq!(s.peak_frequency_hz, None);
    }
    call.assert_no_errors();
    eprintln!(
        "negotiated_payload_types_are_used_and_required: {:?}",
        started.elapsed()
    );
}

#[test]
fn h264_crosses_both_ways() {
    if !Codec::H264.is_available() {
        eprintln!("H.264 elements not installed; skipped");
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let call = Call::new(
        test_config(440.0),
        test_config(880.0),
        &[(
            StreamSpec::new(Codec::H264, 102, 0x81),
            StreamSpec::new(Codec::H264, 102, 0x82),
        )],
    );
    call.start();
    assert!(
        wait_until(Duration::from_secs(20), || [&call.a, &call.b]
            .iter()
            .all(|s| s.stats(0).frames_decoded > 30 && s.stats(0).width == 640)),
        "A {:?} B {:?}",
        call.a.stats(0),
        call.b.stats(0)
    );
    assert!(call.b.screen.brightness().unwrap_or(0.0) > 60.0);
    call.assert_no_errors();
    eprintln!("h264_crosses_both_ways: {:?}", started.elapsed());
}

/// A video stream added to both RUNNING pipelines (an audio call upgraded with XEP-0166
/// content-add) starts right away: pictures cross both ways and the tones go on.
#[test]
fn video_added_to_a_running_audio_call_crosses_both_ways() {
    use std::sync::{Arc, OnceLock, Weak};

    use natter_media::{CallMedia, StreamId};

    let _serial = serial();
    let started = Instant::now();
    let call = Call::new(
        test_config(440.0),
        test_config(880.0),
        &[(opus(111, 0xa1), opus(111, 0xb1))],
    );
    call.start();
    let tones = || hears(&call.b, 0, 440.0) && hears(&call.a, 0, 880.0);
    assert!(wait_until(Duration::from_secs(20), tones), "audio first");

    // The wiring of common::Call, by hand: each side's video goes to the other's stream.
    type Peer = Arc<OnceLock<(Weak<CallMedia>, StreamId)>>;
    let wire = |peer: Peer| -> natter_media::PacketCallback {
        Box::new(move |packet| {
            if let Some((media, id)) = peer.get() {
                if let Some(media) = media.upgrade() {
                    media.push_incoming(*id, packet);
                }
            }
        })
    };
    let (to_b, to_a): (Peer, Peer) = Default::default();
    let a_id = call
        .a
        .media
        .add_stream(StreamSpec::new(Codec::Vp8, 96, 0xa2), wire(to_b.clone()))
        .expect("add video to running A");
    let b_id = call
        .b
        .media
        .add_stream(StreamSpec::new(Codec::Vp8, 96, 0xb2), wire(to_a.clone()))
        .expect("add video to running B");
    let _ = to_b.set((Arc::downgrade(&call.b.media), b_id));
    let _ = to_a.set((Arc::downgrade(&call.a.media), a_id));

    let pictures = || {
        [(&call.a, a_id), (&call.b, b_id)].iter().all(|(side, id)| {
            let s = side.media.stats(*id);
            s.frames_decoded > 30 && (s.width, s.height) == (640, 480)
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), pictures),
        "A sees {:?}, B sees {:?}",
        call.a.media.stats(a_id),
        call.b.media.stats(b_id)
    );
    assert!(holds_for(Duration::from_secs(1), tones), "tones go on");
    for side in [&call.a, &call.b] {
        assert!(side.screen.brightness().unwrap_or(0.0) > 60.0, "SMPTE bars");
    }
    call.assert_no_errors();
    eprintln!(
        "video_added_to_a_running_audio_call_crosses_both_ways: {:?}",
        started.elapsed()
    );
}
