//! CPU tests of the cached trunk and of block-4 fine-tuning on a tiny synthetic corpus: the
//! cache holds exactly what blocks 1–3 compute live, a re-run reuses it, block-4 training
//! lowers the loss, and the merged export computes the trained model's embeddings.

use sfxtag_core::frontend::{MelFrame, ModelWindow};
use sfxtag_export::weights::Cnn9Weights;
use sfxtag_train::corpus::{self, FetchOptions};
use sfxtag_train::finetune::{self, FinetuneOptions};
use sfxtag_train::heads::embed::{Store, Variant};
use sfxtag_train::heads::from_trunk;
use sfxtag_train::model::{Cnn9, DatasetHead};
use sfxtag_train::prepare::{self, PrepareOptions};
use sfxtag_train::trainer::{Scenario, TrainConfig};
use sfxtag_train::trunk::{self, Trunk, TrunkOptions};
use std::fs;
use std::path::{Path, PathBuf};
use tch::{nn, Device};

/// A tone at `freq` with a little noise, `secs` long.
fn write_tone(path: &Path, freq: f32, secs: f32, seed: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    for i in 0..(secs * 22_050.0) as usize {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let noise = (x % 2000) as f32 - 1000.0;
        let t = i as f32 / 22_050.0;
        let s = (t * freq * std::f32::consts::TAU).sin() * 8000.0 + noise;
        w.write_sample(s as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// Two sources, each with two classes (low and high tones) of 6 clips: every split non-empty.
fn tiny_corpus(root: &Path) -> PathBuf {
    tiny_corpus_in(root, false)
}

/// [`tiny_corpus`], with `ambience` also two 4-second ambiences per source (backgrounds for the
/// noisy variant).
fn tiny_corpus_in(root: &Path, ambience: bool) -> PathBuf {
    let mut csvs = Vec::new();
    for (s, src) in ["a", "b"].iter().enumerate() {
        let dir = root.join(src);
        let mut rows = vec!["path,label,ucs_catid".to_string()];
        for i in 0..6u32 {
            let secs = 1.2 + 0.4 * (i % 3) as f32;
            let seed = 100 * s as u32 + i;
            write_tone(
                &dir.join(format!("low{i}.wav")),
                150.0 + 10.0 * i as f32,
                secs,
                seed,
            );
            write_tone(
                &dir.join(format!("high{i}.wav")),
                3000.0 + 90.0 * i as f32,
                secs,
                seed + 50,
            );
            rows.push(format!("low{i}.wav,low,DOORWood"));
            rows.push(format!("high{i}.wav,high,GLASBrk"));
        }
        if ambience {
            for i in 0..2u32 {
                let seed = 900 + 10 * s as u32 + i;
                write_tone(&dir.join(format!("amb{i}.wav")), 700.0, 4.0, seed);
                rows.push(format!("amb{i}.wav,amb,AMBForst"));
            }
        }
        let list = dir.join("list.csv");
        fs::write(&list, rows.join("\n") + "\n").unwrap();
        csvs.push((src.to_string(), list));
    }
    let cache = root.join("cache");
    corpus::fetch(&FetchOptions {
        cache: cache.clone(),
        csvs,
        ..Default::default()
    })
    .unwrap();
    let mut opts = PrepareOptions::new(&cache);
    opts.progress = false;
    opts.trainable = false;
    prepare::prepare(&opts).unwrap();
    cache
}

/// Random encoder weights in the export scheme (the released checkpoint is not needed here).
fn random_weights(root: &Path) -> PathBuf {
    let p = root.join("init.safetensors");
    Cnn9Weights::random(11, &[("released", 3)])
        .write_safetensors(&p)
        .unwrap();
    p
}

fn build_trunk(cache: &Path, weights: &Path) -> trunk::BuildSummary {
    build_trunk_variant(cache, weights, Variant::Clean)
}

fn build_trunk_variant(cache: &Path, weights: &Path, variant: Variant) -> trunk::BuildSummary {
    trunk::build(&TrunkOptions {
        cache: cache.to_path_buf(),
        weights: weights.to_path_buf(),
        max_windows: 2,
        offset_pass: true,
        variant,
        threads: 1,
        progress: false,
    })
    .unwrap()
}

#[test]
fn trunk_cache_holds_what_blocks_1_to_3_compute_live() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tiny_corpus(tmp.path());
    let weights = random_weights(tmp.path());
    let s = build_trunk(&cache, &weights);
    assert_eq!((s.datasets_built, s.clips), (2, 24));
    let live = Trunk::new(&trunk::load_weights(&weights).unwrap()).unwrap();
    let stores = trunk::open(&cache).unwrap();
    let mut compared = 0;
    for d in &stores {
        let prepared = prepare::load_prepared(&cache, &d.index.dataset).unwrap();
        for c in &d.index.clips {
            let mel: &Vec<MelFrame> = &prepared
                .clips
                .iter()
                .find(|p| p.rel_path == c.rel_path)
                .unwrap()
                .mel;
            let windows = trunk::clip_windows(mel, 2, true);
            assert_eq!(windows.len(), c.windows, "{}", c.rel_path);
            for (k, w) in windows.iter().enumerate() {
                let one: [&ModelWindow; 1] = [w];
                assert_eq!(
                    live.rows(&one),
                    d.rows.row_bytes(c.first + k),
                    "{} window {k}",
                    c.rel_path
                );
                compared += 1;
            }
        }
    }
    // Every clip has a window; the longer ones also an offset-pass window.
    assert!(compared > 24, "{compared} windows compared");
    // A re-run finds nothing to do; a changed setting rebuilds.
    let again = build_trunk(&cache, &weights);
    assert_eq!((again.datasets_built, again.datasets_reused), (0, 2));
}

#[test]
fn embeddings_from_the_trunk_are_the_whole_encoders_and_the_noisy_trunk_mixes_other_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tiny_corpus_in(tmp.path(), true);
    let weights = random_weights(tmp.path());
    build_trunk(&cache, &weights);
    let noisy = Variant::Noisy {
        snr_db: 10.0,
        seed: 1,
    };
    let s = build_trunk_variant(&cache, &weights, noisy);
    assert_eq!((s.datasets_built, s.clips, s.skipped), (2, 28, 0));
    let again = build_trunk_variant(&cache, &weights, noisy);
    assert_eq!((again.datasets_built, again.datasets_reused), (0, 2));

    // Every noisy clip has a background from the other source, and its rows differ from the
    // clean ones.
    let clean_sets = trunk::open(&cache).unwrap();
    let noisy_sets = trunk::open_variant(&cache, &noisy).unwrap();
    for (c, n) in clean_sets.iter().zip(&noisy_sets) {
        assert_eq!(c.index.dataset, n.index.dataset);
        for (cc, nc) in c.index.clips.iter().zip(&n.index.clips) {
            assert_eq!((&cc.rel_path, cc.windows), (&nc.rel_path, nc.windows));
            let other = if c.index.dataset == "a" { "b" } else { "a" };
            assert_eq!(nc.noise_group.as_deref(), Some(other), "{}", nc.rel_path);
            assert_ne!(
                c.rows.row_bytes(cc.first),
                n.rows.row_bytes(nc.first),
                "{}",
                nc.rel_path
            );
        }
    }

    // Block 4 over the trunk gives the whole encoder's embedding of each window.
    let store = tmp.path().join("store");
    for variant in [Variant::Clean, noisy] {
        let r = from_trunk::embed(&from_trunk::FromTrunkOptions {
            cache: cache.clone(),
            weights: weights.clone(),
            variant,
            store: Some(store.clone()),
            pool: from_trunk::Pool::Max,
            progress: false,
        })
        .unwrap();
        assert_eq!(r.datasets_built, 2);
    }
    let st = Store::load(&cache, Some(store.as_path()), &Variant::Clean).unwrap();
    assert_eq!((st.dim, st.clips.len()), (512, 28));
    let nst = Store::load(&cache, Some(store.as_path()), &noisy).unwrap();
    assert!(nst.clips.iter().all(|c| c.noise_group.is_some()));
    let vs = nn::VarStore::new(Device::Cpu);
    let whole = Cnn9::new(&vs.root(), &[], false);
    sfxtag_train::model::init_encoder(&vs, &trunk::load_weights(&weights).unwrap()).unwrap();
    let prepared = prepare::load_prepared(&cache, "a").unwrap();
    // The trunk's windows of a clip of dataset "a".
    let windows_of = |rel_path: &str| {
        let p = prepared.clips.iter().find(|p| p.rel_path == rel_path);
        trunk::clip_windows(&p.unwrap().mel, 2, true)
    };
    let mut n = 0;
    for c in st.clips.iter().filter(|c| c.dataset == "a") {
        let windows = windows_of(&c.rel_path);
        assert_eq!(windows.len(), c.windows);
        for (k, w) in windows.iter().enumerate() {
            let x = tch::Tensor::from_slice(w[..].as_flattened()).view([1, 1, 100, 96]);
            let t = tch::no_grad(|| whole.embed(&x, 0, false));
            let want = Vec::<f32>::try_from(t.view([-1])).unwrap();
            let cos = cosine(&want, st.row(c.first + k));
            assert!(cos >= 0.999, "{} window {k}: cosine {cos}", c.rel_path);
            n += 1;
        }
    }
    assert!(n >= 14, "{n} windows compared");
    // A re-run reuses the stores.
    let r = from_trunk::embed(&from_trunk::FromTrunkOptions {
        cache: cache.clone(),
        weights: weights.clone(),
        variant: Variant::Clean,
        store: Some(store.clone()),
        pool: from_trunk::Pool::Max,
        progress: false,
    })
    .unwrap();
    assert_eq!((r.datasets_built, r.datasets_reused), (0, 2));

    // More pooled features: the embedding first, then block 4's time mean and block 3's pools.
    let wide = tmp.path().join("wide");
    from_trunk::embed(&from_trunk::FromTrunkOptions {
        cache: cache.clone(),
        weights: weights.clone(),
        variant: Variant::Clean,
        store: Some(wide.clone()),
        pool: from_trunk::Pool::MaxMeanBlock3,
        progress: false,
    })
    .unwrap();
    let wst = Store::load(&cache, Some(wide.as_path()), &Variant::Clean).unwrap();
    assert_eq!((wst.dim, wst.rows()), (1536, st.rows()));
    for r in 0..st.rows() {
        let (a, b) = (st.row(r), wst.row(r));
        assert!(cosine(a, &b[..512]) >= 0.9999, "row {r}");
        // A time mean never exceeds the time maximum.
        assert!((0..512).all(|i| b[512 + i] <= b[i] + 1e-4), "row {r}");
        assert!(
            (0..256).all(|i| b[1280 + i] <= b[1024 + i] + 1e-4),
            "row {r}"
        );
    }

    // The exported graph's `block3` output is the trainer's block 3 pooling of the same window
    // (the features `heads --features embedding-block3` trains on are what the daemon computes).
    let graph = sfxtag_export::TractModel::from_bytes(&sfxtag_export::fp32_onnx_bytes(
        &trunk::load_weights(&weights).unwrap(),
    ))
    .unwrap();
    let b3 = graph
        .output_index(sfxtag_export::graph::BLOCK3)
        .expect("a block3 output");
    let mut n = 0;
    for c in wst.clips.iter().filter(|c| c.dataset == "a") {
        for (k, win) in windows_of(&c.rel_path).iter().enumerate() {
            let o = graph.run(win).unwrap();
            let cos = cosine(&o[b3], &wst.row(c.first + k)[1024..]);
            assert!(cos >= 0.999, "{} window {k}: cosine {cos}", c.rel_path);
            n += 1;
        }
    }
    assert!(n >= 14, "{n} windows compared");

    // Weights whose blocks 1–3 are not the trunk's are refused.
    let other = tmp.path().join("other.safetensors");
    Cnn9Weights::random(12, &[("released", 3)])
        .write_safetensors(&other)
        .unwrap();
    let err = from_trunk::embed(&from_trunk::FromTrunkOptions {
        cache: cache.clone(),
        weights: other,
        variant: Variant::Clean,
        store: Some(tmp.path().join("store2")),
        pool: from_trunk::Pool::Max,
        progress: false,
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("blocks 1–3"), "{err:#}");
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b)).max(1e-12)
}

