//! Batch composition (paper §4, architecture.md §8): class-balanced batches of `classes × per_class`
//! (16 × 4) for metric losses, plain shuffled batches for CE, and the cross-dataset schedules
//! (`x-joint`: every batch from one dataset, datasets interleaved; `x-sequential`: one dataset
//! after another). Indices only: the trainer turns them into random 2.3 s crops.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

/// Class-balanced batch: `classes` distinct classes (all of them if fewer exist), `per_class`
/// clips each (drawn with replacement when a class has fewer clips).
pub fn balanced_batch<R: Rng>(
    labels: &[usize],
    classes: usize,
    per_class: usize,
    rng: &mut R,
) -> Vec<usize> {
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let mut keys: Vec<usize> = by_class.keys().copied().collect();
    keys.shuffle(rng);
    let mut out = Vec::with_capacity(classes * per_class);
    for k in keys.into_iter().take(classes) {
        let members = &by_class[&k];
        if members.len() >= per_class {
            out.extend(members.choose_multiple(rng, per_class).copied());
        } else {
            for _ in 0..per_class {
                out.push(*members.choose(rng).expect("non-empty class"));
            }
        }
    }
    out
}

/// Shuffled batches of `batch` indices covering `0..n` once (the last may be short).
pub fn shuffled_batches<R: Rng>(n: usize, batch: usize, rng: &mut R) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    idx.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}

/// One epoch of the `x-joint` schedule: each dataset contributes `batches[d]` batches, every
/// batch comes from a single dataset, and the order of datasets is shuffled.
pub fn joint_schedule<R: Rng>(batches: &[usize], rng: &mut R) -> Vec<usize> {
    let mut order: Vec<usize> = batches
        .iter()
        .enumerate()
        .flat_map(|(d, &n)| std::iter::repeat_n(d, n))
        .collect();
    order.shuffle(rng);
    order
}

/// A random crop start for a clip of `frames` frames and a window of `window` frames (0 when
/// the clip is shorter: it is zero-padded).
pub fn crop_start<R: Rng>(frames: usize, window: usize, rng: &mut R) -> usize {
    if frames <= window {
        0
    } else {
        rng.random_range(0..=frames - window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn balanced_batches_are_16_classes_of_4() {
        let mut rng = StdRng::seed_from_u64(1);
        // 30 classes, sizes 1..=30.
        let labels: Vec<usize> = (0..30)
            .flat_map(|c| std::iter::repeat_n(c, c + 1))
            .collect();
        for _ in 0..50 {
            let b = balanced_batch(&labels, 16, 4, &mut rng);
            assert_eq!(b.len(), 64);
            let mut counts = std::collections::BTreeMap::new();
            for &i in &b {
                *counts.entry(labels[i]).or_insert(0) += 1;
            }
            assert_eq!(counts.len(), 16);
            assert!(counts.values().all(|&n| n == 4));
        }
        // Fewer classes than asked: all of them, still 4 each.
        let b = balanced_batch(&[0, 0, 1, 1, 1, 2], 16, 4, &mut rng);
        assert_eq!(b.len(), 12);
    }

    #[test]
    fn joint_schedule_keeps_one_dataset_per_batch_and_all_batches() {
        let mut rng = StdRng::seed_from_u64(2);
        let s = joint_schedule(&[3, 5, 1], &mut rng);
        assert_eq!(s.len(), 9);
        for d in 0..3 {
            assert_eq!(s.iter().filter(|&&x| x == d).count(), [3, 5, 1][d]);
        }
    }

    #[test]
    fn shuffled_batches_cover_every_index_once() {
        let mut rng = StdRng::seed_from_u64(3);
        let b = shuffled_batches(130, 64, &mut rng);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![64, 64, 2]);
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, (0..130).collect::<Vec<_>>());
        for _ in 0..100 {
            let s = crop_start(150, 100, &mut rng);
            assert!(s <= 50);
        }
        assert_eq!(crop_start(80, 100, &mut rng), 0);
    }
}
