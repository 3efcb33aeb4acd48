//! GSettings (`im.natter.Natter`): window size and state, and whether messages notify.
//! When the schema is not installed (a build tree run without `make`), defaults apply
//! and nothing is saved, instead of GLib aborting the process.

use relm4::gtk::gio;
use relm4::gtk::prelude::*;

use crate::APP_ID;

#[derive(Clone)]
pub struct Settings(Option<gio::Settings>);

impl Settings {
    pub fn new() -> Settings {
        let source = gio::SettingsSchemaSource::default();
        let found = source.as_ref().and_then(|s| s.lookup(APP_ID, true));
        // A development build finds the schema compiled next to its build output.
        let schema = found.or_else(|| {
            let dir = option_env!("NATTER_SCHEMA_DIR")?;
            gio::SettingsSchemaSource::from_directory(dir, source.as_ref(), false)
                .ok()?
                .lookup(APP_ID, false)
        });
        match schema {
            Some(schema) => Settings(Some(gio::Settings::new_full(
                &schema,
                None::<&gio::SettingsBackend>,
                None,
            ))),
            None => {
                tracing::warn!("settings schema {APP_ID} not installed: preferences are not saved");
                Settings(None)
            }
        }
    }

    pub fn restore_window(&self, window: &impl IsA<relm4::gtk::Window>) {
        let (w, h, max) = match &self.0 {
            Some(s) => (
                s.int("window-width"),
                s.int("window-height"),
                s.boolean("window-maximized"),
            ),
            None => (900, 640, false),
        };
        window.set_default_size(w.max(360), h.max(400));
        if max {
            window.maximize();
        }
    }

    pub fn save_window(&self, window: &impl IsA<relm4::gtk::Window>) {
        let Some(s) = &self.0 else {
            return;
        };
        let (w, h) = window.default_size();
        let max = window.is_maximized();
        if !max {
            let _ = s.set_int("window-width", w);
            let _ = s.set_int("window-height", h);
        }
        let _ = s.set_boolean("window-maximized", max);
    }

    pub fn notifications(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.boolean("notifications"))
    }

    /// The GSettings object, to bind actions to keys.
    pub fn inner(&self) -> Option<&gio::Settings> {
        self.0.as_ref()
    }
}
