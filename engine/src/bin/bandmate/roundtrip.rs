//! `bandmate roundtrip IN.mid OUT.mid`

use crate::args::Timings;
use crate::files::read_clip;
use anyhow::{Result, bail};
use bandmate::midi;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct RoundtripArgs {
    /// The MIDI file to import.
    pub input: PathBuf,
    /// Where to write the exported file.
    pub output: PathBuf,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RoundtripArgs) -> Result<()> {
    let mut timings = Timings::default();
    let mut clip = timings.time("import", || read_clip(&args.input))?;
    timings.time("export", || midi::write_file(&clip, &args.output))?;
    let mut again = timings.time("reimport", || midi::read_file(&args.output))?;
    clip.sort_notes();
    again.sort_notes();
    let same = clip.notes == again.notes;
    if args.json {
        let summary = json!({
            "input": args.input.display().to_string(), "output": args.output.display().to_string(),
            "notes": clip.notes.len(), "tracks": clip.tracks.len(), "identical": same,
            "timings_ms": timings.to_json(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} -> {}: {} notes in {} tracks, {}",
            args.input.display(),
            args.output.display(),
            clip.notes.len(),
            clip.tracks.len(),
            if same {
                "identical on the grid after re-import"
            } else {
                "CHANGED on re-import"
            }
        );
    }
    if !same {
        bail!(
            "{}: notes differ after export and re-import",
            args.output.display()
        );
    }
    Ok(())
}
