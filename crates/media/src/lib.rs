//! natter-media: the GStreamer side of a call.
