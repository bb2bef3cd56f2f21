//! `bandmate demo`: what the engine does, on the embedded example clip.

use crate::args::{RegionArgs, Timings};
use anyhow::{Context, Result, bail};
use bandmate::metrics::{self, EvalOptions};
use bandmate::midi;
use bandmate::music::{
    Clip, Mask, PianoRoll, RollFilter, example_clip, parse_bar_range, pitch_name,
};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the demo's MIDI files.
    #[arg(long, default_value = "artifacts/demo")]
    pub out_dir: PathBuf,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let mut timings = Timings::default();
    let clip = example_clip();
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("{}", args.out_dir.display()))?;

    println!("Bandmate demo: the embedded example clip");
    println!(
        "  {} bars of {} at {} BPM, {} notes in {} tracks, key {}",
        clip.bars,
        clip.time_signature,
        clip.tempo,
        clip.notes.len(),
        clip.tracks.len(),
        clip.estimate_key()
            .map(|k| k.to_string())
            .unwrap_or_default()
    );

    // The mask a producer would paint for "fill bars 3-4 under the melody".
    let region = RegionArgs {
        bars: Some(parse_bar_range("3-4").map_err(anyhow::Error::msg)?),
        ..Default::default()
    };
    let mask = region.mask(&clip)?.intersect(&Mask::below_melody(&clip));
    println!(
        "\nBars 1-4, melody (#), chords (o), masked cells for a fill of bars 3-4 below the melody (.):"
    );
    print!("{}", ascii_roll(&clip, &mask, 4));

    // MIDI out and back in.
    let path = args.out_dir.join("example.mid");
    timings.time("export", || midi::write_file(&clip, &path))?;
    let mut again = timings.time("import", || midi::read_file(&path))?;
    let mut sorted = clip.clone();
    sorted.sort_notes();
    again.sort_notes();
    if sorted.notes != again.notes {
        bail!("{}: notes changed on the way through MIDI", path.display());
    }
    println!(
        "\nWrote {} and read it back: {} notes, identical on the grid.",
        path.display(),
        again.notes.len()
    );

    // The metrics: the bars of the second phrase against those of the first.
    let first: Vec<Clip> = (0..4).map(|bar| clip.window(bar, 1)).collect();
    let second: Vec<Clip> = (4..8).map(|bar| clip.window(bar, 1)).collect();
    let report = timings.time("metrics", || {
        metrics::evaluate(&first, &second, &EvalOptions::default())
    });
    println!(
        "\nThe bars of the second phrase (5-8) measured against those of the first (1-4):\n{}",
        report.to_table()
    );
    println!("timings (ms): {}", timings.to_json());
    Ok(())
}

/// Text picture of the first `bars` bars: one row per pitch from the highest note down.
fn ascii_roll(clip: &Clip, mask: &Mask, bars: u32) -> String {
    let steps = (bars * clip.steps_per_bar()).min(clip.steps()) as usize;
    let melody = PianoRoll::from_clip(
        clip,
        0,
        128,
        &RollFilter {
            tracks: Some(vec![0]),
        },
    );
    let chords = PianoRoll::from_clip(
        clip,
        0,
        128,
        &RollFilter {
            tracks: Some(vec![1]),
        },
    );
    let Some((lo, hi)) = clip.pitch_span() else {
        return String::new();
    };
    let mut out = String::new();
    for pitch in (lo..=hi).rev() {
        out.push_str(&format!("  {:>4} ", pitch_name(pitch)));
        for s in 0..steps {
            if s % clip.steps_per_bar() as usize == 0 {
                out.push('|');
            }
            let c = if melody.get(bandmate::music::SUSTAIN, s, pitch) > 0.5 {
                '#'
            } else if chords.get(bandmate::music::SUSTAIN, s, pitch) > 0.5 {
                'o'
            } else if mask.get(s as u32, pitch) {
                '.'
            } else {
                ' '
            };
            out.push(c);
        }
        out.push_str("|\n");
    }
    out
}
