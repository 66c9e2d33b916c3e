//! Tag on capture and batch tagging, read back with an independent reader: `mediainfo` (Debian
//! package) parses the WAV, its `bext` and (in its chunk trace) the iXML. Also: the clips cover
//! the input without a gap at the source's native rate and channels, a killed daemon leaves no
//! corrupt file under a final name (and the part is recovered at the next start), the MQTT
//! `event` carries the clip's file name.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(180);

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `mediainfo` output: the XML report and the chunk trace (`--Details=1`).
fn mediainfo(path: &Path) -> (String, String) {
    let run = |args: &[&str]| {
        let out = Command::new("mediainfo")
            .args(args)
            .arg(path)
            .output()
            .expect("the record tests read files back with mediainfo: apt-get install mediainfo");
        assert!(
            out.status.success(),
            "mediainfo failed on {}",
            path.display()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    (run(&["--Output=XML"]), run(&["--Details=1"]))
}

/// The text of `<tag>…</tag>` in an XML string.
fn field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let a = xml.find(&open)? + open.len();
    let b = xml[a..].find(&close)? + a;
    Some(xml[a..b].to_string())
}

/// The iXML document as mediainfo's chunk trace shows it.
fn ixml(details: &str) -> String {
    let line = details
        .lines()
        .find(|l| l.contains("XML data:") && l.contains("<BWFXML>"))
        .unwrap_or_else(|| panic!("no iXML in mediainfo's trace:\n{details}"));
    // The trace prints the document on one line; newlines inside it are not kept.
    line[line.find("<?xml").unwrap_or(0)..].to_string()
}

fn xml_decode(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A 16-bit stereo WAV of noise bursts and tones: `seconds` at `rate`.
fn stereo_wav(path: &Path, seconds: f64, rate: u32) -> Vec<i16> {
    let n = (seconds * rate as f64) as usize;
    let mut seed = 11u64;
    let mut noise = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let mut samples = Vec::with_capacity(n * 2);
    for i in 0..n {
        let t = i as f32 / rate as f32;
        let burst = if (t % 1.5) < 0.4 { 0.5 } else { 0.02 };
        let l = burst * noise();
        let r = 0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
        samples.push((l * 32767.0) as i16);
        samples.push((r * 32767.0) as i16);
    }
    let mut f = std::fs::File::create(path).unwrap();
    let data_len = (samples.len() * 2) as u32;
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(36 + data_len).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&16u32.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap();
    f.write_all(&2u16.to_le_bytes()).unwrap();
    f.write_all(&rate.to_le_bytes()).unwrap();
    f.write_all(&(rate * 4).to_le_bytes()).unwrap();
    f.write_all(&4u16.to_le_bytes()).unwrap();
    f.write_all(&16u16.to_le_bytes()).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&data_len.to_le_bytes()).unwrap();
    for x in &samples {
        f.write_all(&x.to_le_bytes()).unwrap();
    }
    samples
}

/// `sfxtag run` replaying `input` as fast as possible, recording into `clips`, no MQTT.
fn replay_recording(cfg: &Path, model: &Path, input: &Path, clips: &Path) -> (i32, String, String) {
    run_bin(
        &[
            "run",
            "--config",
            &s(cfg),
            "--model",
            &s(model),
            "--input",
            &s(input),
            "--fast",
            "--no-mqtt",
            "--record",
            &s(clips),
        ],
        &[],
        T,
    )
}

fn wavs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    v.sort();
    v
}

fn parts(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".wav.part"))
        .collect()
}

/// Events on from the first window and never ending (on = off = 0, every label confident): one
/// clip stream from the start, cut at max_clip_s.
const RECORD_CONFIG: &str = r#"
[labels]
threshold = 0.0
[events]
on = 0.0
off = 0.0
hold_s = 0.5
[record]
pre_roll_s = 1.0
post_roll_s = 1.0
max_clip_s = 4.0
format = "pcm24"
creator_id = "JD"
source_id = "TESTLIB"
designer = "Ana Example"
library = "Garden & Yard"
location = "Back garden"
"#;

