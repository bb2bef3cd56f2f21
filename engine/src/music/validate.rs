//! One validation for every clip, wherever it comes from (a MIDI import, a saved session, the
//! editor, a recording, a model's result): the same limits everywhere, so that any clip the
//! program accepts it can also save and reopen. Hostile values are repaired or the note dropped,
//! each kind of repair reported once as a warning; nothing here panics.

use super::clip::{Clip, Note, TimeSignature, Track, TrackRole};

/// Longest clip, in bars of its time signature (also the MIDI importer's limit).
pub const MAX_BARS: u32 = 10_000;
/// Slowest tempo a clip may have, in quarter notes per minute.
pub const MIN_TEMPO: f64 = 1.0;
/// Fastest tempo: one quarter note per microsecond, the fastest a MIDI file can say.
pub const MAX_TEMPO: f64 = 60_000_000.0;
/// A note's track is a `u16` index.
pub const MAX_TRACKS: usize = u16::MAX as usize + 1;
/// A track's MIDI channel is 0–15.
pub const MAX_CHANNEL: u8 = 15;

fn valid_tempo(bpm: f64) -> bool {
    bpm.is_finite() && (MIN_TEMPO..=MAX_TEMPO).contains(&bpm)
}

/// Counts of repairs of one kind, turned into one warning each.
#[derive(Default)]
struct Tally {
    warnings: Vec<String>,
}

impl Tally {
    fn note(&mut self, count: usize, what: &str) {
        if count > 0 {
            let notes = if count == 1 { "note" } else { "notes" };
            self.warnings.push(format!("{count} {notes} {what}"));
        }
    }
}

