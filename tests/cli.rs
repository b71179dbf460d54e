//! Command-line parsing of the daemon (no PulseAudio needed).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use novnc_audio::config::OPTIONS;

const BIN: &str = env!("CARGO_BIN_EXE_novnc-audio");

/// Every option, from the daemon's own option table (the one `--help`, the config file
/// and `--check-config` are generated from), so no list here can lack one.
fn long_options() -> Vec<String> {
    OPTIONS.iter().map(|o| format!("--{}", o.long)).collect()
}

fn short_options() -> Vec<String> {
    OPTIONS
        .iter()
        .filter(|o| !o.short.is_empty())
        .map(|o| format!("-{}", o.short))
        .collect()
}

/// Every setting at its example value, as command-line arguments.
fn every_setting_args() -> Vec<String> {
    OPTIONS
        .iter()
        .filter_map(|o| {
            let s = o.setting.as_ref()?;
            Some(match o.value {
                None => format!("--{}", o.long),
                Some(_) => format!("--{}={}", o.long, s.example),
            })
        })
        .collect()
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("nvat-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run the binary with no way to reach any PulseAudio; kill it after 5 s.
fn run(args: &[&str]) -> Out {
    let dir = temp_dir();
    let mut cmd = Command::new(BIN);
    for v in [
        "PULSE_SERVER",
        "PULSE_SINK",
        "PULSE_SOURCE",
        "PULSE_COOKIE",
        "DBUS_SESSION_BUS_ADDRESS",
        "JOURNAL_STREAM",
    ] {
        cmd.env_remove(v);
    }
    cmd.env(
        "PULSE_SERVER",
        format!("unix:{}/no-such-socket", dir.display()),
    )
    .env("XDG_RUNTIME_DIR", &dir)
    .env("HOME", &dir)
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn novnc-audio");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "novnc-audio {args:?} did not exit within 5 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Does some output line set `key` to `value` ("key = value", "key: value", "key=value")?
fn has_setting(out: &str, key: &str, value: &str) -> bool {
    let alt = key.replace('-', "_");
    out.lines().any(|line| {
        let tokens: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '=' || c == ',' || c == '"')
            .map(|t| t.trim_end_matches(':'))
            .filter(|t| !t.is_empty())
            .collect();
        tokens.len() >= 2 && (tokens[0] == key || tokens[0] == alt) && tokens[1..].contains(&value)
    })
}

fn assert_settings(out: &Out, expected: &[(&str, &str)]) {
    for (k, v) in expected {
        assert!(
            has_setting(&out.stdout, k, v),
            "--check-config output does not set {k} to {v}:\n{}",
            out.stdout
        );
    }
}

fn check_config(args: &[&str]) -> Out {
    let mut all = vec!["--allow-root", "--check-config"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(
        out.code,
        Some(0),
        "{args:?} --check-config must be accepted; stderr: {}",
        out.stderr
    );
    out
}

#[test]
fn help_lists_every_option() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag]);
        assert_eq!(out.code, Some(0), "{flag}: stderr {}", out.stderr);
        let all = long_options().into_iter().chain(short_options());
        for opt in all {
            let found = out
                .stdout
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[')
                .any(|w| w == opt);
            assert!(found, "{flag} output does not list {opt}:\n{}", out.stdout);
        }
    }
}

#[test]
fn version() {
    for flag in ["--version", "-V"] {
        let out = run(&[flag]);
        assert_eq!(out.code, Some(0), "{flag}: stderr {}", out.stderr);
        assert!(
            out.stdout.contains(env!("CARGO_PKG_VERSION")),
            "{flag} printed {:?}",
            out.stdout
        );
    }
}

#[test]
fn invalid_values_exit_2_naming_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["-p", "0"], "port"),
        (&["-p", "70000"], "port"),
        (&["--port", "abc"], "port"),
        (&["-r", "44100"], "sample-rate"),
        (&["-c", "3"], "channels"),
        (&["-c", "0"], "channels"),
        (&["-b", "5000"], "bitrate"),
        (&["-b", "600000"], "bitrate"),
        (&["--codec", "mp3"], "codec"),
        (&["--frame-ms", "7"], "frame-ms"),
        (&["--opus-application", "voip"], "opus-application"),
        (&["--log-level", "loud"], "log-level"),
        (&["-l", "soon"], "latency"),
        (&["--bogus"], "bogus"),
        (&["-p"], "p"),
    ];
    for (args, name) in cases {
        let mut all = vec!["-H", "127.0.0.1", "--allow-root"];
        if !args.contains(&"-p") && !args.contains(&"--port") {
            all.extend(["-p", "1"]);
        }
        all.extend_from_slice(args);
        let out = run(&all);
        let err = out.stderr.trim();
        assert_eq!(
            out.code,
            Some(2),
            "{args:?} must exit 2; got {:?}, stderr {err:?}",
            out.code
        );
        assert_eq!(
            err.lines().count(),
            1,
            "{args:?}: expected one stderr line, got {err:?}"
        );
        assert!(
            err.contains(name),
            "{args:?}: stderr {err:?} does not name {name}"
        );
    }
}

