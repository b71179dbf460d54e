//! What clients hear: the playout reports the browser module sends on its stream socket.
//!
//! Every ~5 s the module sends one small JSON text message with its playout figures
//! (`web/novnc-audio.js`, `_maybeReport`):
//!
//! ```json
//! {"type":"playout","latencyMs":41.2,"bufferMs":18.5,"targetMs":12.7,"outputMs":10.6,
//!  "jitterMs":3.1,"underruns":0,"delayMs":0,"output":"worklet","decoder":"webcodecs"}
//! ```
//!
//! A report may carry `"echo": N` (the module's clock in ms when it sent the report). The
//! daemon then answers that client, and only that client, with one text message
//! `{"type":"echo","echo":N}` ([`echo_reply`]), so the module can time a round trip over the
//! stream's own connection and follow the network's delay as the link changes (the
//! WebSocket handshake, its only other measure, is timed once). A client that sends no echo
//! gets no text message: the wire stays what existing clients expect.
//!
//! It is client input like any other: [`parse`] takes only a flat object of known fields with
//! bounded numbers and short names, at most [`MAX_REPORT_BYTES`]; [`PlayoutStats::receive`] also
//! takes at most one report per client per [`MIN_INTERVAL`]. A rejected report changes nothing
//! but a counter (and one log line per client): the audio keeps streaming.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest report accepted, in bytes (a real one is about 200).
pub const MAX_REPORT_BYTES: usize = 512;
/// Reports closer together than this from one client are dropped.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Upper bounds (inclusive) of the latency histogram's buckets, in ms.
pub const LATENCY_BUCKETS_MS: [f64; 10] = [
    20.0, 40.0, 60.0, 80.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0,
];
/// Largest figure in ms a report may give.
const MAX_MS: f64 = 60_000.0;
/// Largest `echo` (the module's `performance.now()`: about 300 years in ms).
const MAX_ECHO: f64 = 1e13;
/// Longest `output` / `decoder` name.
const MAX_NAME: usize = 16;

/// One client's playout figures, as reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlayoutReport {
    /// Capture to sound, as the client estimates it.
    pub latency_ms: f64,
    pub buffer_ms: f64,
    pub target_ms: f64,
    /// The browser's output path (render to device).
    pub output_ms: f64,
    /// How late frames arrive (a high percentile).
    pub jitter_ms: f64,
    pub underruns: u64,
    /// Extra delay the user asked for (lip sync).
    pub delay_ms: f64,
    pub output: String,
    pub decoder: String,
    /// The module's clock when it sent the report, to be echoed back (see the module docs).
    pub echo: Option<f64>,
}

/// The text message that answers a report's `echo`.
pub fn echo_reply(echo: f64) -> String {
    format!("{{\"type\":\"echo\",\"echo\":{echo}}}")
}

/// Why a report was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("longer than {MAX_REPORT_BYTES} bytes")]
    TooLong,
    #[error("not a flat JSON object of numbers and strings")]
    Syntax,
    #[error("not a playout report (no \"type\":\"playout\")")]
    NotPlayout,
    #[error("field {0} is missing")]
    Missing(&'static str),
    #[error("field {0} is out of range or of the wrong type")]
    Invalid(String),
    #[error("a field appears twice")]
    Duplicate,
    #[error("sent again within {} s", MIN_INTERVAL.as_secs())]
    TooSoon,
}

impl ReportError {
    /// A short label for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            ReportError::TooLong => "too_long",
            ReportError::Syntax => "syntax",
            ReportError::NotPlayout => "not_playout",
            ReportError::Missing(_) | ReportError::Invalid(_) | ReportError::Duplicate => "invalid",
            ReportError::TooSoon => "too_soon",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
}

