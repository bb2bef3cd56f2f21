//! Files and progress lines shared by the training loops: atomic JSON and weight writes,
//! checkpoints (weights, AdamW moments, state), and the progress bar with its ETA.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use candle_nn::VarMap;
use serde::Serialize;

use super::adamw::AdamW;
use super::format_duration;

/// Write `value` as pretty JSON through a temporary file (a crash never leaves half a file).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Save the variables of `varmap` as safetensors through a temporary file.
pub fn save_weights_atomic(varmap: &VarMap, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    varmap
        .save(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A new best validation loss: the weights to `run_dir/best.safetensors` and, when exporting,
/// the weights and `config` to `assets_dir/{model.safetensors, config.json}`.
pub fn export_best<C: Serialize>(
    varmap: &VarMap,
    run_dir: &Path,
    assets_dir: Option<&Path>,
    config: &C,
) -> Result<()> {
    save_weights_atomic(varmap, &run_dir.join("best.safetensors"))?;
    if let Some(dir) = assets_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        save_weights_atomic(varmap, &dir.join("model.safetensors"))?;
        write_json_atomic(&dir.join("config.json"), config)?;
    }
    Ok(())
}

/// The assets folder, if exporting and it exists, with the loss curve `png` copied into it
/// (its card is written next by the caller).
pub fn export_loss_curve<'a>(png: &Path, assets_dir: Option<&'a Path>) -> Result<Option<&'a Path>> {
    let Some(dir) = assets_dir.filter(|d| d.is_dir()) else {
        return Ok(None);
    };
    std::fs::copy(png, dir.join("loss.png"))
        .with_context(|| format!("cannot copy the loss curve to {}", dir.display()))?;
    Ok(Some(dir))
}

/// The three files of a resumable checkpoint in `run_dir`: `checkpoint.safetensors`,
/// `optimizer.safetensors`, `state.json`.
pub struct CheckpointFiles {
    pub weights: std::path::PathBuf,
    pub optimizer: std::path::PathBuf,
    pub state: std::path::PathBuf,
}

impl CheckpointFiles {
    pub fn in_dir(run_dir: &Path) -> Self {
        Self {
            weights: run_dir.join("checkpoint.safetensors"),
            optimizer: run_dir.join("optimizer.safetensors"),
            state: run_dir.join("state.json"),
        }
    }

    /// Whether a run can be resumed from these files.
    pub fn exist(&self) -> bool {
        self.weights.exists() && self.state.exists() && self.optimizer.exists()
    }

    /// Save weights, optimizer moments and state.
    pub fn save<T: Serialize>(&self, varmap: &VarMap, opt: &AdamW, state: &T) -> Result<()> {
        save_weights_atomic(varmap, &self.weights)?;
        let tmp = self.optimizer.with_extension("safetensors.tmp");
        opt.save(&tmp)?;
        std::fs::rename(&tmp, &self.optimizer)
            .with_context(|| format!("cannot write {}", self.optimizer.display()))?;
        write_json_atomic(&self.state, state)
    }

    /// Load weights into `varmap` and the moments into `opt` (whose step becomes `step`).
    pub fn load(&self, varmap: &mut VarMap, opt: &mut AdamW, step: usize) -> Result<()> {
        varmap
            .load(&self.weights)
            .with_context(|| format!("cannot load {}", self.weights.display()))?;
        opt.load(&self.optimizer)?;
        opt.step = step;
        Ok(())
    }
}

/// `[#####---------------] elapsed 3m10s ETA 12m40s` for `used` seconds spent and `eta`
/// seconds left.
pub fn progress_bar(used: f64, eta: f64) -> String {
    let frac = (used / (used + eta).max(1e-9)).clamp(0.0, 1.0);
    let filled = (frac * 20.0).round() as usize;
    format!(
        "[{}{}] elapsed {} ETA {}",
        "#".repeat(filled),
        "-".repeat(20 - filled),
        format_duration(Duration::from_secs_f64(used.max(0.0))),
        format_duration(Duration::from_secs_f64(eta.max(0.0))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bar_fills_with_time() {
        assert!(progress_bar(0.0, 100.0).starts_with("[--------------------]"));
        assert!(progress_bar(50.0, 50.0).starts_with("[##########----------]"));
        assert!(progress_bar(100.0, 0.0).contains("ETA 0m00s"));
    }
}
