//! An avatar until real ones arrive: initials on the contact's XEP-0392 colour, with a
//! presence dot.

use std::cell::RefCell;
use std::rc::Rc;

use relm4::gtk;
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
            let st = s.borrow();
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
            let _ = cr.fill();
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
        }
        st.text = initials(name);
        st.dot = dot;
        self.label.set_label(&st.text);
        drop(st);
        self.area.queue_draw();
    }
}
