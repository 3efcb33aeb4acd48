//! A contact's avatar: their picture (XEP-0084 / XEP-0153, verified and cached by the
//! session) cropped round, or initials on their XEP-0392 colour; with a presence dot.
//!
//! Pictures are kept per bare JID for the whole window ([`set_picture`]): every avatar
//! showing that JID (list rows, chat header, own status, details) updates at once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use relm4::gtk;
use relm4::gtk::gdk_pixbuf::{InterpType, Pixbuf};
use relm4::gtk::prelude::*;

use super::colour;
use super::format::initials;

/// What the presence dot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dot {
    #[default]
    None,
    Available,
    Away,
    Busy,
}

#[derive(Default)]
struct State {
    id: String,
    text: String,
    colour: (f64, f64, f64),
    dot: Dot,
    picture: Option<Pixbuf>,
    /// `picture` scaled to the drawn size in device pixels (size, pixbuf).
    scaled: Option<(i32, Pixbuf)>,
}

/// The side of the square picture we publish as our own avatar.
pub const OWN_SIZE: i32 = 192;

/// An avatar widget, weakly (it goes away with its row or dialog).
struct Shown {
    state: Weak<RefCell<State>>,
    area: gtk::glib::WeakRef<gtk::DrawingArea>,
    label: gtk::glib::WeakRef<gtk::Label>,
}

struct Picture {
    path: PathBuf,
    pixbuf: Pixbuf,
}

thread_local! {
    /// Loaded pictures by bare JID.
    static PICTURES: RefCell<HashMap<String, Picture>> = RefCell::default();
    /// Every avatar widget alive, to update those showing a JID whose picture changed.
    static SHOWN: RefCell<Vec<Shown>> = RefCell::default();
}

/// The cached picture file of `jid`, once it is loaded (for notification icons).
pub fn picture_path(jid: &str) -> Option<PathBuf> {
    PICTURES.with(|p| p.borrow().get(jid).map(|p| p.path.clone()))
}

/// `jid`'s avatar is now the picture at `path` (`None`: removed). The file is read
/// off the main thread; an unreadable one leaves the initials.
pub fn set_picture(jid: &str, path: Option<PathBuf>) {
    let jid = jid.to_owned();
    let Some(path) = path else {
        PICTURES.with(|p| p.borrow_mut().remove(&jid));
        refresh(&jid);
        return;
    };
    if PICTURES.with(|p| p.borrow().get(&jid).is_some_and(|p| p.path == path)) {
        return;
    }
    gtk::glib::spawn_future_local(async move {
        // Read and decoded on GIO's threads; the main thread only waits asynchronously.
        let loaded = async {
            let stream = gtk::gio::File::for_path(&path)
                .read_future(gtk::glib::Priority::DEFAULT)
                .await?;
            Pixbuf::from_stream_future(&stream).await
        }
        .await;
        match loaded {
            Ok(pixbuf) => {
                PICTURES.with(|p| p.borrow_mut().insert(jid.clone(), Picture { path, pixbuf }));
                refresh(&jid);
            }
            Err(e) => tracing::warn!(%jid, error = %e, "cannot read an avatar picture"),
        }
    });
}

/// Redraws every avatar showing `jid`.
fn refresh(jid: &str) {
    let picture = PICTURES.with(|p| p.borrow().get(jid).map(|p| p.pixbuf.clone()));
    SHOWN.with(|shown| {
        let mut shown = shown.borrow_mut();
        shown.retain(|s| s.state.strong_count() > 0);
        for s in shown.iter() {
            let (Some(state), Some(area), Some(label)) =
                (s.state.upgrade(), s.area.upgrade(), s.label.upgrade())
            else {
                continue;
            };
            if state.borrow().id != jid {
                continue;
            }
            apply_picture(&state, &label, picture.clone());
            area.queue_draw();
        }
    });
}

fn apply_picture(state: &Rc<RefCell<State>>, label: &gtk::Label, picture: Option<Pixbuf>) {
    let mut st = state.borrow_mut();
    label.set_visible(picture.is_none());
    st.picture = picture;
    st.scaled = None;
}

