//! The band player's recurrent multimodal VAE on Nottingham: training lowers the loss, the
//! product of experts handles missing tracks, the live player and the tasks keep their shapes
//! and bounds on bad input (tiny random-init models: these guarantees do not depend on the
//! weights).

use bandmate::band::bars::song_bars;
use bandmate::band::player::{BandModel, BandPlayer, continue_clip, fill_track, redo};
use bandmate::data::Split;
use bandmate::models::band::{BandVae, Config};
use bandmate::music::{Clip, Note, TimeSignature, Track, TrackRole};
use bandmate::train::adamw::AdamW;
use bandmate::train::band::{
    AuxWeights, Sequence, TrainOptions, batch_loss, make_batch, sequences, train_step, validate,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[path = "../support/nottingham.rs"]
mod nottingham;
use nottingham::songs;

fn test_sequences() -> Vec<Sequence> {
    let cfg = Config::tiny();
    sequences(songs(Split::Test), &cfg, 4, 8)
}

#[test]
fn nottingham_bars_fit_the_track_windows() {
    bandmate_tests::require_data!("nottingham");
    let cfg = Config::small();
    let mut bars = 0;
    for song in songs(Split::Test) {
        if let Some(b) = song_bars(&song.clip, &cfg) {
            for bar in &b {
                for (k, notes) in bar.iter().enumerate() {
                    for n in notes.iter().flatten() {
                        assert!(cfg.tracks[k].holds(n.1), "{} {n:?}", song.id);
                    }
                }
            }
            bars += b.len();
        }
    }
    assert!(bars > 1000, "{bars} bars of 4/4");
}

#[test]
fn a_few_training_steps_lower_the_loss() {
    bandmate_tests::require_data!("nottingham");
    let cfg = Config::tiny();
    let device = Device::Cpu;
    let seqs = test_sequences();
    assert!(seqs.len() >= 32, "{} sequences", seqs.len());
    let varmap = VarMap::new();
    let model = BandVae::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device)).unwrap();
    let before = validate(&model, &seqs, 64, &device).unwrap();
    let mut opts = TrainOptions::new(cfg.clone());
    opts.max_shift = 0;
    let mut opt = AdamW::new(&varmap, 3e-3, 0.0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for step in 0..40 {
        let batch: Vec<&Sequence> = (0..16)
            .map(|i| &seqs[(step * 16 + i) % seqs.len()])
            .collect();
        let loss = train_step(&model, &mut opt, &batch, &opts, &mut rng, &device).unwrap();
        assert!(loss.is_finite());
    }
    let after = validate(&model, &seqs, 64, &device).unwrap();
    assert!(after < 0.8 * before, "validation loss {before} → {after}");
}

#[test]
fn product_of_experts_handles_any_missing_tracks() {
    bandmate_tests::require_data!("nottingham");
    let cfg = Config::tiny();
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = BandVae::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device)).unwrap();
    let seqs = test_sequences();
    let refs: Vec<&Sequence> = seqs.iter().take(4).collect();
    let mut kls = Vec::new();
    for present in [[true, true], [true, false], [false, true], [false, false]] {
        let flags = vec![vec![present.to_vec(); 4]; refs.len()];
        let b = make_batch(&refs, &[0; 4], &flags, &cfg, &device).unwrap();
        let l = batch_loss(&model, &b, None, 1.0, AuxWeights::DEFAULT).unwrap();
        let total = l.total.to_scalar::<f32>().unwrap();
        assert!(total.is_finite(), "{present:?}: {total}");
        kls.push(l.kl.to_scalar::<f32>().unwrap());
    }
    // No track heard: the posterior is the prior (KL 0); each expert moves it away.
    assert!(kls[3].abs() < 1e-5, "{kls:?}");
    assert!(kls[0] > 0.0 && kls[1] > 0.0 && kls[2] > 0.0, "{kls:?}");
    // The product is sharper than either expert alone: a larger KL from the prior.
    let present = Tensor::new(&[[1f32, 1.0], [1.0, 0.0]], &device).unwrap();
    let bars: Vec<Tensor> = (0..2)
        .map(|k| Tensor::ones((2, cfg.bar_cells(k)), DType::F32, &device).unwrap())
        .collect();
    let post = model.posterior(&bars, &present).unwrap();
    let logvar: Vec<Vec<f32>> = post.logvar.to_vec2().unwrap();
    assert!(
        logvar[0]
            .iter()
            .zip(&logvar[1])
            .all(|(both, one)| both <= one)
    );
}

fn melody_bar(notes: &[(u32, u8, u32)]) -> Clip {
    let mut bar = Clip::new(1);
    let t = bar.add_track(Track::new("melody", TrackRole::Melody, 0));
    bar.notes = notes
        .iter()
        .map(|&(s, p, l)| Note::new(s, p, l, 90, t))
        .collect();
    bar
}

