//! What the daemon reports about itself: one snapshot ([`Stats`]) made of each stage's
//! counters. Rendered as JSON (`/stats`) and Prometheus text (`/metrics`) by the web side.

use std::collections::HashMap;
use std::time::Duration;

/// A snapshot of what the daemon is doing.
#[derive(Debug, Clone)]
pub struct Stats {
    pub uptime: Duration,
    pub capture: CaptureStatus,
    pub transport: TransportStats,
    pub pipeline: PipelineStats,
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
}
