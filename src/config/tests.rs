//! Unit tests of the configuration: parsing, the file, the reload, and the shipped
//! files generated from or checked against the option table.

use super::*;

fn parse(args: &[&str]) -> Result<Command, ConfigError> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    // Keep the machine's /etc/novnc-audio.conf out of unit tests.
    v.push("--config".into());
    v.push("/dev/null".into());
    parse_args(v)
}

fn config(args: &[&str]) -> Config {
    match parse(args).unwrap() {
        Command::Run(c) => *c,
        other => panic!("expected a config, got {other:?}"),
    }
}

#[test]
fn defaults_match_the_node_server() {
    let c = config(&[]);
    assert_eq!(c.websocket.port, 6090);
    assert_eq!(c.websocket.host, "0.0.0.0");
    assert_eq!(c.websocket.path, "/audio");
    assert_eq!(c.capture.device, Device::FollowDefault);
    assert_eq!(c.capture.sample_rate, 48000);
    assert_eq!(c.capture.channels, 2);
    assert_eq!(c.encoder.bitrate, 64000);
    assert_eq!(c.capture.latency_us, 20000);
    assert_eq!(c.encoder.frame_us, 20000);
    assert_eq!(c.frame_bytes(), 3840);
}

#[test]
fn every_option_parses() {
    let c = config(&[
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
        "2.5",
    ]);
    assert_eq!(c.websocket.port, 7000);
    assert_eq!(c.websocket.host, "127.0.0.1");
    assert_eq!(c.websocket.path, "/x");
    assert_eq!(c.capture.device, Device::Named("foo".into()));
    assert_eq!(c.capture.sample_rate, 24000);
    assert_eq!(c.capture.channels, 1);
    assert_eq!(c.encoder.bitrate, 32000);
    assert_eq!(c.capture.latency_us, 10000);
    // Without --latency the fragment follows the frame.
    assert_eq!(config(&["--frame-ms", "10"]).capture.latency_us, 10000);
    assert_eq!(config(&["--frame-ms", "60"]).capture.latency_us, 60000);
    assert!(!c.capture.monitor);
    assert_eq!(c.encoder.codec, Codec::Pcm);
    assert_eq!(c.encoder.frame_us, 2500);
    assert_eq!(c.frame_samples(), 60);
}

#[test]
fn invalid_values_name_the_option() {
    for (args, option) in [
        (&["-p", "0"][..], "--port"),
        (&["-p", "70000"], "--port"),
        (&["-r", "44100"], "--sample-rate"),
        (&["-c", "3"], "--channels"),
        (&["-b", "5000"], "--bitrate"),
        (&["-b", "600000"], "--bitrate"),
        (&["--codec", "mp3"], "--codec"),
        (&["--frame-ms", "7"], "--frame-ms"),
        (&["--bogus"], "--bogus"),
    ] {
        let err = parse(args).unwrap_err().to_string();
        assert!(err.contains(option), "{args:?}: {err}");
        assert!(!err.contains('\n'), "{args:?}: one line expected: {err}");
    }
}

#[test]
fn pcm_accepts_44100() {
    assert_eq!(
        config(&["--codec", "pcm", "-r", "44100"])
            .capture
            .sample_rate,
        44100
    );
}

#[test]
fn command_line_overrides_file() {
    let dir = std::env::temp_dir().join(format!("novnc-audio-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a.conf");
    std::fs::write(
        &file,
        "port = 7001\nbitrate = 96000\nallow-origin = https://x\n",
    )
    .unwrap();
    let args = vec![
        "--config".to_string(),
        file.display().to_string(),
        "-p".to_string(),
        "7002".to_string(),
    ];
    let Command::Run(c) = parse_args(args).unwrap() else {
        panic!()
    };
    assert_eq!(c.websocket.port, 7002);
    assert_eq!(c.encoder.bitrate, 96000);
    assert_eq!(c.websocket.allowed_origins, vec!["https://x".to_string()]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn shipped_example_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/novnc-audio.conf");
    if let Ok(text) = std::fs::read_to_string(path) {
        parse_config_text(&text, path).unwrap();
        // Uncommenting every key must give a valid configuration too.
        let uncommented: String = text
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .filter(|l| l.contains('=') && parse_config_text(l, path).is_ok())
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            uncommented.lines().count() >= 10,
            "example documents too few keys"
        );
        let entries = parse_config_text(&uncommented, path).unwrap();
        let mut c = Config::default();
        for (k, v) in entries {
            c.apply(&k, Some(&v)).unwrap();
        }
    } else {
        panic!("{path} is missing");
    }
}

#[test]
fn readme_shows_the_current_help() {
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&help_text()),
        "README.md's options block differs from --help: paste `novnc-audio --help` into it"
    );
}

