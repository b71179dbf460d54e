//! What the daemon reports about itself: one snapshot ([`Stats`]) made of each stage's
//! counters. Rendered as JSON (`/stats`) and Prometheus text (`/metrics`) by the web side.

use std::collections::HashMap;
use std::time::Duration;

pub use crate::mic::{MicStatus, SpeakerStats};

/// A snapshot of what the daemon is doing.
#[derive(Debug, Clone)]
pub struct Stats {
    pub uptime: Duration,
    pub capture: CaptureStatus,
    pub transport: TransportStats,
    pub pipeline: PipelineStats,
    /// `None` unless `--microphone`.
    pub microphone: Option<MicStatus>,
}

/// Connection to the audio server, as shown in stats and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PulseState {
    Connecting,
    Ready,
    /// Waiting before the next connection attempt.
    Disconnected,
}

impl PulseState {
    pub fn name(self) -> &'static str {
        match self {
            PulseState::Connecting => "connecting",
            PulseState::Ready => "ready",
            PulseState::Disconnected => "disconnected",
        }
    }
}

/// What the rest of the daemon may read about the capture.
#[derive(Debug, Clone)]
pub struct CaptureStatus {
    pub state: PulseState,
    /// The source being recorded, once the stream is ready.
    pub device: Option<String>,
    /// Did this process create the null sink?
    pub sink_created: bool,
    /// Successful connections after the first.
    pub reconnects: u64,
    pub recording: bool,
    /// Whether the record stream runs, and why not.
    pub run: Run,
}

/// Whether the record stream runs: it is corked while nobody listens or nothing plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Record,
    /// No client listens.
    NoListener,
    /// Clients listen but no uncorked playback stream plays into the recorded sink.
    NothingPlays,
}

/// What the capture is doing, as `/stats` and `/metrics` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureActivity {
    /// Recording and sending.
    Active,
    /// The record stream is corked (or not there): no work for anyone.
    Idle,
    /// Recording, but the audio is digital silence: nothing encoded, nothing sent.
    SkippingSilence,
}

impl CaptureActivity {
    pub const ALL: [CaptureActivity; 3] = [
        CaptureActivity::Active,
        CaptureActivity::Idle,
        CaptureActivity::SkippingSilence,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CaptureActivity::Active => "active",
            CaptureActivity::Idle => "idle",
            CaptureActivity::SkippingSilence => "skipping_silence",
        }
    }
}

impl Stats {
    pub fn capture_activity(&self) -> CaptureActivity {
        if !self.capture.recording || self.capture.run != Run::Record {
            CaptureActivity::Idle
        } else if self.pipeline.skipping_silence {
            CaptureActivity::SkippingSilence
        } else {
            CaptureActivity::Active
        }
    }
}

impl CaptureStatus {
    /// Before the first connection attempt, or after the capture stopped.
    pub fn idle() -> CaptureStatus {
        CaptureStatus {
            state: PulseState::Disconnected,
            device: None,
            sink_created: false,
            reconnects: 0,
            recording: false,
            run: Run::NoListener,
        }
    }
}

/// Counters of the transport: clients, traffic, refusals.
#[derive(Debug, Default, Clone)]
pub struct TransportStats {
    pub clients: usize,
    pub opus_clients: usize,
    pub pcm_clients: usize,
    pub connections_total: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub dropped_slow_client: u64,
    pub disconnected_stalled: u64,
    /// A speaker is connected to the microphone.
    pub speaker_connected: bool,
    /// Speakers closed for what they sent, by close code.
    pub speakers_rejected: HashMap<u16, u64>,
    /// WebSocket pings sent to idle clients.
    pub pings_sent: u64,
    /// Requests answered with an error, by HTTP status.
    pub rejected: HashMap<u16, u64>,
    /// What clients report they hear.
    pub playout: crate::playout::PlayoutStats,
}

/// Counters of the pipeline.
#[derive(Default, Debug, Clone, Copy)]
pub struct PipelineStats {
    pub frames_encoded: u64,
    pub encode_errors: u64,
    /// Frames of digital silence neither encoded nor sent.
    pub frames_skipped_silence: u64,
    /// Was the last frame skipped as silence?
    pub skipping_silence: bool,
}
