//! Compiles every file under web/ into the daemon: a table of (URL path, bytes) the web
//! side serves, so a file added to web/ is served without a change to the Rust code.

#[path = "src/web/asset_table.rs"]
mod asset_table;

fn main() {
    println!("cargo:rerun-if-changed=web");
    println!("cargo:rerun-if-changed=src/web/asset_table.rs");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"),
    );
    let source = asset_table::asset_table_source(&dir.join("web"))
        .expect("cannot read the files under web/");
    std::fs::write(out.join("web_assets.rs"), source).expect("cannot write web_assets.rs");
}
