//! Test harness for the novnc-audio integration tests.
//!
//! Every test gets its own private PulseAudio server (a temp dir with its own
//! XDG_RUNTIME_DIR and HOME), its own daemon on a free port, and cleans up by
//! pid. Nothing here ever talks to an ambient PulseAudio.
//!
//! One file per topic, each re-exported here so a test says `use common::*;`:
//!
//! | file           | what it holds                                                     |
//! |----------------|-------------------------------------------------------------------|
//! | `pulse.rs`     | a private PulseAudio server, the scrubbed child environment        |
//! | `tone.rs`      | the sine player (pacat) and where its stream plays                 |
//! | `daemon.rs`    | the daemon under test as a child process, `setup()`                |
//! | `ws.rs`        | the wire frame, a blocking WebSocket client, a threaded reader     |
//! | `http.rs`      | raw HTTP requests and responses, `expect_status`                   |
//! | `stats.rs`     | `/stats` parsed as JSON, the daemon's CPU, fds and RSS from /proc  |
//! | `audio.rs`     | decoding (Opus, PCM) and tone analysis (level, frequency)          |
//! | `frames.rs`    | checks and figures over a run of frames (timestamps, rates, gaps)  |
//! | `hearing.rs`   | hearing a tone on several clients over time                        |
//! | `mic.rs`       | a speaker on `/mic` and a recorder on a source (the microphone)    |
//! | `skip.rs`      | skipping a test with a reason, and failing instead under CI=true   |
//! | `pipewire.rs`  | a private PipeWire session (pipewire-pulse on the harness' socket) |
//! | `scenarios.rs` | the restart and sink-unload scenarios shared by the scenario tests |
#![allow(dead_code)]

mod audio;
mod daemon;
mod frames;
mod hearing;
mod http;
mod mic;
mod pipewire;
mod pulse;
pub mod scenarios;
mod skip;
mod stats;
mod tone;
mod ws;

// Each test file uses a part of the harness; the rest of it is no defect there.
#[allow(unused_imports)]
pub use {
    audio::*, daemon::*, frames::*, hearing::*, http::*, mic::*, pipewire::*, pulse::*, skip::*,
    stats::*, tone::*, ws::*,
};

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Send a signal by pid with kill(1) (std only, no libc).
pub fn send_signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Poll `f` every 50 ms until it returns Some or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
