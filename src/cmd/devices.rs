//! `sfxtag devices`: the capture devices --input can name.

use crate::cli::DevicesArgs;
use anyhow::Result;

#[cfg(feature = "capture")]
pub fn run(args: DevicesArgs) -> Result<()> {
    let list = crate::source::capture::list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("No audio input devices found. Is a microphone connected? `arecord -l` lists ALSA capture hardware.");
        return Ok(());
    }
    for d in &list {
        println!(
            "{:>3}{} {}",
            d.index,
            if d.is_default { "*" } else { " " },
            d.name
        );
        if let Some(c) = &d.default_config {
            println!("      default: {c}");
        }
        for s in &d.supported {
            println!("      supports: {s}");
        }
    }
    println!("\n(* = default)  Use: sfxtag run --input <index or name>");
    Ok(())
}

#[cfg(not(feature = "capture"))]
pub fn run(_args: DevicesArgs) -> Result<()> {
    anyhow::bail!("this sfxtag was built without the `capture` feature (ALSA): no capture devices")
}
