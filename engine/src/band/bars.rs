//! Bars of notes per model track, their rolls, and notes back from predicted rolls: the data
//! side of the band model ([`crate::models::band`]).

use crate::models::band::{Config, TrackSpec};
use crate::music::{Clip, Key, Note, TrackRole};

/// One note inside a bar: (start step, MIDI pitch, length in steps), cut to the bar.
pub type BarNote = (u8, u8, u8);

/// At most this many notes of one track in one bar are read (bad input stays bounded).
pub const MAX_NOTES_PER_BAR: usize = 256;

/// The model track that hears `role`: the same role, else bass → accompaniment; drums and
/// roles the model has no track for are not heard.
pub fn model_track(cfg: &Config, role: TrackRole) -> Option<usize> {
    cfg.track_of(role).or(match role {
        TrackRole::Bass => cfg.track_of(TrackRole::Accompaniment),
        _ => None,
    })
}

/// The notes of a one-bar clip per model track (`None` where the clip has no track for it),
/// with notes clamped into the bar of `cfg.steps` steps and at most [`MAX_NOTES_PER_BAR`] per
/// track.
pub fn bar_tracks(bar: &Clip, cfg: &Config) -> Vec<Option<Vec<BarNote>>> {
    let mut out: Vec<Option<Vec<BarNote>>> = vec![None; cfg.tracks.len()];
    for (i, track) in bar.tracks.iter().enumerate() {
        if let Some(k) = model_track(cfg, track.role) {
            out[k].get_or_insert_with(Vec::new);
            let notes = bar.notes.iter().filter(|n| n.track as usize == i);
            for n in notes {
                let list = out[k].as_mut().expect("inserted above");
                if list.len() >= MAX_NOTES_PER_BAR {
                    break;
                }
                if (n.start as usize) < cfg.steps && n.length > 0 {
                    let len = (n.length as usize).min(cfg.steps - n.start as usize);
                    list.push((n.start as u8, n.pitch.min(127), len as u8));
                }
            }
        }
    }
    out
}

/// Every bar of a song's clip as notes per model track (bars cut with [`Clip::window`], so a
/// note held over a barline starts again at step 0 of the next bar, as in the evaluation).
/// `None` for clips whose bars are not `cfg.steps` long or that change meter.
pub fn song_bars(clip: &Clip, cfg: &Config) -> Option<Vec<Vec<Option<Vec<BarNote>>>>> {
    if clip.steps_per_bar() as usize != cfg.steps || !clip.meter_changes.is_empty() {
        return None;
    }
    Some(
        (0..clip.bars)
            .map(|b| bar_tracks(&clip.window(b, 1), cfg))
            .collect(),
    )
}

/// Draw notes transposed by `shift` into `out` (`[2, steps, pitches]` of `spec`, zeroed
/// first); notes leaving the window are dropped.
pub fn render(notes: &[BarNote], spec: &TrackSpec, steps: usize, shift: i32, out: &mut [f32]) {
    out.fill(0.0);
    let plane = steps * spec.pitches;
    for &(start, pitch, len) in notes {
        let offset = pitch as i32 + shift - spec.pitch_lo as i32;
        if offset < 0 || offset >= spec.pitches as i32 || start as usize >= steps {
            continue;
        }
        let (o, s0) = (offset as usize, start as usize);
        out[s0 * spec.pitches + o] = 1.0;
        for s in s0..(s0 + len.max(1) as usize).min(steps) {
            out[plane + s * spec.pitches + o] = 1.0;
        }
    }
}

/// How predicted probabilities become notes.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// Odds multiplier of every onset (1: as trained; 2: twice the odds, more notes).
    pub density: f32,
    /// Keep onsets in this key only.
    pub key: Option<Key>,
    /// At most this many notes per bar and track.
    pub max_notes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            density: 1.0,
            key: None,
            max_notes: 24,
        }
    }
}

/// Notes of one track's bar from onset/sustain probabilities (`[2, steps, pitches]`): an onset
/// where its probability, times the density odds, passes one half (the most likely ones first,
/// at most `max_notes`), held while the sustain probability stays above one half and no new
/// onset of that pitch comes. A melody track is decoded as one line instead
/// (`monophonic_notes`).
pub fn notes_from_probs(
    probs: &[f32],
    spec: &TrackSpec,
    steps: usize,
    opts: &DecodeOptions,
    track: u16,
) -> Vec<Note> {
    let plane = steps * spec.pitches;
    let density = if opts.density.is_finite() && opts.density > 0.0 {
        opts.density
    } else {
        1.0
    };
    if spec.role == TrackRole::Melody {
        return monophonic_notes(probs, spec, steps, opts, density, track);
    }
    let mut onsets: Vec<(f32, usize, usize)> = Vec::new();
    for s in 0..steps {
        for p in 0..spec.pitches {
            let pitch = spec.pitch_lo as usize + p;
            if opts.key.is_some_and(|k| !k.contains(pitch as u8)) {
                continue;
            }
            let prob = probs[s * spec.pitches + p].clamp(0.0, 1.0);
            let odds = density * prob / (1.0 - prob).max(1e-6);
            if odds > 1.0 {
                onsets.push((prob, s, p));
            }
        }
    }
    onsets.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    onsets.truncate(opts.max_notes);
    onsets.sort_by_key(|&(_, s, p)| (s, p));
    let mut notes: Vec<Note> = Vec::with_capacity(onsets.len());
    for &(prob, s, p) in &onsets {
        let mut end = s + 1;
        while end < steps
            && probs[plane + end * spec.pitches + p] > 0.5
            && !onsets.iter().any(|&(_, s2, p2)| s2 == end && p2 == p)
        {
            end += 1;
        }
        notes.push(decoded_note(spec, s, p, end, prob, track));
    }
    notes
}

