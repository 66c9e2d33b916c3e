//! The log-mel frontend (architecture.md §3): the one signal path of both daemon and trainer.
//!
//! Streaming: [`Frontend::push`] takes any number of mono 44.1 kHz samples and reports completed
//! mel frames and, every [`WINDOW_HOP`] frames once [`WINDOW_FRAMES`] exist, a normalised model
//! window. All buffers are fixed-size and live inside [`Frontend`]; nothing is allocated after
//! construction. [`mel_spectrogram`] and [`model_windows`] are the whole-clip API, built on the
//! same streaming code so both give identical numbers.
//!
//! The numbers follow Essentia as used by the aiSFX reference (see `tests/golden/README.md`):
//! - frames of 2048 samples, hop 1024, the first centred on t = 0 (1024 zeros in front), the last
//!   one the last frame whose start lies before the end of the signal (zero-padded);
//! - symmetric Hann window `0.5 - 0.5 cos(2πn/(N-1))` (Essentia's `hann`, not the periodic one);
//! - power spectrum of a 2048-point real FFT, 96 HTK-mel triangles whose weights are computed on
//!   the mel axis ("warping" weighting) and normalised to unit sum, bins
//!   `ceil(f_lo/df) ..= floor(f_hi/df)`;
//! - `log10(1e4 · m + 1)`, then min–max with the fixed global range `[0, 9.4578]`.

use heapless::Vec as HVec;
use microfft::real::rfft_2048;

/// Sample rate every input must have (resample first).
pub const SAMPLE_RATE: u32 = 44_100;
/// Samples per analysis frame.
pub const FRAME_SIZE: usize = 2048;
/// Samples between frame starts.
pub const HOP_SIZE: usize = 1024;
/// Bins of the magnitude spectrum.
pub const N_BINS: usize = FRAME_SIZE / 2 + 1;
/// Mel bands per frame.
pub const N_MELS: usize = 96;
/// Frames per model window (≈ 2.3 s).
pub const WINDOW_FRAMES: usize = 100;
/// Frames between model window starts (50 % overlap).
pub const WINDOW_HOP: usize = 50;
/// Lower bound of the fixed min–max normalisation.
pub const NORM_MIN: f32 = 0.0;
/// Upper bound of the fixed min–max normalisation (the aiSFX training range).
// 9.457798957824707 is exactly this f32 (its shortest decimal form).
pub const NORM_MAX: f32 = 9.457_799;
/// Upper band edge of the mel filterbank in Hz.
pub const F_MAX: f32 = 22_050.0;

/// One log-mel frame (before normalisation).
pub type MelFrame = [f32; N_MELS];
/// One normalised model input: `WINDOW_FRAMES` frames (time) × `N_MELS` bands.
pub type ModelWindow = [[f32; N_MELS]; WINDOW_FRAMES];

/// Frame `k` is centred on sample `k * HOP_SIZE`; this returns its centre in seconds.
pub fn frame_time_s(frame_index: u64) -> f64 {
    frame_index as f64 * HOP_SIZE as f64 / SAMPLE_RATE as f64
}

/// Everything [`Frontend::push`] reports.
#[derive(Debug)]
pub enum FrontendEvent<'a> {
    /// A completed log-mel frame (not normalised).
    Frame { index: u64, mel: &'a MelFrame },
    /// A normalised model window starting at frame `first_frame`.
    Window {
        index: u64,
        first_frame: u64,
        window: &'a ModelWindow,
    },
}

// Upper bound on the non-zero filter weights: each FFT bin falls in at most two triangles.
const MAX_WEIGHTS: usize = 2 * N_BINS + N_MELS;

/// The sparse HTK-mel filterbank (Essentia `MelBands`, warping weighting, unit sum).
#[derive(Clone)]
pub struct MelFilterbank {
    /// Per band: first bin, number of bins, offset into `weights`.
    bands: [(u16, u16, u16); N_MELS],
    weights: HVec<f32, MAX_WEIGHTS>,
}

fn hz_to_mel(hz: f64) -> f64 {
    2595.0 * libm::log10(1.0 + hz / 700.0)
}

fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (libm::pow(10.0, mel / 2595.0) - 1.0)
}