#[test]
fn live_player_answers_every_bar_within_bounds() {
    let model = BandModel::random(&Config::tiny(), 5).unwrap();
    let mut player = BandPlayer::new(&model).unwrap();
    // Silence, a normal bar, hundreds of notes, unknown tracks (drums), notes past the bar,
    // a 3/4 bar, a jump backwards.
    let silence = melody_bar(&[]);
    let normal = melody_bar(&[(0, 72, 4), (4, 74, 4), (8, 76, 8)]);
    let crowded = melody_bar(
        &(0..600)
            .map(|i| (i % 16, (20 + i % 100) as u8, 1 + i % 40))
            .collect::<Vec<_>>(),
    );
    let mut drums = Clip::new(1);
    let d = drums.add_track(Track::new("drums", TrackRole::Drums, 9));
    drums.notes = (0..16).map(|s| Note::new(s, 36, 1, 100, d)).collect();
    let mut waltz = melody_bar(&[(0, 67, 12), (40, 60, 4)]);
    waltz.time_signature = TimeSignature::new(3, 4);
    for (i, bar) in [&silence, &normal, &crowded, &drums, &waltz, &normal]
        .iter()
        .enumerate()
    {
        let at = if i == 5 { 0 } else { i as i64 };
        let out = player.next_bar_at(at, bar).unwrap();
        assert_eq!(out.bars, 1);
        assert_eq!(
            out.tracks.len(),
            1,
            "the player answers with the accompaniment"
        );
        assert_eq!(out.tracks[0].role, TrackRole::Accompaniment);
        let steps = bar.steps_per_bar();
        assert!(out.notes.len() <= 24);
        for n in &out.notes {
            assert!(n.start < steps && n.end() <= steps && n.length > 0, "{n:?}");
            assert!((36..84).contains(&n.pitch));
        }
    }
    // Key lock keeps the answer in the key; density 0-ish answers silence.
    player.options.key = Some(bandmate::music::Key::parse("C").unwrap());
    player.options.density = 1e6;
    let out = player.next_bar(&normal).unwrap();
    assert!(!out.notes.is_empty());
    assert!(
        out.notes
            .iter()
            .all(|n| [0, 2, 4, 5, 7, 9, 11].contains(&(n.pitch % 12)))
    );
    player.options.density = 1e-9;
    assert!(player.next_bar(&normal).unwrap().notes.is_empty());
    assert!(player.set_roles(&[TrackRole::Drums]).is_err());
}

#[test]
fn tasks_keep_the_clip_shape() {
    bandmate_tests::require_data!("nottingham");
    let model = BandModel::random(&Config::tiny(), 6).unwrap();
    let song = songs(Split::Test)
        .iter()
        .find(|s| {
            s.clip.time_signature == TimeSignature::FOUR_FOUR && s.clip.meter_changes.is_empty()
        })
        .unwrap();
    let prompt = song.clip.window(0, 4);
    let opts = bandmate::band::player::PlayOptions {
        density: 1e6,
        ..Default::default()
    };
    let cont = continue_clip(&model, &prompt, 4, &opts).unwrap();
    assert_eq!(cont.bars, 8);
    assert!(cont.notes.iter().any(|n| n.start >= 4 * 16));
    let melody_notes = |c: &Clip| -> Vec<(u32, u8)> {
        let m = c.track_with_role(TrackRole::Melody).unwrap();
        c.track_notes(m).map(|n| (n.start, n.pitch)).collect()
    };
    let filled = fill_track(&model, &prompt, 1, &opts).unwrap();
    assert_eq!(filled.bars, 4);
    assert_eq!(melody_notes(&filled), melody_notes(&prompt));
    assert!(fill_track(&model, &prompt, 7, &opts).is_err());
    assert_eq!(redo(&model, &prompt, &opts).unwrap().bars, 4);
    let mut waltz = prompt.clone();
    waltz.time_signature = TimeSignature::new(3, 4);
    assert!(continue_clip(&model, &waltz, 2, &opts).is_err());
}

