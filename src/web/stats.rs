//! `/stats` (JSON) and `/metrics` (Prometheus text exposition format) from a [`Stats`]
//! snapshot and the running configuration.

use std::fmt::Write as _;

use super::http::json_string;
use crate::config::Config;
use crate::stats::{CaptureActivity, PulseState, Run, Stats};

/// Escapes a Prometheus label value: backslash, double quote and line feed, as the text
/// exposition format asks.
fn label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

pub fn render_json(stats: &Stats, config: &Config) -> String {
    let c = &stats.capture;
    let t = &stats.transport;
    let mut rejected = String::new();
    let mut codes: Vec<_> = t.rejected.iter().collect();
    codes.sort();
    for (i, (code, n)) in codes.into_iter().enumerate() {
        if i > 0 {
            rejected.push(',');
        }
        let _ = write!(rejected, "\"{code}\":{n}");
    }
    format!(
        concat!(
            "{{\"uptime_s\":{:.3},\"pulse_state\":{},\"device\":{},\"device_setting\":{},",
            "\"sink_created\":{},\"codec\":{},\"sample_rate\":{},\"channels\":{},",
            "\"bitrate\":{},\"frame_ms\":{},\"clients\":{},\"opus_clients\":{},",
            "\"pcm_clients\":{},\"connections_total\":{},\"frames_encoded\":{},",
            "\"frames_sent\":{},\"bytes_sent\":{},",
            "\"frames_dropped\":{{\"slow_client\":{},\"encode_error\":{}}},",
            "\"clients_disconnected_stalled\":{},\"requests_rejected\":{{{}}},",
            "\"capture\":{},\"capture_idle_reason\":{},\"frames_skipped_silence\":{},",
            "\"pings_sent\":{},\"playout\":{},\"microphone\":{},",
            "\"reconnects\":{}}}\n"
        ),
        stats.uptime.as_secs_f64(),
        json_string(c.state.name()),
        c.device
            .as_deref()
            .map(json_string)
            .unwrap_or("null".into()),
        json_string(config.capture.device.name()),
        c.sink_created,
        json_string(config.encoder.codec.name()),
        config.capture.sample_rate,
        config.capture.channels,
        config.encoder.bitrate,
        config.encoder.frame_us as f64 / 1000.0,
        t.clients,
        t.opus_clients,
        t.pcm_clients,
        t.connections_total,
        stats.pipeline.frames_encoded,
        t.frames_sent,
        t.bytes_sent,
        t.dropped_slow_client,
        stats.pipeline.encode_errors,
        t.disconnected_stalled,
        rejected,
        json_string(stats.capture_activity().name()),
        match (stats.capture_activity(), c.run) {
            (CaptureActivity::Idle, Run::NothingPlays) => json_string("nothing_plays"),
            (CaptureActivity::Idle, Run::NoListener) => json_string("no_client"),
            (CaptureActivity::Idle, Run::Record) => json_string("no_stream"),
            _ => "null".into(),
        },
        stats.pipeline.frames_skipped_silence,
        t.pings_sent,
        super::playout::json(&t.playout, std::time::Instant::now()),
        mic_json(stats),
        c.reconnects,
    )
}

/// `null` without `--microphone`.
fn mic_json(stats: &Stats) -> String {
    let Some(m) = &stats.microphone else {
        return "null".into();
    };
    let sp = &m.speaker;
    let mut rejected: Vec<_> = stats.transport.speakers_rejected.iter().collect();
    rejected.sort();
    let rejected: Vec<String> = rejected
        .into_iter()
        .map(|(code, n)| format!("\"{code}\":{n}"))
        .collect();
    format!(
        concat!(
            "{{\"speaker_connected\":{},\"source\":{},\"source_created\":{},",
            "\"frames_received\":{},\"frames_decoded\":{},\"frames_concealed\":{},",
            "\"frames_dropped\":{},\"bytes_received\":{},\"underruns\":{},",
            "\"buffered_ms\":{},\"speakers_closed\":{{{}}}}}"
        ),
        m.speaker_connected,
        m.source
            .as_deref()
            .map(json_string)
            .unwrap_or("null".into()),
        m.source_created,
        sp.frames_received,
        sp.frames_decoded,
        sp.frames_concealed,
        sp.frames_dropped,
        sp.bytes_received,
        sp.underruns,
        m.buffered_ms,
        rejected.join(","),
    )
}

