//! Bad input gets a clear error and nothing panics.
use sfxtag_core::audio::{decode_mono_44k, resample_to_44k, AudioError};
use sfxtag_core::frontend::{mel_spectrogram, Frontend};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sfxtag-core-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_wav(name: &str, rate: u32, channels: u16, samples: &[f32]) -> PathBuf {
    let path = tmp(name);
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    path
}

#[test]
fn empty_file() {
    let p = tmp("empty.wav");
    std::fs::write(&p, b"").unwrap();
    let e = decode_mono_44k(&p).unwrap_err();
    assert!(matches!(e, AudioError::EmptyFile { .. }), "{e}");
    assert!(e.to_string().contains("empty"));
}

#[test]
fn missing_file() {
    let e = decode_mono_44k(&tmp("does-not-exist.wav")).unwrap_err();
    assert!(matches!(e, AudioError::Open { .. }), "{e}");
}

#[test]
fn non_audio_file() {
    let p = tmp("notes.wav");
    std::fs::write(&p, "these are my field notes, not audio\n".repeat(50)).unwrap();
    let e = decode_mono_44k(&p).unwrap_err();
    assert!(matches!(e, AudioError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("not a supported audio file"));
}

#[test]
fn truncated_file_keeps_what_decoded_or_errors_cleanly() {
    let full = write_wav("full.wav", 44_100, 1, &vec![0.25; 44_100]);
    let bytes = std::fs::read(&full).unwrap();
    // Cut in the middle of the data: the decodable part is kept.
    let p = tmp("truncated.wav");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let a = decode_mono_44k(&p).expect("half a WAV still decodes");
    assert!(
        a.samples.len() > 10_000 && a.samples.len() < 44_100,
        "{}",
        a.samples.len()
    );
    // …and says so, with both durations.
    let t = a.truncation.expect("a cut WAV is reported");
    assert!((t.declared_s.unwrap() - 1.0).abs() < 0.01, "{t:?}");
    assert!(t.decoded_s < 0.6, "{t:?}");
    assert!(t.to_string().contains("1.00 s"), "{t}");
    // The whole file is not.
    assert_eq!(decode_mono_44k(&full).unwrap().truncation, None);
    // Cut inside the header: an error, not a panic.
    let h = tmp("header-only.wav");
    std::fs::write(&h, &bytes[..20]).unwrap();
    assert!(decode_mono_44k(&h).is_err());
}

#[test]
fn a_lying_wav_header_is_reported_with_both_durations() {
    // A 16-bit mono WAV whose header promises 10⁹ samples over 1 000 bytes of data.
    let mut b = Vec::new();
    let data_len: u32 = 2_000_000_000;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&44_100u32.to_le_bytes());
    b.extend_from_slice(&(44_100u32 * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..500u32 {
        b.extend_from_slice(&(((i % 50) as i16 - 25) * 500).to_le_bytes());
    }
    let p = tmp("lying.wav");
    std::fs::write(&p, &b).unwrap();
    let a = decode_mono_44k(&p).expect("decoded as far as it goes");
    assert_eq!(a.samples.len(), 500);
    let t = a.truncation.expect("reported");
    assert!(t.declared_s.unwrap() > 20_000.0, "{t:?}");
    assert!(t.decoded_s < 0.02, "{t:?}");
}

#[test]
fn an_ogg_stream_cut_mid_page_is_reported() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/fixtures/ANMLFarm_Sheep 7 (ID 2349)_BSB.ogg");
    let bytes = std::fs::read(&fixture).unwrap();
    let whole = decode_mono_44k(&fixture).unwrap();
    assert_eq!(whole.truncation, None, "the whole file is not truncated");
    let p = tmp("cut.ogg");
    std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let a = decode_mono_44k(&p).expect("decoded as far as it goes");
    assert!(a.samples.len() < whole.samples.len());
    let t = a.truncation.expect("a cut Ogg stream is reported");
    assert!(t.decoded_s < whole.samples.len() as f64 / 44_100.0, "{t:?}");
}

#[test]
fn zero_length_audio() {
    let p = write_wav("zero.wav", 44_100, 1, &[]);
    let e = decode_mono_44k(&p).unwrap_err();
    assert!(matches!(e, AudioError::NoSamples { .. }), "{e}");
    assert!(mel_spectrogram(&[]).is_empty());
    let mut fe = Frontend::new();
    let mut events = 0;
    fe.push(&[], |_| events += 1);
    fe.finish(|_| events += 1);
    assert_eq!(events, 0);
}

#[test]
fn nan_and_inf_samples_are_rejected_in_files() {
    let mut s = vec![0.1f32; 1000];
    s[500] = f32::NAN;
    let p = write_wav("nan.wav", 44_100, 1, &s);
    let e = decode_mono_44k(&p).unwrap_err();
    assert!(matches!(e, AudioError::NonFinite { index: 500, .. }), "{e}");
    s[500] = f32::INFINITY;
    let p = write_wav("inf.wav", 44_100, 1, &s);
    assert!(matches!(
        decode_mono_44k(&p),
        Err(AudioError::NonFinite { .. })
    ));
}

#[test]
fn unsupported_sample_format() {
    // A RIFF/WAVE file whose fmt chunk declares MPEG Layer 3 inside WAV (format tag 0x0055) with
    // garbage data: not something the decoders take.
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36u32 + 100).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&0x0055u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&44_100u32.to_le_bytes());
    b.extend_from_slice(&16_000u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&100u32.to_le_bytes());
    b.extend_from_slice(&[0x5a; 100]);
    let p = tmp("mpeg-in-wav.wav");
    std::fs::write(&p, &b).unwrap();
    let e = decode_mono_44k(&p).unwrap_err();
    assert!(matches!(e, AudioError::Unsupported { .. }), "{e}");
}

#[test]
fn eight_khz_and_96_khz_stereo_resample_to_44k_mono() {
    for rate in [8_000u32, 96_000] {
        let frames = rate as usize / 2; // 0.5 s
        let mut st = Vec::with_capacity(frames * 2);
        for i in 0..frames {
            let x = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin();
            st.push(x);
            st.push(-x); // opposite phase: the mono downmix is silent
        }
        let p = write_wav(&format!("st{rate}.wav"), rate, 2, &st);
        let a = decode_mono_44k(&p).unwrap();
        assert_eq!(a.source_rate, rate);
        assert_eq!(a.source_channels, 2);
        assert_eq!(a.samples.len(), 22_050);
        assert!(a.samples.iter().all(|s| s.abs() < 1e-4));
        let mel = mel_spectrogram(&a.samples);
        assert_eq!(mel.len(), (22_050 - 1) / 1024 + 2);
    }
    assert!(matches!(
        resample_to_44k(&[0.0; 10], 0),
        Err(AudioError::BadRate { rate: 0 })
    ));
}

#[test]
fn every_fixture_decodes_including_a_broken_id3_tag() {
    // horse.mp3 starts with an ID3v2 header whose tag symphonia rejects; the audio behind it is
    // fine and must decode (Essentia gives the same 138 650 samples).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fixtures");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !["mp3", "ogg", "wav", "flac"].contains(&ext) {
            continue;
        }
        let a = decode_mono_44k(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.samples.len() > 10_000, "{}", p.display());
        n += 1;
    }
    assert_eq!(n, 13);
    let horse = decode_mono_44k(&dir.join("horse.mp3")).unwrap();
    assert_eq!(horse.samples.len(), 138_650);
}
