//! Microphones and cameras, through `gst::DeviceMonitor`.

use gst::prelude::*;

use crate::props::make;
use crate::{MediaError, MediaKind};

/// A capture device the user can pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Display name; pass it back in [`crate::Source::Devices`].
    pub name: String,
    /// GStreamer device class, e.g. "Audio/Source" or "Video/Source".
    pub class: String,
    pub kind: MediaKind,
    /// The system's default device of its kind, when the provider says so.
    pub is_default: bool,
}

fn class_of(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "Audio/Source",
        MediaKind::Video => "Video/Source",
    }
}

/// Lists microphones and cameras; empty when no device provider works (e.g. no sound
/// server).
pub fn list_devices() -> Vec<Device> {
    if let Err(e) = crate::init() {
        tracing::warn!(error = %e, "cannot list devices");
        return Vec::new();
    }
    let mut devices = Vec::new();
    for kind in [MediaKind::Audio, MediaKind::Video] {
        for device in monitor_devices(kind) {
            devices.push(Device {
                name: device.display_name().to_string(),
                class: device.device_class().to_string(),
                kind,
                is_default: is_default(&device),
            });
        }
    }
    devices
}

fn monitor_devices(kind: MediaKind) -> Vec<gst::Device> {
    let monitor = gst::DeviceMonitor::new();
    // Raw formats only, so monitors do not list e.g. encoded-only outputs.
    let caps = gst::Caps::new_empty_simple(match kind {
        MediaKind::Audio => "audio/x-raw",
        MediaKind::Video => "video/x-raw",
    });
    if monitor
        .add_filter(Some(class_of(kind)), Some(&caps))
        .is_none()
    {
        return Vec::new();
    }
    if let Err(e) = monitor.start() {
        tracing::debug!(%kind, error = %e, "device monitor did not start");
        return Vec::new();
    }
    let devices = monitor.devices().into_iter().collect();
    monitor.stop();
    devices
}

fn is_default(device: &gst::Device) -> bool {
    device
        .properties()
        .and_then(|p| p.get::<bool>("is-default").ok())
        .unwrap_or(false)
}

/// The capture element for a device picked by display name, or the default device.
pub(crate) fn capture_element(
    kind: MediaKind,
    name: Option<&str>,
) -> Result<gst::Element, MediaError> {
    let devices = monitor_devices(kind);
    let chosen = match name {
        Some(name) => Some(
            devices
                .iter()
                .find(|d| d.display_name() == name)
                .ok_or_else(|| MediaError::DeviceNotFound {
                    kind,
                    name: name.to_owned(),
                })?,
        ),
        None => devices
            .iter()
            .find(|d| is_default(d))
            .or_else(|| devices.first()),
    };
    if let Some(device) = chosen {
        match device.create_element(None) {
            Ok(element) => return Ok(element),
            Err(e) if name.is_some() => {
                return Err(MediaError::Pipeline(format!(
                    "cannot open {}: {e}",
                    device.display_name()
                )))
            }
            Err(e) => tracing::warn!(error = %e, "default device failed; trying auto source"),
        }
    }
    match kind {
        MediaKind::Audio => make("autoaudiosrc", "the microphone"),
        MediaKind::Video => make("autovideosrc", "the camera"),
    }
}
