//! Compiles the GSettings schema next to the build output, so a development build run
//! from the tree (tests, `make demo`) has its settings without installing anything.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=data/im.natter.Natter.gschema.xml");
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let dir = out.join("schemas");
    if std::fs::create_dir_all(&dir).is_err()
        || std::fs::copy(
            "data/im.natter.Natter.gschema.xml",
            dir.join("im.natter.Natter.gschema.xml"),
        )
        .is_err()
    {
        println!("cargo:warning=could not copy the settings schema");
        return;
    }
    match Command::new("glib-compile-schemas").arg(&dir).status() {
        Ok(s) if s.success() => {
            println!("cargo:rustc-env=NATTER_SCHEMA_DIR={}", dir.display());
        }
        _ => println!(
            "cargo:warning=glib-compile-schemas failed: settings will not be saved by this build"
        ),
    }
}
