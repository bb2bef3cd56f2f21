//! `cargo xtask bench eval`: the wall time of one task of `bandmate eval-roll` at its defaults
//! (200 POP909 test windows × 3 sampling seeds of the embedded roll model; the true hole, real
//! music of other songs, copy and random-from-data rows; part-fit and set metrics with bootstrap
//! intervals), for the melody infill and the harmonization.

use anyhow::Result;
use bandmate::data::{default_cache_dir, default_data_root};
use bandmate::diffusion::RollModel;
use bandmate::diffusion::eval::{RollEvalOptions, Task, evaluate_roll};
use std::time::Instant;

#[global_allocator]
static ALLOC: bandmate::nn::HugePageAlloc = bandmate::nn::HugePageAlloc;

fn main() -> Result<()> {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { bandmate::nn::set_thread_count_env() };
    bandmate::nn::keep_freed_memory();
    let model = RollModel::embedded()?;
    for task in [Task::InfillMelody, Task::Harmonize] {
        let opts = RollEvalOptions {
            tasks: vec![task],
            ..RollEvalOptions::default()
        };
        let started = Instant::now();
        let mut lines = Vec::new();
        let evaluation = evaluate_roll(
            &model,
            &default_data_root(),
            &default_cache_dir(),
            &opts,
            "bench",
            |line| {
                lines.push(format!(
                    "{line} (at {:.1} s)",
                    started.elapsed().as_secs_f64()
                ))
            },
        )?;
        let report = &evaluation.report.tasks[0];
        println!(
            "eval: {}: {} windows × {} seeds, {} metrics × {} rows in {:.1} s",
            task.name(),
            report.windows.len(),
            report.seeds,
            report.metrics.len(),
            report.rows.len(),
            started.elapsed().as_secs_f64()
        );
        for line in lines {
            println!("  {line}");
        }
    }
    Ok(())
}