impl MelFilterbank {
    /// Builds the 96-band filterbank for 2048-point frames at 44.1 kHz.
    pub fn new() -> Self {
        // Band edges equally spaced on the mel axis (Essentia MelBands::calculateFilterFrequencies).
        let mut edges = [0.0f64; N_MELS + 2];
        let lo = hz_to_mel(0.0);
        let hi = hz_to_mel(F_MAX as f64);
        let step = (hi - lo) / (N_MELS + 1) as f64;
        for (i, e) in edges.iter_mut().enumerate() {
            *e = mel_to_hz(lo + step * i as f64);
        }
        let df = (SAMPLE_RATE as f64 / 2.0) / (N_BINS - 1) as f64;
        let mut bands = [(0u16, 0u16, 0u16); N_MELS];
        let mut weights: HVec<f32, MAX_WEIGHTS> = HVec::new();
        for b in 0..N_MELS {
            let (f0, f1, f2) = (edges[b], edges[b + 1], edges[b + 2]);
            let (m0, m1, m2) = (hz_to_mel(f0), hz_to_mel(f1), hz_to_mel(f2));
            // Essentia's band spans bins ceil(f0/df) ..= floor(f2/df) (verified against its
            // filterbank matrix, see tests/golden/README.md); the triangle rises below f1.
            let j0 = (libm::ceil(f0 / df) as usize).min(N_BINS);
            let j1 = ((libm::floor(f2 / df) as usize) + 1).min(N_BINS);
            let offset = weights.len();
            let mut sum = 0.0f64;
            let mut raw = [0.0f64; N_BINS];
            for j in j0..j1 {
                let m = hz_to_mel(j as f64 * df);
                let w = if (j as f64 * df) < f1 {
                    (m - m0) / (m1 - m0)
                } else {
                    (m2 - m) / (m2 - m1)
                };
                raw[j - j0] = w.max(0.0);
                sum += w.max(0.0);
            }
            for &w in raw.iter().take(j1.saturating_sub(j0)) {
                let w = if sum > 0.0 { w / sum } else { 0.0 };
                // Capacity is a compile-time bound proven by the band layout (each bin in ≤ 2 bands).
                weights
                    .push(w as f32)
                    .expect("mel filterbank exceeds its fixed capacity");
            }
            bands[b] = (j0 as u16, (j1.saturating_sub(j0)) as u16, offset as u16);
        }
        Self { bands, weights }
    }

    /// Applies the filterbank to a power spectrum.
    pub fn apply(&self, power: &[f32; N_BINS], out: &mut MelFrame) {
        for (o, &(start, len, off)) in out.iter_mut().zip(self.bands.iter()) {
            let (start, len, off) = (start as usize, len as usize, off as usize);
            let spec = &power[start..start + len];
            let w = &self.weights[off..off + len];
            *o = spec.iter().zip(w).map(|(p, w)| p * w).sum();
        }
    }

    /// The weights of band `b` as (first bin, weights), for inspection and tests.
    pub fn band(&self, b: usize) -> (usize, &[f32]) {
        let (start, len, off) = self.bands[b];
        (
            start as usize,
            &self.weights[off as usize..off as usize + len as usize],
        )
    }
}

impl Default for MelFilterbank {
    fn default() -> Self {
        Self::new()
    }
}

/// `log10(1e4 · m + 1)`: the compression of docs/architecture.md §3.
#[inline]
pub fn compress(m: f32) -> f32 {
    libm::log10f(10_000.0 * m + 1.0)
}

/// Min–max normalisation with the fixed global range.
#[inline]
pub fn normalise(x: f32) -> f32 {
    (x - NORM_MIN) / (NORM_MAX - NORM_MIN)
}

/// Counters a caller may report (never silently swallowed input).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrontendStats {
    /// Samples pushed so far.
    pub samples: u64,
    /// Non-finite samples (NaN, ±inf) replaced by 0.0.
    pub non_finite: u64,
    /// Frames completed.
    pub frames: u64,
    /// Windows completed.
    pub windows: u64,
}

/// The streaming frontend. Large (≈ 70 KiB): keep it in a `Box` or a long-lived struct.
pub struct Frontend {
    filterbank: MelFilterbank,
    hann: [f32; FRAME_SIZE],
    /// Samples of the frame being filled; `fill` of them are valid.
    frame: [f32; FRAME_SIZE],
    fill: usize,
    fft: [f32; FRAME_SIZE],
    power: [f32; N_BINS],
    mel: MelFrame,
    /// Ring of the last `WINDOW_FRAMES` normalised frames; frame `k` sits at `k % WINDOW_FRAMES`.
    history: ModelWindow,
    /// Scratch for a window in time order.
    window: ModelWindow,
    stats: FrontendStats,
}