#[test]
fn recorded_clips_are_native_rate_ucs_named_bwf_with_ixml_and_cover_the_input() {
    let d = tempfile::tempdir().unwrap();
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let input = d.path().join("in.wav");
    let source = stereo_wav(&input, 10.0, 48_000);
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, RECORD_CONFIG).unwrap();
    let clips = d.path().join("clips");
    let (code, out, err) = replay_recording(&cfg, &model, &input, &clips);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("clip "), "{out}");
    assert!(err.contains("3 clips recorded"), "{err}");
    assert!(
        parts(&clips).is_empty(),
        "part files left: {:?}",
        parts(&clips)
    );
    let files = wavs(&clips);
    assert_eq!(files.len(), 3, "{files:?}");
    let mut total = 0u64;
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let blocks: Vec<&str> = name.split('_').collect();
        assert_eq!(blocks.len(), 4, "{name}");
        assert!(LABELS.contains(&blocks[0]), "{name}");
        assert_eq!(&blocks[2..], &["JD", "TESTLIB"], "{name}");

        let (xml, details) = mediainfo(f);
        assert_eq!(
            field(&xml, "SamplingRate").as_deref(),
            Some("48000"),
            "{xml}"
        );
        assert_eq!(field(&xml, "Channels").as_deref(), Some("2"));
        assert_eq!(field(&xml, "BitDepth").as_deref(), Some("24"));
        assert_eq!(
            field(&xml, "Producer").as_deref(),
            Some("sfxtag"),
            "bext originator"
        );
        assert_eq!(field(&xml, "bext_Present").as_deref(), Some("Yes"));
        let description = field(&xml, "Description").expect("bext description");
        assert!(
            description.starts_with(&catid_category(blocks[0])),
            "{description}"
        );
        assert!(field(&xml, "Encoded_Date").is_some(), "bext date/time");
        total += field(&xml, "SamplingCount")
            .and_then(|c| c.parse::<u64>().ok())
            .expect("frame count");

        let x = ixml(&details);
        assert_eq!(field(&x, "CATID").as_deref(), Some(blocks[0]), "{x}");
        assert_eq!(field(&x, "FXNAME").as_deref(), Some(blocks[1]));
        assert_eq!(field(&x, "DESIGNER").as_deref(), Some("Ana Example"));
        assert_eq!(
            field(&x, "LIBRARY").map(|v| xml_decode(&v)).as_deref(),
            Some("Garden & Yard")
        );
        assert_eq!(field(&x, "LOCATION").as_deref(), Some("Back garden"));
        let notes = field(&x, "NOTES").unwrap();
        assert!(
            notes.contains("tiny-test@1") && notes.contains(blocks[0]),
            "{notes}"
        );
        let keywords = field(&x, "KEYWORDS").unwrap();
        assert!(keywords.contains(blocks[0]), "{keywords}");
        let cat = field(&x, "CATEGORY").unwrap();
        let sub = field(&x, "SUBCATEGORY").unwrap();
        assert_eq!(
            field(&x, "CATEGORYFULL").unwrap(),
            format!("{cat}-{sub}"),
            "{x}"
        );
    }
    // Back to back from the first sample to the last: 4 s + 4 s + 2 s at 48 kHz.
    assert_eq!(total, 480_000);

    // The audio is the source's, sample for sample (16-bit source in a 24-bit file).
    let r = bwavfile::WaveReader::open(&files_by_time(&files)[0]).unwrap();
    let mut frames = r.audio_frame_reader().unwrap();
    let mut buf = vec![0i32; 2 * 4800];
    frames.read_frames(&mut buf).unwrap();
    for (i, (got, want)) in buf.iter().zip(&source).enumerate() {
        // bwavfile reads 24-bit into the top of an i32: compare at 16-bit resolution.
        assert_eq!((*got >> 16) as i16, *want, "sample {i}");
    }
}