#[test]
fn check_config_accepts_every_option() {
    let out = check_config(&[
        "-p",
        "7000",
        "-H",
        "127.0.0.1",
        "--path",
        "/x",
        "-d",
        "foo",
        "-r",
        "24000",
        "-c",
        "1",
        "-b",
        "32000",
        "-l",
        "10000",
        "--no-monitor",
        "--codec",
        "pcm",
        "--frame-ms",
        "10",
    ]);
    assert_settings(
        &out,
        &[
            ("port", "7000"),
            ("host", "127.0.0.1"),
            ("path", "/x"),
            ("device", "foo"),
            ("sample-rate", "24000"),
            ("channels", "1"),
            ("bitrate", "32000"),
            ("latency", "10000"),
            ("no-monitor", "true"),
            ("codec", "pcm"),
            ("frame-ms", "10"),
        ],
    );
}

#[test]
fn check_config_defaults() {
    let out = check_config(&[]);
    assert_settings(
        &out,
        &[
            ("port", "6090"),
            ("host", "0.0.0.0"),
            ("path", "/audio"),
            ("device", "default"),
            ("sample-rate", "48000"),
            ("channels", "2"),
            ("bitrate", "64000"),
            ("latency", "20000"),
            ("no-monitor", "false"),
            ("codec", "opus"),
            ("frame-ms", "20"),
            ("opus-application", "lowdelay"),
            ("sink-name", "novnc_audio"),
            ("max-clients", "64"),
            ("log-level", "info"),
        ],
    );
}

#[test]
fn each_valid_value_is_accepted() {
    let dir = temp_dir();
    let token = dir.join("token");
    std::fs::write(&token, "t0k3n\n").unwrap();
    let token = token.to_str().unwrap().to_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--port", "1"],
        vec!["--port", "65535"],
        vec!["--host", "::1"],
        vec!["--device", "default"],
        vec!["--sample-rate", "8000"],
        vec!["-r", "12000"],
        vec!["-r", "16000"],
        vec!["-r", "48000"],
        vec!["--channels", "2"],
        vec!["--bitrate", "6000"],
        vec!["--bitrate", "510000"],
        vec!["--latency", "5000"],
        vec!["--codec", "opus"],
        vec!["--frame-ms", "2.5"],
        vec!["--frame-ms", "5"],
        vec!["--frame-ms", "20"],
        vec!["--frame-ms", "40"],
        vec!["--frame-ms", "60"],
        vec!["--opus-application", "audio"],
        vec!["--opus-application", "lowdelay"],
        vec!["--sink-name", "my_sink"],
        vec!["--max-clients", "3"],
        vec!["--token-file", &token],
        vec!["--allow-origin", "https://a", "--allow-origin", "https://b"],
        vec!["--no-web", "--no-stats"],
        vec!["--log-level", "error"],
        vec!["--log-level", "warn"],
        vec!["--log-level", "info"],
        vec!["--log-level", "debug"],
        vec!["--handshake-timeout", "1"],
        vec!["--handshake-timeout", "3600"],
        vec![
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ],
        vec!["--daemonize", "--pidfile", "/nonexistent/p.pid"],
        vec!["--no-monitor", "--device", "alsa_input.mic"],
    ];
    for args in &cases {
        check_config(args);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_file_and_override() {
    let dir = temp_dir();
    let conf = dir.join("novnc-audio.conf");
    std::fs::write(
        &conf,
        "# test config\nport = 7001\nbitrate = 48000\nno-web = true\n\
         allow-origin = https://a\nallow-origin = https://b\nsink-name = from_file\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let out = check_config(&["--config", conf]);
    assert_settings(
        &out,
        &[
            ("port", "7001"),
            ("bitrate", "48000"),
            ("no-web", "true"),
            ("allow-origin", "https://a"),
            ("allow-origin", "https://b"),
            ("sink-name", "from_file"),
        ],
    );
    let out = check_config(&["--config", conf, "-p", "7002", "--sink-name", "from_cli"]);
    assert_settings(
        &out,
        &[
            ("port", "7002"),
            ("sink-name", "from_cli"),
            ("bitrate", "48000"),
        ],
    );
    assert!(
        !has_setting(&out.stdout, "port", "7001"),
        "-p must override the file's port:\n{}",
        out.stdout
    );

    std::fs::write(dir.join("bad.conf"), "port = 7001\nbogus-key = 1\n").unwrap();
    let bad = dir.join("bad.conf");
    let out = run(&[
        "--allow-root",
        "--check-config",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert!(
        matches!(out.code, Some(1) | Some(2)),
        "unknown config key must fail; got {:?}",
        out.code
    );
    assert!(
        out.stderr.contains("bogus-key") && out.stderr.contains('2'),
        "error must name the key and line 2: {:?}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_output_reads_back_as_the_same_configuration() {
    let dir = temp_dir();
    let every = every_setting_args();
    let every: Vec<&str> = every.iter().map(String::as_str).collect();
    for (what, args) in [("defaults", vec![]), ("every option set", every)] {
        let mut first_args = vec!["--config", "/dev/null"];
        first_args.extend_from_slice(&args);
        let first = check_config(&first_args).stdout;
        let file = dir.join("round-trip.conf");
        std::fs::write(&file, &first).unwrap();
        let second = check_config(&["--config", file.to_str().unwrap()]).stdout;
        assert_eq!(first, second, "{what}: read back differently");
        if what == "every option set" {
            for o in OPTIONS.iter().filter(|o| o.setting.is_some()) {
                let example = o.setting.as_ref().unwrap().example;
                assert!(
                    has_setting(&first, o.long, example),
                    "--check-config does not show --{} = {example}:\n{first}",
                    o.long
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