/// The shipped model's evaluation (`bandmate band eval`) on a few test windows: every task has
/// every row, the true hole and the copies keep the context, the live player's answers are
/// timed, the report survives JSON, and the model is closer to the truth than random notes.
#[test]
fn shipped_model_evaluation_scores_every_row_on_the_generated_part() {
    bandmate_tests::require_data!("nottingham");
    use bandmate::band::eval::{
        BandEvalData, BandEvalOptions, LIVE, NEXT_BAR_WINDOW, TUNE_BARS, Task, evaluate_band, tunes,
    };
    use bandmate::evaluation::report::{COPY, MODEL, RANDOM, REAL, TRUTH};
    let model = BandModel::embedded().unwrap();
    let all = tunes(songs(Split::Test));
    assert!(all.len() > 50, "{} test tunes", all.len());
    assert!(all.iter().all(|t| t.bars == TUNE_BARS));
    let count = 16;
    let opts = BandEvalOptions {
        count,
        seeds: vec![0, 1],
        ..BandEvalOptions::default()
    };
    let data = BandEvalData {
        songs: songs(Split::Test),
        others: songs(Split::Train),
        train: songs(Split::Train),
        split: "test".into(),
    };
    let evaluation = evaluate_band(&model, None, &data, &opts, "test", |_| {}).unwrap();
    let report = &evaluation.report;
    assert_eq!(report.tasks.len(), Task::ALL.len());
    // Bars 1–7 of every window, heard twice (melody and chords, then the melody only).
    assert_eq!(
        evaluation.answer_seconds.len(),
        2 * count * (NEXT_BAR_WINDOW as usize - 1)
    );
    for task in &report.tasks {
        let names = bandmate_tests::row_names(task);
        if task.task == Task::NextBar.name() {
            assert_eq!(names, [MODEL, LIVE, TRUTH, REAL, COPY, RANDOM]);
        } else {
            assert_eq!(names, [MODEL, TRUTH, REAL, COPY, RANDOM], "{}", task.task);
        }
        assert_eq!(task.windows.len(), count, "{}", task.task);
        assert_eq!(task.seeds, 2);
        let value = |row: &str, metric: &str| bandmate_tests::metric_value(task, row, metric);
        assert_eq!(value(TRUTH, "all: density ratio"), 1.0, "{}", task.task);
        for row in [TRUTH, MODEL, COPY, RANDOM] {
            assert_eq!(
                value(row, "all: given notes kept"),
                1.0,
                "{}: {row}",
                task.task
            );
            assert_eq!(
                value(row, "all: on the right track"),
                1.0,
                "{}: {row}",
                task.task
            );
        }
        // The model writes notes in every window's region, in a register like the truth's.
        let density = value(MODEL, "accompaniment: density ratio");
        assert!((0.3..3.0).contains(&density), "{}: {density}", task.task);
        // The model's chords sound with the melody more like the true chords do than random
        // notes from the data's statistics (which know nothing of the melody).
        let consonance = "accompaniment: consonant with other parts";
        let verdict = task
            .value(MODEL, consonance)
            .and_then(|m| m.verdicts.get(RANDOM))
            .map(|v| v.name());
        if task.task == Task::NextBar.name() {
            assert_ne!(verdict, Some("worse"), "{}", task.task);
        } else {
            assert_eq!(verdict, Some("better"), "{}", task.task);
        }
        let table = task.markdown();
        assert!(
            table.contains("| all: given notes kept | higher |"),
            "{table}"
        );
        assert!(
            table.contains("| accompaniment: in key | like truth |"),
            "{table}"
        );
        assert!(table.contains("| set: mean OA | higher |"), "{table}");
    }
    let back = bandmate_tests::report_through_json(report, "band-eval");
    for (a, b) in back.tasks.iter().zip(&report.tasks) {
        assert_eq!(
            (&a.task, &a.windows, a.seeds),
            (&b.task, &b.windows, b.seeds)
        );
        assert_eq!(a.metrics, b.metrics);
        for (ra, rb) in a.rows.iter().zip(&b.rows) {
            assert_eq!(ra.name, rb.name);
            for (ma, mb) in ra.metrics.iter().zip(&rb.metrics) {
                let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
                    (Some(x), Some(y)) => (x - y).abs() < 1e-9,
                    (x, y) => x.is_none() && y.is_none(),
                };
                assert!(close(ma.interval.value, mb.interval.value), "{}", ra.name);
                assert_eq!(ma.verdicts, mb.verdicts);
                assert_eq!(ma.per_window.len(), mb.per_window.len());
            }
        }
    }
}

/// The density choice picks the best next-bar F1 of the tried values.
#[test]
fn the_density_choice_picks_the_best_next_bar_f1() {
    bandmate_tests::require_data!("nottingham");
    use bandmate::band::eval::choose_density;
    use bandmate::band::player::PlayOptions;
    let model = BandModel::embedded().unwrap();
    let some: Vec<_> = songs(Split::Test).iter().take(20).cloned().collect();
    let (chosen, rows) =
        choose_density(&model, &some, &[1.0, 3.0], &PlayOptions::default()).unwrap();
    let best = rows.iter().map(|r| r.1.f1).fold(f64::MIN, f64::max);
    assert!(rows.iter().any(|r| r.0 == chosen && r.1.f1 == best));
    assert!(
        rows.iter().all(|r| r.1.bars > 50 && r.1.f1 > 0.2),
        "{rows:?}"
    );
}
