//! Generates the table of web assets from the files under `web/` (run by build.rs; the
//! unit tests of the web module run it on a temporary tree).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively, as (URL path, file path), sorted; README.md and
/// hidden files stay out.
pub fn web_files(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not a name a URL can carry
        };
        if name.starts_with('.') || name == "README.md" {
            continue;
        }
        let url = format!("{prefix}/{name}");
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, &url, out)?;
        } else {
            out.push((url, path));
        }
    }
    Ok(())
}

/// Rust source of `pub static ASSETS: &[Asset]`, the files compiled in with `include_bytes!`.
pub fn asset_table_source(dir: &Path) -> io::Result<String> {
    let mut s = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (url, path) in web_files(dir)? {
        let path = std::fs::canonicalize(path)?;
        let _ = writeln!(
            s,
            "    Asset {{ path: {url:?}, body: include_bytes!({:?}) }},",
            path.display().to_string()
        );
    }
    s.push_str("];\n");
    Ok(s)
}