pub fn render_prometheus(stats: &Stats, config: &Config) -> String {
    let c = &stats.capture;
    let t = &stats.transport;
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(
            s,
            "# HELP novnc_audio_{name} {help}\n# TYPE novnc_audio_{name} {kind}\nnovnc_audio_{name} {value}\n"
        );
    };
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since start.",
        format!("{:.3}", stats.uptime.as_secs_f64()),
    );
    metric(
        "pulse_connected",
        "gauge",
        "1 when connected to PulseAudio.",
        u8::from(c.state == PulseState::Ready).to_string(),
    );
    metric(
        "recording",
        "gauge",
        "1 while a record stream is attached.",
        u8::from(c.recording).to_string(),
    );
    metric(
        "frames_skipped_silence_total",
        "counter",
        "Frames of digital silence neither encoded nor sent.",
        stats.pipeline.frames_skipped_silence.to_string(),
    );
    metric(
        "pings_sent_total",
        "counter",
        "WebSocket pings sent to idle clients.",
        t.pings_sent.to_string(),
    );
    metric(
        "sink_created",
        "gauge",
        "1 if this process created its null sink.",
        u8::from(c.sink_created).to_string(),
    );
    metric(
        "clients",
        "gauge",
        "Connected WebSocket clients.",
        t.clients.to_string(),
    );
    metric(
        "connections_total",
        "counter",
        "TCP connections accepted.",
        t.connections_total.to_string(),
    );
    metric(
        "frames_encoded_total",
        "counter",
        "Opus frames encoded.",
        stats.pipeline.frames_encoded.to_string(),
    );
    metric(
        "frames_sent_total",
        "counter",
        "Frames queued to clients.",
        t.frames_sent.to_string(),
    );
    metric(
        "bytes_sent_total",
        "counter",
        "Bytes written to clients.",
        t.bytes_sent.to_string(),
    );
    metric(
        "reconnects_total",
        "counter",
        "Reconnections to PulseAudio.",
        c.reconnects.to_string(),
    );
    metric(
        "clients_disconnected_stalled_total",
        "counter",
        "Clients dropped for not reading.",
        t.disconnected_stalled.to_string(),
    );
    if let Some(m) = &stats.microphone {
        let sp = &m.speaker;
        for (name, kind, help, value) in [
            (
                "mic_speaker_connected",
                "gauge",
                "1 while a speaker is connected to the microphone.",
                u64::from(m.speaker_connected),
            ),
            (
                "mic_source_ready",
                "gauge",
                "1 while the microphone's source is fed.",
                u64::from(m.source.is_some()),
            ),
            (
                "mic_frames_received_total",
                "counter",
                "Messages received from speakers.",
                sp.frames_received,
            ),
            (
                "mic_frames_decoded_total",
                "counter",
                "Speaker frames decoded.",
                sp.frames_decoded,
            ),
            (
                "mic_frames_concealed_total",
                "counter",
                "10 ms frames of packet-loss concealment.",
                sp.frames_concealed,
            ),
            (
                "mic_frames_dropped_total",
                "counter",
                "Speaker frames dropped by the jitter buffer.",
                sp.frames_dropped,
            ),
            (
                "mic_bytes_received_total",
                "counter",
                "Bytes received from speakers.",
                sp.bytes_received,
            ),
            (
                "mic_underruns_total",
                "counter",
                "Times the microphone's jitter buffer ran dry.",
                sp.underruns,
            ),
        ] {
            metric(name, kind, help, value.to_string());
        }
    }
    let activity = stats.capture_activity();
    let _ = write!(
        s,
        "# HELP novnc_audio_capture 1 for what the capture is doing: active, idle (corked: \
         no client or nothing plays) or skipping_silence.\n\
         # TYPE novnc_audio_capture gauge\n"
    );
    for a in CaptureActivity::ALL {
        let _ = writeln!(
            s,
            "novnc_audio_capture{{state=\"{}\"}} {}",
            a.name(),
            u8::from(a == activity)
        );
    }
    let _ = write!(
        s,
        "# HELP novnc_audio_frames_dropped_total Frames not delivered, by reason.\n\
         # TYPE novnc_audio_frames_dropped_total counter\n\
         novnc_audio_frames_dropped_total{{reason=\"slow_client\"}} {}\n\
         novnc_audio_frames_dropped_total{{reason=\"encode_error\"}} {}\n",
        t.dropped_slow_client, stats.pipeline.encode_errors
    );
    let _ = write!(
        s,
        "# HELP novnc_audio_info Static settings.\n# TYPE novnc_audio_info gauge\n\
         novnc_audio_info{{codec=\"{}\",sample_rate=\"{}\",channels=\"{}\",bitrate=\"{}\",device=\"{}\"}} 1\n",
        config.encoder.codec.name(),
        config.capture.sample_rate,
        config.capture.channels,
        config.encoder.bitrate,
        label_value(c.device.as_deref().unwrap_or(""))
    );
    super::playout::prometheus(&t.playout, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{CaptureStatus, PipelineStats, TransportStats};
    use std::time::Duration;

    fn stats(device: &str) -> Stats {
        Stats {
            uptime: Duration::from_millis(1500),
            capture: CaptureStatus {
                state: PulseState::Ready,
                device: Some(device.into()),
                sink_created: true,
                reconnects: 2,
                recording: true,
                run: Run::Record,
            },
            transport: TransportStats {
                clients: 3,
                ..Default::default()
            },
            pipeline: PipelineStats::default(),
            microphone: None,
        }
    }

    #[test]
    fn stats_render_as_json_and_prometheus() {
        let stats = stats("novnc_audio.monitor");
        let config = Config::default();
        let json = render_json(&stats, &config);
        assert!(
            json.starts_with("{\"uptime_s\":1.500,\"pulse_state\":\"ready\""),
            "{json}"
        );
        assert!(json.contains("\"device\":\"novnc_audio.monitor\""));
        assert!(json.contains("\"clients\":3,"));
        assert!(json.contains("\"reconnects\":2}"));
        assert!(json.contains("\"capture\":\"active\",\"capture_idle_reason\":null,"));
        let prom = render_prometheus(&stats, &config);
        assert!(prom.contains("\nnovnc_audio_clients 3\n"));
        assert!(
            prom.contains("\nnovnc_audio_capture{state=\"active\"} 1\n"),
            "{prom}"
        );
        assert!(prom.contains("\nnovnc_audio_capture{state=\"idle\"} 0\n"));
        assert!(prom.contains("novnc_audio_frames_dropped_total{reason=\"slow_client\"} 0"));
    }

    #[test]
    fn the_microphone_shows_in_both_formats_only_when_on() {
        let config = Config::default();
        let off = stats("novnc_audio.monitor");
        assert!(render_json(&off, &config).contains("\"microphone\":null,"));
        assert!(!render_prometheus(&off, &config).contains("novnc_audio_mic_"));
        let mut on = stats("novnc_audio.monitor");
        on.transport.speaker_connected = true;
        on.transport.speakers_rejected.insert(1007, 2);
        on.microphone = Some(crate::stats::MicStatus {
            speaker_connected: true,
            source: Some("novnc_mic".into()),
            source_created: true,
            buffered_ms: 40,
            speaker: crate::stats::SpeakerStats {
                frames_received: 10,
                bytes_received: 900,
                frames_decoded: 9,
                frames_concealed: 3,
                frames_dropped: 1,
                underruns: 1,
            },
        });
        let json = render_json(&on, &config);
        assert!(
            json.contains(
                "\"microphone\":{\"speaker_connected\":true,\"source\":\"novnc_mic\",\
                 \"source_created\":true,\"frames_received\":10,\"frames_decoded\":9,\
                 \"frames_concealed\":3,\"frames_dropped\":1,\"bytes_received\":900,\
                 \"underruns\":1,\"buffered_ms\":40,\"speakers_closed\":{\"1007\":2}}"
            ),
            "{json}"
        );
        let prom = render_prometheus(&on, &config);
        for line in [
            "novnc_audio_mic_speaker_connected 1\n",
            "novnc_audio_mic_source_ready 1\n",
            "novnc_audio_mic_frames_received_total 10\n",
            "novnc_audio_mic_frames_decoded_total 9\n",
            "novnc_audio_mic_frames_concealed_total 3\n",
            "novnc_audio_mic_frames_dropped_total 1\n",
            "novnc_audio_mic_bytes_received_total 900\n",
        ] {
            assert!(prom.contains(line), "{line} missing:\n{prom}");
        }
    }

    #[test]
    fn capture_activity_is_idle_skipping_or_active() {
        let config = Config::default();
        let mut s = stats("novnc_audio.monitor");
        s.capture.run = Run::NothingPlays;
        s.pipeline.frames_skipped_silence = 7;
        let json = render_json(&s, &config);
        assert!(
            json.contains("\"capture\":\"idle\",\"capture_idle_reason\":\"nothing_plays\",\"frames_skipped_silence\":7,\"pings_sent\":0,"),
            "{json}"
        );
        let prom = render_prometheus(&s, &config);
        assert!(
            prom.contains("\nnovnc_audio_capture{state=\"idle\"} 1\n"),
            "{prom}"
        );
        assert!(prom.contains("\nnovnc_audio_frames_skipped_silence_total 7\n"));
        s.capture.run = Run::NoListener;
        assert!(render_json(&s, &config).contains("\"capture_idle_reason\":\"no_client\""));
        s.capture.run = Run::Record;
        s.pipeline.skipping_silence = true;
        assert!(render_json(&s, &config).contains("\"capture\":\"skipping_silence\""));
        let prom = render_prometheus(&s, &config);
        assert!(prom.contains("\nnovnc_audio_capture{state=\"skipping_silence\"} 1\n"));
    }

    #[test]
    fn prometheus_labels_escape_backslash_quote_and_newline() {
        assert_eq!(label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(label_value("a\nb"), "a\\nb");
        let prom = render_prometheus(&stats("we\"ird\\sink\n.monitor"), &Config::default());
        assert!(
            prom.contains(r#"device="we\"ird\\sink\n.monitor"} 1"#),
            "{prom}"
        );
    }
}