/// The files in recording order (bext time reference order = name order is not guaranteed).
fn files_by_time(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut v: Vec<(u64, PathBuf)> = files
        .iter()
        .map(|f| {
            let mut r = bwavfile::WaveReader::open(f).unwrap();
            let b = r.broadcast_extension().unwrap().unwrap();
            (b.time_reference, f.clone())
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

fn catid_category(catid: &str) -> String {
    let e = sfxtag_core::ucs::lookup(catid).unwrap();
    format!("{}-{}", e.category, e.subcategory)
}

#[test]
fn a_killed_daemon_leaves_no_corrupt_final_file_and_the_part_is_recovered() {
    let d = tempfile::tempdir().unwrap();
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let cfg = d.path().join("c.toml");
    std::fs::write(
        &cfg,
        RECORD_CONFIG.replace("max_clip_s = 4.0", "max_clip_s = 600.0"),
    )
    .unwrap();
    let clips = d.path().join("clips");
    let mut child = Command::new(bin())
        .args([
            "run",
            "--config",
            &s(&cfg),
            "--model",
            &s(&model),
            "--input",
            "-",
            "--fast",
            "--stdin-format",
            "s16le",
            "--stdin-rate",
            "48000",
            "--stdin-channels",
            "1",
            "--no-mqtt",
            "--stdout",
            "off",
            "--record",
            &s(&clips),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // 12 s of audio, then wait until the clip's part file holds audio, then SIGKILL.
    stdin.write_all(&pcm_s16le(12.0, 48_000)).unwrap();
    stdin.flush().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let big = parts(&clips)
            .iter()
            .any(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > 100_000);
        if big {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no clip was being written"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert!(
        wavs(&clips).is_empty(),
        "a final name exists for an unfinished clip"
    );
    assert_eq!(parts(&clips).len(), 1);

    // The next start repairs the part and gives it a final name.
    let short = d.path().join("short.wav");
    stereo_wav(&short, 1.0, 48_000);
    let (code, _, err) = replay_recording(&cfg, &model, &short, &clips);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("recovered an unfinished clip"), "{err}");
    assert!(parts(&clips).is_empty());
    let recovered: Vec<_> = wavs(&clips)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("_Recovered_"))
        .collect();
    assert_eq!(recovered.len(), 1);
    let (xml, _) = mediainfo(&recovered[0]);
    let frames: u64 = field(&xml, "SamplingCount").unwrap().parse().unwrap();
    assert!(frames > 10_000, "{frames} frames recovered");
    assert_eq!(field(&xml, "SamplingRate").as_deref(), Some("48000"));
}

#[test]
fn the_event_topic_carries_the_clip_file_name() {
    let d = tempfile::tempdir().unwrap();
    let (addr, _broker) = broker(d.path());
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let input = d.path().join("in.wav");
    stereo_wav(&input, 6.0, 44_100);
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, RECORD_CONFIG).unwrap();
    let clips = d.path().join("clips");
    let base = unique_base("record");
    let sub = Subscriber::start(
        &addr,
        &[format!("{base}/event")],
        &format!("rec-sub-{}", std::process::id()),
        false,
    );
    let (code, _, err) = run_bin(
        &[
            "run",
            "--config",
            &s(&cfg),
            "--model",
            &s(&model),
            "--input",
            &s(&input),
            "--fast",
            "--mqtt-url",
            &format!("mqtt://{addr}"),
            "--base-topic",
            &base,
            "--device-id",
            &unique_device("record"),
            "--queue-dir",
            &s(&d.path().join("q")),
            "--record",
            &s(&clips),
        ],
        &[],
        T,
    );
    assert_eq!(code, 0, "{err}");
    let msgs = sub.collect_until(Duration::from_secs(20), |m| {
        m.iter().filter(|m| m.json()["phase"] == "clip").count() >= 2
    });
    let clip_msgs: Vec<_> = msgs
        .iter()
        .map(|m| m.json())
        .filter(|j| j["phase"] == "clip")
        .collect();
    assert!(!clip_msgs.is_empty(), "no clip message in {msgs:?}");
    let on_disk: Vec<String> = wavs(&clips)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for m in &clip_msgs {
        assert_eq!(m["v"], 1);
        let file = m["clip"].as_str().unwrap();
        assert!(
            on_disk.iter().any(|f| f == file),
            "{file} not in {on_disk:?}"
        );
        assert!(file.starts_with(m["catid"].as_str().unwrap()), "{m}");
        assert!(m["clip_s"].as_f64().unwrap() > 0.5);
        // The same id as the event's start message.
        let id = m["id"].as_str().unwrap();
        assert!(msgs
            .iter()
            .any(|x| x.json()["id"] == id && x.json()["phase"] == "start"));
    }
    sub.disconnect();
}

#[test]
fn tag_writes_tagged_copies_in_place_with_backup_and_ucs_renames() {
    let d = tempfile::tempdir().unwrap();
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let work = d.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let take = work.join("take one.wav");
    stereo_wav(&take, 3.0, 48_000);
    let original = std::fs::read(&take).unwrap();
    let mp3 = fixture("sheep.mp3");
    let out = d.path().join("tagged");
    let m = s(&model);

    // Copies, renamed UCS-style; the sources are untouched.
    let (code, stdout, err) = run_bin(
        &[
            "tag",
            "--model",
            &m,
            "--rename",
            "--creator",
            "JD",
            "--source",
            "LIB",
            "--designer",
            "Ana",
            "--out",
            &s(&out),
            &s(&take),
            &s(&mp3),
        ],
        &[],
        T,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&take).unwrap(), original);
    let written = wavs(&out);
    assert_eq!(written.len(), 2, "{stdout}");
    for f in &written {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let n = sfxtag_core::ucs::parse_name(&name).unwrap();
        assert!(LABELS.contains(&n.cat_id.cat_id), "{name}");
        assert_eq!(n.creator_id.as_deref(), Some("JD"));
        let (xml, details) = mediainfo(f);
        let x = ixml(&details);
        assert_eq!(field(&x, "CATID").as_deref(), Some(n.cat_id.cat_id));
        assert_eq!(field(&x, "DESIGNER").as_deref(), Some("Ana"));
        assert!(field(&x, "NOTES").unwrap().contains("tiny-test@1"));
        if name.contains("take one") {
            // The WAV's own format is kept (16-bit), the FX name is the file's stem.
            assert_eq!(field(&xml, "BitDepth").as_deref(), Some("16"));
            assert_eq!(field(&xml, "SamplingRate").as_deref(), Some("48000"));
            assert_eq!(field(&x, "FXNAME").as_deref(), Some("take one"));
        } else {
            // A lossy source becomes a float WAV at its own rate.
            assert_eq!(field(&xml, "BitDepth").as_deref(), Some("32"));
        }
    }
    // Existing copies are never overwritten.
    let keep = d.path().join("keep");
    let args = ["tag", "--model", &m, "--out", &s(&keep), &s(&take)];
    assert_eq!(run_bin(&args, &[], T).0, 0);
    let (code, _, err) = run_bin(&args, &[], T);
    assert_eq!(code, 1);
    assert!(err.contains("exists"), "{err}");

    // In place + rename: a listing first, nothing changed without --yes.
    let (code, stdout, err) = run_bin(
        &["tag", "--model", &m, "--in-place", "--rename", &s(&take)],
        &[],
        T,
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("take one.wav →"), "{stdout}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(std::fs::read(&take).unwrap(), original);
    assert!(!work.join("take one.wav.bak").exists());

    // In place: the original kept as .bak, byte for byte; the file itself tagged.
    let (code, _, err) = run_bin(&["tag", "--model", &m, "--in-place", &s(&take)], &[], T);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(work.join("take one.wav.bak")).unwrap(),
        original
    );
    let (_, details) = mediainfo(&take);
    assert!(LABELS.contains(&field(&ixml(&details), "CATID").unwrap().as_str()));
    // A second in-place run refuses to overwrite the backup.
    let (code, _, err) = run_bin(&["tag", "--model", &m, "--in-place", &s(&take)], &[], T);
    assert_eq!(code, 1);
    assert!(err.contains("backup"), "{err}");
    // In place is for WAV files only.
    let (code, _, err) = run_bin(&["tag", "--model", &m, "--in-place", &s(&mp3)], &[], T);
    assert_eq!(code, 2);
    assert!(err.contains("--out"), "{err}");
}

#[test]
fn continuous_takes_cover_the_input_and_are_each_tagged() {
    let d = tempfile::tempdir().unwrap();
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let input = d.path().join("in.wav");
    stereo_wav(&input, 10.0, 32_000);
    let cfg = d.path().join("c.toml");
    // 3 s takes; every window's top label counts (threshold 0).
    std::fs::write(
        &cfg,
        "[record]\nmode = \"continuous\"\ntake_minutes = 0.05\nlabel_threshold = 0.0\nformat = \"float32\"\n",
    )
    .unwrap();
    let clips = d.path().join("takes");
    let (code, _, err) = replay_recording(&cfg, &model, &input, &clips);
    assert_eq!(code, 0, "{err}");
    let files = wavs(&clips);
    // 3 + 3 + 3 + 1 s.
    assert_eq!(files.len(), 4, "{files:?}");
    let mut total = 0u64;
    for f in &files {
        let (xml, details) = mediainfo(f);
        assert_eq!(field(&xml, "SamplingRate").as_deref(), Some("32000"));
        assert_eq!(field(&xml, "Channels").as_deref(), Some("2"));
        assert_eq!(field(&xml, "BitDepth").as_deref(), Some("32"));
        total += field(&xml, "SamplingCount")
            .unwrap()
            .parse::<u64>()
            .unwrap();
        let catid = field(&ixml(&details), "CATID").unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("{catid}_")), "{name} vs {catid}");
        // Takes with a window in them carry the model's labels; the fallback only covers none.
        assert!(
            LABELS.contains(&catid.as_str()) || catid == "AMBMisc",
            "{catid}"
        );
    }
    assert_eq!(total, 320_000);
}

