//! `bandmate demo`: what the engine does, on the embedded example clip.

use crate::args::{RegionArgs, Timings};
use anyhow::{Context, Result, bail};
use bandmate::band::player::{BandModel, BandPlayer};
use bandmate::diffusion::{RollModel, RollOptions, continue_clip, fill, harmonize};
use bandmate::evaluation::{Case, Region, RowOutputs, listen};
use bandmate::metrics::{self, EvalOptions};
use bandmate::midi;
use bandmate::music::{
    Clip, Mask, Note, PianoRoll, RollFilter, Track, TrackRole, example_clip, parse_bar_range,
    pitch_name,
};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the demo's MIDI files and piano-roll sheet.
    #[arg(long, default_value = "artifacts/demo")]
    pub out_dir: PathBuf,
    /// Sampling seed of the models (the same seed gives the same results).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only the MIDI round trip and the metrics, without running the models.
    #[arg(long)]
    pub no_models: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let mut timings = Timings::default();
    let clip = example_clip();
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("{}", args.out_dir.display()))?;

    println!("Bandmate demo: the embedded example clip");
    println!("  {}", crate::info::summary_line(&clip));

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

    if !args.no_models {
        run_models(&clip, &args, &mut timings)?;
    }

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

/// What a producer does with the clip: fill bars 3–4, harmonize the melody, continue the first
/// phrase, and 8 bars of the band player answering the melody. Each result goes to a .mid file,
/// and every before/after pair to one PNG sheet.
fn run_models(clip: &Clip, args: &DemoArgs, timings: &mut Timings) -> Result<()> {
    let roll = timings.time("load roll model", RollModel::embedded)?;
    let band = timings.time("load band model", BandModel::embedded)?;
    let opts = RollOptions {
        seed: args.seed,
        ..RollOptions::default()
    };
    let spb = clip.steps_per_bar();
    let melody: u16 = clip.track_with_role(TrackRole::Melody).unwrap_or(0);
    let mut melody_only = clip.clone();
    melody_only.notes.retain(|n| n.track == melody);
    let mut results: Vec<Demo> = Vec::new();

    // Fill: bars 3–4 of every track, each part as itself.
    let mask = Mask::bars(clip, 2..=3);
    let filled = timings.time("fill", || fill(&roll, clip, &mask, &opts))?;
    results.push(Demo::new(
        "fill bars 3-4",
        "fill",
        clip.clone(),
        filled,
        Region {
            steps: 2 * spb..4 * spb,
            tracks: None,
        },
    ));

    // Harmonize: the melody alone gets a new accompaniment track.
    let harmonized = timings.time("harmonize", || harmonize(&roll, &melody_only, None, &opts))?;
    let new_tracks: Vec<u16> =
        (melody_only.tracks.len() as u16..harmonized.tracks.len() as u16).collect();
    results.push(Demo::new(
        "harmonize the melody",
        "harmonize",
        melody_only.clone(),
        harmonized,
        Region {
            steps: 0..clip.steps(),
            tracks: Some(new_tracks),
        },
    ));

    // Continue: the first 4 bars, then 4 new bars.
    let prompt = clip.window(0, 4);
    let continued = timings.time("continue", || continue_clip(&roll, &prompt, 4, 8, &opts))?;
    results.push(Demo::new(
        "continue after bar 4",
        "continue",
        prompt,
        continued,
        Region {
            steps: 4 * spb..8 * spb,
            tracks: None,
        },
    ));

    // The band player: the melody is played bar by bar; after each bar the model answers with
    // the accompaniment of the next one (as the plugin does while the host plays).
    let mut player = BandPlayer::new(&band)?;
    let mut jammed = melody_only.clone();
    let band_track = jammed.add_track(Track::new("Band", TrackRole::Accompaniment, 2));
    timings.time("band player, 8 bars", || -> Result<()> {
        for bar in 0..clip.bars.saturating_sub(1) {
            let answer = player.next_bar_at(bar as i64, &melody_only.window(bar, 1))?;
            jammed.notes.extend(answer.notes.iter().map(|n| Note {
                start: n.start + (bar + 1) * spb,
                track: band_track,
                ..*n
            }));
        }
        Ok(())
    })?;
    jammed.sort_notes();
    results.push(Demo::new(
        "band player answers the melody",
        "band",
        melody_only,
        jammed,
        Region {
            steps: spb..clip.steps(),
            tracks: Some(vec![band_track]),
        },
    ));

    println!(
        "
The models on the example clip (seed {}):",
        args.seed
    );
    for demo in &results {
        let path = args.out_dir.join(format!("example-{}.mid", demo.file));
        midi::write_file(&demo.after, &path)?;
        let written = demo.case.generated(&demo.after).len();
        println!(
            "  {:<32} {:>4} new notes  -> {}",
            demo.case.id,
            written,
            path.display()
        );
        if written == 0 {
            bail!("{}: the model wrote no note", demo.case.id);
        }
    }
    let sheet = args.out_dir.join("example-sheet.png");
    let cases: Vec<Case> = results.iter().map(|d| d.case.clone()).collect();
    let rows = [
        (
            "before",
            results.iter().map(|d| d.before.clone()).collect::<Vec<_>>(),
        ),
        ("after", results.iter().map(|d| d.after.clone()).collect()),
    ]
    .map(|(name, clips)| RowOutputs {
        name: name.into(),
        outputs: vec![clips.into_iter().map(Some).collect()],
        seconds: 0.0,
    });
    listen::write_sheet(&sheet, "Bandmate demo", &cases, &rows)?;
    println!("  before/after piano rolls       -> {}", sheet.display());
    Ok(())
}

/// One task of the demo: the clip before, the result, and what the model wrote.
struct Demo {
    file: &'static str,
    before: Clip,
    after: Clip,
    case: Case,
}

impl Demo {
    fn new(name: &str, file: &'static str, before: Clip, after: Clip, region: Region) -> Self {
        // The sheet's scale: the longer of the two clips.
        let mut truth = before.clone();
        truth.bars = truth.bars.max(after.bars);
        Self {
            file,
            before,
            after,
            case: Case {
                id: name.into(),
                truth,
                region,
            },
        }
    }
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
