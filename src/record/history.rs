//! The last few seconds of native-rate interleaved audio, so a clip can start before the event
//! that triggered it was detected (pre-roll plus detection latency). Allocated once.

#[derive(Debug)]
pub struct History {
    buf: Vec<f32>,
    channels: usize,
    /// Capacity in frames.
    cap: u64,
    /// Absolute frame index one past the newest frame held.
    end: u64,
    /// Absolute frame index of the oldest frame held.
    start: u64,
}

impl History {
    pub fn new(frames: usize, channels: usize) -> Self {
        let channels = channels.max(1);
        Self {
            buf: vec![0.0; frames.max(1) * channels],
            channels,
            cap: frames.max(1) as u64,
            end: 0,
            start: 0,
        }
    }

    /// Oldest frame still held.
    pub fn earliest(&self) -> u64 {
        self.start
    }

    /// One past the newest frame held.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Appends interleaved audio whose first frame is `first_frame`. A jump forward (audio
    /// dropped upstream) empties the history: what is held stays contiguous.
    pub fn push(&mut self, first_frame: u64, data: &[f32]) {
        let ch = self.channels;
        let frames = (data.len() / ch) as u64;
        if first_frame != self.end {
            self.start = first_frame;
            self.end = first_frame;
        }
        // Only the last `cap` frames of a long chunk can be kept.
        let skip = frames.saturating_sub(self.cap);
        let mut pos = first_frame + skip;
        let mut src = &data[(skip as usize) * ch..(frames as usize) * ch];
        while !src.is_empty() {
            let slot = (pos % self.cap) as usize;
            let n = (self.cap as usize - slot).min(src.len() / ch);
            self.buf[slot * ch..(slot + n) * ch].copy_from_slice(&src[..n * ch]);
            src = &src[n * ch..];
            pos += n as u64;
        }
        self.end = first_frame + frames;
        self.start = self.start.max(self.end.saturating_sub(self.cap));
    }

    /// Calls `f` with the held audio of frames `from..to` (clamped to what is held), in order, in
    /// at most two slices.
    pub fn read(&self, from: u64, to: u64, mut f: impl FnMut(&[f32])) {
        let ch = self.channels;
        let from = from.max(self.start);
        let to = to.min(self.end);
        if from >= to {
            return;
        }
        let a = (from % self.cap) as usize;
        let n = (to - from) as usize;
        let first = (self.cap as usize - a).min(n);
        f(&self.buf[a * ch..(a + first) * ch]);
        if first < n {
            f(&self.buf[..(n - first) * ch]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(h: &History, from: u64, to: u64) -> Vec<f32> {
        let mut v = Vec::new();
        h.read(from, to, |s| v.extend_from_slice(s));
        v
    }

    #[test]
    fn keeps_the_newest_frames_across_wraps() {
        let mut h = History::new(5, 2);
        let data: Vec<f32> = (0..14).map(|x| x as f32).collect(); // 7 stereo frames
        h.push(0, &data[..6]);
        h.push(3, &data[6..]);
        assert_eq!((h.earliest(), h.end()), (2, 7));
        assert_eq!(collect(&h, 0, 100), data[4..].to_vec());
        assert_eq!(collect(&h, 3, 5), data[6..10].to_vec());
        assert!(collect(&h, 7, 9).is_empty());
    }

    #[test]
    fn a_gap_restarts_it_and_an_oversized_chunk_keeps_its_tail() {
        let mut h = History::new(4, 1);
        h.push(0, &[1.0, 2.0]);
        h.push(10, &[3.0, 4.0]);
        assert_eq!(h.earliest(), 10);
        assert_eq!(collect(&h, 0, 20), vec![3.0, 4.0]);
        let big: Vec<f32> = (0..9).map(|x| x as f32).collect();
        h.push(12, &big);
        assert_eq!((h.earliest(), h.end()), (17, 21));
        assert_eq!(collect(&h, 0, 100), vec![5.0, 6.0, 7.0, 8.0]);
    }
}
