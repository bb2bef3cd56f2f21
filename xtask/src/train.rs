//! `cargo xtask train roll|vae|band|latent|parts [ARGS]`: build the release `bandmate` and run `bandmate train
//! <model>` (roll: the merged-roll UNet on POP909's train split; parts: the part-aware roll
//! model that ships in `assets/roll`, on POP909 and Nottingham; vae: the 2-bar melody MusicVAE on Nottingham, on one
//! rayon thread; band: the band player's recurrent VAE on Nottingham; latent: the score model
//! over the shipped MusicVAE's latents). Checkpoints go to `artifacts/train/<model>` (runs resume
//! when that folder holds one) and the best weights, config, card and loss curve to
//! `artifacts/<model>`: the shipped weights in `assets/` are replaced only with `--ship`.
//! Extra arguments are passed on, e.g. `--budget 95m --fresh`.

use crate::shell::{self, Result};

pub fn run(extra: &[String]) -> Result {
    match extra.first().map(String::as_str) {
        Some("roll" | "vae" | "band" | "latent" | "parts") => {}
        Some(other) => return Err(format!("train: unknown model '{other}' (roll, vae, band, latent, parts)")),
        None => return Err(
            "usage: cargo xtask train roll|vae|band|latent|parts [--budget 95m] [--config tiny|small|base] [--fresh] [--ship] ..."
                .into(),
        ),
    }
    let mut args = shell::run_bandmate_args(&["--release"], &["train"]);
    args.extend(extra.iter().map(String::as_str));
    let mut env = Vec::new();
    // The MusicVAE's matrices are small: a second rayon thread only spin-waits.
    if extra.first().map(String::as_str) == Some("vae")
        && std::env::var_os("RAYON_NUM_THREADS").is_none()
    {
        env.push(("RAYON_NUM_THREADS".to_string(), "1".to_string()));
    }
    shell::run_with_env(&shell::cargo(), &args, &env)
}
