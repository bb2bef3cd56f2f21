//! Part-fit metrics: how the notes a row generated fit the part they belong to, per sample.
//!
//! Each metric is computed per part — all pitched notes of the region together (`all`), and
//! each role the region asks for (`melody`, `accompaniment`, `bass`: the notes on tracks of
//! that role) — from the generated notes G, the true hole T of the same part, the same part's
//! given context C, and the other notes sounding with G:
//!
//! | metric | what | goal |
//! |---|---|---|
//! | density ratio | \|G\| / \|T\| | like the truth (1) |
//! | voices (mean) | notes sounding at once, averaged over the steps where G sounds | like the truth |
//! | voices (max) | the most notes sounding at once | like the truth |
//! | in context register | share of G inside the pitch range of C | like the truth |
//! | note-length distance | total variation between G's and T's note-length classes (Yang & Lerch's 12) | lower |
//! | onset-position distance | total variation between G's and T's onset positions in the bar | lower |
//! | in key | share of G in the key estimated from the whole context | like the truth |
//! | consonant with other parts | share of the time G overlaps other pitched notes at a consonant interval class (unison, thirds, fourth, fifth, sixths) | like the truth |
//! | leap from last given note | semitones from the last given melody note before the region to the first generated one (melody only) | like the truth |
//! | given notes kept | share of the context's notes found unchanged in the output (`all` only) | higher |
//! | on the right track | share of G on a region track the window has, not a new one (`all` only) | higher |
//!
//! "Like the truth" metrics are judged by the distance to the true hole's value of the same
//! window (real music is not all in key, nor one voice everywhere). A metric is `None` where it
//! has no meaning (no generated notes, an empty context part, no previous melody note).

use serde::{Deserialize, Serialize};

use super::{Case, is_drums, role_of};
use crate::metrics::features::{NOTE_LENGTH_CLASSES, note_length_class};
use crate::music::{Clip, Key, Note, TrackRole};

/// How a metric is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    Higher,
    Lower,
    /// Closer to the true hole's value of the same window is better.
    LikeTruth,
}

/// One part-fit metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    DensityRatio,
    VoicesMean,
    VoicesMax,
    InContextRegister,
    NoteLengthDistance,
    OnsetPositionDistance,
    InKey,
    Consonance,
    LeapFromGiven,
    GivenKept,
    RightTrack,
}

impl Metric {
    /// The metrics of every part.
    pub const PER_PART: [Metric; 8] = [
        Metric::DensityRatio,
        Metric::VoicesMean,
        Metric::VoicesMax,
        Metric::InContextRegister,
        Metric::NoteLengthDistance,
        Metric::OnsetPositionDistance,
        Metric::InKey,
        Metric::Consonance,
    ];
    /// The metrics of the whole sample (reported under `all`).
    pub const PER_SAMPLE: [Metric; 2] = [Metric::GivenKept, Metric::RightTrack];

    pub fn name(self) -> &'static str {
        match self {
            Metric::DensityRatio => "density ratio",
            Metric::VoicesMean => "voices (mean)",
            Metric::VoicesMax => "voices (max)",
            Metric::InContextRegister => "in context register",
            Metric::NoteLengthDistance => "note-length distance",
            Metric::OnsetPositionDistance => "onset-position distance",
            Metric::InKey => "in key",
            Metric::Consonance => "consonant with other parts",
            Metric::LeapFromGiven => "leap from last given note",
            Metric::GivenKept => "given notes kept",
            Metric::RightTrack => "on the right track",
        }
    }

    pub fn goal(self) -> Goal {
        match self {
            Metric::NoteLengthDistance | Metric::OnsetPositionDistance => Goal::Lower,
            Metric::GivenKept | Metric::RightTrack => Goal::Higher,
            _ => Goal::LikeTruth,
        }
    }
}