impl Clip {
    /// Bring the clip inside the limits every clip obeys; returns one warning per kind of
    /// repair (empty for a valid clip, which is left exactly as it was):
    /// - a meter with a zero becomes 4/4, a tempo outside [`MIN_TEMPO`]–[`MAX_TEMPO`] (or not a
    ///   number) 120 BPM; damaged or out-of-clip tempo and meter changes are dropped;
    /// - 0 bars become as many as the notes need (at least 1), more than [`MAX_BARS`] are cut;
    /// - a clip without tracks gets one, tracks beyond [`MAX_TRACKS`] go, channels above 15 are 15;
    /// - notes with a pitch above 127, a track that does not exist or a start past the clip's
    ///   end are dropped; velocity is clamped to 1–127, a length of 0 becomes 1 and a length that
    ///   overflows the step count is cut at the clip's end (a note may otherwise hang past the
    ///   end: playback cuts it there).
    pub fn sanitize(&mut self) -> Vec<String> {
        let mut tally = Tally::default();
        if !self.time_signature.is_valid() {
            tally.warnings.push(format!(
                "time signature {} is not a meter; using 4/4",
                self.time_signature
            ));
            self.time_signature = TimeSignature::FOUR_FOUR;
        }
        if !valid_tempo(self.tempo) {
            tally.warnings.push(format!(
                "tempo {} is outside {MIN_TEMPO}–{MAX_TEMPO} BPM; using 120",
                self.tempo
            ));
            self.tempo = 120.0;
        }
        if self.tracks.is_empty() {
            tally
                .warnings
                .push("the clip had no track; added one".into());
            self.tracks
                .push(Track::new("Piano", TrackRole::Accompaniment, 0));
        }
        if self.tracks.len() > MAX_TRACKS {
            tally.warnings.push(format!(
                "{} tracks, more than {MAX_TRACKS}; the rest are dropped",
                self.tracks.len()
            ));
            self.tracks.truncate(MAX_TRACKS);
        }
        let mut channels = 0;
        for track in &mut self.tracks {
            if track.channel > MAX_CHANNEL {
                track.channel = MAX_CHANNEL;
                channels += 1;
            }
        }
        if channels > 0 {
            tally
                .warnings
                .push(format!("{channels} tracks had a MIDI channel above 16"));
        }
        let spb = self.steps_per_bar();
        if self.bars == 0 {
            let end = self.notes.iter().map(Note::end).max().unwrap_or(0);
            self.bars = end.div_ceil(spb).clamp(1, MAX_BARS);
            tally
                .warnings
                .push(format!("the clip had 0 bars; now {}", self.bars));
        }
        if self.bars > MAX_BARS {
            tally.warnings.push(format!(
                "{} bars, more than {MAX_BARS}; cut to {MAX_BARS}",
                self.bars
            ));
            self.bars = MAX_BARS;
        }
        let steps = self.steps();
        let tracks = self.tracks.len();
        let (mut pitch, mut track, mut late, mut velocity, mut empty, mut cut) = (0, 0, 0, 0, 0, 0);
        self.notes.retain_mut(|n| {
            if n.pitch > 127 {
                pitch += 1;
                return false;
            }
            if n.track as usize >= tracks {
                track += 1;
                return false;
            }
            if n.start >= steps {
                late += 1;
                return false;
            }
            if !(1..=127).contains(&n.velocity) {
                velocity += 1;
                n.velocity = n.velocity.clamp(1, 127);
            }
            if n.length == 0 {
                empty += 1;
                n.length = 1;
            }
            // A note may hang past the clip's end (playback cuts it there), but not past the
            // end of the step count.
            if n.start.checked_add(n.length).is_none() {
                cut += 1;
                n.length = steps - n.start;
            }
            true
        });
        tally.note(pitch, "with a pitch above 127 dropped");
        tally.note(
            track,
            &format!("on a track the clip does not have (of {tracks}) dropped"),
        );
        tally.note(
            late,
            &format!("starting after the clip's end (step {steps}) dropped"),
        );
        tally.note(velocity, "with a velocity outside 1–127 clamped");
        tally.note(empty, "of length 0 made one step long");
        tally.note(cut, "with a length past any step cut at the clip's end");
        let before = (self.tempo_changes.len(), self.meter_changes.len());
        self.tempo_changes
            .retain(|c| c.step < steps && valid_tempo(c.bpm));
        self.meter_changes
            .retain(|c| c.step < steps && c.time_signature.is_valid());
        let dropped = before.0 - self.tempo_changes.len() + before.1 - self.meter_changes.len();
        if dropped > 0 {
            tally.warnings.push(format!(
                "{dropped} damaged or out-of-clip tempo or meter changes dropped"
            ));
        }
        tally.warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::{MeterChange, TempoChange, example_clip};

    #[test]
    fn a_valid_clip_is_left_exactly_as_it_was() {
        let clip = example_clip();
        let mut copy = clip.clone();
        assert_eq!(copy.sanitize(), Vec::<String>::new());
        assert_eq!(copy, clip);
    }

    #[test]
    fn hostile_values_are_repaired_or_dropped_with_one_warning_each() {
        let mut clip = Clip::new(2);
        clip.time_signature = TimeSignature {
            numerator: 4,
            denominator: 0,
        };
        clip.tempo = f64::NAN;
        clip.tracks[0].channel = 200;
        clip.notes = vec![
            Note {
                start: 0,
                pitch: 200,
                length: 1,
                velocity: 100,
                track: 0,
            },
            Note {
                start: 1,
                pitch: 60,
                length: u32::MAX,
                velocity: 0,
                track: 0,
            },
            Note {
                start: 2,
                pitch: 61,
                length: 0,
                velocity: 255,
                track: 0,
            },
            Note::new(3, 62, 1, 100, 9),
            Note::new(32, 63, 1, 100, 0),
        ];
        clip.tempo_changes = vec![
            TempoChange { step: 4, bpm: -3.0 },
            TempoChange { step: 8, bpm: 90.0 },
        ];
        clip.meter_changes = vec![MeterChange {
            step: 16,
            time_signature: TimeSignature {
                numerator: 0,
                denominator: 4,
            },
        }];
        let warnings = clip.sanitize();
        assert_eq!(clip.time_signature, TimeSignature::FOUR_FOUR);
        assert_eq!(clip.tempo, 120.0);
        assert_eq!(clip.tracks[0].channel, 15);
        assert_eq!(
            clip.notes,
            vec![Note::new(1, 60, 31, 1, 0), Note::new(2, 61, 1, 127, 0),]
        );
        assert_eq!(clip.tempo_changes, vec![TempoChange { step: 8, bpm: 90.0 }]);
        assert!(clip.meter_changes.is_empty());
        for expected in [
            "time signature 4/0",
            "tempo NaN",
            "MIDI channel",
            "1 note with a pitch above 127",
            "1 note on a track",
            "1 note starting after",
            "2 notes with a velocity",
            "1 note of length 0",
            "1 note with a length past any step",
            "2 damaged",
        ] {
            assert!(
                warnings.iter().any(|w| w.contains(expected)),
                "{expected:?} in {warnings:?}"
            );
        }
        // Once repaired, the clip is valid.
        assert!(clip.clone().sanitize().is_empty());
    }

    #[test]
    fn bars_and_tracks_are_brought_inside_the_limits() {
        let mut clip = Clip::new(0);
        clip.tracks.clear();
        clip.notes = vec![Note::new(40, 60, 4, 100, 0)];
        let warnings = clip.sanitize();
        assert_eq!((clip.bars, clip.tracks.len()), (3, 1));
        assert_eq!(warnings.len(), 2, "{warnings:?}");

        let mut huge = Clip::new(u32::MAX);
        huge.notes = vec![Note::new(u32::MAX - 1, 60, u32::MAX, 100, 0)];
        let warnings = huge.sanitize();
        assert_eq!(huge.bars, MAX_BARS);
        assert!(huge.notes.is_empty(), "the note starts past bar {MAX_BARS}");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
}
