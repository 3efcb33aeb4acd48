//! Figures the benchmarks read from the log (target `natter::perf`): how long opening a
//! conversation takes until its newest page is on screen, and, with `NATTER_PERF=1`,
//! how long each frame takes to draw.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use relm4::gtk;
use relm4::gtk::prelude::*;

/// Logs the time from `since` to the end of the next frame that shows `view`, and (at
/// debug level) when that frame started, finished its layout and finished painting.
pub fn shown(view: &gtk::ListView, since: Instant, messages: usize) {
    let Some(clock) = view.frame_clock() else {
        tracing::info!(target: "natter::perf", ms = since.elapsed().as_secs_f64() * 1e3, messages, "conversation shown");
        return;
    };
    let phase = move |name: &'static str| {
        move |_: &gtk::gdk::FrameClock| {
            tracing::debug!(target: "natter::perf", ms = since.elapsed().as_secs_f64() * 1e3, "{name}");
        }
    };
    let phases = [
        clock.connect_before_paint(phase("frame start")),
        clock.connect_layout(phase("layout done")),
        clock.connect_paint(phase("paint done")),
    ];
    let handler: Rc<Cell<Option<gtk::glib::SignalHandlerId>>> = Rc::default();
    let h = handler.clone();
    let phases = Cell::new(Some(phases));
    let id = clock.connect_after_paint(move |clock| {
        let ms = since.elapsed().as_secs_f64() * 1e3;
        tracing::info!(target: "natter::perf", ms, messages, "conversation shown");
        for id in phases.take().into_iter().flatten().chain(h.take()) {
            clock.disconnect(id);
        }
    });
    handler.set(Some(id));
    clock.request_phase(gtk::gdk::FrameClockPhase::PAINT);
}

/// With `NATTER_PERF=1`: logs how long each frame of the window took, from the start of
/// its update phase to the end of painting.
pub fn watch_frames(window: &impl IsA<gtk::Widget>) {
    if std::env::var_os("NATTER_PERF").is_none() {
        return;
    }
    window.connect_realize(|w| {
        let Some(clock) = w.frame_clock() else {
            return;
        };
        let start: Rc<Cell<Option<Instant>>> = Rc::default();
        let s = start.clone();
        clock.connect_update(move |_| {
            if s.get().is_none() {
                s.set(Some(Instant::now()));
            }
        });
        clock.connect_after_paint(move |_| {
            if let Some(t) = start.take() {
                tracing::info!(target: "natter::perf", frame_ms = t.elapsed().as_secs_f64() * 1e3, "frame");
            }
        });
    });
}

/// Hands the memory that signing in and a history sync freed back to the system. The
/// sync parses and stores thousands of messages on several threads; glibc keeps what
/// they freed in its arenas (about 20 MB after 20 000 messages) until asked to trim,
/// and SQLite keeps the pages it read and wrote in its cache (2 MB).
pub fn release_memory() {
    crate::backend::runtime().spawn(async {
        if let Ok(store) = crate::backend::store().await {
            if let Err(e) = store.release_memory().await {
                tracing::debug!(target: "natter::perf", error = %e, "database cache kept");
            }
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointers.
            let released = unsafe { libc::malloc_trim(0) };
            tracing::debug!(target: "natter::perf", released, "memory trimmed after sync");
        }
    });
}