/// A part of the region: every pitched note, or the notes on tracks of one role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    All,
    Role(TrackRole),
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::All => "all",
            Part::Role(role) => role.name(),
        }
    }

    fn holds(self, clip: &Clip, note: &Note) -> bool {
        match self {
            Part::All => true,
            Part::Role(role) => role_of(clip, note) == role,
        }
    }

    /// The metrics reported for this part, in table order.
    pub fn metrics(self) -> Vec<Metric> {
        let mut out = Metric::PER_PART.to_vec();
        if self == Part::Role(TrackRole::Melody) {
            out.push(Metric::LeapFromGiven);
        }
        if self == Part::All {
            out.extend(Metric::PER_SAMPLE);
        }
        out
    }
}

/// `part: metric`, the name a metric has in reports.
pub fn metric_name(part: Part, metric: Metric) -> String {
    format!("{}: {}", part.name(), metric.name())
}

/// The parts evaluated for cases asking for `roles`: all, then each role.
pub fn parts(roles: &[TrackRole]) -> Vec<Part> {
    let mut out = vec![Part::All];
    out.extend(roles.iter().map(|&r| Part::Role(r)));
    out
}

/// The part-fit metrics of `output` (a row's whole clip for `case`), for every part of `parts`,
/// as (`part: metric`, value).
pub fn score(case: &Case, output: &Clip, parts: &[Part]) -> Vec<(String, Option<f64>)> {
    let context = case.context();
    let generated = case.generated(output);
    let truth = case.truth_part();
    let key = context.estimate_key();
    let spb = case.truth.steps_per_bar().max(1);
    let mut out = Vec::new();
    for &part in parts {
        let g: Vec<Note> = generated
            .iter()
            .filter(|n| part.holds(output, n))
            .copied()
            .collect();
        let t: Vec<Note> = truth
            .iter()
            .filter(|n| part.holds(&case.truth, n))
            .copied()
            .collect();
        let c: Vec<Note> = context
            .notes
            .iter()
            .filter(|n| !is_drums(&context, n) && part.holds(&context, n))
            .copied()
            .collect();
        // Pitched notes of the output that sound with G but are not G.
        let others: Vec<Note> = output
            .notes
            .iter()
            .filter(|n| !is_drums(output, n) && !g.contains(n))
            .copied()
            .collect();
        for metric in part.metrics() {
            let value = match metric {
                Metric::DensityRatio => density_ratio(&g, &t),
                Metric::VoicesMean => voices(&g).map(|v| v.0),
                Metric::VoicesMax => voices(&g).map(|v| v.1),
                Metric::InContextRegister => in_register(&g, &c),
                Metric::NoteLengthDistance => {
                    histogram_distance(&length_histogram(&g), &length_histogram(&t))
                }
                Metric::OnsetPositionDistance => histogram_distance(
                    &onset_histogram(&g, spb, case.region.steps.start),
                    &onset_histogram(&t, spb, case.region.steps.start),
                ),
                Metric::InKey => key.and_then(|k| in_key(&g, k)),
                Metric::Consonance => consonance(&g, &others),
                Metric::LeapFromGiven => leap_from_given(&g, &c, case.region.steps.start),
                Metric::GivenKept => given_kept(&context, output),
                Metric::RightTrack => right_track(case, &g),
            };
            out.push((metric_name(part, metric), value));
        }
    }
    out
}

/// |G| / |T|; `None` when the true hole of the part is empty.
pub fn density_ratio(generated: &[Note], truth: &[Note]) -> Option<f64> {
    (!truth.is_empty()).then(|| generated.len() as f64 / truth.len() as f64)
}

/// (mean over the steps where some note sounds, max) of the number of notes sounding at once.
pub fn voices(notes: &[Note]) -> Option<(f64, f64)> {
    let lo = notes.iter().map(|n| n.start).min()?;
    let hi = notes
        .iter()
        .map(|n| n.start.saturating_add(n.length.max(1)))
        .max()?;
    let mut counts = vec![0u32; (hi - lo) as usize];
    for n in notes {
        let end = n.start.saturating_add(n.length.max(1));
        for c in &mut counts[(n.start - lo) as usize..(end - lo) as usize] {
            *c += 1;
        }
    }
    let sounding: Vec<u32> = counts.into_iter().filter(|&c| c > 0).collect();
    let max = *sounding.iter().max()?;
    let mean = sounding.iter().sum::<u32>() as f64 / sounding.len() as f64;
    Some((mean, max as f64))
}

