//! Monophonic melodies as MusicVAE tokens: one token per 16th note, 130 classes.
//!
//! - `0..=127`: a note starts at this step with this MIDI pitch (ending the previous one),
//! - [`REST`] (128): no note sounds,
//! - [`HOLD`] (129): the sounding note goes on.
//!
//! Melodies come from the track with [`TrackRole::Melody`]. Where that line has chords (two
//! notes starting together, or a note starting under another), the top note is kept and the
//! window is counted in [`MelodyWindows::chord_windows`]. Windows are 2 bars of 4/4 (32 steps);
//! 2/4 sections are cut into 4 bars of 2/4 (the same 32 steps, i.e. pairs of 2/4 bars read
//! as one 4/4 bar); windows of other meters are skipped and counted. All windows of a dataset
//! are kept in one flat token buffer `[windows, 32]` (the seed paper's single cached tensor).

use anyhow::{Result, bail};

use super::segment::{WindowOptions, windows_with};
use super::{Clip, Note, PLAIN_VELOCITY, TimeSignature, TrackRole};

/// Token classes: 128 pitches, rest, hold.
pub const CLASSES: usize = 130;
/// "No note sounds at this step."
pub const REST: u8 = 128;
/// "The note of the previous step goes on."
pub const HOLD: u8 = 129;
/// Steps of one MusicVAE window: 2 bars of 4/4 in 16ths.
pub const WINDOW_STEPS: usize = 32;

/// The monophonic top line of `notes` (any tracks, any order) and whether chords were reduced.
/// Each note is cut where the next (higher-or-only) onset starts.
pub fn top_line(notes: &[Note]) -> (Vec<Note>, bool) {
    let mut sorted: Vec<Note> = notes.iter().filter(|n| n.length > 0).copied().collect();
    // By start, highest pitch first.
    sorted.sort_by_key(|n| (n.start, std::cmp::Reverse(n.pitch)));
    let mut line: Vec<Note> = Vec::with_capacity(sorted.len());
    let mut had_chords = false;
    for n in sorted {
        if let Some(last) = line.last_mut() {
            if last.start == n.start {
                had_chords = true; // a lower note of the same onset
                continue;
            }
            if last.end() > n.start {
                if n.pitch < last.pitch && last.end() >= n.end() {
                    // A lower note under a sounding higher one: part of a chord.
                    had_chords = true;
                    continue;
                }
                if n.pitch != last.pitch {
                    had_chords = true;
                }
                last.length = n.start - last.start;
            }
        }
        line.push(n);
    }
    (line, had_chords)
}

/// Tokens of a monophonic `line` over `steps` steps from step 0 (notes starting at or after
/// `steps` are ignored, notes are cut at `steps`). Overlapping notes: a new onset ends the
/// previous note. Pitches outside 0–127 cannot occur (`u8` MIDI pitches above 127 are errors).
pub fn tokenize(line: &[Note], steps: usize) -> Result<Vec<u8>> {
    let mut tokens = vec![REST; steps];
    let mut sorted: Vec<&Note> = line.iter().collect();
    sorted.sort_by_key(|n| n.start);
    for n in sorted {
        if n.pitch > 127 {
            bail!("MIDI pitch {} is outside 0-127", n.pitch);
        }
        let s0 = n.start as usize;
        if s0 >= steps || n.length == 0 {
            continue;
        }
        tokens[s0] = n.pitch;
        let end = (n.start + n.length).min(steps as u32) as usize;
        for t in tokens.iter_mut().take(end).skip(s0 + 1) {
            *t = HOLD;
        }
    }
    clean_holds(&mut tokens);
    Ok(tokens)
}

/// Turn every HOLD that holds nothing (at the start, or after a REST) into a REST, the way
/// [`detokenize`] reads it: tokenized melodies and decoded model outputs then have one spelling.
pub fn clean_holds(tokens: &mut [u8]) {
    let mut sounding = false;
    for t in tokens {
        match *t {
            REST => sounding = false,
            HOLD if !sounding => *t = REST,
            HOLD => {}
            _ => sounding = true,
        }
    }
}

