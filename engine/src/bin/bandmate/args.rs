//! Argument conventions shared by every subcommand that edits a region of a clip:
//! `--bars 3-4` (1-based, inclusive, as a DAW numbers bars), `--pitches C3-C5` (C3 = 60) or MIDI
//! numbers, `--track N` (1-based, as the track list shows them), `--out FILE`, `--seed N`,
//! `--model NAME`, `--json`.

use anyhow::{Result, bail};
use bandmate::music::{Clip, Mask, parse_bar_range, parse_pitch_range};
use clap::Args;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Instant;

/// Which part of the clip to regenerate.
#[derive(Args, Debug, Clone, Default)]
pub struct RegionArgs {
    /// Bars to change, 1-based and inclusive: `3-4`, or `5`.
    #[arg(long, value_parser = parse_bar_range)]
    pub bars: Option<RangeInclusive<u32>>,
    /// Pitches to change: `C3-C5` (C3 = MIDI 60) or `48-72`.
    #[arg(long, value_parser = parse_pitch_range)]
    pub pitches: Option<RangeInclusive<u8>>,
    /// Only this track (1-based, as `bandmate info` lists them).
    #[arg(long)]
    pub track: Option<u16>,
}

impl RegionArgs {
    /// The mask these arguments describe on `clip`: the intersection of the bar and pitch
    /// ranges given (everything when neither is), limited to one track when `--track` is set.
    pub fn mask(&self, clip: &Clip) -> Result<Mask> {
        if let Some(bars) = &self.bars
            && *bars.end() >= clip.bars
        {
            bail!(
                "--bars {}-{}: the clip has {} bars",
                bars.start() + 1,
                bars.end() + 1,
                clip.bars
            );
        }
        let mut mask = Mask::all(clip.steps());
        if let Some(bars) = &self.bars {
            mask = mask.intersect(&Mask::bars(clip, bars.clone()));
        }
        if let Some(pitches) = &self.pitches {
            mask = mask.intersect(&Mask::pitches(clip, pitches.clone()));
        }
        if let Some(track) = self.track {
            let index = track
                .checked_sub(1)
                .filter(|&t| (t as usize) < clip.tracks.len());
            let Some(index) = index else {
                bail!(
                    "--track {track}: the clip has {} tracks (numbered from 1)",
                    clip.tracks.len()
                );
            };
            mask.track = Some(index);
        }
        Ok(mask)
    }
}

/// Options every generating subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Where to write the resulting .mid file.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Random seed; the same seed gives the same result.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Model name (a folder in assets/ or the user model folder).
    #[arg(long)]
    pub model: Option<String>,
    /// Print a machine-readable summary with timings on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Named wall-clock timings for `--json` summaries.
#[derive(Default)]
pub struct Timings(Vec<(&'static str, f64)>);

impl Timings {
    /// Run `f`, recording its wall time in milliseconds under `name`.
    pub fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0.push((name, start.elapsed().as_secs_f64() * 1e3));
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::json!((v * 1000.0).round() / 1000.0),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandmate::music::{Track, TrackRole};

    fn region(bars: Option<&str>, pitches: Option<&str>, track: Option<u16>) -> RegionArgs {
        RegionArgs {
            bars: bars.map(|b| parse_bar_range(b).unwrap()),
            pitches: pitches.map(|p| parse_pitch_range(p).unwrap()),
            track,
        }
    }

    #[test]
    fn region_arguments_make_the_expected_mask() {
        let mut clip = Clip::new(4);
        clip.add_track(Track::new("Bass", TrackRole::Bass, 1));
        let m = region(Some("3-4"), Some("C3-C4"), Some(2))
            .mask(&clip)
            .unwrap();
        assert_eq!(m.count(), 32 * 13);
        assert!(m.get(32, 60) && m.get(63, 72) && !m.get(31, 60) && !m.get(40, 73));
        assert_eq!(m.track, Some(1));
        assert!(region(None, None, None).mask(&clip).unwrap().is_full());
    }

    #[test]
    fn region_arguments_outside_the_clip_are_errors() {
        let clip = Clip::new(4);
        let err = region(Some("4-5"), None, None)
            .mask(&clip)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the clip has 4 bars"), "{err}");
        assert!(region(None, None, Some(2)).mask(&clip).is_err());
        assert!(region(None, None, Some(0)).mask(&clip).is_err());
    }
}
