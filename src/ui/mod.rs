//! The widgets of the main window, one file per part.

pub mod avatar;
pub mod blocking;
pub mod colour;
pub mod composer;
pub mod conversations;
pub mod dialogs;
pub mod format;
pub mod search;
pub mod signin;
pub mod styling;
pub mod timeline;
