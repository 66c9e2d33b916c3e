//! Live capture through the real ALSA path (alsa-lib → cpal → the capture callback → ring →
//! worker → MQTT) without sound hardware: `tests/alsa/fake_mic.c`, an alsa-lib external PCM
//! plugin built here with `cc`, stands in for the microphone. It produces a tone in real time
//! and, when asked, vanishes mid-run the way a pulled USB microphone does (ENODEV, POLLERR).
//! ALSA_CONFIG_PATH points the daemon (only) at a config that makes it the `default` device.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Builds the fake microphone plugin into `dir` and writes an ALSA config making it `default`:
/// 48 kHz stereo, gone `unplug_after_ms` after it is opened (0: never). Returns the config path.
fn fake_mic(dir: &Path, unplug_after_ms: u64) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alsa/fake_mic.c");
    let lib = dir.join("libasound_module_pcm_sfxtag_fake_mic.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-O2", "-shared", "-fPIC", "-DPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .args(["-lasound", "-lm"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler '{cc}': {e}"));
    assert!(
        out.status.success(),
        "building the fake ALSA microphone failed (needs libasound2-dev):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let system = ["/usr/share/alsa/alsa.conf", "/etc/alsa/alsa.conf"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("alsa-lib's alsa.conf");
    let conf = dir.join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            "<{system}>\n\
             pcm_type.sfxtag_fake_mic {{ lib \"{}\" }}\n\
             pcm.!default {{ type sfxtag_fake_mic rate 48000 channels 2 unplug_after_ms {unplug_after_ms} }}\n",
            lib.display()
        ),
    )
    .unwrap();
    conf
}

#[test]
fn devices_lists_the_capture_device() {
    let d = tempfile::tempdir().unwrap();
    let conf = fake_mic(d.path(), 0);
    let (code, out, err) = run_bin(
        &["devices", "--json"],
        &[("ALSA_CONFIG_PATH", &s(&conf))],
        T,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let default = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "default")
        .unwrap_or_else(|| panic!("no default device in {out}"));
    assert_eq!(default["default_config"], "48000 Hz × 2 ch I16", "{out}");
}

/// A microphone that works for a few seconds and then disappears: what it captured is classified
/// and published, then the daemon stops with a clear error and a non-zero exit (so systemd
/// restarts it), publishing `offline` on its way out.
#[test]
fn live_capture_publishes_until_the_device_is_unplugged() {
    let d = tempfile::tempdir().unwrap();
    let conf = fake_mic(d.path(), 6000);
    let (addr, _m) = broker(d.path());
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let base = unique_base("unplug");
    let sub = Subscriber::start(
        &addr,
        &[format!("{base}/prediction"), format!("{base}/status")],
        &format!("unplug-{}", std::process::id()),
        false,
    );
    let (code, _, err) = run_bin(
        &[
            "run",
            "--model",
            &s(&model),
            "--input",
            "default",
            "--mqtt-url",
            &format!("mqtt://{addr}"),
            "--base-topic",
            &base,
            "--device-id",
            &unique_device("unplug"),
            "--queue-dir",
            &s(&d.path().join("q")),
        ],
        &[("ALSA_CONFIG_PATH", &s(&conf))],
        T,
    );
    assert_ne!(code, 0, "an unplugged microphone must fail the run:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("audio input device disappeared"),
        "the error should say the device is gone:\n{err}"
    );
    let got = sub.collect_until(Duration::from_secs(10), |v| {
        v.last().is_some_and(|m| m.text() == "offline")
    });
    sub.disconnect();
    let preds: Vec<serde_json::Value> = got
        .iter()
        .filter(|m| m.topic.ends_with("/prediction"))
        .map(|m| m.json())
        .collect();
    // ≈6 s of 48 kHz audio: the first window ends at 2.3 s, then one per 1.16 s.
    assert!(
        preds.len() >= 3,
        "expected the captured audio's windows, got {} predictions\n{err}",
        preds.len()
    );
    for (i, p) in preds.iter().enumerate() {
        assert_eq!(p["seq"], i as u64, "predictions in order, none missing");
        assert_eq!(p["source"], "alsa:default");
        let level = p["level_dbfs"].as_f64().unwrap();
        assert!(level > -30.0, "the fake microphone's tone is loud: {level}");
    }
    let status: Vec<String> = got
        .iter()
        .filter(|m| m.topic.ends_with("/status"))
        .map(|m| m.text())
        .collect();
    assert_eq!(
        status.last().map(String::as_str),
        Some("offline"),
        "{status:?}"
    );
}