/// Parses a playout report. Unknown fields are ignored (a newer module may send more).
pub fn parse(text: &str) -> Result<PlayoutReport, ReportError> {
    if text.len() > MAX_REPORT_BYTES {
        return Err(ReportError::TooLong);
    }
    let fields = flat_object(text).ok_or(ReportError::Syntax)?;
    let mut seen: Vec<&str> = Vec::with_capacity(fields.len());
    for (k, _) in &fields {
        if seen.contains(&k.as_str()) {
            return Err(ReportError::Duplicate);
        }
        seen.push(k);
    }
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if get("type") != Some(&Value::Text("playout".into())) {
        return Err(ReportError::NotPlayout);
    }
    let ms = |name: &'static str, required: bool| -> Result<f64, ReportError> {
        match get(name) {
            None if required => Err(ReportError::Missing(name)),
            None => Ok(0.0),
            Some(Value::Number(v)) if v.is_finite() && (0.0..=MAX_MS).contains(v) => Ok(*v),
            Some(_) => Err(ReportError::Invalid(name.into())),
        }
    };
    let name = |field: &'static str| -> Result<String, ReportError> {
        match get(field) {
            None => Ok(String::new()),
            Some(Value::Text(s))
                if s.len() <= MAX_NAME
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                Ok(s.clone())
            }
            Some(_) => Err(ReportError::Invalid(field.into())),
        }
    };
    let underruns = match get("underruns") {
        None => 0,
        Some(Value::Number(v)) if v.fract() == 0.0 && (0.0..=1e9).contains(v) => *v as u64,
        Some(_) => return Err(ReportError::Invalid("underruns".into())),
    };
    let echo = match get("echo") {
        None => None,
        Some(Value::Number(v)) if v.is_finite() && (0.0..=MAX_ECHO).contains(v) => Some(*v),
        Some(_) => return Err(ReportError::Invalid("echo".into())),
    };
    Ok(PlayoutReport {
        latency_ms: ms("latencyMs", true)?,
        buffer_ms: ms("bufferMs", false)?,
        target_ms: ms("targetMs", false)?,
        output_ms: ms("outputMs", false)?,
        jitter_ms: ms("jitterMs", false)?,
        underruns,
        delay_ms: ms("delayMs", false)?,
        output: name("output")?,
        decoder: name("decoder")?,
        echo,
    })
}

/// A flat JSON object whose values are numbers or strings (no nesting, no true/false/null),
/// or None. Enough for the report; anything else is refused.
fn flat_object(text: &str) -> Option<Vec<(String, Value)>> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    p.eat(b'{')?;
    let mut out = Vec::new();
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let key = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let value = match p.peek()? {
                b'"' => Value::Text(p.string()?),
                _ => Value::Number(p.number()?),
            };
            out.push((key, value));
            p.ws();
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    p.ws();
    (p.i == p.s.len()).then_some(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    /// A string without escapes (the report has none; an escape is refused).
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => {}
            }
        }
        std::str::from_utf8(&self.s[start..self.i - 1])
            .ok()
            .map(str::to_owned)
    }
    /// A JSON number.
    fn number(&mut self) -> Option<f64> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        let valid = !t.is_empty()
            && !t.starts_with('+')
            && !t.starts_with('.')
            && !t.starts_with("-.")
            && !t.ends_with('.');
        if !valid {
            return None;
        }
        t.parse().ok()
    }
}

/// One client's latest report.
#[derive(Debug, Clone)]
pub struct ClientPlayout {
    pub peer: SocketAddr,
    pub report: PlayoutReport,
    pub at: Instant,
}

/// The reports of every connected client, and a histogram of every report's latency.
#[derive(Debug, Clone, Default)]
pub struct PlayoutStats {
    pub clients: HashMap<u64, ClientPlayout>,
    /// Reports taken.
    pub reports: u64,
    /// Reports refused, by [`ReportError::kind`].
    pub rejected: HashMap<&'static str, u64>,
    /// Reports per latency bucket ([`LATENCY_BUCKETS_MS`], then the rest).
    pub latency_buckets: [u64; LATENCY_BUCKETS_MS.len() + 1],
    pub latency_sum_ms: f64,
    /// When each client last sent anything, for the rate bound (reports or not).
    last_seen: HashMap<u64, Instant>,
    /// Clients whose refused report was logged already.
    warned: HashSet<u64>,
}

