//! The `bibridge` binary: parse the command line, load the config, run until Ctrl-C/SIGTERM.

use std::process::ExitCode;

use bibridge::cli::{self, Command};
use bibridge::Server;
use bibridge_b2bua::config::Config;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    abort_on_panic();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bibridge: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("bibridge {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { file } => match cli::load(&file) {
            Ok(_) => {
                println!("{file}: OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Audit(args) => audit(args),
        Command::Run { config } => {
            let cfg = match config {
                None => Config::lab(),
                Some(file) => match cli::load(&file) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            let sub = bibridge::text::log_subscriber(filter, std::io::stdout);
            if tracing::subscriber::set_global_default(sub).is_err() {
                eprintln!("bibridge: a logger is already installed");
            }
            run(cfg)
        }
    }
}

/// A panic anywhere (the engine task, a media task, the audit writer, an HTTP handler) ends the
/// process at once instead of leaving it up with a dead task and its ports bound: a supervisor
/// (systemd's `Restart=on-failure`, see deploy/systemd/bibridge.service) starts a fresh one. The
/// default hook prints the message (and a backtrace with RUST_BACKTRACE=1) first. Installed here
/// only, not in the library: test binaries keep unwinding panics for `catch_unwind`.
fn abort_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        tracing::error!(%info, "panic: aborting");
        std::process::abort();
    }));
}

/// `bibridge audit`: print the records, human-readable or as JSON lines.
fn audit(args: cli::AuditArgs) -> ExitCode {
    use bibridge::audit;
    let path = match (&args.file, &args.config) {
        (Some(f), _) => std::path::PathBuf::from(f),
        (None, config) => {
            let cfg = match config {
                Some(file) => match cli::load(file) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => Config::lab(),
            };
            match cfg.compliance.audit_log {
                Some(p) => p,
                None => {
                    eprintln!(
                        "bibridge: the audit log is disabled ([compliance] audit_log = false)"
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let since = match args.since.as_deref().map(|s| (s, audit::parse_since(s))) {
        Some((s, None)) => {
            eprintln!("bibridge: --since {s}: expected a UTC date or time such as 2026-11-25 or 2026-11-25T14:03");
            return ExitCode::from(2);
        }
        Some((_, t)) => t,
        None => None,
    };
    let q = audit::Query {
        since,
        agent: args.agent,
    };
    match audit::read(&path, &q) {
        Ok((records, bad)) => {
            for r in &records {
                if args.json {
                    println!("{r}");
                } else {
                    println!("{}", audit::human_line(r));
                }
            }
            if bad > 0 {
                eprintln!(
                    "bibridge: {}: {bad} unreadable line(s) skipped (torn by a crash?)",
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "bibridge: {}: cannot read the audit log: {e}",
                path.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: Config) -> ExitCode {
    // Connections and RTP ports each take a descriptor: use all the hard limit allows.
    let nofile = bibridge::net_guard::raise_nofile_limit();
    tracing::info!(nofile = ?nofile, "open-file limit");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bibridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let server = match Server::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bibridge: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
