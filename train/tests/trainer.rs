//! CPU tests of the training loop on tiny synthetic data: the loss falls, checkpoints round-trip,
//! every loss and scenario runs a few steps, and the export form has export's tensor names.
use sfxtag_core::frontend::{MelFrame, N_MELS};
use sfxtag_train::checkpoint;
use sfxtag_train::losses::MetricLoss;
use sfxtag_train::trainer::{self, Clip, Dataset, Scenario, TrainConfig, TrainError};
use tch::{Device, Kind, Tensor};

/// Class `c` puts energy in a band that depends on it; clips vary in length and level.
fn clip(c: usize, i: usize) -> Clip {
    let frames = 60 + (i * 37) % 90;
    let level = 3.0 + (i % 5) as f32 * 0.5;
    let f: Vec<MelFrame> = (0..frames)
        .map(|t| {
            let mut m = [0.5f32; N_MELS];
            let centre = 10 + c * 20;
            for (b, v) in m.iter_mut().enumerate() {
                let d = b.abs_diff(centre) as f32;
                *v += level * (-d * d / 30.0).exp() * (1.0 + 0.2 * ((t + i) as f32).sin());
            }
            m
        })
        .collect();
    Clip::mel(f, c)
}

fn dataset(name: &str, classes: usize, per_class: usize) -> Dataset {
    let mk = |range: std::ops::Range<usize>| -> Vec<Clip> {
        (0..classes)
            .flat_map(|c| range.clone().map(move |i| clip(c, i)))
            .collect()
    };
    Dataset {
        name: name.into(),
        classes: (0..classes).map(|c| format!("class{c}")).collect(),
        train: mk(0..per_class),
        val: mk(per_class..per_class + 2),
        test: mk(per_class + 2..per_class + 4),
    }
}

fn cfg(scenario: Scenario, loss: MetricLoss) -> TrainConfig {
    TrainConfig {
        scenario,
        loss,
        batch: 8,
        steps_per_epoch: 2,
        max_epochs: 1,
        patience: 1,
        lr: 1e-3,
        seed: 7,
        device: Device::Cpu,
        ..TrainConfig::default()
    }
}

#[test]
fn loss_falls_and_evaluation_scores_the_test_split() {
    let d = vec![dataset("ucs_a", 3, 6)];
    let c = TrainConfig {
        steps_per_epoch: 6,
        max_epochs: 3,
        patience: 3,
        ..cfg(Scenario::Within, MetricLoss::None)
    };
    let t = trainer::train(&d, &c, |_| {}).unwrap();
    // The training loss is the one the optimiser sees; after this few steps the validation loss
    // still moves with the BatchNorm running statistics (eval mode), so it is only reported.
    let train: Vec<f64> = t.history.iter().map(|e| e.train_loss).collect();
    let val: Vec<f64> = t.history.iter().map(|e| e.val_loss).collect();
    println!("train loss per epoch {train:?}, validation {val:?}");
    assert!(train[2] < train[0], "training loss did not fall: {train:?}");
    assert!(t.best_val_loss.is_finite());
    let s = trainer::evaluate(&t.model, &d[0], 0, Device::Cpu).unwrap();
    assert!(s.macro_f1 > 0.0 && s.macro_f1 <= 1.0);
    assert!(s.test_windows >= 6);
}

#[test]
fn every_loss_and_scenario_runs() {
    let d = vec![dataset("ucs_a", 3, 4), dataset("b", 2, 4)];
    for loss in [
        MetricLoss::contrastive(),
        MetricLoss::triplet(),
        MetricLoss::circle(),
    ] {
        let t = trainer::train(&d, &cfg(Scenario::XJoint, loss), |_| {}).unwrap();
        assert!(t.history[0].train_loss.is_finite(), "{}", loss.name());
    }
    for scenario in [Scenario::UcsTransfer, Scenario::XSequential] {
        let t = trainer::train(&d, &cfg(scenario, MetricLoss::None), |_| {}).unwrap();
        assert!(!t.history.is_empty());
    }
    let c = TrainConfig {
        dataset_bn: true,
        fdr_beta: Some(0.999),
        ..cfg(Scenario::XJoint, MetricLoss::triplet())
    };
    assert!(trainer::train(&d, &c, |_| {}).is_ok());
}

#[test]
fn checkpoints_round_trip_and_export_form_uses_the_scheme() {
    let d = vec![dataset("ucs_a", 2, 3), dataset("b", 2, 3)];
    let c = TrainConfig {
        dataset_bn: true,
        ..cfg(Scenario::XJoint, MetricLoss::None)
    };
    let t = trainer::train(&d, &c, |_| {}).unwrap();
    let dir = std::env::temp_dir().join(format!("sfxtag-train-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let full = dir.join("full.safetensors");
    checkpoint::save(&t.vs, &full).unwrap();
    let mut vs2 = tch::nn::VarStore::new(Device::Cpu);
    let heads: Vec<_> = t.model.datasets.clone();
    let m2 = sfxtag_train::model::Cnn9::new(&vs2.root(), &heads, true);
    checkpoint::load(&mut vs2, &full).unwrap();
    let x = Tensor::rand([2, 1, 100, 96], (Kind::Float, Device::Cpu));
    let a = t.model.embed(&x, 1, false);
    let b = m2.embed(&x, 1, false);
    assert!(a.allclose(&b, 1e-6, 1e-6, false));

    let export = dir.join("export.safetensors");
    checkpoint::save_for_export(&t.vs, 1, &export).unwrap();
    let names: Vec<String> = Tensor::read_safetensors(&export)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"encoder.block4.bn2.running_var".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"head.b.fc2.weight".to_string()));
    assert!(!names.iter().any(|n| n.contains("bnset")));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_datasets_are_clear_errors() {
    let mut one = dataset("x", 2, 3);
    one.classes.truncate(1);
    one.train.retain(|c| c.label == 0);
    one.val.retain(|c| c.label == 0);
    one.test.retain(|c| c.label == 0);
    let e = trainer::train(&[one], &cfg(Scenario::Within, MetricLoss::None), |_| {})
        .err()
        .unwrap();
    assert!(matches!(e, TrainError::OneClass(ref n) if n == "x"), "{e}");
    let mut empty = dataset("y", 2, 3);
    empty.val.clear();
    let e = trainer::train(&[empty], &cfg(Scenario::Within, MetricLoss::None), |_| {})
        .err()
        .unwrap();
    assert!(e.to_string().contains("empty validation split"), "{e}");
    let e = trainer::train(
        &[dataset("b", 2, 3)],
        &cfg(Scenario::UcsTransfer, MetricLoss::None),
        |_| {},
    )
    .err()
    .unwrap();
    assert!(matches!(e, TrainError::NoUcsDataset));
}