impl Default for Frontend {
    fn default() -> Self {
        Self::new()
    }
}

impl Frontend {
    /// A frontend at stream position 0.
    pub fn new() -> Self {
        let mut hann = [0.0f32; FRAME_SIZE];
        for (n, h) in hann.iter_mut().enumerate() {
            let x = 2.0 * core::f64::consts::PI * n as f64 / (FRAME_SIZE - 1) as f64;
            *h = (0.5 - 0.5 * libm::cos(x)) as f32;
        }
        let mut f = Self {
            filterbank: MelFilterbank::new(),
            hann,
            frame: [0.0; FRAME_SIZE],
            fill: 0,
            fft: [0.0; FRAME_SIZE],
            power: [0.0; N_BINS],
            mel: [0.0; N_MELS],
            history: [[0.0; N_MELS]; WINDOW_FRAMES],
            window: [[0.0; N_MELS]; WINDOW_FRAMES],
            stats: FrontendStats::default(),
        };
        f.reset();
        f
    }

    /// Back to stream position 0 (the first frame is centred on the next sample pushed).
    pub fn reset(&mut self) {
        self.frame = [0.0; FRAME_SIZE];
        self.fill = FRAME_SIZE / 2;
        self.stats = FrontendStats::default();
    }

    /// Counters since the last reset.
    pub fn stats(&self) -> FrontendStats {
        self.stats
    }

    /// Pushes mono 44.1 kHz samples; calls `on_event` for each completed frame and window.
    /// Non-finite samples are replaced by silence and counted in [`FrontendStats::non_finite`].
    pub fn push(&mut self, samples: &[f32], mut on_event: impl FnMut(FrontendEvent<'_>)) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME_SIZE - self.fill).min(rest.len());
            for (dst, &s) in self.frame[self.fill..self.fill + take].iter_mut().zip(rest) {
                *dst = if s.is_finite() {
                    s
                } else {
                    self.stats.non_finite += 1;
                    0.0
                };
            }
            self.fill += take;
            self.stats.samples += take as u64;
            rest = &rest[take..];
            if self.fill == FRAME_SIZE {
                self.complete_frame(&mut on_event);
                self.frame.copy_within(HOP_SIZE.., 0);
                self.fill = FRAME_SIZE - HOP_SIZE;
            }
        }
    }

