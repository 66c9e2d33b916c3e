//! When to record: a pure state machine over detections, in stream frames at the source's
//! native rate. No audio and no I/O here; [`super::recorder`] moves the samples.
//!
//! - **Events mode**: a clip opens `pre_roll` before the first event's start and closes
//!   `post_roll` after the last overlapping event's end, so overlapping events share one clip. A
//!   clip reaching `max_len` is closed and, while events are still active, continued in a new
//!   clip at once (nothing between them is lost).
//! - **Continuous mode**: back-to-back takes of `take_len` frames; each take is labelled with
//!   the labels found in it (windows whose top score reaches the label threshold).

use crate::classify::Label;
use crate::events::{Event, Phase};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordMode {
    Events,
    Continuous,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannerParams {
    pub mode: RecordMode,
    pub pre_roll: u64,
    pub post_roll: u64,
    /// Longest clip (events mode), frames.
    pub max_len: u64,
    /// Take length (continuous mode), frames.
    pub take_len: u64,
    /// Continuous mode: a window's top label counts when its score reaches this.
    pub label_threshold: f32,
}

/// A finished clip: what to name and tag it with.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSummary {
    pub start_frame: u64,
    pub end_frame: u64,
    /// Labels found in the clip, best first; `score` is the label's peak score in the clip.
    pub labels: Vec<Label>,
    /// Events (tracker ids) that the clip covers.
    pub event_ids: Vec<u64>,
    /// The clip continues the previous one (max length reached mid-event).
    pub continued: bool,
}

impl ClipSummary {
    pub fn frames(&self) -> u64 {
        self.end_frame.saturating_sub(self.start_frame)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start writing a clip at this frame (it may lie in the past: pre-roll).
    Open { start_frame: u64 },
    /// Stop writing at `summary.end_frame` and finalise the clip.
    Close(ClipSummary),
}

#[derive(Debug, Clone)]
struct OpenClip {
    start_frame: u64,
    labels: Vec<Label>,
    event_ids: Vec<u64>,
    /// Active events (tracker ids) and their labels.
    active: Vec<(u64, Label)>,
    /// Set once no event is active: the frame where the clip ends.
    close_at: Option<u64>,
    continued: bool,
}

#[derive(Debug, Clone)]
pub struct ClipPlanner {
    params: PlannerParams,
    rate: f64,
    open: Option<OpenClip>,
}

fn merge_label(labels: &mut Vec<Label>, l: &Label, score: f32) {
    match labels.iter_mut().find(|x| x.label == l.label) {
        Some(x) => x.score = x.score.max(score),
        None => {
            let mut l = l.clone();
            l.score = score;
            labels.push(l);
        }
    }
}

impl ClipPlanner {
    pub fn new(params: PlannerParams, rate: u32) -> Self {
        Self {
            params,
            rate: rate as f64,
            open: None,
        }
    }

    pub fn params(&self) -> &PlannerParams {
        &self.params
    }

    pub fn is_recording(&self) -> bool {
        self.open.is_some()
    }

    fn frame(&self, s: f64) -> u64 {
        (s.max(0.0) * self.rate).round() as u64
    }

    fn open_at(&mut self, start_frame: u64, continued: bool, out: &mut Vec<Action>) {
        out.push(Action::Open { start_frame });
        self.open = Some(OpenClip {
            start_frame,
            labels: Vec::new(),
            event_ids: Vec::new(),
            active: Vec::new(),
            close_at: None,
            continued,
        });
    }

    fn close_at_frame(&mut self, end_frame: u64, out: &mut Vec<Action>) -> Option<OpenClip> {
        let clip = self.open.take()?;
        let mut labels = clip.labels.clone();
        labels.sort_by(|a, b| b.score.total_cmp(&a.score));
        out.push(Action::Close(ClipSummary {
            start_frame: clip.start_frame,
            end_frame: end_frame.max(clip.start_frame),
            labels,
            event_ids: clip.event_ids.clone(),
            continued: clip.continued,
        }));
        Some(clip)
    }

    /// An event from the tracker. `earliest` is the oldest frame the audio history still holds
    /// (a clip cannot start before it).
    pub fn on_event(&mut self, e: &Event, earliest: u64, out: &mut Vec<Action>) {
        if self.params.mode != RecordMode::Events {
            return;
        }
        match e.phase {
            Phase::Start => {
                if self.open.is_none() {
                    let start = self
                        .frame(e.start_s)
                        .saturating_sub(self.params.pre_roll)
                        .max(earliest);
                    self.open_at(start, false, out);
                }
                let clip = self.open.as_mut().expect("opened above");
                clip.close_at = None;
                clip.active.push((e.id, e.label.clone()));
                clip.event_ids.push(e.id);
                merge_label(&mut clip.labels, &e.label, e.peak);
            }
            Phase::Update => {
                if let Some(clip) = &mut self.open {
                    merge_label(&mut clip.labels, &e.label, e.peak);
                }
            }
            Phase::End => {
                let end = self.frame(e.end_s.unwrap_or(e.start_s)) + self.params.post_roll;
                if let Some(clip) = &mut self.open {
                    merge_label(&mut clip.labels, &e.label, e.peak);
                    clip.active.retain(|(id, _)| *id != e.id);
                    if clip.active.is_empty() {
                        clip.close_at = Some(clip.close_at.map_or(end, |c| c.max(end)));
                    }
                }
            }
        }
    }

