//! `sfxtag run` in a shell pipeline: a reader that goes away (`sfxtag run … | head -1`) ends the
//! run cleanly, exit code 0 and no panic, instead of killing it.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_closed_stdout_ends_the_run_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let mut child = Command::new(bin())
        .args(["run", "--model"])
        .arg(&model)
        .args(["--input", "-", "--stdin-rate", "44100", "--fast"])
        .args(["--no-mqtt", "--stdout", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Audio that never ends: only the closed stdout can stop this run.
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let pcm = pcm_s16le(5.0, 44_100);
        while stdin.write_all(&pcm).is_ok() {}
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(
        first.starts_with('{') && first.contains("\"seq\":0"),
        "{first}"
    );
    drop(out); // what `head -1` does after its line
    let (code, _, err) = wait_output(child, Duration::from_secs(60));
    feeder.join().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("windows from stdin"), "{err}");
}