/// Notes (track 0, `velocity`) of `tokens`: each pitch token starts a note that lasts through
/// the following HOLD tokens. A HOLD with nothing sounding is a rest.
pub fn detokenize(tokens: &[u8], velocity: u8) -> Vec<Note> {
    let mut notes: Vec<Note> = Vec::new();
    let mut sounding = false;
    for (step, &t) in tokens.iter().enumerate() {
        match t {
            REST => sounding = false,
            HOLD => {
                if sounding && let Some(last) = notes.last_mut() {
                    last.length += 1;
                }
            }
            p if p <= 127 => {
                notes.push(Note::new(step as u32, p, 1, velocity, 0));
                sounding = true;
            }
            _ => sounding = false,
        }
    }
    notes
}

/// A one-track 4/4 clip at 120 BPM holding `tokens` (whole bars, at least one).
pub fn tokens_to_clip(tokens: &[u8]) -> Clip {
    let mut clip = Clip::new((tokens.len() as u32).div_ceil(16).max(1));
    clip.tracks = vec![super::Track::new("Melody", TrackRole::Melody, 0)];
    clip.notes = detokenize(tokens, PLAIN_VELOCITY);
    clip
}

/// The melody of `clip`: the notes of its melody-role track; without one, of its non-drum
/// track with the highest mean pitch (a plain MIDI file's top line). Errors when the clip has
/// no pitched track.
pub fn melody_notes(clip: &Clip) -> Result<Vec<Note>> {
    Ok(melody_track(clip)?.1)
}

/// The track [`melody_notes`] takes (its index, its notes, and whether it was guessed by pitch
/// because no track has the melody role).
pub fn melody_track(clip: &Clip) -> Result<(u16, Vec<Note>, bool)> {
    if let Some(t) = clip.track_with_role(TrackRole::Melody) {
        return Ok((t, clip.track_notes(t).copied().collect(), false));
    }
    let mut best: Option<(u16, f64)> = None;
    for (i, track) in clip.tracks.iter().enumerate() {
        if track.is_drums() {
            continue;
        }
        let pitches: Vec<f64> = clip.track_notes(i as u16).map(|n| n.pitch as f64).collect();
        if pitches.is_empty() {
            continue;
        }
        let mean = pitches.iter().sum::<f64>() / pitches.len() as f64;
        if best.is_none_or(|(_, m)| mean > m) {
            best = Some((i as u16, mean));
        }
    }
    match best {
        Some((t, _)) => Ok((
            t,
            clip.track_notes(t).copied().collect(),
            clip.tracks.len() > 1,
        )),
        None => bail!("the clip has no pitched notes to take a melody from"),
    }
}

/// What [`clip_windows`] (or `data::melody_windows` over a dataset) found.
#[derive(Clone, Debug)]
pub struct MelodyWindows {
    /// 16ths per window ([`WINDOW_STEPS`] for 2 bars).
    pub steps: usize,
    /// `[windows, steps]` tokens, row-major.
    pub tokens: Vec<u8>,
    /// Windows whose melody had chords (the top note was kept).
    pub chord_windows: usize,
    /// Windows made of four 2/4 bars.
    pub two_four_windows: usize,
    /// Bars skipped because their meter is neither 4/4 nor 2/4.
    pub skipped_bars: usize,
    /// Windows dropped because the melody does not play in them.
    pub silent_windows: usize,
}

impl Default for MelodyWindows {
    fn default() -> Self {
        Self::empty(WINDOW_STEPS)
    }
}

