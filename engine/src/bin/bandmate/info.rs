//! `bandmate info FILE.mid`

use crate::args::Timings;
use crate::files::read_clip;
use anyhow::Result;
use bandmate::music::{Clip, pitch_name};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct InfoArgs {
    /// The MIDI file.
    pub file: PathBuf,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let mut timings = Timings::default();
    let clip = timings.time("read", || read_clip(&args.file))?;
    let key = clip.estimate_key();
    let tracks: Vec<_> = clip
        .tracks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let notes: Vec<_> = clip.track_notes(i as u16).collect();
            let lo = notes.iter().map(|n| n.pitch).min();
            let hi = notes.iter().map(|n| n.pitch).max();
            json!({
                "number": i + 1, "name": t.name, "role": t.role.name(), "channel": t.channel + 1,
                "notes": notes.len(),
                "lowest": lo.map(pitch_name), "highest": hi.map(pitch_name),
            })
        })
        .collect();
    if args.json {
        let summary = json!({
            "file": args.file.display().to_string(),
            "bars": clip.bars, "steps": clip.steps(), "tempo": clip.tempo,
            "time_signature": clip.time_signature.to_string(),
            "tempo_changes": clip.tempo_changes.len(), "meter_changes": clip.meter_changes.len(),
            "notes": clip.notes.len(), "key": key.map(|k| k.to_string()),
            "tracks": tracks, "timings_ms": timings.to_json(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("{}", args.file.display());
    println!("  {}", summary_line(&clip));
    for t in &tracks {
        println!(
            "  track {:>2}: {:<20} {:<13} channel {:>2}  {:>5} notes  {}–{}",
            t["number"],
            t["name"].as_str().unwrap_or_default(),
            t["role"].as_str().unwrap_or_default(),
            t["channel"],
            t["notes"],
            t["lowest"].as_str().unwrap_or("-"),
            t["highest"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

/// One line on `clip`: length, meter, tempo (and how many changes of each), notes and key.
pub fn summary_line(clip: &Clip) -> String {
    format!(
        "{} bars of {} at {:.1} BPM ({} tempo changes, {} meter changes), {} notes in {} tracks, \
         key {}",
        clip.bars,
        clip.time_signature,
        clip.tempo,
        clip.tempo_changes.len(),
        clip.meter_changes.len(),
        clip.notes.len(),
        clip.tracks.len(),
        clip.estimate_key()
            .map_or_else(|| "-".to_string(), |k| k.to_string())
    )
}