#[test]
fn block4_training_lowers_the_loss_and_the_merged_export_matches_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tiny_corpus(tmp.path());
    let weights = random_weights(tmp.path());
    build_trunk(&cache, &weights);
    let out = tmp.path().join("run");
    let opts = FinetuneOptions {
        cache: cache.clone(),
        weights: weights.clone(),
        train: TrainConfig {
            scenario: Scenario::XJoint,
            batch: 8,
            steps_per_epoch: 6,
            max_epochs: 4,
            patience: 4,
            lr: 1e-3,
            seed: 3,
            device: Device::Cpu,
            ..TrainConfig::default()
        },
        ucs_head: true,
        train_half: None,
        no_eval: false,
        out: out.clone(),
        command: "test".into(),
    };
    let r = finetune::run(&opts, |_| {}).unwrap();
    let train: Vec<f64> = r.epochs.iter().map(|e| e.1).collect();
    assert!(
        train.last().unwrap() < &train[0],
        "block-4 training loss did not fall: {train:?}"
    );
    assert_eq!(
        r.heads.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(),
        ["ucs", "a", "b"]
    );
    // Both encoders scored on both datasets.
    assert_eq!(r.rows.len(), 4);
    assert!(r.rows.iter().all(|x| (0.0..=1.0).contains(&x.macro_f1)));
    assert!(out.join("results.md").exists());

    // The merged weights (blocks 1–3 from the start, the trained block 4) exported as an fp32
    // graph compute the trained model's embeddings.
    let merged = Cnn9Weights::from_safetensors(&out.join("encoder.safetensors")).unwrap();
    let graph = sfxtag_export::graph::fp32_model(&sfxtag_export::fold::fold(&merged), false);
    let onnx = sfxtag_export::graph::to_bytes(&graph);
    let tract = sfxtag_export::TractModel::from_bytes(&onnx).unwrap();
    let emb_ix = tract.output_index("embedding").unwrap();

    let mut vs = nn::VarStore::new(Device::Cpu);
    let heads: Vec<DatasetHead> = r
        .heads
        .iter()
        .map(|h| DatasetHead {
            name: h.0.clone(),
            n_classes: h.1 as i64,
        })
        .collect();
    let block4 = Cnn9::from_block(&vs.root(), &heads, false, 4);
    vs.load(out.join("checkpoint.safetensors")).unwrap();
    let trunk = Trunk::new(&trunk::load_weights(&weights).unwrap()).unwrap();
    let prepared = prepare::load_prepared(&cache, "b").unwrap();
    let mut n = 0;
    for c in prepared.clips.iter().take(6) {
        for w in trunk::clip_windows(&c.mel, 2, false) {
            let one: [&ModelWindow; 1] = [&w];
            let t = tch::no_grad(|| block4.embed(&trunk.run(&one), 0, false));
            let want = Vec::<f32>::try_from(t.view([-1])).unwrap();
            let got = &tract.run(&w).unwrap()[emb_ix];
            let cos = cosine(&want, got);
            assert!(cos >= 0.999, "{}: cosine {cos}", c.rel_path);
            n += 1;
        }
    }
    assert!(n >= 6);
}

