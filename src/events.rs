//! Debounced detections (`<base>/event`): a pure hysteresis state machine per label.
//!
//! A label's event starts when its score reaches `on`; it stays active while its score stays at
//! or above `off` (`off <= on`), and ends once it has been below `off` for `hold_s` seconds of
//! stream time. While active, an `update` is emitted whenever the peak score rises. Labels are
//! tracked independently, so a door knock during a dog bark gives two overlapping events.

use crate::classify::Label;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventParams {
    /// Score at which an event starts.
    pub on: f32,
    /// Score under which an active event starts to end.
    pub off: f32,
    /// Seconds below `off` before the event ends.
    pub hold_s: f64,
}

impl Default for EventParams {
    fn default() -> Self {
        Self {
            on: 0.6,
            off: 0.4,
            hold_s: 2.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Start,
    Update,
    End,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Update => "update",
            Phase::End => "end",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Counter unique within one tracker (the publisher prefixes a run id).
    pub id: u64,
    pub phase: Phase,
    pub label: Label,
    /// Score of the window that caused this message.
    pub score: f32,
    pub peak: f32,
    /// Stream seconds.
    pub start_s: f64,
    /// Set on `end`: the end of the last window at or above `off`.
    pub end_s: Option<f64>,
}

#[derive(Debug, Clone)]
struct Active {
    id: u64,
    label: Label,
    start_s: f64,
    peak: f32,
    last_above_end_s: f64,
}

/// The hysteresis tracker.
#[derive(Debug, Clone)]
pub struct EventTracker {
    params: EventParams,
    next_id: u64,
    active: Vec<Active>,
}

impl EventTracker {
    pub fn new(params: EventParams) -> Self {
        Self {
            params,
            next_id: 1,
            active: Vec::new(),
        }
    }

    /// Labels currently active.
    pub fn active_labels(&self) -> impl Iterator<Item = &str> {
        self.active.iter().map(|a| a.label.label.as_str())
    }

    /// Feeds one window (`start_s..end_s` in stream seconds) with its top labels.
    pub fn observe(&mut self, start_s: f64, end_s: f64, top: &[Label], out: &mut Vec<Event>) {
        let p = self.params;
        let score_of = |label: &str| {
            top.iter()
                .find(|l| l.label == label)
                .map(|l| l.score)
                .unwrap_or(0.0)
        };
        let mut i = 0;
        while i < self.active.len() {
            let a = &mut self.active[i];
            let s = score_of(&a.label.label);
            if s >= p.off {
                a.last_above_end_s = end_s;
                if s > a.peak {
                    a.peak = s;
                    let mut label = a.label.clone();
                    label.score = s;
                    out.push(Event {
                        id: a.id,
                        phase: Phase::Update,
                        label,
                        score: s,
                        peak: s,
                        start_s: a.start_s,
                        end_s: None,
                    });
                }
                i += 1;
            } else if end_s - a.last_above_end_s >= p.hold_s {
                let a = self.active.remove(i);
                out.push(Self::end_event(a, s));
            } else {
                i += 1;
            }
        }
        for l in top {
            if l.score >= p.on && !self.active.iter().any(|a| a.label.label == l.label) {
                let id = self.next_id;
                self.next_id += 1;
                self.active.push(Active {
                    id,
                    label: l.clone(),
                    start_s,
                    peak: l.score,
                    last_above_end_s: end_s,
                });
                out.push(Event {
                    id,
                    phase: Phase::Start,
                    label: l.clone(),
                    score: l.score,
                    peak: l.score,
                    start_s,
                    end_s: None,
                });
            }
        }
    }

    /// Ends every active event (end of stream or shutdown).
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        for a in self.active.drain(..) {
            out.push(Self::end_event(a, 0.0));
        }
    }

    fn end_event(a: Active, score: f32) -> Event {
        let mut label = a.label;
        label.score = a.peak;
        Event {
            id: a.id,
            phase: Phase::End,
            label,
            score,
            peak: a.peak,
            start_s: a.start_s,
            end_s: Some(a.last_above_end_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfxtag_core::manifest::Taxonomy;

    fn top(pairs: &[(&str, f32)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|&(l, s)| Label::new(l, Taxonomy::UcsCatId, s))
            .collect()
    }

    /// Runs windows 1 s apart, each 2 s long; returns (window index, phase, label, id).
    fn run(params: EventParams, windows: &[Vec<Label>]) -> Vec<(usize, Phase, String, u64)> {
        let mut t = EventTracker::new(params);
        let mut got = Vec::new();
        for (i, w) in windows.iter().enumerate() {
            let mut out = Vec::new();
            t.observe(i as f64, i as f64 + 2.0, w, &mut out);
            got.extend(out.into_iter().map(|e| (i, e.phase, e.label.label, e.id)));
        }
        let mut out = Vec::new();
        t.finish(&mut out);
        got.extend(
            out.into_iter()
                .map(|e| (windows.len(), e.phase, e.label.label, e.id)),
        );
        got
    }

    const P: EventParams = EventParams {
        on: 0.6,
        off: 0.4,
        hold_s: 2.0,
    };

    #[test]
    fn flicker_between_thresholds_is_one_event() {
        let w = |s| top(&[("DOORWood", s)]);
        let got = run(P, &[w(0.1), w(0.7), w(0.45), w(0.65), w(0.5), w(0.1)]);
        let phases: Vec<_> = got.iter().map(|g| (g.0, g.1)).collect();
        // Start at 1; 0.45 and 0.65 stay above off; 0.65 < peak 0.7 so no update; ends at finish
        // because window 5 is below off but only 1 s (< hold) after the last window above.
        assert_eq!(phases, vec![(1, Phase::Start), (6, Phase::End)]);
    }

    #[test]
    fn ends_after_hold_and_restarts_with_a_new_id() {
        let w = |s| top(&[("DOORWood", s)]);
        let got = run(P, &[w(0.8), w(0.9), w(0.0), w(0.0), w(0.0), w(0.7)]);
        assert_eq!(got[0], (0, Phase::Start, "DOORWood".into(), 1));
        assert_eq!(got[1], (1, Phase::Update, "DOORWood".into(), 1));
        // last above ended at 3.0; window 3 ends at 5.0: 2 s later = hold → end.
        assert_eq!(got[2], (3, Phase::End, "DOORWood".into(), 1));
        assert_eq!(got[3], (5, Phase::Start, "DOORWood".into(), 2));
        assert_eq!(got[4].1, Phase::End);
    }

    #[test]
    fn below_on_never_starts() {
        let got = run(P, &[top(&[("DOORWood", 0.59)]), top(&[("DOORWood", 0.5)])]);
        assert!(got.is_empty());
    }

    #[test]
    fn labels_are_independent() {
        let got = run(
            P,
            &[
                top(&[("DOORWood", 0.7), ("ANMLDog", 0.2)]),
                top(&[("ANMLDog", 0.8), ("DOORWood", 0.5)]),
            ],
        );
        let starts: Vec<_> = got
            .iter()
            .filter(|g| g.1 == Phase::Start)
            .map(|g| (g.2.as_str(), g.3))
            .collect();
        assert_eq!(starts, vec![("DOORWood", 1), ("ANMLDog", 2)]);
        assert_eq!(got.iter().filter(|g| g.1 == Phase::End).count(), 2);
    }

    #[test]
    fn end_reports_peak_and_times() {
        let mut t = EventTracker::new(P);
        let mut out = Vec::new();
        t.observe(10.0, 12.0, &top(&[("DOORWood", 0.9)]), &mut out);
        t.observe(11.0, 13.0, &top(&[]), &mut out);
        t.observe(13.0, 15.0, &top(&[]), &mut out);
        let end = out.last().unwrap();
        assert_eq!(end.phase, Phase::End);
        assert_eq!((end.start_s, end.end_s), (10.0, Some(12.0)));
        assert_eq!(end.peak, 0.9);
        assert_eq!(t.active_labels().count(), 0);
    }
}