/// Share of `notes` within the lowest..=highest pitch of `context`.
pub fn in_register(notes: &[Note], context: &[Note]) -> Option<f64> {
    let lo = context.iter().map(|n| n.pitch).min()?;
    let hi = context.iter().map(|n| n.pitch).max()?;
    share(notes, |n| (lo..=hi).contains(&n.pitch))
}

fn share(notes: &[Note], mut keep: impl FnMut(&Note) -> bool) -> Option<f64> {
    (!notes.is_empty())
        .then(|| notes.iter().filter(|n| keep(n)).count() as f64 / notes.len() as f64)
}

/// Normalised counts of Yang & Lerch's note-length classes.
pub fn length_histogram(notes: &[Note]) -> Vec<f64> {
    let mut h = vec![0.0; NOTE_LENGTH_CLASSES.len()];
    for n in notes {
        h[note_length_class(n.length)] += 1.0;
    }
    normalised(h)
}

/// Normalised counts of onset positions within the bar (`steps_per_bar` classes), bars counted
/// from `origin`.
pub fn onset_histogram(notes: &[Note], steps_per_bar: u32, origin: u32) -> Vec<f64> {
    let mut h = vec![0.0; steps_per_bar as usize];
    for n in notes {
        h[(n.start.saturating_sub(origin) % steps_per_bar) as usize] += 1.0;
    }
    normalised(h)
}

fn normalised(mut h: Vec<f64>) -> Vec<f64> {
    let total: f64 = h.iter().sum();
    if total > 0.0 {
        h.iter_mut().for_each(|x| *x /= total);
    }
    h
}

/// Total variation distance (½ Σ|p − q|) of two normalised histograms; `None` if either is
/// empty.
pub fn histogram_distance(p: &[f64], q: &[f64]) -> Option<f64> {
    let empty = |h: &[f64]| h.iter().all(|&x| x == 0.0);
    if empty(p) || empty(q) {
        return None;
    }
    Some(0.5 * p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>())
}

pub fn in_key(notes: &[Note], key: Key) -> Option<f64> {
    share(notes, |n| key.contains(n.pitch))
}

/// Interval classes heard as consonant: unison/octave, minor and major third, fourth, fifth,
/// minor and major sixth.
const CONSONANT: [bool; 12] = [
    true, false, false, true, true, true, false, true, true, true, false, false,
];

/// Share of the time `notes` overlap `others` at a consonant interval class, weighted by the
/// steps each pair overlaps; `None` when nothing overlaps.
pub fn consonance(notes: &[Note], others: &[Note]) -> Option<f64> {
    let (mut consonant, mut total) = (0u64, 0u64);
    for n in notes {
        let n_end = n.start.saturating_add(n.length.max(1));
        for o in others {
            let o_end = o.start.saturating_add(o.length.max(1));
            let overlap = n_end.min(o_end).saturating_sub(n.start.max(o.start)) as u64;
            if overlap > 0 {
                total += overlap;
                if CONSONANT[(n.pitch.abs_diff(o.pitch) % 12) as usize] {
                    consonant += overlap;
                }
            }
        }
    }
    (total > 0).then(|| consonant as f64 / total as f64)
}

/// Semitones from the last `context` note starting before `region_start` (the highest of a
/// chord) to the first generated note (the highest of a chord).
pub fn leap_from_given(notes: &[Note], context: &[Note], region_start: u32) -> Option<f64> {
    let last = context
        .iter()
        .filter(|n| n.start < region_start)
        .max_by_key(|n| (n.start, n.pitch))?;
    let first = notes
        .iter()
        .min_by_key(|n| (n.start, std::cmp::Reverse(n.pitch)))?;
    Some(first.pitch.abs_diff(last.pitch) as f64)
}

