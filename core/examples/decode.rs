//! Decodes files and prints what the frontend will see: `cargo run -p sfxtag-core --example decode --features decode -- FILES…`
fn main() {
    for p in std::env::args().skip(1) {
        match sfxtag_core::audio::decode_mono_44k(std::path::Path::new(&p)) {
            Ok(a) => println!(
                "{p}: {} Hz × {} ch → {} samples at 44.1 kHz ({:.2} s), {} packets skipped",
                a.source_rate,
                a.source_channels,
                a.samples.len(),
                a.samples.len() as f64 / 44_100.0,
                a.skipped_packets
            ),
            Err(e) => println!("{p}: error: {e}"),
        }
    }
}