/// Every window private (the test model's three Categories, min_score 0): nothing reaches the
/// disk or the broker but the Categories.
#[test]
fn the_privacy_filter_keeps_private_windows_off_the_disk_and_the_broker() {
    let d = tempfile::tempdir().unwrap();
    let (addr, _broker) = broker(d.path());
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let input = d.path().join("in.wav");
    stereo_wav(&input, 8.0, 44_100);
    let private = "[privacy]\nenabled = true\ncategories = [\"DOORS\", \"ANIMALS\", \"AMBIENCE\"]\nmin_score = 0.0\n";
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, format!("{RECORD_CONFIG}{private}")).unwrap();
    let clips = d.path().join("clips");
    let base = unique_base("privacy");
    let sub = Subscriber::start(
        &addr,
        &[format!("{base}/#")],
        &format!("priv-sub-{}", std::process::id()),
        false,
    );
    let (code, _, err) = run_bin(
        &[
            "run",
            "--config",
            &s(&cfg),
            "--model",
            &s(&model),
            "--input",
            &s(&input),
            "--fast",
            "--mqtt-url",
            &format!("mqtt://{addr}"),
            "--base-topic",
            &base,
            "--device-id",
            &unique_device("privacy"),
            "--queue-dir",
            &s(&d.path().join("q")),
            "--record",
            &s(&clips),
        ],
        &[],
        T,
    );
    assert_eq!(code, 0, "{err}");
    let msgs = sub.collect_until(Duration::from_secs(20), |m| {
        m.iter()
            .any(|m| m.topic.ends_with("/status") && m.text() == "offline")
    });
    let preds: Vec<serde_json::Value> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/prediction"))
        .map(|m| m.json())
        .collect();
    assert!(preds.len() >= 5, "{msgs:?}");
    for p in &preds {
        assert!(p["private_category"].is_string(), "{p}");
        assert_eq!(p["top"], serde_json::json!([]), "{p}");
        assert!(p["label"].is_null() && p.get("neighbours").is_none(), "{p}");
    }
    assert!(
        !msgs.iter().any(|m| m.topic.ends_with("/embedding")),
        "no embedding of a private window is published"
    );
    assert!(
        !msgs.iter().any(|m| m.topic.ends_with("/event")),
        "no event from a private window"
    );
    // Nothing on disk: no clip, no part file.
    let on_disk: Vec<_> = std::fs::read_dir(&clips)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(on_disk.is_empty(), "{on_disk:?}");
    sub.disconnect();

    // Continuous takes are silenced over private passages instead.
    let cfg = d.path().join("cont.toml");
    std::fs::write(
        &cfg,
        format!(
            "[record]\nmode = \"continuous\"\ntake_minutes = 1.0\nformat = \"float32\"\n{private}"
        ),
    )
    .unwrap();
    let takes = d.path().join("takes");
    let (code, _, err) = replay_recording(&cfg, &model, &input, &takes);
    assert_eq!(code, 0, "{err}");
    let files = wavs(&takes);
    assert_eq!(files.len(), 1, "{files:?}");
    let a = sfxtag_core::audio::decode_native(&files[0]).unwrap();
    let zeros = a.interleaved.iter().filter(|&&x| x == 0.0).count();
    // Every window is private; only the tail after the last window is heard by none.
    assert!(
        zeros as f64 > 0.85 * a.interleaved.len() as f64,
        "{zeros} of {} samples silenced",
        a.interleaved.len()
    );
}
