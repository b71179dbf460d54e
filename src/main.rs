//! Parses the command line, sets up the process, runs the server. Nothing else.

mod daemon;

use novnc_audio::config::{self, Command};
use novnc_audio::Server;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match config::parse_args(args.clone()) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::CheckConfig(c)) => {
            print!("{}", c.describe());
            return;
        }
        Ok(Command::Help) => {
            print!("{}", config::help_text());
            return;
        }
        Ok(Command::Version) => {
            println!("novnc-audio {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("novnc-audio: {e}");
            std::process::exit(2);
        }
    };
    // Until the server's handlers exist, a SIGTERM waits instead of killing the process
    // with its pid file left behind.
    let signals = daemon::hold_signals();
    daemon::logger::install(config.daemon.log_level);
    if let Err(e) = daemon::check_privileges(&config.daemon) {
        eprintln!("novnc-audio: {e}");
        std::process::exit(1);
    }
    let _pidfile = match daemon::daemonize(&config.daemon) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("novnc-audio: {e}");
            std::process::exit(1);
        }
    };
    let reloader = Box::new(move || config::reload(args.clone()));
    let server = match Server::start(config, Some(reloader)) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(e.exit_code());
        }
    };
    signals.release();
    server.run();
    log::info!("stopped");
}