/// Our own avatar from an image file: read, cropped to the centre square, scaled to
/// [`OWN_SIZE`] and encoded as PNG. `Err` is a sentence for the user.
pub fn prepare_own(path: &Path) -> Result<Vec<u8>, String> {
    use crate::i18n::tr;
    let pixbuf = Pixbuf::from_file(path).map_err(|e| {
        tracing::info!(path = %path.display(), error = %e, "not a readable picture");
        tr("This file is not a picture Natter can read.")
    })?;
    let (w, h) = (pixbuf.width(), pixbuf.height());
    if w < 1 || h < 1 {
        return Err(tr("This file is not a picture Natter can read."));
    }
    let side = w.min(h);
    let square = pixbuf.new_subpixbuf((w - side) / 2, (h - side) / 2, side, side);
    let scaled = square
        .scale_simple(OWN_SIZE, OWN_SIZE, InterpType::Bilinear)
        .ok_or_else(|| tr("The picture could not be scaled."))?;
    scaled.save_to_bufferv("png", &[]).map_err(|e| {
        tracing::warn!(error = %e, "cannot encode the avatar");
        tr("The picture could not be scaled.")
    })
}

#[derive(Clone)]
pub struct Avatar {
    root: gtk::Overlay,
    area: gtk::DrawingArea,
    label: gtk::Label,
    state: Rc<RefCell<State>>,
}

impl Avatar {
    pub fn new(size: i32) -> Avatar {
        let area = gtk::DrawingArea::builder()
            .content_width(size)
            .content_height(size)
            .valign(gtk::Align::Center)
            .build();
        let state: Rc<RefCell<State>> = Rc::default();
        let s = state.clone();
        let label = gtk::Label::builder()
            .halign(gtk::Align::Center)
            .valign(gtk::Align::Center)
            .css_classes(["natter-initials"])
            .build();
        let attrs = gtk::pango::AttrList::new();
        attrs.insert(gtk::pango::AttrSize::new_size_absolute(
            size * 2 / 5 * gtk::pango::SCALE,
        ));
        attrs.insert(gtk::pango::AttrInt::new_weight(gtk::pango::Weight::Bold));
        label.set_attributes(Some(&attrs));
        let root = gtk::Overlay::builder()
            .child(&area)
            .valign(gtk::Align::Center)
            .build();
        root.add_overlay(&label);
        area.set_draw_func(move |area, cr, w, h| {
            let mut st = s.borrow_mut();
            let size = f64::from(w.min(h));
            let (r, g, b) = st.colour;
            cr.set_source_rgb(r, g, b);
            cr.arc(
                size / 2.0,
                size / 2.0,
                size / 2.0,
                0.0,
                std::f64::consts::TAU,
            );
            if let Some(picture) = scaled_picture(&mut st, w.min(h) * area.scale_factor()) {
                // Cropped round, like AdwAvatar; drawn in device pixels for sharpness.
                let _ = cr.save();
                cr.clip();
                let device = f64::from(area.scale_factor());
                cr.scale(1.0 / device, 1.0 / device);
                use gtk::gdk::prelude::GdkCairoContextExt;
                cr.set_source_pixbuf(&picture, 0.0, 0.0);
                let _ = cr.paint();
                let _ = cr.restore();
            } else {
                let _ = cr.fill();
            }
            let dot = match st.dot {
                Dot::None => None,
                Dot::Available => Some((0.2, 0.82, 0.48)),
                Dot::Away => Some((0.96, 0.76, 0.07)),
                Dot::Busy => Some((0.88, 0.11, 0.14)),
            };
            if let Some((r, g, b)) = dot {
                let radius = (size * 0.16).max(4.0);
                let (cx, cy) = (size - radius, size - radius);
                #[allow(deprecated)]
                let ring = area
                    .style_context()
                    .lookup_color("window_bg_color")
                    .unwrap_or_else(|| gtk::gdk::RGBA::new(1.0, 1.0, 1.0, 1.0));
                cr.set_source_rgb(
                    f64::from(ring.red()),
                    f64::from(ring.green()),
                    f64::from(ring.blue()),
                );
                cr.arc(cx, cy, radius + 1.5, 0.0, std::f64::consts::TAU);
                let _ = cr.fill();
                cr.set_source_rgb(r, g, b);
                cr.arc(cx, cy, radius, 0.0, std::f64::consts::TAU);
                let _ = cr.fill();
            }
        });
        SHOWN.with(|shown| {
            shown.borrow_mut().push(Shown {
                state: Rc::downgrade(&state),
                area: area.downgrade(),
                label: label.downgrade(),
            })
        });
        Avatar {
            root,
            area,
            label,
            state,
        }
    }

