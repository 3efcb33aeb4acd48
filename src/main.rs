//! Natter: a GNOME desktop XMPP client.

mod app;
mod backend;
mod i18n;
mod notify;
mod perf;
mod settings;
mod ui;

use relm4::RelmApp;

pub const APP_ID: &str = "im.natter.Natter";

/// The few styles libadwaita does not have: message bubbles, banners (AdwBanner is
/// libadwaita 1.3), the unread badge.
const STYLE: &str = "
.natter-bubble { padding: 6px 10px; border-radius: 12px; }
.natter-bubble.incoming { background-color: alpha(currentColor, 0.08); }
.natter-bubble.outgoing { background-color: alpha(@accent_bg_color, 0.18); }
.natter-quote { border-left: 3px solid alpha(currentColor, 0.3); padding-left: 6px; font-size: smaller; }
.natter-bubble.natter-highlight { box-shadow: inset 0 0 0 2px @accent_color; }
.natter-search-snippet { font-size: smaller; }
.natter-reactions { font-size: larger; padding-top: 2px; }
.natter-quick-reaction { font-size: larger; min-width: 32px; }
.natter-bubble label { min-width: 0; }
.natter-timeline { background: none; }
.natter-unread { background-color: @accent_bg_color; color: @accent_fg_color;
  border-radius: 999px; padding: 0 7px; font-size: smaller; font-weight: bold; min-width: 10px; }
.natter-banner { padding: 6px 12px; }
.natter-banner.warning { background-color: alpha(@warning_bg_color, 0.3); }
.natter-banner.accent { background-color: alpha(@accent_bg_color, 0.2); }
.natter-initials { color: white; }
.natter-composer { background: none; }
.natter-composer-frame { border-radius: 18px; }
/* Adwaita ships its symbolic icons as PNG up to 96 px; a larger one is drawn from SVG,
   and the first SVG icon maps librsvg and its libraries: 12 MB more resident memory. */
statuspage.natter-empty-chat image.icon { -gtk-icon-size: 96px; }
";

fn main() {
    // With the cairo renderer GTK draws nothing through GL, yet GDK would still load the
    // whole GL stack (Mesa, LLVM: ~50 MB resident on machines without a GPU). Done first,
    // while the process has one thread.
    if std::env::var_os("GSK_RENDERER").is_some_and(|r| r == "cairo")
        && std::env::var_os("GDK_DEBUG").is_none()
    {
        std::env::set_var("GDK_DEBUG", "gl-disable");
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("natter=info,natter_core=info"));
    // Colours only on a terminal: logs in files stay greppable.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    i18n::init();
    // No display (or a broken one): say so and stop, instead of a panic deep in relm4.
    if let Err(e) = relm4::gtk::init() {
        eprintln!("natter: cannot start the window: {e} (is DISPLAY or WAYLAND_DISPLAY set?)");
        std::process::exit(1);
    }
    // Sessions run on our own tokio runtime, never on the GTK main thread. The account
    // starts connecting now, while GTK builds the window.
    let started = backend::runtime().spawn(backend::start_accounts());
    // SIGTERM (logout, systemd, the benchmark kit) quits like closing the window does, so
    // the session signs off instead of leaving the server to time it out.
    backend::runtime().spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            relm4::gtk::glib::MainContext::default().invoke(|| {
                use relm4::gtk::prelude::ApplicationExt;
                relm4::main_application().quit();
            });
        }
    });
    let app = RelmApp::new(APP_ID).with_args(Vec::new());
    relm4::set_global_css(STYLE);
    app.run::<app::App>(started);
}
