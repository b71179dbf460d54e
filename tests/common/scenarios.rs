//! What the scenario tests (resilience, pipewire, hostile) share beyond the harness:
//! the serial lock, the full-count switch, the audio-server restart cycles and the
//! recorded sink unloaded under the daemon.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// The tests of a scenario file start audio stacks, share the daemon's CPU and
/// measure gaps, rates and memory: they run one at a time (one lock per test binary).
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Full-count variants (soak) when NOVNC_AUDIO_FULL=1.
pub fn full() -> bool {
    std::env::var("NOVNC_AUDIO_FULL").is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------
// Restarting the audio server under the daemon
// ---------------------------------------------------------------------------

/// The audio server of a restart scenario (PulseAudio, PipeWire) and the 440 Hz
/// player that plays into it.
pub trait AudioServer {
    /// How messages name the server ("the server", "pipewire-pulse").
    const NAME: &'static str;

    /// Starts the 440 Hz player.
    fn play(&mut self);

    /// SIGKILLs the server (the player dies with it), starts a new one and waits
    /// until it can take a player; returns when the new server accepted clients.
    fn restart(&mut self, cycle: usize, daemon: &Daemon) -> Instant;

    /// What failure messages and the line of a cycle add about the server ("" for
    /// nothing), starting with "; ".
    fn state(&self, daemon: &Daemon) -> String;

    /// Checks the server after the tone was heard again.
    fn check(&self, cycle: usize);
}

/// The times of one restart cycle.
pub struct Cycle {
    /// The new server accepted clients.
    pub accepted: Instant,
    /// The daemon logged "reconnected to PulseAudio".
    pub log_at: Instant,
    /// The latest of the clients' first frames of the new timeline.
    pub first: Instant,
    /// Every client heard the new player.
    pub heard: Instant,
}

/// Sets a flag to false when dropped, panicking or not.
struct Lower<'a>(&'a AtomicBool);

impl Drop for Lower<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Restarts `server` `cycles` times under the daemon and its clients, once they hear
/// the player. After each restart every client hears the new player (a run of 5
/// frames within 5 s), the timestamps jump forward, the daemon logs "reconnected to
/// PulseAudio" within 2 s, `server.check` holds and every client is still connected.
/// After the last: the daemon still runs, every client's timestamps rose strictly,
/// /stats counts one reconnect per restart, and the daemon reconnected and sent the
/// first frame within 1000 ms of the server's return in every cycle. `label` starts
/// the line of figures.
pub fn restart_cycles<S: AudioServer>(
    server: &mut S,
    daemon: &mut Daemon,
    readers: &[Reader],
    listeners: &mut [Listener],
    cycles: usize,
    label: &str,
) {
    wait_heard(
        readers,
        listeners,
        440.0,
        Instant::now() - Duration::from_secs(60),
        10,
        Duration::from_secs(5),
    )
    .expect("440 Hz before the first restart");

    let done = {
        let daemon = &*daemon;
        // Times at which the daemon logged "reconnected to PulseAudio", by occurrence.
        let logged: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
        let watching = AtomicBool::new(true);
        thread::scope(|s| {
            s.spawn(|| {
                while watching.load(Ordering::Relaxed) {
                    let n = daemon
                        .stderr_text()
                        .matches("reconnected to PulseAudio")
                        .count();
                    let mut v = logged.lock().unwrap();
                    while v.len() < n {
                        v.push(Instant::now());
                    }
                    drop(v);
                    thread::sleep(Duration::from_millis(1));
                }
            });
            // A failed cycle ends the watcher too, so the scope can end.
            let _stop_watching = Lower(&watching);
            (1..=cycles)
                .map(|cycle| restart_cycle(server, daemon, readers, listeners, &logged, cycle))
                .collect::<Vec<Cycle>>()
        })
    };

    assert!(daemon.is_running(), "the daemon exited");
    for (i, r) in readers.iter().enumerate() {
        assert_strictly_monotonic(&r.snapshot(), &format!("client {i}"));
    }
    let json = stats(daemon);
    assert_eq!(
        json.u64("reconnects"),
        cycles as u64,
        "stats reconnects after {cycles} restarts: {json}"
    );
    let delays = |to: fn(&Cycle) -> Instant| -> Vec<f64> {
        done.iter().map(|c| ms_since(c.accepted, to(c))).collect()
    };
    let (lm, lx) = median_max(&delays(|c| c.log_at));
    let (fm, fx) = median_max(&delays(|c| c.first));
    let (tm, tx) = median_max(&delays(|c| c.heard));
    println!(
        "{label}{cycles} restarts: reconnect log line median {lm:.1} ms max {lx:.1} ms; first frame median \
         {fm:.1} ms max {fx:.1} ms; 440 Hz (incl. starting a player) median {tm:.1} ms max {tx:.1} ms"
    );
    assert!(
        lx < 1000.0,
        "the daemon reconnected {lx:.0} ms after {} returned (limit 1000 ms)",
        S::NAME
    );
    assert!(
        fx < 1000.0,
        "first frame {fx:.0} ms after {} returned (limit 1000 ms)",
        S::NAME
    );
}

