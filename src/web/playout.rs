//! The clients' playout reports ([`crate::playout`]) in `/stats` and `/metrics`.

use std::fmt::Write as _;
use std::time::Instant;

use super::http::json_string;
use crate::playout::{PlayoutStats, LATENCY_BUCKETS_MS};

/// `{"reports":N,"rejected":{..},"latency_ms_histogram":{"20":n,..,"+Inf":n},"clients":[..]}`,
/// clients in connection order.
pub fn json(p: &PlayoutStats, now: Instant) -> String {
    let mut s = format!("{{\"reports\":{},\"rejected\":{{", p.reports);
    let mut kinds: Vec<_> = p.rejected.iter().collect();
    kinds.sort();
    for (i, (kind, n)) in kinds.into_iter().enumerate() {
        let _ = write!(s, "{}\"{kind}\":{n}", if i > 0 { "," } else { "" });
    }
    s.push_str("},\"latency_ms_histogram\":{");
    for (i, n) in p.latency_buckets.iter().enumerate() {
        let le = LATENCY_BUCKETS_MS
            .get(i)
            .map_or("+Inf".to_string(), |v| v.to_string());
        let _ = write!(s, "{}\"{le}\":{n}", if i > 0 { "," } else { "" });
    }
    s.push_str("},\"clients\":[");
    let mut ids: Vec<_> = p.clients.keys().collect();
    ids.sort();
    for (i, id) in ids.into_iter().enumerate() {
        let c = &p.clients[id];
        let r = &c.report;
        let _ = write!(
            s,
            concat!(
                "{}{{\"peer\":{},\"latency_ms\":{:.1},\"buffer_ms\":{:.1},\"target_ms\":{:.1},",
                "\"output_ms\":{:.1},\"jitter_ms\":{:.1},\"underruns\":{},\"delay_ms\":{:.1},",
                "\"output\":{},\"decoder\":{},\"age_s\":{:.1}}}"
            ),
            if i > 0 { "," } else { "" },
            json_string(&c.peer.to_string()),
            r.latency_ms,
            r.buffer_ms,
            r.target_ms,
            r.output_ms,
            r.jitter_ms,
            r.underruns,
            r.delay_ms,
            json_string(&r.output),
            json_string(&r.decoder),
            now.saturating_duration_since(c.at).as_secs_f64(),
        );
    }
    s.push_str("]}");
    s
}

/// The histogram of reported latencies, per-client gauges and the refusals, appended to `s`.
pub fn prometheus(p: &PlayoutStats, s: &mut String) {
    s.push_str(
        "# HELP novnc_audio_client_latency_ms Capture-to-sound latency the clients report.\n\
         # TYPE novnc_audio_client_latency_ms histogram\n",
    );
    let mut cumulative = 0;
    for (i, n) in p.latency_buckets.iter().enumerate() {
        cumulative += n;
        let le = LATENCY_BUCKETS_MS
            .get(i)
            .map_or("+Inf".to_string(), |v| v.to_string());
        let _ = writeln!(
            s,
            "novnc_audio_client_latency_ms_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = write!(
        s,
        "novnc_audio_client_latency_ms_sum {:.1}\nnovnc_audio_client_latency_ms_count {}\n",
        p.latency_sum_ms,
        p.latency_count()
    );
    s.push_str(
        "# HELP novnc_audio_client_playout_ms A connected client's latest playout figures.\n\
         # TYPE novnc_audio_client_playout_ms gauge\n",
    );
    let mut ids: Vec<_> = p.clients.keys().collect();
    ids.sort();
    for id in ids {
        let c = &p.clients[id];
        let r = &c.report;
        for (what, v) in [
            ("latency", r.latency_ms),
            ("buffer", r.buffer_ms),
            ("target", r.target_ms),
            ("output", r.output_ms),
            ("jitter", r.jitter_ms),
        ] {
            let _ = writeln!(
                s,
                "novnc_audio_client_playout_ms{{client=\"{}\",figure=\"{what}\"}} {v:.1}",
                c.peer
            );
        }
    }
    s.push_str(
        "# HELP novnc_audio_client_underruns A connected client's underruns, as reported.\n\
         # TYPE novnc_audio_client_underruns gauge\n",
    );
    let mut ids: Vec<_> = p.clients.keys().collect();
    ids.sort();
    for id in ids {
        let c = &p.clients[id];
        let _ = writeln!(
            s,
            "novnc_audio_client_underruns{{client=\"{}\"}} {}",
            c.peer, c.report.underruns
        );
    }
    let _ = write!(
        s,
        "# HELP novnc_audio_playout_reports_total Playout reports from clients, taken or refused.\n\
         # TYPE novnc_audio_playout_reports_total counter\n\
         novnc_audio_playout_reports_total{{result=\"taken\"}} {}\n",
        p.reports
    );
    let mut kinds: Vec<_> = p.rejected.iter().collect();
    kinds.sort();
    for (kind, n) in kinds {
        let _ = writeln!(
            s,
            "novnc_audio_playout_reports_total{{result=\"{kind}\"}} {n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_render_per_client_and_as_a_histogram() {
        let mut p = PlayoutStats::default();
        let t0 = Instant::now();
        let peer = "192.0.2.7:5000".parse().unwrap();
        let report = r#"{"type":"playout","latencyMs":45,"bufferMs":20,"targetMs":13,"outputMs":11,"jitterMs":2,"underruns":1,"output":"worklet","decoder":"wasm"}"#;
        p.receive(3, peer, t0, report).unwrap();
        let _ = p.receive(3, peer, t0, report);
        let json = json(&p, t0);
        assert!(
            json.starts_with("{\"reports\":1,\"rejected\":{\"too_soon\":1},"),
            "{json}"
        );
        assert!(json.contains("\"20\":0,\"40\":0,\"60\":1,"), "{json}");
        assert!(json.contains("\"+Inf\":0}"), "{json}");
        assert!(
            json.contains("{\"peer\":\"192.0.2.7:5000\",\"latency_ms\":45.0,\"buffer_ms\":20.0,"),
            "{json}"
        );
        assert!(
            json.contains("\"output\":\"worklet\",\"decoder\":\"wasm\",\"age_s\":0.0}]}"),
            "{json}"
        );
        let mut prom = String::new();
        prometheus(&p, &mut prom);
        assert!(
            prom.contains("novnc_audio_client_latency_ms_bucket{le=\"40\"} 0\n"),
            "{prom}"
        );
        assert!(
            prom.contains("novnc_audio_client_latency_ms_bucket{le=\"60\"} 1\n"),
            "{prom}"
        );
        assert!(
            prom.contains("novnc_audio_client_latency_ms_bucket{le=\"+Inf\"} 1\n"),
            "{prom}"
        );
        assert!(
            prom.contains("novnc_audio_client_latency_ms_count 1\n"),
            "{prom}"
        );
        assert!(prom.contains(
            "novnc_audio_client_playout_ms{client=\"192.0.2.7:5000\",figure=\"latency\"} 45.0\n"
        ));
        assert!(prom.contains("novnc_audio_client_underruns{client=\"192.0.2.7:5000\"} 1\n"));
        assert!(prom.contains("novnc_audio_playout_reports_total{result=\"too_soon\"} 1\n"));
    }
}
