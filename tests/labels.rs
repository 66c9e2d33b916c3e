//! The shipped default model on audio it was not trained on: the 13 CC0 fixtures with true UCS
//! labels (a sanity check: at least 10 right Categories, with the int8 and the fp32 encoder),
//! the silence gate (no encoder run), and confidence (a clear sound is confident, noise at the
//! floor is not).

use sfxtag::classify::{Label, TopSource};
use sfxtag::model::{LoadOptions, Model, Precision};
use sfxtag::pipeline::{Processor, DEFAULT_SILENCE_FLOOR_DBFS};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(precision: Precision) -> Model {
    Model::load(
        &root().join("models/default"),
        &LoadOptions {
            precision,
            ..Default::default()
        },
    )
    .expect("models/default loads")
}

/// `(file, true CatID)` of the fixtures.
fn fixtures() -> Vec<(PathBuf, String)> {
    let dir = root().join("data/fixtures");
    let text = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.splitn(3, ',');
            let file = f.next().unwrap().to_string();
            let catid = f.next().unwrap().to_string();
            (dir.join(file), catid)
        })
        .collect()
}

/// The file-level labels of one file.
fn classify(p: &mut Processor, path: &Path) -> (Vec<Label>, bool) {
    let a = sfxtag_core::audio::decode_mono_44k(path).unwrap();
    let mut windows: Vec<(Vec<Label>, TopSource)> = Vec::new();
    let mut silent = 0;
    let mut on = |w: sfxtag::pipeline::WindowOut<'_>| {
        if w.silent {
            silent += 1;
        } else {
            windows.push((w.prediction.top.clone(), w.prediction.top_source));
        }
    };
    p.restart_at(0.0);
    p.push(&a.samples, &mut on).unwrap();
    p.finish(&mut on).unwrap();
    let f = p.model.classifier.file_labels(&windows, silent);
    (f.top, f.confident)
}

fn fixture_categories(precision: Precision) {
    let mut p = Processor::with_silence_floor(load(precision), Some(DEFAULT_SILENCE_FLOOR_DBFS));
    let mut right = 0;
    let mut report = String::new();
    let all = fixtures();
    assert_eq!(all.len(), 13);
    for (path, catid) in &all {
        let want = sfxtag_core::ucs::lookup(catid).unwrap().category;
        let (top, confident) = classify(&mut p, path);
        let got = top
            .first()
            .and_then(|l| l.category.clone())
            .unwrap_or_default();
        right += (got == want) as usize;
        report += &format!(
            "{:<50} want {want:<10} got {got:<14} {:.2}{}\n",
            path.file_name().unwrap().to_string_lossy(),
            top.first().map_or(0.0, |l| l.score),
            if confident { " confident" } else { "" }
        );
    }
    println!("{precision:?}: {right}/13 Categories right\n{report}");
    assert!(
        right >= 10,
        "{precision:?}: only {right}/13 right:\n{report}"
    );
}

#[test]
fn fixtures_get_their_ucs_category_with_the_fp32_encoder() {
    fixture_categories(Precision::Fp32);
}

#[test]
fn fixtures_get_their_ucs_category_with_the_int8_encoder() {
    fixture_categories(Precision::Int8);
}

#[test]
fn silence_is_not_run_through_the_encoder() {
    let mut p = Processor::with_silence_floor(load(Precision::Fp32), Some(-60.0));
    let mut silent = 0;
    let mut classified = 0;
    let mut on = |w: sfxtag::pipeline::WindowOut<'_>| {
        if w.silent {
            assert!(w.prediction.top.is_empty() && !w.prediction.confident);
            silent += 1;
        } else {
            classified += 1;
        }
    };
    p.push(&vec![0.0f32; 44_100 * 10], &mut on).unwrap();
    p.finish(&mut on).unwrap();
    assert!(silent >= 7, "{silent} silent windows");
    assert_eq!(classified, 0);
    assert_eq!(p.model.encoder.runs, 0, "the encoder never ran");
    assert_eq!(p.silent_windows, silent as u64);
}

#[test]
fn a_clear_sound_is_confident_and_noise_at_the_floor_is_not() {
    let mut p = Processor::with_silence_floor(load(Precision::Fp32), Some(-60.0));
    // The shipped thresholds are calibrated per Category for 80 % precision on sources the
    // heads never heard; on these 13 recordings they keep almost everything "unknown"
    // (docs/results.md). A user who wants more labels lowers them (`[labels] threshold`): at
    // 0.5 the horse, one clear whinny, is a confident ANIMALS, and noise at the floor is
    // still not confident under either.
    p.model.classifier.policy.threshold = Some(0.5);
    let (top, confident) = classify(&mut p, &root().join("data/fixtures/horse.mp3"));
    assert!(confident, "the horse is confident: {top:?}");
    assert_eq!(top[0].category.as_deref(), Some("ANIMALS"));
    for policy in [None, Some(0.5)] {
        p.model.classifier.policy.threshold = policy;
        noise_at_the_floor_is_unknown(&mut p);
    }
}

fn noise_at_the_floor_is_unknown(p: &mut Processor) {
    // White noise just above the floor: classified, but nothing is certain of it.
    let mut x: u32 = 12345;
    let amp = 3f32.sqrt() * 10f32.powf(-57.0 / 20.0);
    let noise: Vec<f32> = (0..44_100 * 6)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * amp
        })
        .collect();
    let mut windows = Vec::new();
    let mut on = |w: sfxtag::pipeline::WindowOut<'_>| {
        assert!(!w.silent, "−57 dBFS is above the floor ({})", w.level_dbfs);
        windows.push(w.prediction.clone());
    };
    p.restart_at(0.0);
    p.push(&noise, &mut on).unwrap();
    p.finish(&mut on).unwrap();
    assert!(!windows.is_empty());
    let confident = windows.iter().filter(|w| w.confident).count();
    assert_eq!(
        confident,
        0,
        "noise is unknown, not a label: {:?}",
        windows.iter().map(|w| &w.top[0]).collect::<Vec<_>>()
    );
}
