//! `sfxtag`: see `sfxtag --help`. Exit codes: 0 success, 1 runtime failure (unreadable file,
//! model, device, broker), 2 configuration or usage error.

use clap::Parser;
use sfxtag::cli::{Cli, Command};
use sfxtag::cmd::{self, UsageError};
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
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
            eprintln!("sfxtag: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
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
    print!("{}", toml::to_string_pretty(&cfg)?);
    eprintln!("config OK");
    Ok(())
}