    /// A window's labels (continuous mode collects them; events mode uses events).
    pub fn on_window(&mut self, top: &[Label]) {
        if self.params.mode != RecordMode::Continuous {
            return;
        }
        if let (Some(clip), Some(best)) = (&mut self.open, top.first()) {
            if best.score >= self.params.label_threshold {
                merge_label(&mut clip.labels, best, best.score);
            }
        }
    }

    /// The stream's first frame: continuous mode opens its first take there.
    pub fn begin(&mut self, first_frame: u64, out: &mut Vec<Action>) {
        if self.params.mode == RecordMode::Continuous && self.open.is_none() {
            self.open_at(first_frame, false, out);
        }
    }

    /// The stream has reached frame `now` (all audio before it has been seen).
    pub fn advance(&mut self, now: u64, out: &mut Vec<Action>) {
        match self.params.mode {
            RecordMode::Continuous => {
                if self.open.is_none() {
                    self.open_at(now, false, out);
                }
                let take = self.params.take_len.max(1);
                while let Some(clip) = &self.open {
                    let end = clip.start_frame + take;
                    if now < end {
                        break;
                    }
                    self.close_at_frame(end, out);
                    self.open_at(end, true, out);
                }
            }
            RecordMode::Events => {
                while let Some(clip) = &self.open {
                    let max_end = clip.start_frame + self.params.max_len.max(1);
                    match clip.close_at {
                        Some(c) if c <= max_end && now >= c => {
                            self.close_at_frame(c, out);
                            break;
                        }
                        _ if now >= max_end => {
                            // Too long: cut here and go on in a new clip if events are still active.
                            let active = self.close_at_frame(max_end, out).map(|c| c.active);
                            match active {
                                Some(active) if !active.is_empty() => {
                                    self.open_at(max_end, true, out);
                                    let clip = self.open.as_mut().expect("opened above");
                                    for (id, l) in active {
                                        clip.event_ids.push(id);
                                        merge_label(&mut clip.labels, &l, l.score);
                                        clip.active.push((id, l));
                                    }
                                }
                                _ => break,
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
    }

    /// The stream ends at `now`: close what is open (at its planned end if that came first).
    pub fn finish(&mut self, now: u64, out: &mut Vec<Action>) {
        let end = match &self.open {
            Some(c) => c.close_at.map_or(now, |e| e.min(now)),
            None => return,
        };
        self.close_at_frame(end, out);
    }

    /// Frames the writer must hold back before committing them to disk: a clip's end is known
    /// only when its last event ends, which the tracker reports `hold_s` plus one window after
    /// the audio it refers to.
    pub fn commit_delay(rate: u32, hold_s: f64, post_roll: u64) -> u64 {
        let window_s = crate::record::DETECTION_LATENCY_S;
        let late = ((hold_s + window_s) * rate as f64).ceil() as u64;
        late.saturating_sub(post_roll) + rate as u64 / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Label;
    use crate::events::Event;

    fn label(id: &str, score: f32) -> Label {
        Label::new(id, sfxtag_core::manifest::Taxonomy::UcsCatId, score)
    }

    fn ev(id: u64, phase: Phase, l: &str, peak: f32, start_s: f64, end_s: Option<f64>) -> Event {
        Event {
            id,
            phase,
            label: label(l, peak),
            score: peak,
            peak,
            start_s,
            end_s,
        }
    }

    fn params(mode: RecordMode) -> PlannerParams {
        PlannerParams {
            mode,
            pre_roll: 100,
            post_roll: 50,
            max_len: 1000,
            take_len: 300,
            label_threshold: 0.5,
        }
    }

    #[test]
    fn one_event_gives_one_clip_with_pre_and_post_roll() {
        // rate 100 Hz: 1 s = 100 frames.
        let mut p = ClipPlanner::new(params(RecordMode::Events), 100);
        let mut out = Vec::new();
        p.advance(500, &mut out);
        assert!(out.is_empty());
        p.on_event(
            &ev(1, Phase::Start, "DOORWood", 0.7, 3.0, None),
            0,
            &mut out,
        );
        assert_eq!(out, vec![Action::Open { start_frame: 200 }]);
        out.clear();
        p.on_event(
            &ev(1, Phase::Update, "DOORWood", 0.9, 3.0, None),
            0,
            &mut out,
        );
        p.on_event(
            &ev(1, Phase::End, "DOORWood", 0.9, 3.0, Some(6.0)),
            0,
            &mut out,
        );
        p.advance(649, &mut out);
        assert!(out.is_empty(), "post-roll not reached yet");
        p.advance(700, &mut out);
        let Action::Close(s) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((s.start_frame, s.end_frame), (200, 650));
        assert_eq!(s.labels.len(), 1);
        assert_eq!(s.labels[0].catid.as_deref(), Some("DOORWood"));
        assert!((s.labels[0].score - 0.9).abs() < 1e-6);
        assert_eq!(s.event_ids, vec![1]);
        assert!(!p.is_recording());
    }

    #[test]
    fn overlapping_events_share_a_clip_and_pre_roll_is_clamped_to_history() {
        let mut p = ClipPlanner::new(params(RecordMode::Events), 100);
        let mut out = Vec::new();
        p.on_event(
            &ev(1, Phase::Start, "DOORWood", 0.7, 3.0, None),
            250,
            &mut out,
        );
        assert_eq!(out, vec![Action::Open { start_frame: 250 }]);
        p.on_event(
            &ev(2, Phase::Start, "DOGBark", 0.8, 4.0, None),
            250,
            &mut out,
        );
        p.on_event(
            &ev(1, Phase::End, "DOORWood", 0.7, 3.0, Some(5.0)),
            0,
            &mut out,
        );
        // Event 2 still active: no close even far past event 1's post-roll.
        p.advance(900, &mut out);
        assert_eq!(out.len(), 1);
        // A new start during the post-roll extends the clip.
        p.on_event(
            &ev(2, Phase::End, "DOGBark", 0.8, 4.0, Some(9.0)),
            0,
            &mut out,
        );
        p.on_event(&ev(3, Phase::Start, "DOGBark", 0.6, 9.2, None), 0, &mut out);
        p.advance(1000, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        p.on_event(
            &ev(3, Phase::End, "DOGBark", 0.6, 9.2, Some(10.0)),
            0,
            &mut out,
        );
        p.advance(1100, &mut out);
        let Action::Close(s) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!((s.start_frame, s.end_frame), (250, 1050));
        let ids: Vec<_> = s.labels.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(ids, vec!["DOGBark", "DOORWood"], "best first");
        assert_eq!(s.event_ids, vec![1, 2, 3]);
    }

    #[test]
    fn long_events_are_split_at_max_length_without_a_gap() {
        let mut p = ClipPlanner::new(params(RecordMode::Events), 100);
        let mut out = Vec::new();
        p.on_event(
            &ev(1, Phase::Start, "RAINMisc", 0.9, 1.0, None),
            0,
            &mut out,
        );
        p.advance(2500, &mut out);
        // Opened at 0, cut at 1000 and 2000, third clip open.
        let closes: Vec<_> = out
            .iter()
            .filter_map(|a| match a {
                Action::Close(s) => Some((s.start_frame, s.end_frame, s.continued)),
                _ => None,
            })
            .collect();
        assert_eq!(closes, vec![(0, 1000, false), (1000, 2000, true)]);
        assert!(p.is_recording());
        out.clear();
        p.finish(2600, &mut out);
        let Action::Close(s) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((s.start_frame, s.end_frame), (2000, 2600));
        assert_eq!(s.labels[0].label, "RAINMisc");
        assert_eq!(s.event_ids, vec![1]);
    }

    #[test]
    fn continuous_takes_are_back_to_back_and_carry_their_labels() {
        let mut p = ClipPlanner::new(params(RecordMode::Continuous), 100);
        let mut out = Vec::new();
        p.begin(0, &mut out);
        p.advance(40, &mut out);
        assert_eq!(out, vec![Action::Open { start_frame: 0 }]);
        p.on_window(&[label("WINDGust", 0.8)]);
        p.on_window(&[label("BIRDSong", 0.3)]); // under the threshold
        p.advance(650, &mut out);
        p.on_window(&[label("BIRDSong", 0.7)]);
        p.finish(700, &mut out);
        let closes: Vec<_> = out
            .iter()
            .filter_map(|a| match a {
                Action::Close(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(closes.len(), 3);
        assert_eq!((closes[0].start_frame, closes[0].end_frame), (0, 300));
        assert_eq!(closes[0].labels.len(), 1);
        assert_eq!(closes[0].labels[0].label, "WINDGust");
        assert_eq!((closes[1].start_frame, closes[1].end_frame), (300, 600));
        assert!(closes[1].labels.is_empty());
        assert_eq!((closes[2].start_frame, closes[2].end_frame), (600, 700));
        assert_eq!(closes[2].labels[0].label, "BIRDSong");
    }

    #[test]
    fn events_are_ignored_in_continuous_mode_and_windows_in_events_mode() {
        let mut p = ClipPlanner::new(params(RecordMode::Events), 100);
        let mut out = Vec::new();
        p.on_window(&[label("WINDGust", 0.9)]);
        p.advance(100, &mut out);
        assert!(out.is_empty() && !p.is_recording());
        let mut c = ClipPlanner::new(params(RecordMode::Continuous), 100);
        c.on_event(
            &ev(1, Phase::Start, "DOORWood", 0.7, 0.0, None),
            0,
            &mut out,
        );
        assert!(out.is_empty());
    }
}
