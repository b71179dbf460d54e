//! Skipping a test that cannot run here: it says so on the terminal, with the
//! reason, and under `CI=true` it fails instead, because CI installs what the
//! tests need (scripts/test-deps.txt) and runs as root, so a skip there would hide
//! a broken setup behind a green run.

use std::fs;
use std::io::Write;

/// Whether this run is CI's (`CI=true`, as GitHub Actions and .ci/run set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports that the calling test is skipped because something it needs is
/// missing (`why`); the test returns right after. Under `CI=true` it panics
/// instead.
pub fn skip(why: &str) {
    assert!(
        !in_ci(),
        "{}: would be skipped under CI=true, where it must run: {why}",
        test_name()
    );
    say_skipped(why);
}

/// Prints "SKIPPED: <test>: <why>" straight to stderr, past the test harness'
/// capture, so it shows in a passing run. Alone, for a test that is opt-in by
/// design (a soak test) and skipped in CI too.
pub fn say_skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {}: {why}", test_name());
}

/// The running test's name (libtest names its thread after it).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("a test").to_owned()
}

/// The programs of `programs` that are not on PATH.
pub fn missing_programs<'a>(programs: &[&'a str]) -> Vec<&'a str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    programs
        .iter()
        .copied()
        .filter(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .collect()
}

/// Whether this process runs with effective user id 0, from /proc/self/status
/// (its `Uid:` line holds the real, effective, saved and file-system ids).
pub fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("an effective uid in /proc/self/status");
    euid == "0"
}
