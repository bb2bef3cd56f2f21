//! Cutting songs into fixed-length windows of bars for training.

use crate::music::{Clip, MeterChange, Note, TimeSignature};

/// How [`windows`] cuts a clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowOptions {
    /// Window length in bars.
    pub bars: u32,
    /// Bars between window starts (at least 1).
    pub hop_bars: u32,
    /// Keep windows without any note.
    pub keep_empty: bool,
}

impl WindowOptions {
    pub fn new(bars: u32, hop_bars: u32) -> Self {
        Self {
            bars,
            hop_bars,
            keep_empty: false,
        }
    }
}

/// Windows of `bars` bars starting every `hop_bars` bars, without the empty ones.
/// See [`windows_with`].
pub fn windows(clip: &Clip, bars: u32, hop_bars: u32) -> Vec<Clip> {
    windows_with(clip, WindowOptions::new(bars, hop_bars))
}

/// Windows of `bars` bars starting every `hop_bars` bars, each shifted to start at step 0.
///
/// Only whole windows are produced, and a window never spans a meter change: the clip is cut
/// into sections of constant meter and each section is windowed in its own bars (a clip
/// without meter changes is windowed exactly like [`Clip::window`]). Each window carries its
/// section's time signature and the tempo in force at its start. Notes crossing a window edge
/// are cut to the window. Empty windows are dropped unless `keep_empty`.
pub fn windows_with(clip: &Clip, options: WindowOptions) -> Vec<Clip> {
    let WindowOptions {
        bars,
        hop_bars,
        keep_empty,
    } = options;
    if bars == 0 {
        return Vec::new();
    }
    let hop_bars = hop_bars.max(1);
    let mut notes: Vec<&Note> = clip.notes.iter().collect();
    notes.sort_by_key(|n| n.start);
    let mut out = Vec::new();
    for (lo, hi, time_signature) in meter_sections(clip) {
        let spb = time_signature.steps_per_bar();
        let section_bars = (hi - lo) / spb;
        let mut first = 0;
        while first + bars <= section_bars {
            let start = lo + first * spb;
            let end = start + bars * spb;
            let window = cut(clip, &notes, start, end, time_signature, bars);
            if keep_empty || !window.notes.is_empty() {
                out.push(window);
            }
            first += hop_bars;
        }
    }
    out
}

/// `(first step, end step, meter)` of each stretch of constant meter. The clip ends at the
/// later of `clip.steps()` and the last note end, rounded up to a whole bar of the last meter.
fn meter_sections(clip: &Clip) -> Vec<(u32, u32, TimeSignature)> {
    let mut changes: Vec<MeterChange> = clip.meter_changes.to_vec();
    changes.sort_by_key(|c| c.step);
    let mut starts = vec![(0u32, clip.time_signature)];
    for c in changes {
        match starts.last_mut() {
            Some(last) if last.0 == c.step => last.1 = c.time_signature,
            _ => starts.push((c.step, c.time_signature)),
        }
    }
    let last_note_end = clip.notes.iter().map(Note::end).max().unwrap_or(0);
    let (last_start, last_meter) = *starts.last().expect("at least the initial meter");
    let spb = last_meter.steps_per_bar();
    let end = clip
        .steps()
        .max(last_note_end)
        .max(last_start)
        .saturating_sub(last_start)
        .div_ceil(spb)
        * spb
        + last_start;
    (0..starts.len())
        .map(|i| {
            let hi = starts.get(i + 1).map_or(end, |next| next.0);
            (starts[i].0, hi, starts[i].1)
        })
        .filter(|(lo, hi, _)| hi > lo)
        .collect()
}

/// Steps `lo..hi` of `clip` as a clip of `bars` bars in `time_signature`.
fn cut(
    clip: &Clip,
    notes_by_start: &[&Note],
    lo: u32,
    hi: u32,
    time_signature: TimeSignature,
    bars: u32,
) -> Clip {
    // Notes are sorted by start: everything from the first note starting at or after `hi` on
    // is outside; before it, keep notes that reach into the window.
    let upto = notes_by_start.partition_point(|n| n.start < hi);
    let notes = notes_by_start[..upto]
        .iter()
        .filter(|n| n.end() > lo)
        .map(|n| n.cut_to(lo, hi))
        .collect();
    let tempo = clip
        .tempo_changes
        .iter()
        .filter(|t| t.step <= lo)
        .max_by_key(|t| t.step)
        .map_or(clip.tempo, |t| t.bpm);
    let mut window = Clip {
        notes,
        tracks: clip.tracks.clone(),
        tempo,
        time_signature,
        bars,
        tempo_changes: Vec::new(),
        meter_changes: Vec::new(),
    };
    window.sort_notes();
    window
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip_with_notes(bars: u32, notes: &[(u32, u32)]) -> Clip {
        let mut clip = Clip::new(bars);
        for &(start, length) in notes {
            clip.notes.push(Note::new(start, 60, length, 100, 0));
        }
        clip
    }

    #[test]
    fn matches_clip_window_without_meter_changes() {
        let clip = clip_with_notes(8, &[(0, 4), (14, 6), (40, 30), (100, 4)]);
        let got = windows_with(
            &clip,
            WindowOptions {
                bars: 2,
                hop_bars: 1,
                keep_empty: true,
            },
        );
        assert_eq!(got.len(), 7);
        for (i, w) in got.iter().enumerate() {
            let mut expected = clip.window(i as u32, 2);
            expected.sort_notes();
            assert_eq!(*w, expected, "window {i}");
        }
    }

    #[test]
    fn drops_empty_windows_and_partial_tails() {
        let clip = clip_with_notes(5, &[(0, 4), (70, 2)]);
        let got = windows(&clip, 2, 2);
        // Windows at bars 0 and 2; bar 4 alone is not a whole window; bars 2-3 are empty.
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].notes.len(), 1);
    }

    #[test]
    fn windows_never_span_a_meter_change() {
        let mut clip = clip_with_notes(2, &[(0, 32), (32, 24)]);
        clip.meter_changes.push(MeterChange {
            step: 32,
            time_signature: TimeSignature::new(3, 4),
        });
        let got = windows(&clip, 1, 1);
        // Two 4/4 bars, then 24 steps = two 3/4 bars.
        assert_eq!(got.len(), 4);
        assert_eq!(got[1].time_signature, TimeSignature::FOUR_FOUR);
        assert_eq!(got[2].time_signature, TimeSignature::new(3, 4));
        assert_eq!(got[3].notes, vec![Note::new(0, 60, 12, 100, 0)]);
    }
}
