//! `bandmate`: Bandmate's engine on the command line.

mod args;
mod band_model;
mod band_table;
mod demo;
mod eval;
mod eval_roll;
mod files;
mod info;
mod latent;
mod roll;
mod roundtrip;
mod train;
mod train_args;
mod train_band;
mod train_latent;
mod train_vae;
mod vae;
mod weights;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Large tensor buffers on transparent huge pages: fewer TLB misses in the conv and GEMM
/// kernels, which makes the roll UNet's training steps markedly faster (measure it with
/// `cargo xtask bench roll`).
#[global_allocator]
static ALLOC: bandmate::nn::HugePageAlloc = bandmate::nn::HugePageAlloc;

#[derive(Parser)]
#[command(
    name = "bandmate",
    version,
    about = "Generative MIDI co-writer: the engine on the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the tracks, notes, tempo, meter and key of a MIDI file.
    Info(info::InfoArgs),
    /// Import a MIDI file, export it again, and check that the notes survive on the grid.
    Roundtrip(roundtrip::RoundtripArgs),
    /// Compare a folder of generated MIDI files with a reference folder (Yang & Lerch OA,
    /// Mittal consistency/variance, rhythm and diatonicity).
    Eval(eval::EvalArgs),
    /// Evaluate the roll model on POP909 test windows (infills, harmonizations,
    /// unconditional samples): only the generated part, against the true hole, real music of
    /// other songs, copy and random notes from the data, with 95% intervals.
    EvalRoll(eval_roll::EvalRollArgs),
    /// Print the tables of an evaluation report (`--json` of `eval-roll`, `latent eval`,
    /// `band eval`): the README's summary, or every metric with `--full`.
    EvalReport(eval_roll::EvalReportArgs),
    /// Run the demo on the embedded example clip.
    Demo(demo::DemoArgs),
    /// Train a model (`roll`: the piano-roll diffusion UNet on POP909; `vae`: the 2-bar
    /// melody MusicVAE on Nottingham).
    Train(train_args::TrainArgs),
    /// Fit the band player's chord table on Nottingham and score next-bar predictions.
    BandTable(band_table::BandTableArgs),
    /// The band player's recurrent multimodal VAE: continue, fill --track K, redo, eval.
    Band(band_model::BandArgs),
    /// Regenerate a region of a clip (bars, pitches, one track) with the roll diffusion model.
    Fill(roll::FillArgs),
    /// A variation of a region of a clip (`--strength` 0..1).
    Vary(roll::VaryArgs),
    /// Keep the first bars of a clip and write what follows.
    Continue(roll::ContinueArgs),
    /// Write an accompaniment for the clip's melody.
    Harmonize(roll::HarmonizeArgs),
    /// Write a new clip from nothing.
    Generate(roll::GenerateArgs),
    /// The 2-bar melody MusicVAE: sample, encode, reconstruct, accuracy.
    Vae(vae::VaeArgs),
    /// 16-bar melodies from score-based latent diffusion over MusicVAE latents: generate,
    /// fill bars, continue, eval.
    Latent(latent::LatentArgs),
    /// Melodies morphing from A to B (MusicVAE latents, spherical interpolation), one after
    /// another in one MIDI file.
    Interpolate(vae::InterpolateArgs),
    /// Show or change the float type of model folders' weights (`--to f16` halves the file;
    /// the loaders read f16, bf16 and f32 alike, as f32).
    Weights(weights::WeightsArgs),
}

fn main() -> ExitCode {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { bandmate::nn::set_thread_count_env() };
    bandmate::nn::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Roundtrip(a) => roundtrip::run(a),
        Command::Eval(a) => eval::run(a),
        Command::EvalRoll(a) => eval_roll::run(a),
        Command::EvalReport(a) => eval_roll::run_report(a),
        Command::Demo(a) => demo::run(a),
        Command::Train(a) => train::run(a),
        Command::BandTable(a) => band_table::run(a),
        Command::Band(a) => band_model::run(a),
        Command::Fill(a) => roll::run_fill(a),
        Command::Vary(a) => roll::run_vary(a),
        Command::Continue(a) => roll::run_continue(a),
        Command::Harmonize(a) => roll::run_harmonize(a),
        Command::Generate(a) => roll::run_generate(a),
        Command::Vae(a) => vae::run(a),
        Command::Latent(a) => latent::run(a),
        Command::Interpolate(a) => vae::run_interpolate(a),
        Command::Weights(a) => weights::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("bandmate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's arguments are well-formed (unique names, valid defaults), which clap
    /// otherwise checks only when that subcommand runs in a debug build.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