impl MelodyWindows {
    /// No windows yet, of `steps` sixteenths each.
    pub fn empty(steps: usize) -> Self {
        Self {
            steps: steps.max(1),
            tokens: Vec::new(),
            chord_windows: 0,
            two_four_windows: 0,
            skipped_bars: 0,
            silent_windows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len() / self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Tokens of window `i`.
    pub fn window(&self, i: usize) -> &[u8] {
        &self.tokens[i * self.steps..(i + 1) * self.steps]
    }

    /// Lowest and highest pitch over all windows.
    pub fn pitch_span(&self) -> Option<(u8, u8)> {
        let pitches = self.tokens.iter().filter(|&&t| t <= 127);
        Some((*pitches.clone().min()?, *pitches.max()?))
    }

    /// Adds `other`'s windows and counts after these.
    pub fn append(&mut self, other: MelodyWindows) {
        self.tokens.extend(other.tokens);
        self.chord_windows += other.chord_windows;
        self.two_four_windows += other.two_four_windows;
        self.skipped_bars += other.skipped_bars;
        self.silent_windows += other.silent_windows;
    }
}

/// The 32-step (2-bar) windows of one clip's melody (see [`clip_windows_of`]).
pub fn clip_windows(clip: &Clip, hop_bars: u32) -> Result<MelodyWindows> {
    clip_windows_of(clip, 2, hop_bars)
}

/// The windows of `bars` bars of 4/4 (`16·bars` steps) of one clip's melody, starting every
/// `hop_bars` bars of 4/4 (every `2·hop_bars` bars of 2/4, read in pairs). Other meters are
/// skipped and counted.
pub fn clip_windows_of(clip: &Clip, bars: u32, hop_bars: u32) -> Result<MelodyWindows> {
    let melody = melody_notes(clip)?;
    let mut only_melody = clip.clone();
    only_melody.notes = melody;
    let steps = 16 * bars.max(1) as usize;
    let mut out = MelodyWindows::empty(steps);
    let two_four = TimeSignature::new(2, 4);
    let hop = hop_bars.max(1);
    for (bars, hop, meter) in [
        (bars, hop, TimeSignature::FOUR_FOUR),
        (2 * bars, 2 * hop, two_four),
    ] {
        let opts = WindowOptions {
            bars,
            hop_bars: hop,
            keep_empty: true,
        };
        for w in windows_with(&only_melody, opts) {
            if w.time_signature != meter {
                if meter == TimeSignature::FOUR_FOUR
                    && w.time_signature != two_four
                    && w.steps_per_bar() > 0
                {
                    // Count each skipped bar once (hop 1 bar ⇒ bars overlap; count by hop).
                    out.skipped_bars += hop as usize;
                }
                continue;
            }
            let (line, chords) = top_line(&w.notes);
            if line.is_empty() {
                out.silent_windows += 1;
                continue;
            }
            out.tokens.extend(tokenize(&line, steps)?);
            out.chord_windows += chords as usize;
            out.two_four_windows += (meter == two_four) as usize;
        }
    }
    Ok(out)
}

/// `tokens` transposed by `shift` semitones (rests and holds unchanged); `None` when a pitch
/// would leave `lo..=hi`.
pub fn transpose_tokens(tokens: &[u8], shift: i32, lo: u8, hi: u8) -> Option<Vec<u8>> {
    tokens
        .iter()
        .map(|&t| {
            if t > 127 {
                return Some(t);
            }
            let p = t as i32 + shift;
            (lo as i32..=hi as i32).contains(&p).then_some(p as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_chords_keep_the_top() {
        let line = vec![
            Note::new(0, 60, 4, 90, 0),
            Note::new(4, 62, 1, 90, 0),
            Note::new(8, 64, 8, 90, 0),
            Note::new(16, 64, 2, 90, 0),
        ];
        let tokens = tokenize(&line, 32).unwrap();
        assert_eq!(&tokens[..6], &[60, HOLD, HOLD, HOLD, 62, REST]);
        assert_eq!(tokens[16], 64); // a repeated pitch is a new onset
        assert_eq!(detokenize(&tokens, 90), line);
        let chord = vec![
            Note::new(0, 60, 4, 90, 0),
            Note::new(0, 67, 4, 90, 0),
            Note::new(0, 64, 4, 90, 0),
        ];
        let (top, had) = top_line(&chord);
        assert!(had);
        assert_eq!(top, vec![Note::new(0, 67, 4, 90, 0)]);
        assert_eq!(transpose_tokens(&tokens, 2, 0, 127).unwrap()[0], 62);
        assert!(transpose_tokens(&tokens, 70, 0, 127).is_none());
    }
}
