//! Element creation and property setting that log instead of panicking.
//!
//! `ObjectExt::set_property` panics on a missing property or a wrong value type; element
//! properties differ between GStreamer versions and plugin builds, so a mismatch here is
//! logged and the element keeps its default.

use gst::glib;
use gst::prelude::*;

use crate::MediaError;

/// Creates an element, or says which one is missing and for what.
pub(crate) fn make(factory: &str, what: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| MediaError::MissingElements {
            what: what.to_owned(),
            elements: vec![factory.to_owned()],
        })
}

/// Sets a property if the element has it with a compatible type.
pub(crate) fn set(element: &impl IsA<glib::Object>, name: &str, value: impl ToValue) {
    let object = element.upcast_ref::<glib::Object>();
    let value = value.to_value();
    match object.find_property(name) {
        Some(pspec) if value.type_().is_a(pspec.value_type()) => {
            object.set_property_from_value(name, &value);
        }
        Some(pspec) => tracing::warn!(
            element = %object_name(object),
            property = name,
            expected = %pspec.value_type(),
            got = %value.type_(),
            "property has another type; left at its default"
        ),
        None => tracing::warn!(
            element = %object_name(object),
            property = name,
            "element has no such property; left at its default"
        ),
    }
}

/// Sets a property from its string form (enum/flags nicks such as "realtime").
/// Returns whether the value was accepted.
pub(crate) fn set_str(element: &impl IsA<glib::Object>, name: &str, value: &str) -> bool {
    let object = element.upcast_ref::<glib::Object>();
    let Some(pspec) = object.find_property(name) else {
        tracing::warn!(element = %object_name(object), property = name, "element has no such property");
        return false;
    };
    match glib::Value::deserialize_with_pspec(value, &pspec) {
        Ok(v) => {
            object.set_property_from_value(name, &v);
            true
        }
        Err(_) => {
            tracing::warn!(element = %object_name(object), property = name, value, "value not accepted");
            false
        }
    }
}

fn object_name(object: &glib::Object) -> String {
    object
        .downcast_ref::<gst::Object>()
        .map(|o| o.name().to_string())
        .unwrap_or_else(|| object.type_().name().to_owned())
}