impl PlayoutStats {
    /// A text message from client `id`. Returns the error for a refused one, and whether it
    /// is the first refusal from that client (to log once).
    pub fn receive(
        &mut self,
        id: u64,
        peer: SocketAddr,
        now: Instant,
        text: &str,
    ) -> Result<(), (ReportError, bool)> {
        let result = match self.last_seen.get(&id) {
            Some(t) if now.duration_since(*t) < MIN_INTERVAL => Err(ReportError::TooSoon),
            _ => parse(text),
        };
        if !matches!(result, Err(ReportError::TooSoon)) {
            self.last_seen.insert(id, now);
        }
        match result {
            Ok(report) => {
                self.reports += 1;
                let b = LATENCY_BUCKETS_MS
                    .iter()
                    .position(|le| report.latency_ms <= *le)
                    .unwrap_or(LATENCY_BUCKETS_MS.len());
                self.latency_buckets[b] += 1;
                self.latency_sum_ms += report.latency_ms;
                self.clients.insert(
                    id,
                    ClientPlayout {
                        peer,
                        report,
                        at: now,
                    },
                );
                Ok(())
            }
            Err(e) => {
                *self.rejected.entry(e.kind()).or_default() += 1;
                Err((e, self.warned.insert(id)))
            }
        }
    }

    /// Client `id` is gone.
    pub fn forget(&mut self, id: u64) {
        self.clients.remove(&id);
        self.last_seen.remove(&id);
        self.warned.remove(&id);
    }

    /// Reports counted in the histogram.
    pub fn latency_count(&self) -> u64 {
        self.latency_buckets.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"type":"playout","latencyMs":41.2,"bufferMs":18.5,"targetMs":12.7,"outputMs":10.6,"jitterMs":3.1,"underruns":2,"delayMs":0,"output":"worklet","decoder":"webcodecs"}"#;