#[test]
fn man_page_documents_exactly_the_options() {
    let man = include_str!("../../man/novnc-audio.1");
    for o in OPTIONS {
        let needle = format!("\\-\\-{}", o.long.replace('-', "\\-"));
        assert!(man.contains(&needle), "man page lacks {needle}");
    }
    // And nothing the program does not have: every option heading (the line after
    // a .TP that starts with \-\-name or -x, \-\-name) is in the table.
    let lines: Vec<&str> = man.lines().collect();
    for pair in lines.windows(2).filter(|w| w[0] == ".TP") {
        let heading = pair[1];
        if !heading.starts_with(".B") {
            continue;
        }
        let Some(pos) = heading.find("\\-\\-") else {
            continue;
        };
        let name: String = heading[pos + 4..]
            .replace("\\-", "-")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        assert!(
            OPTIONS.iter().any(|o| o.long == name),
            "man page documents --{name}, which the program does not have"
        );
    }
}

/// Every setting set to its example value (a valid combination).
fn every_setting() -> Config {
    let mut c = Config::default();
    for o in OPTIONS {
        if let Some(s) = &o.setting {
            (s.set)(&mut c, s.example).unwrap_or_else(|e| panic!("--{}: {e}", o.long));
        }
    }
    c.validate().unwrap();
    c
}

#[test]
fn every_example_differs_from_the_default() {
    let c = every_setting();
    let default = Config::default();
    for o in OPTIONS {
        if let Some(s) = &o.setting {
            assert_ne!((s.show)(&c), (s.show)(&default), "--{}", o.long);
        }
    }
}

#[test]
fn describe_reads_back_as_the_same_configuration() {
    for original in [Config::default(), every_setting()] {
        let text = original.describe();
        let mut read_back = Config::default();
        for (k, v) in parse_config_text(&text, "describe").unwrap() {
            read_back.apply(&k, Some(&v)).unwrap();
        }
        assert_eq!(read_back, original, "{text}");
    }
}

#[test]
fn reload_applies_live_settings_and_names_the_rest() {
    let running = Config::default();
    let mut new = every_setting();
    new.daemon.config_file = Some("/x.conf".into());
    let change = apply_live(&running, &new);
    // Everything a reload takes live, including TLS (once forgotten by the server).
    let c = &change.config;
    assert_eq!(c.encoder.bitrate, new.encoder.bitrate);
    assert_eq!(c.websocket.max_clients, new.websocket.max_clients);
    assert_eq!(c.websocket.token_file, new.websocket.token_file);
    assert_eq!(c.websocket.allowed_origins, new.websocket.allowed_origins);
    assert_eq!(c.websocket.tls_cert, new.websocket.tls_cert);
    assert_eq!(c.websocket.tls_key, new.websocket.tls_key);
    assert_eq!(c.websocket.serve_web, new.websocket.serve_web);
    assert_eq!(c.websocket.serve_stats, new.websocket.serve_stats);
    assert_eq!(
        c.websocket.handshake_timeout,
        new.websocket.handshake_timeout
    );
    assert_eq!(c.daemon.log_level, new.daemon.log_level);
    // And nothing that needs a restart.
    assert_eq!(c.capture, running.capture);
    assert_eq!(c.websocket.port, running.websocket.port);
    assert_eq!(c.encoder.codec, running.encoder.codec);
    assert_eq!(c.daemon.daemonize, running.daemon.daemonize);
    assert_eq!(
        change.restart_needed,
        vec![
            RestartGroup::Capture.label(),
            RestartGroup::Encoder.label(),
            RestartGroup::Listener.label(),
            RestartGroup::Process.label(),
        ]
    );
    assert!(change.changed.contains(&"tls-cert") && change.changed.contains(&"bitrate"));

    let mut only_path = running.clone();
    only_path.websocket.path = "/elsewhere".into();
    let change = apply_live(&running, &only_path);
    assert_eq!(change.restart_needed, vec!["host, port or path"]);
    assert!(change.changed.is_empty());
    assert_eq!(change.config, running);
    assert!(apply_live(&running, &running).restart_needed.is_empty());
}