/// One line: a note starts at a step where the expected number of onsets (their probabilities
/// summed over the allowed pitches), times the density odds, passes one half, on the most
/// likely pitch (a melody's probability is spread over the pitches it might take, so no single
/// pitch would pass on its own); it is held while its sustain stays above one half, until the
/// next onset.
fn monophonic_notes(
    probs: &[f32],
    spec: &TrackSpec,
    steps: usize,
    opts: &DecodeOptions,
    density: f32,
    track: u16,
) -> Vec<Note> {
    let plane = steps * spec.pitches;
    let mut starts: Vec<(usize, usize, f32)> = Vec::new();
    for s in 0..steps {
        let mut mass = 0.0f32;
        let mut best: Option<(usize, f32)> = None;
        for p in 0..spec.pitches {
            if opts
                .key
                .is_some_and(|k| !k.contains(spec.pitch_lo.saturating_add(p as u8)))
            {
                continue;
            }
            let prob = probs[s * spec.pitches + p].clamp(0.0, 1.0);
            mass += prob;
            if best.is_none_or(|(_, b)| prob > b) {
                best = Some((p, prob));
            }
        }
        let m = mass.min(0.999_999);
        if let Some((p, prob)) = best
            && density * m / (1.0 - m) > 1.0
        {
            starts.push((s, p, prob));
        }
    }
    starts.truncate(opts.max_notes);
    let mut notes = Vec::with_capacity(starts.len());
    for (i, &(s, p, prob)) in starts.iter().enumerate() {
        let next = starts.get(i + 1).map_or(steps, |n| n.0);
        let mut end = s + 1;
        while end < next && probs[plane + end * spec.pitches + p] > 0.5 {
            end += 1;
        }
        notes.push(decoded_note(spec, s, p, end, prob, track));
    }
    notes
}

/// The note of window pitch `p` from step `s` to `end`, louder the surer its onset.
fn decoded_note(spec: &TrackSpec, s: usize, p: usize, end: usize, prob: f32, track: u16) -> Note {
    let velocity = (60.0 + 40.0 * prob).round().clamp(1.0, 127.0) as u8;
    Note::new(
        s as u32,
        spec.pitch_lo + p as u8,
        (end - s) as u32,
        velocity,
        track,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_decode_round_trip() {
        let cfg = Config::tiny();
        let spec = &cfg.tracks[1];
        let notes = vec![(0u8, 48u8, 8u8), (8, 52, 8), (8, 55, 4)];
        let mut roll = vec![0.0; cfg.bar_cells(1)];
        render(&notes, spec, cfg.steps, 0, &mut roll);
        let back = notes_from_probs(&roll, spec, cfg.steps, &DecodeOptions::default(), 3);
        let got: Vec<BarNote> = back
            .iter()
            .map(|n| (n.start as u8, n.pitch, n.length as u8))
            .collect();
        assert_eq!(got, notes);
        assert!(back.iter().all(|n| n.track == 3));
    }

    #[test]
    fn a_melody_is_one_line_even_when_its_probability_is_spread() {
        let cfg = Config::tiny();
        let spec = &cfg.tracks[0];
        assert_eq!(spec.role, TrackRole::Melody);
        let pitches = spec.pitches;
        let mut probs = vec![0.0; 2 * cfg.steps * pitches];
        // Step 0: 0.3 on each of three pitches (none passes alone, together they do); the
        // middle one is held for 3 steps. Step 8: a clear onset. Step 12: too little mass.
        for (p, pr) in [(10, 0.3), (12, 0.35), (14, 0.3), (20, 0.05)] {
            probs[p] = pr;
        }
        for s in 1..4 {
            probs[cfg.steps * pitches + s * pitches + 12] = 0.9;
        }
        probs[8 * pitches + 5] = 0.8;
        probs[12 * pitches + 7] = 0.2;
        let notes = notes_from_probs(&probs, spec, cfg.steps, &DecodeOptions::default(), 0);
        let got: Vec<(u32, u8, u32)> = notes.iter().map(|n| (n.start, n.pitch, n.length)).collect();
        let lo = spec.pitch_lo;
        assert_eq!(got, vec![(0, lo + 12, 4), (8, lo + 5, 1)]);
    }
}