    pub fn widget(&self) -> &gtk::Overlay {
        &self.root
    }

    /// `id` picks the colour (the bare JID), `name` the initials.
    pub fn set(&self, id: &str, name: &str, dot: Dot) {
        let mut st = self.state.borrow_mut();
        if st.id != id {
            st.id = id.to_owned();
            st.colour = colour::rgb(id);
            drop(st);
            let picture = PICTURES.with(|p| p.borrow().get(id).map(|p| p.pixbuf.clone()));
            apply_picture(&self.state, &self.label, picture);
            st = self.state.borrow_mut();
        }
        st.text = initials(name);
        st.dot = dot;
        self.label.set_label(&st.text);
        drop(st);
        self.area.queue_draw();
    }
}

/// The picture to draw at `side` device pixels, scaled once per size.
fn scaled_picture(st: &mut State, side: i32) -> Option<Pixbuf> {
    let picture = st.picture.as_ref()?;
    if side < 1 {
        return None;
    }
    match &st.scaled {
        Some((s, scaled)) if *s == side => Some(scaled.clone()),
        _ => {
            // Cropped to the centre square first, so nobody is stretched.
            let (w, h) = (picture.width(), picture.height());
            let square = w.min(h);
            let square = picture.new_subpixbuf((w - square) / 2, (h - square) / 2, square, square);
            let scaled = square.scale_simple(side, side, InterpType::Bilinear)?;
            st.scaled = Some((side, scaled.clone()));
            Some(scaled)
        }
    }
}

/// Asks for a picture (the desktop's file chooser) and hands the chosen file on.
pub fn choose_own(parent: &impl IsA<gtk::Window>, chosen: impl Fn(PathBuf) + 'static) {
    use crate::i18n::tr;
    let dialog = gtk::FileChooserNative::new(
        Some(&tr("Set Avatar")),
        Some(parent),
        gtk::FileChooserAction::Open,
        Some(&tr("_Select")),
        Some(&tr("_Cancel")),
    );
    dialog.set_modal(true);
    let filter = gtk::FileFilter::new();
    filter.set_name(Some(&tr("Pictures")));
    filter.add_pixbuf_formats();
    dialog.add_filter(&filter);
    // A native dialog is not kept alive by being shown: hold it until it answers.
    let holder = Rc::new(RefCell::new(Some(dialog.clone())));
    dialog.connect_response(move |d, response| {
        if response == gtk::ResponseType::Accept {
            if let Some(path) = d.file().and_then(|f| f.path()) {
                chosen(path);
            }
        }
        d.destroy();
        holder.borrow_mut().take();
    });
    dialog.show();
}

/// Prepares the picture in `file` (off the main thread) and publishes it as the
/// account's avatar. `Err` is a sentence for the user.
pub async fn publish_own(handle: natter_core::SessionHandle, file: PathBuf) -> Result<(), String> {
    use crate::i18n::tr;
    let png = tokio::task::spawn_blocking(move || prepare_own(&file))
        .await
        .map_err(|_| tr("The picture could not be scaled."))??;
    handle
        .set_avatar(png, "image/png")
        .await
        .map(|_| ())
        .map_err(|e| format!("{} ({e})", tr("The avatar could not be published")))
}