/// One cycle of `restart_cycles`; `logged` holds when the daemon logged each reconnect.
fn restart_cycle<S: AudioServer>(
    server: &mut S,
    daemon: &Daemon,
    readers: &[Reader],
    listeners: &mut [Listener],
    logged: &Mutex<Vec<Instant>>,
    cycle: usize,
) -> Cycle {
    let marks: Vec<usize> = readers.iter().map(Reader::len).collect();
    let accepted = server.restart(cycle, daemon);
    let tone_started = Instant::now();
    server.play();
    let heard = wait_heard(
        readers,
        listeners,
        440.0,
        tone_started,
        5,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!(
            "cycle {cycle}: {e}{}\n/stats: {}\ndaemon stderr:\n{}",
            server.state(daemon),
            stats(daemon),
            daemon.stderr_text()
        )
    });

    // First frame of the new timeline for each client: the first frame after the kill
    // whose timestamp jumps forward (the gap), i.e. captured after it.
    let mut first = accepted;
    for (r, &mark) in readers.iter().zip(&marks) {
        let frames = r.snapshot();
        let f = frames[mark.max(1)..]
            .iter()
            .zip(&frames[mark.max(1) - 1..])
            .find(|(f, prev)| f.ts_ms > prev.ts_ms + 40)
            .map(|(f, _)| f.received)
            .unwrap_or_else(|| panic!("cycle {cycle}: no timestamp gap seen"));
        first = first.max(f);
    }
    let log_at = poll_until(Duration::from_secs(2), || {
        logged.lock().unwrap().get(cycle - 1).copied()
    })
    .unwrap_or_else(|| {
        panic!(
            "cycle {cycle}: no \"reconnected to PulseAudio\" line; stderr:\n{}",
            daemon.stderr_text()
        )
    });
    println!(
        "cycle {cycle}: reconnect logged {:+.1} ms, first frame {:+.1} ms, 440 Hz heard {:+.1} ms \
         after {} accepted{}",
        ms_since(accepted, log_at),
        ms_since(accepted, first),
        ms_since(accepted, heard),
        S::NAME,
        server.state(daemon)
    );
    server.check(cycle);
    for r in readers {
        r.assert_alive(&format!("cycle {cycle}"));
    }
    Cycle {
        accepted,
        log_at,
        first,
        heard,
    }
}

// ---------------------------------------------------------------------------
// The recorded sink unloaded
// ---------------------------------------------------------------------------

/// Makes a new null sink `other` the default and plays 880 Hz into it and 440 Hz into
/// `keep`; once the clients hear 880 Hz, stops that player and unloads `other`. The
/// clients must hear the 440 Hz of the new default within 1000 ms, the daemon still
/// runs and every client is connected with strictly increasing timestamps. `label`
/// starts the lines of figures, `state` ends failure messages. Returns the 440 Hz
/// player.
pub fn follow_unloaded_sink(
    pulse: &PulseServer,
    daemon: &mut Daemon,
    readers: &[Reader],
    keep: &str,
    label: &str,
    state: impl Fn(&Daemon) -> String,
) -> Tone {
    let mut l440: Vec<Listener> = readers.iter().map(|_| Listener::new()).collect();
    let mut l880: Vec<Listener> = readers.iter().map(|_| Listener::new()).collect();
    let other = pulse.load_null_sink("other");
    let switched = Instant::now();
    pulse.pactl(&["set-default-sink", "other"]);
    // Players start after the switch: PulseAudio 16 moves a stream that plays into the
    // default sink along with the default, even one started with --device.
    let a = Tone::play(pulse, Some(keep), 440.0);
    let b = Tone::play(pulse, Some("other"), 880.0);
    let t = wait_heard(
        readers,
        &mut l880,
        880.0,
        switched,
        10,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!(
            "880 Hz after making `other` the default: {e}{}",
            state(daemon)
        )
    });
    println!(
        "{label}880 Hz heard {:.1} ms after set-default-sink other",
        ms_since(switched, t)
    );
    // The 880 Hz player would be moved into the new default with the unload and mix
    // with the 440 Hz one there; it goes first.
    drop(b);

    let unloading = Instant::now();
    pulse.pactl(&["unload-module", &other.to_string()]);
    let heard = wait_heard(
        readers,
        &mut l440,
        440.0,
        unloading,
        5,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("after unloading the recorded sink: {e}{}", state(daemon)));
    let ms = ms_since(unloading, heard);
    println!(
        "{label}440 Hz heard again {ms:.1} ms after unloading the recorded sink (default {:?})",
        pulse.default_sink()
    );
    assert!(
        ms < 1000.0,
        "clients heard the new default {ms:.0} ms after the recorded sink was unloaded (limit 1000 ms)"
    );
    assert!(daemon.is_running(), "the daemon exited");
    for (i, r) in readers.iter().enumerate() {
        r.assert_alive("after the unload");
        assert_strictly_monotonic(&r.snapshot(), &format!("client {i}"));
    }
    a
}