/// Share of the context's notes found unchanged (start, pitch, length, track) in `output`.
pub fn given_kept(context: &Clip, output: &Clip) -> Option<f64> {
    let key = |n: &Note| (n.start, n.pitch, n.length, n.track);
    let mut found: Vec<_> = output.notes.iter().map(key).collect();
    found.sort_unstable();
    share(&context.notes, |n| found.binary_search(&key(n)).is_ok())
}

/// Share of the generated notes on a track the window has and the region names.
pub fn right_track(case: &Case, generated: &[Note]) -> Option<f64> {
    let known = case.truth.tracks.len() as u16;
    share(generated, |n| {
        n.track < known
            && case
                .region
                .tracks
                .as_ref()
                .is_none_or(|tracks| tracks.contains(&n.track))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::Region;
    use crate::evaluation::test_music::quarters_over_chords;
    use crate::music::{Scale, Track};

    /// Four bars of a one-voice melody in C major over whole-note chords.
    fn melody_and_chords() -> Clip {
        let line = [
            72, 74, 76, 77, 79, 77, 76, 74, 72, 76, 79, 84, 83, 79, 76, 72,
        ];
        quarters_over_chords(
            4,
            ("Chords", TrackRole::Accompaniment),
            |bar, beat| line[(bar * 4 + beat) as usize],
            |_| vec![48, 52, 55],
        )
    }

    fn melody_fill_case() -> Case {
        Case {
            id: "test:0".into(),
            truth: melody_and_chords(),
            region: Region {
                steps: 32..64,
                tracks: Some(vec![0]),
            },
        }
    }

    fn value(scores: &[(String, Option<f64>)], name: &str) -> Option<f64> {
        scores.iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn the_true_hole_scores_itself_perfectly() {
        let case = melody_fill_case();
        let parts = parts(&case.roles());
        assert_eq!(parts, vec![Part::All, Part::Role(TrackRole::Melody)]);
        let s = score(&case, &case.truth, &parts);
        assert_eq!(value(&s, "melody: density ratio"), Some(1.0));
        assert_eq!(value(&s, "melody: voices (mean)"), Some(1.0));
        assert_eq!(value(&s, "melody: voices (max)"), Some(1.0));
        assert_eq!(value(&s, "melody: note-length distance"), Some(0.0));
        assert_eq!(value(&s, "melody: onset-position distance"), Some(0.0));
        assert_eq!(value(&s, "melody: in key"), Some(1.0));
        // 74 (bar 2's last note) to 72 (bar 3's first).
        assert_eq!(value(&s, "melody: leap from last given note"), Some(2.0));
        assert_eq!(value(&s, "all: given notes kept"), Some(1.0));
        assert_eq!(value(&s, "all: on the right track"), Some(1.0));
        // Bars 3-4 reach 84 and 83, above bars 1-2's 72..=79: 6 of 8 notes in the register.
        assert_eq!(value(&s, "melody: in context register"), Some(0.75));
    }

    #[test]
    fn a_one_voice_fill_scores_one_voice_and_a_chord_stack_scores_five() {
        let case = melody_fill_case();
        let parts = parts(&case.roles());
        let one_voice =
            case.with_notes((0..8).map(|i| Note::new(32 + i * 4, 74 + (i % 3) as u8, 4, 90, 0)));
        let s = score(&case, &one_voice, &parts);
        assert_eq!(value(&s, "melody: voices (mean)"), Some(1.0));
        assert_eq!(value(&s, "melody: voices (max)"), Some(1.0));
        assert_eq!(value(&s, "melody: density ratio"), Some(1.0));
        assert_eq!(value(&s, "melody: in context register"), Some(1.0));

        // Stacks of five notes, two octaves wide, every two steps: five voices, three times the
        // notes, much of it outside the melody's register.
        let stack = case.with_notes(
            (0..16u32)
                .flat_map(|i| [48, 55, 64, 67, 72].map(|p| Note::new(32 + i * 2, p, 2, 90, 0))),
        );
        let s = score(&case, &stack, &parts);
        assert_eq!(value(&s, "melody: voices (mean)"), Some(5.0));
        assert_eq!(value(&s, "melody: voices (max)"), Some(5.0));
        assert_eq!(value(&s, "melody: density ratio"), Some(10.0));
        assert_eq!(value(&s, "melody: in context register"), Some(0.2));
        assert!(value(&s, "melody: note-length distance").unwrap() > 0.9);
        assert_eq!(value(&s, "all: given notes kept"), Some(1.0));
    }

    #[test]
    fn notes_on_a_new_track_and_lost_context_are_counted() {
        let case = melody_fill_case();
        let mut output = case.context();
        // The chords of bar 1 go, a new track gets the fill.
        output.notes.retain(|n| !(n.track == 1 && n.start == 0));
        let new = output.add_track(Track::new("Generated", TrackRole::Accompaniment, 2));
        output.notes.push(Note::new(32, 72, 4, 90, new));
        output.notes.push(Note::new(36, 74, 4, 90, 0));
        let s = score(&case, &output, &parts(&case.roles()));
        assert_eq!(value(&s, "all: on the right track"), Some(0.5));
        // 8 melody + 12 chord notes given; 3 chord notes lost.
        assert_eq!(value(&s, "all: given notes kept"), Some(17.0 / 20.0));
        // Only the melody-track note is the melody part.
        assert_eq!(value(&s, "melody: density ratio"), Some(1.0 / 8.0));
    }

    #[test]
    fn key_consonance_and_leaps_read_the_context() {
        let c_major = Key::new(0, Scale::Major);
        let notes = [Note::new(0, 61, 4, 90, 0), Note::new(4, 64, 4, 90, 0)];
        assert_eq!(in_key(&notes, c_major), Some(0.5));
        // Against a C held for 8 steps: C# (a minor second) for 4 steps, E (a third) for 4.
        let c = [Note::new(0, 48, 8, 70, 1)];
        assert_eq!(consonance(&notes, &c), Some(0.5));
        assert_eq!(consonance(&notes, &[]), None);
        // Last given note before step 16 is the chord's top 79.
        let given = [
            Note::new(8, 72, 4, 90, 0),
            Note::new(12, 79, 4, 90, 0),
            Note::new(12, 76, 4, 90, 0),
        ];
        let fill = [Note::new(16, 67, 4, 90, 0), Note::new(16, 60, 4, 90, 0)];
        assert_eq!(leap_from_given(&fill, &given, 16), Some(12.0));
        assert_eq!(leap_from_given(&fill, &[], 16), None);
    }

    #[test]
    fn histograms_distance_is_total_variation() {
        let quarters = [Note::new(0, 60, 4, 90, 0), Note::new(4, 60, 4, 90, 0)];
        let eighths = [Note::new(0, 60, 2, 90, 0), Note::new(2, 60, 2, 90, 0)];
        let mixed = [Note::new(0, 60, 4, 90, 0), Note::new(4, 60, 2, 90, 0)];
        let d =
            |a: &[Note], b: &[Note]| histogram_distance(&length_histogram(a), &length_histogram(b));
        assert_eq!(d(&quarters, &quarters), Some(0.0));
        assert_eq!(d(&quarters, &eighths), Some(1.0));
        assert_eq!(d(&quarters, &mixed), Some(0.5));
        assert_eq!(d(&quarters, &[]), None);
        // Onsets on beats 1 and 2 against beats 1 and the "and" of 1.
        let o = |a: &[Note]| onset_histogram(a, 16, 0);
        assert_eq!(histogram_distance(&o(&quarters), &o(&eighths)), Some(0.5));
    }
}
