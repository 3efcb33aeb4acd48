//! Natter: a GNOME desktop XMPP client.

mod app;
mod backend;
mod i18n;

use relm4::RelmApp;

pub const APP_ID: &str = "im.natter.Natter";

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
    tracing_subscriber::fmt().with_env_filter(filter).init();
    i18n::init();
    // Sessions run on our own tokio runtime, never on the GTK main thread. The account
    // starts connecting now, while GTK builds the window.
    let started = backend::runtime().spawn(backend::start_account());
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
    app.run::<app::App>(started);
}