    /// Ends the stream: emits the remaining zero-padded frames (every frame whose start lies
    /// before the end of the signal) and, when fewer than `WINDOW_FRAMES` frames exist at all,
    /// one window zero-padded to `WINDOW_FRAMES`. Then resets to position 0.
    pub fn finish(&mut self, mut on_event: impl FnMut(FrontendEvent<'_>)) {
        let total = self.stats.samples;
        if total > 0 {
            // Frame k starts at sample (k - 1) * HOP; frames exist while that start < total.
            let last_frame = (total - 1) / HOP_SIZE as u64 + 1;
            while self.stats.frames <= last_frame {
                self.frame[self.fill..].fill(0.0);
                self.complete_frame(&mut on_event);
                self.frame.copy_within(HOP_SIZE.., 0);
                self.fill = FRAME_SIZE - HOP_SIZE;
            }
            let frames = self.stats.frames as usize;
            if frames < WINDOW_FRAMES {
                for (t, row) in self.window.iter_mut().enumerate() {
                    *row = if t < frames {
                        self.history[t]
                    } else {
                        [0.0; N_MELS]
                    };
                }
                on_event(FrontendEvent::Window {
                    index: 0,
                    first_frame: 0,
                    window: &self.window,
                });
                self.stats.windows += 1;
            }
        }
        self.reset();
    }

    fn complete_frame(&mut self, on_event: &mut impl FnMut(FrontendEvent<'_>)) {
        for ((d, s), w) in self.fft.iter_mut().zip(&self.frame).zip(&self.hann) {
            *d = s * w;
        }
        let spectrum = rfft_2048(&mut self.fft);
        // microfft packs the Nyquist bin's real part into bin 0's imaginary part.
        self.power[0] = spectrum[0].re * spectrum[0].re;
        self.power[N_BINS - 1] = spectrum[0].im * spectrum[0].im;
        for (p, c) in self.power[1..N_BINS - 1].iter_mut().zip(&spectrum[1..]) {
            *p = c.re * c.re + c.im * c.im;
        }
        self.filterbank.apply(&self.power, &mut self.mel);
        for m in self.mel.iter_mut() {
            *m = compress(*m);
        }
        let index = self.stats.frames;
        let slot = (index % WINDOW_FRAMES as u64) as usize;
        for (h, &m) in self.history[slot].iter_mut().zip(&self.mel) {
            *h = normalise(m);
        }
        self.stats.frames += 1;
        on_event(FrontendEvent::Frame {
            index,
            mel: &self.mel,
        });
        let n = self.stats.frames;
        if n >= WINDOW_FRAMES as u64 && (n - WINDOW_FRAMES as u64).is_multiple_of(WINDOW_HOP as u64)
        {
            let first = n - WINDOW_FRAMES as u64;
            for (t, row) in self.window.iter_mut().enumerate() {
                *row = self.history[((first + t as u64) % WINDOW_FRAMES as u64) as usize];
            }
            let index = first / WINDOW_HOP as u64;
            self.stats.windows += 1;
            on_event(FrontendEvent::Window {
                index,
                first_frame: first,
                window: &self.window,
            });
        }
    }
}

/// Whole-clip log-mel frames (not normalised) of mono 44.1 kHz samples: the same numbers the
/// streaming [`Frontend`] gives for the same samples.
pub fn mel_spectrogram(samples: &[f32]) -> alloc::vec::Vec<MelFrame> {
    let mut fe = alloc::boxed::Box::new(Frontend::new());
    let mut out = alloc::vec::Vec::with_capacity(samples.len() / HOP_SIZE + 2);
    let mut keep = |ev: FrontendEvent<'_>| {
        if let FrontendEvent::Frame { mel, .. } = ev {
            out.push(*mel);
        }
    };
    fe.push(samples, &mut keep);
    fe.finish(&mut keep);
    out
}

/// Number of model windows aiSFX cuts from `frames` frames: every `WINDOW_HOP` frames, the last
/// partial one dropped, and one zero-padded window for a clip shorter than a window (0 for none).
pub fn window_count(frames: usize) -> usize {
    match frames {
        0 => 0,
        f if f <= WINDOW_FRAMES => 1,
        f => (f - WINDOW_FRAMES) / WINDOW_HOP + 1,
    }
}

/// The daemon's default silence floor (RMS dBFS): quieter windows are not classified, and the
/// trainer leaves them out of the heads' training and evaluation alike.
pub const DEFAULT_SILENCE_FLOOR_DBFS: f32 = -60.0;

/// The lowest level [`window_level_dbfs`] reports (digital silence): a floor at or below it
/// keeps every window.
pub const MIN_LEVEL_DBFS: f32 = -120.0;

/// Level (RMS, dBFS, floored at -120) of model window `window` of a whole clip's samples: the
/// samples of its frames' hops, `window * WINDOW_HOP * HOP_SIZE` up to `WINDOW_FRAMES` hops
/// on (those the clip has). This is the level the daemon's silence gate compares with its floor,
/// so the trainer can leave out the windows the daemon would never classify.
pub fn window_level_dbfs(samples: &[f32], window: usize) -> f32 {
    let start = (window * WINDOW_HOP * HOP_SIZE).min(samples.len());
    let end = ((window * WINDOW_HOP + WINDOW_FRAMES) * HOP_SIZE).min(samples.len());
    let part = &samples[start..end];
    let sum: f64 = part
        .iter()
        .map(|&x| {
            if x.is_finite() {
                (x as f64) * (x as f64)
            } else {
                0.0
            }
        })
        .sum();
    if part.is_empty() || sum <= 0.0 {
        return MIN_LEVEL_DBFS;
    }
    ((10.0 * libm::log10(sum / part.len() as f64)) as f32).max(MIN_LEVEL_DBFS)
}

/// Whole-clip model windows, as aiSFX blocks a spectrogram: windows of `WINDOW_FRAMES` frames
/// every `WINDOW_HOP` frames, the last partial one dropped; a clip shorter than one window gives
/// one window zero-padded to `WINDOW_FRAMES` frames. An empty spectrogram gives no window.
pub fn model_windows(frames: &[MelFrame]) -> alloc::vec::Vec<alloc::boxed::Box<ModelWindow>> {
    let mut out = alloc::vec::Vec::new();
    for w in 0..window_count(frames.len()) {
        let mut win = alloc::boxed::Box::new([[0.0f32; N_MELS]; WINDOW_FRAMES]);
        for (t, row) in win.iter_mut().enumerate() {
            if let Some(frame) = frames.get(w * WINDOW_HOP + t) {
                for (d, &s) in row.iter_mut().zip(frame) {
                    *d = normalise(s);
                }
            }
        }
        out.push(win);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn window_level_counts_only_the_windows_samples() {
        // Window 1 starts WINDOW_HOP hops in: full scale there, silence before.
        let start = WINDOW_HOP * HOP_SIZE;
        let mut s = alloc::vec![0.0f32; start + WINDOW_FRAMES * HOP_SIZE];
        for (i, x) in s[start..].iter_mut().enumerate() {
            *x = if i % 2 == 0 { 0.5 } else { -0.5 };
        }
        assert!((window_level_dbfs(&s, 1) + 6.02).abs() < 0.01);
        // Window 0 is half silence: 3 dB lower.
        assert!((window_level_dbfs(&s, 0) + 9.03).abs() < 0.01);
        // Past the end, digital silence and NaNs are the floor.
        assert_eq!(window_level_dbfs(&s, 5), -120.0);
        assert_eq!(window_level_dbfs(&[0.0; 10], 0), -120.0);
        assert_eq!(window_level_dbfs(&[f32::NAN; 10], 0), -120.0);
    }

    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn filterbank_rows_sum_to_one() {
        let fb = MelFilterbank::new();
        for b in 0..N_MELS {
            let (_, w) = fb.band(b);
            let s: f32 = w.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "band {b} sums to {s}");
        }
    }

    #[test]
    fn frame_count_follows_centred_framing() {
        // N samples give frames k = 0.. while (k - 1) * HOP < N.
        for n in [1usize, 1023, 1024, 1025, 2048, 44_100] {
            let frames = mel_spectrogram(&alloc::vec![0.1; n]);
            assert_eq!(frames.len(), (n - 1) / HOP_SIZE + 2, "n = {n}");
        }
        assert!(mel_spectrogram(&[]).is_empty());
    }

    #[test]
    fn sine_peaks_in_the_right_band() {
        let f = 1000.0f32;
        let s: Vec<f32> = (0..44_100)
            .map(|i| (2.0 * core::f32::consts::PI * f * i as f32 / 44_100.0).sin())
            .collect();
        let frames = mel_spectrogram(&s);
        let mid = &frames[frames.len() / 2];
        let peak = (0..N_MELS)
            .max_by(|&a, &b| mid[a].total_cmp(&mid[b]))
            .unwrap();
        let fb = MelFilterbank::new();
        let (start, w) = fb.band(peak);
        let df = 22_050.0 / 1024.0;
        assert!(start as f32 * df <= f && (start + w.len()) as f32 * df >= f);
    }

    #[test]
    fn windows_every_fifty_frames() {
        let mut fe = Frontend::new();
        let mut firsts = Vec::new();
        let samples = alloc::vec![0.01f32; HOP_SIZE * 220];
        fe.push(&samples, |ev| {
            if let FrontendEvent::Window { first_frame, .. } = ev {
                firsts.push(first_frame)
            }
        });
        assert_eq!(firsts, [0, 50, 100]);
    }

    #[test]
    fn short_clip_gives_one_padded_window() {
        let frames = mel_spectrogram(&alloc::vec![0.5; 10_000]);
        assert_eq!(frames.len(), 11);
        let w = model_windows(&frames);
        assert_eq!(w.len(), 1);
        assert!(w[0][10].iter().any(|&x| x > 0.0));
        assert!(w[0][11..].iter().all(|r| r.iter().all(|&x| x == 0.0)));
        // The streaming path gives the same padded window.
        let mut fe = Frontend::new();
        let mut got = None;
        fe.push(&alloc::vec![0.5; 10_000], |_| {});
        fe.finish(|ev| {
            if let FrontendEvent::Window { window, .. } = ev {
                got = Some(*window)
            }
        });
        assert_eq!(got.as_ref(), Some(&*w[0]));
    }

    #[test]
    fn non_finite_samples_are_counted_and_silenced() {
        let mut fe = Frontend::new();
        let mut s = alloc::vec![0.0f32; 4096];
        s[5] = f32::NAN;
        s[6] = f32::INFINITY;
        s[7] = f32::NEG_INFINITY;
        let mut all_finite = true;
        fe.push(&s, |ev| {
            if let FrontendEvent::Frame { mel, .. } = ev {
                all_finite &= mel.iter().all(|x| x.is_finite());
            }
        });
        assert_eq!(fe.stats().non_finite, 3);
        assert!(all_finite);
    }
}
