//! The streaming frontend gives the same numbers whatever the chunking of its input, and the
//! whole-clip API equals the streaming one.
use proptest::prelude::*;
use sfxtag_core::frontend::{
    mel_spectrogram, model_windows, Frontend, FrontendEvent, MelFrame, ModelWindow,
};

fn signal(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let noise = (s as f32 / u32::MAX as f32) - 0.5;
            0.3 * (i as f32 * 0.031).sin() + 0.2 * noise
        })
        .collect()
}

fn stream(samples: &[f32], cuts: &[usize]) -> (Vec<MelFrame>, Vec<(u64, ModelWindow)>) {
    let mut fe = Box::new(Frontend::new());
    let mut frames = Vec::new();
    let mut windows = Vec::new();
    let mut on = |ev: FrontendEvent<'_>| match ev {
        FrontendEvent::Frame { mel, .. } => frames.push(*mel),
        FrontendEvent::Window {
            first_frame,
            window,
            ..
        } => windows.push((first_frame, *window)),
    };
    let mut start = 0;
    for &c in cuts {
        let end = (start + c).min(samples.len());
        fe.push(&samples[start..end], &mut on);
        start = end;
    }
    fe.push(&samples[start..], &mut on);
    fe.finish(&mut on);
    (frames, windows)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn any_chunking_gives_identical_output(
        n in 0usize..330_000,
        seed in any::<u32>(),
        cuts in proptest::collection::vec(0usize..5000, 0..200),
    ) {
        let samples = signal(n, seed);
        let (frames, windows) = stream(&samples, &cuts);
        let whole = mel_spectrogram(&samples);
        prop_assert_eq!(&frames, &whole);
        let blocks = model_windows(&whole);
        prop_assert_eq!(windows.len(), blocks.len());
        for (i, ((first, w), b)) in windows.iter().zip(&blocks).enumerate() {
            prop_assert_eq!(*first, (i * 50) as u64);
            prop_assert_eq!(w, &**b);
        }
    }
}