/// The `sfxtag-train` binary cargo built beside this test (builds through a
/// `RUSTC_WORKSPACE_WRAPPER` may not see `CARGO_BIN_EXE_*`: then it is found next to the test).
fn trainer_binary() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_sfxtag-train") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("sfxtag-train");
    assert!(p.exists(), "{} not built", p.display());
    p
}

#[test]
fn gpu_run_tiny_on_cpu_writes_results_and_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tiny_corpus(tmp.path());
    let exe = trainer_binary();
    let pack = tmp.path().join("corpus.pack");
    let st = std::process::Command::new(&exe)
        .args(["pack", "--cache"])
        .arg(&cache)
        .arg("--out")
        .arg(&pack)
        .status()
        .unwrap();
    assert!(st.success());
    // The pack holds the clips at u8 precision.
    let p = sfxtag_train::gpu_run::read_pack(&pack).unwrap();
    assert_eq!(p.header.clips.len(), 24);
    let orig = prepare::load_prepared(&cache, "a").unwrap();
    let step = (p.header.hi - p.header.lo) / 255.0;
    let first = &orig.clips[0].mel[0];
    let ix = p.header.clips.iter().position(|c| c.dataset == 0).unwrap();
    for (a, b) in first.iter().zip(&p.mels[ix][0]) {
        assert!((a - b).abs() <= step / 2.0 + 1e-4, "{a} vs {b}");
    }
    let out = tmp.path().join("grid");
    let o = std::process::Command::new(&exe)
        .args(["gpu-run", "--device", "cpu", "--tiny", "--pack"])
        .arg(&pack)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: sfxtag_train::gpu_run::GridResults =
        serde_json::from_slice(&fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r.rows.len(), sfxtag_train::gpu_run::grid().len());
    assert!(r.rows.iter().all(|x| x.scores.len() == 2));
    // The best checkpoint is in the export scheme (f16), readable by sfxtag-export.
    let w = Cnn9Weights::from_safetensors(&out.join("best.safetensors")).unwrap();
    assert_eq!(w.convs.len(), 8);
}
