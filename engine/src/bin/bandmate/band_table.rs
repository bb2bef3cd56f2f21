//! `bandmate band-table`: fit the band player's chord table on the Nottingham train split, write
//! it to `artifacts/band/table.json` (`--out assets/band` replaces the shipped one) with its card, and score next-bar predictions on the test
//! split against the baselines.

use anyhow::{Context, Result};
use bandmate::band::eval::{NextBarScores, score_next_bar};
use bandmate::band::{ChordBandPlayer, ChordTable};
use bandmate::data::{Dataset, Split, default_cache_dir, default_data_root, load_cached};
use bandmate::music::{Note, TimeSignature};
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;

/// How often each accompaniment bar (start, pitch, length of its notes) occurs.
type BarCounts = HashMap<Vec<(u32, u8, u32)>, u32>;

#[derive(Args, Debug)]
pub struct BandTableArgs {
    /// Where the table and its card go (`assets/band` replaces the shipped table).
    #[arg(long, default_value = "artifacts/band")]
    pub out: PathBuf,
    /// Dataset root (default: BANDMATE_DATA or ../shared/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// The two baselines on `test`: repeat the last accompaniment bar, and the most
/// frequent training bar for the last bar's chord.
pub fn baselines(
    train: &[bandmate::data::Song],
    test: &[bandmate::data::Song],
) -> (NextBarScores, NextBarScores) {
    let repeat = score_next_bar(test, |_, previous| previous.to_vec());
    // Most frequent training bar for the chord of the bar just played (the baseline,
    // without a chord transition).
    let mut by_chord: HashMap<_, BarCounts> = HashMap::new();
    score_next_bar(train, |_, previous| {
        if let Some(c) =
            bandmate::band::estimate_chord(&bandmate::band::pitch_class_weights(previous))
        {
            let key: Vec<_> = previous
                .iter()
                .map(|n| (n.start, n.pitch, n.length))
                .collect();
            *by_chord.entry(c).or_default().entry(key).or_default() += 1;
        }
        Vec::new()
    });
    let frequent = score_next_bar(test, |_, previous| {
        let chord = bandmate::band::estimate_chord(&bandmate::band::pitch_class_weights(previous));
        chord
            .and_then(|c| by_chord.get(&c))
            .and_then(|m| {
                m.iter()
                    .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            })
            .map(|(k, _)| {
                k.iter()
                    .map(|&(s, p, l)| Note::new(s, p, l, 80, 0))
                    .collect()
            })
            .unwrap_or_default()
    });
    (repeat, frequent)
}

pub fn row(name: &str, s: &NextBarScores) -> String {
    format!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
        s.bars, s.precision, s.recall, s.f1, s.chord_tone_ratio
    )
}

pub fn run(args: BandTableArgs) -> Result<()> {
    let root = args.data.unwrap_or_else(default_data_root);
    let cache = default_cache_dir();
    let train = load_cached(Dataset::Nottingham, Split::Train, &root, &cache)?;
    let test = load_cached(Dataset::Nottingham, Split::Test, &root, &cache)?;
    let table = ChordTable::fit(&train, TimeSignature::FOUR_FOUR.steps_per_bar())?;

    let mut player = ChordBandPlayer::new(table.clone());
    let model = score_next_bar(&test, |melody, _| {
        player.reset();
        player.next_bar(melody).notes
    });
    let (repeat, frequent) = baselines(&train, &test);
    let table_md = [
        "| predictor | bars | precision | recall | F1 | chord-tone ratio |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
        row(
            "chord table (melody of the bar just played → next bar)",
            &model,
        ),
        row("repeat the last accompaniment bar", &repeat),
        row(
            "most frequent training bar for the last bar's chord",
            &frequent,
        ),
    ]
    .join("\n");
    println!("{table_md}");

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(args.out.join("table.json"), serde_json::to_string(&table)?)?;
    let card = format!(
        "# Band player: chord table (default until the recurrent VAE lands)\n\n\
         Fitted by `bandmate band-table` on the Nottingham train split ({} bars of 4/4 with an\n\
         accompaniment; fitting takes well under a second). See `engine/src/band/mod.rs`: the\n\
         chord of the bar just played (duration-weighted pitch classes against the 24 triads),\n\
         its most frequent successor in the training data (root movement and quality), and the\n\
         most frequent accompaniment bar for that quality moved to the new root.\n\n\
         Next-bar accompaniment on the Nottingham test split (every bar after the first of the\n\
         4/4 tunes; a note counts as a hit with the same step and pitch; chord-tone ratio: share\n\
         of predicted notes in the true chord of the bar). The chord table hears only the\n\
         melody; both baselines are given the true accompaniment of the previous bar.\n\n{table_md}\n",
        table.bars
    );
    std::fs::write(args.out.join("CARD.md"), card)?;
    Ok(())
}
