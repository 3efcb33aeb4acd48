//! The API refuses bad input with errors, never panics.

use natter_media::{
    list_devices, CallMedia, Codec, MediaConfig, MediaError, MediaKind, PacketCallback, Source,
    StreamId, StreamSpec,
};

fn config() -> MediaConfig {
    MediaConfig {
        source: Source::Test {
            audio_freq: 440.0,
            video_pattern: "ball".into(),
        },
        play_audio: false,
        echo_cancellation: false,
        ..MediaConfig::default()
    }
}

fn ignore() -> PacketCallback {
    Box::new(|_| {})
}

#[test]
fn call_media_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CallMedia>();
}

#[test]
fn bad_specs_are_refused() {
    let media = CallMedia::new(config()).expect("call media");
    let err = |spec| media.add_stream(spec, ignore()).err();
    assert!(matches!(
        err(StreamSpec::new(Codec::Opus, 8, 1)),
        Some(MediaError::InvalidConfig(_))
    ));
    let mut wrong_kind = StreamSpec::new(Codec::Vp8, 96, 1);
    wrong_kind.kind = MediaKind::Audio;
    assert!(matches!(
        err(wrong_kind),
        Some(MediaError::InvalidConfig(_))
    ));
    let mut wrong_rate = StreamSpec::new(Codec::Opus, 111, 1);
    wrong_rate.clock_rate = 8000;
    assert!(matches!(
        err(wrong_rate),
        Some(MediaError::InvalidConfig(_))
    ));
    // A failed stream leaves a usable pipeline behind.
    let id = media
        .add_stream(StreamSpec::new(Codec::Opus, 111, 1), ignore())
        .expect("good stream");
    media.start().expect("start");
    media.push_incoming(id, &[0x80, 111, 0, 0]);
    media.stop();
    media.stop();
    assert_eq!(media.start(), Err(MediaError::Stopped));
}

#[test]
fn unknown_test_pattern_is_refused() {
    let mut c = config();
    c.source = Source::Test {
        audio_freq: 440.0,
        video_pattern: "no-such-pattern".into(),
    };
    let media = CallMedia::new(c).expect("call media");
    let e = media.add_stream(StreamSpec::new(Codec::Vp8, 96, 1), ignore());
    assert!(matches!(e, Err(MediaError::InvalidConfig(_))), "{e:?}");
}

#[test]
fn bad_configs_are_refused() {
    let mut c = config();
    c.video_size = (0, 480);
    assert!(matches!(
        CallMedia::new(c),
        Err(MediaError::InvalidConfig(_))
    ));
    let mut c = config();
    c.source = Source::Test {
        audio_freq: f64::NAN,
        video_pattern: "ball".into(),
    };
    assert!(matches!(
        CallMedia::new(c),
        Err(MediaError::InvalidConfig(_))
    ));
}

#[test]
fn unknown_streams_are_ignored() {
    // A stream id of another call, unknown to this one.
    let other = CallMedia::new(config()).expect("call media");
    let nobody: StreamId = other
        .add_stream(StreamSpec::new(Codec::Opus, 111, 1), ignore())
        .expect("stream");
    let media = CallMedia::new(config()).expect("call media");
    media.push_incoming(nobody, &[0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    media.request_keyframe(nobody);
    assert_eq!(media.stats(nobody), Default::default());
}

#[test]
fn required_codecs_are_installed() {
    assert!(Codec::Opus.is_available());
    assert!(Codec::Vp8.is_available());
    assert!(natter_media::available_codecs().contains(&Codec::Opus));
}

#[test]
fn devices_can_be_listed() {
    // Whatever this machine has (maybe nothing): it must not panic or hang.
    for d in list_devices() {
        assert!(!d.name.is_empty());
        assert!(d.class.contains("Source"));
    }
}
