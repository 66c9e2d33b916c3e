//! `sfxtag`: see `sfxtag --help`. Exit codes: 0 success, 1 runtime failure (unreadable file,
//! model, device, broker), 2 configuration or usage error.

use clap::Parser;
use sfxtag::cli::{Cli, Command};
use sfxtag::cmd::{self, UsageError};
use sfxtag::config::ConfigError;
use sfxtag::settings::SettingsError;
use std::io::Write;
use std::process::ExitCode;

/// Whether the error is the user's configuration or invocation (exit code 2), anywhere in its
/// chain of causes.
fn is_usage(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.is::<UsageError>() || c.is::<ConfigError>() || c.is::<SettingsError>())
}

fn main() -> ExitCode {
    // The decoders' (symphonia's) info lines ("starting new physical stream", bitrate estimates)
    // say nothing to a user; their warnings still show. RUST_LOG overrides all of it.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,symphonia=warn"),
    )
    .format_target(false)
    .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Classify(a) => cmd::classify::run(a),
        Command::Embed(a) => cmd::embed::run(a),
        Command::Enroll(a) => cmd::enroll::run(a),
        Command::Tag(a) => cmd::tag::run(a),
        Command::Devices(a) => cmd::devices::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::CheckConfig(a) => check_config(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: what failed, then why, each cause after a colon.
            let _ = writeln!(std::io::stderr(), "sfxtag: error: {e:#}");
            if is_usage(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn check_config(a: sfxtag::cli::CheckConfigArgs) -> anyhow::Result<()> {
    let args = sfxtag::cli::RunArgs {
        config: a.config,
        ..Default::default()
    };
    let cfg = cmd::run::effective_config(&args)?;
    // Also what only turns up when the settings are built (the broker URL, the password file).
    sfxtag::settings::DaemonSettings::from_config(&cfg)?;
    // A closed stdout (`| head`) is not an error of the config.
    let _ = std::io::stdout().write_all(toml::to_string_pretty(&cfg)?.as_bytes());
    let _ = writeln!(std::io::stderr(), "config OK");
    Ok(())
}