    fn peer() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn parses_what_the_module_sends() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.latency_ms, 41.2);
        assert_eq!(r.buffer_ms, 18.5);
        assert_eq!(r.target_ms, 12.7);
        assert_eq!(r.output_ms, 10.6);
        assert_eq!(r.jitter_ms, 3.1);
        assert_eq!(r.underruns, 2);
        assert_eq!(r.output, "worklet");
        assert_eq!(r.decoder, "webcodecs");
        // Whitespace, field order, unknown fields and missing optional ones are fine.
        let r =
            parse(" { \"latencyMs\" : 1e2 , \"future\":\"x\", \"type\":\"playout\" } ").unwrap();
        assert_eq!(r.latency_ms, 100.0);
        assert_eq!(r.output, "");
    }

    #[test]
    fn an_echo_is_taken_in_range_and_answered_as_json() {
        assert_eq!(parse(GOOD).unwrap().echo, None);
        let r = parse(r#"{"type":"playout","latencyMs":1,"echo":123456.75}"#).unwrap();
        assert_eq!(r.echo, Some(123456.75));
        assert_eq!(echo_reply(123456.75), r#"{"type":"echo","echo":123456.75}"#);
        assert_eq!(echo_reply(0.0), r#"{"type":"echo","echo":0}"#);
        for bad in [r#""1""#, "-1", "1e14"] {
            let text = format!(r#"{{"type":"playout","latencyMs":1,"echo":{bad}}}"#);
            assert_eq!(
                parse(&text),
                Err(ReportError::Invalid("echo".into())),
                "echo {bad}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_bounded_flat_report() {
        let long = format!(
            r#"{{"type":"playout","latencyMs":1,"pad":"{}"}}"#,
            "a".repeat(600)
        );
        let cases: &[(&str, ReportError)] = &[
            (&long, ReportError::TooLong),
            ("", ReportError::Syntax),
            ("null", ReportError::Syntax),
            ("[1,2]", ReportError::Syntax),
            (r#"{"type":"playout","latencyMs":1"#, ReportError::Syntax),
            (r#"{"type":"playout","latencyMs":1}x"#, ReportError::Syntax),
            (
                r#"{"type":"playout","latencyMs":{"a":1}}"#,
                ReportError::Syntax,
            ),
            (
                r#"{"type":"playout","latencyMs":true}"#,
                ReportError::Syntax,
            ),
            (r#"{"type":"playout","latencyMs":.5}"#, ReportError::Syntax),
            (
                r#"{"type":"playout","latencyMs":1,"output":"a\"b"}"#,
                ReportError::Syntax,
            ),
            (r#"{"type":"hello","latencyMs":1}"#, ReportError::NotPlayout),
            (r#"{"latencyMs":1}"#, ReportError::NotPlayout),
            (r#"{"type":"playout"}"#, ReportError::Missing("latencyMs")),
            (
                r#"{"type":"playout","latencyMs":-1}"#,
                ReportError::Invalid("latencyMs".into()),
            ),
            (
                r#"{"type":"playout","latencyMs":1e9}"#,
                ReportError::Invalid("latencyMs".into()),
            ),
            (
                r#"{"type":"playout","latencyMs":"40"}"#,
                ReportError::Invalid("latencyMs".into()),
            ),
            (
                r#"{"type":"playout","latencyMs":1,"underruns":1.5}"#,
                ReportError::Invalid("underruns".into()),
            ),
            (
                r#"{"type":"playout","latencyMs":1,"output":"<script>"}"#,
                ReportError::Invalid("output".into()),
            ),
            (
                r#"{"type":"playout","latencyMs":1,"decoder":"aaaaaaaaaaaaaaaaa"}"#,
                ReportError::Invalid("decoder".into()),
            ),
            (
                r#"{"type":"playout","latencyMs":1,"latencyMs":2}"#,
                ReportError::Duplicate,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).as_ref(), Err(want), "{text}");
        }
    }

    #[test]
    fn keeps_the_latest_report_per_client_and_a_histogram() {
        let mut s = PlayoutStats::default();
        let t0 = Instant::now();
        s.receive(1, peer(), t0, GOOD).unwrap();
        let slow = GOOD.replace("41.2", "250");
        s.receive(2, peer(), t0, &slow).unwrap();
        assert_eq!(s.reports, 2);
        assert_eq!(s.clients[&1].report.latency_ms, 41.2);
        assert_eq!(s.latency_buckets[2], 1, "41.2 ms is in the 60 ms bucket");
        assert_eq!(s.latency_buckets[7], 1, "250 ms is in the 300 ms bucket");
        assert_eq!(s.latency_count(), 2);
        assert_eq!(s.latency_sum_ms, 291.2);
        // Too soon after the last one: refused, counted, the report kept.
        let e = s
            .receive(1, peer(), t0 + Duration::from_millis(200), &slow)
            .unwrap_err();
        assert_eq!(e, (ReportError::TooSoon, true));
        assert_eq!(s.clients[&1].report.latency_ms, 41.2);
        // A second refusal is not logged again.
        let e = s
            .receive(1, peer(), t0 + Duration::from_millis(300), "x")
            .unwrap_err();
        assert_eq!(e, (ReportError::TooSoon, false));
        s.receive(1, peer(), t0 + Duration::from_secs(2), &slow)
            .unwrap();
        assert_eq!(s.clients[&1].report.latency_ms, 250.0);
        let e = s
            .receive(2, peer(), t0 + Duration::from_secs(2), "{}")
            .unwrap_err();
        assert_eq!(e, (ReportError::NotPlayout, true));
        assert_eq!(s.rejected["too_soon"], 2);
        assert_eq!(s.rejected["not_playout"], 1);
        s.forget(1);
        assert!(!s.clients.contains_key(&1));
        assert_eq!(s.reports, 3, "the histogram keeps what was reported");
    }

    #[test]
    fn a_flood_is_bounded_by_the_rate() {
        let mut s = PlayoutStats::default();
        let t0 = Instant::now();
        let mut taken = 0;
        for i in 0..10_000u64 {
            if s.receive(7, peer(), t0 + Duration::from_millis(i), GOOD)
                .is_ok()
            {
                taken += 1;
            }
        }
        assert_eq!(taken, 10, "one report a second over 10 s");
    }
}
