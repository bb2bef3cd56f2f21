//! Scoring the rows of one task, the JSON report, markdown tables with verdicts, and the
//! comparison of two reports.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::bootstrap::{
    Interval, REPLICATES, Resamples, Verdict, mean_interval, mean_of, paired_verdict,
    verdict_from_differences,
};
use super::part_fit::{self, Goal};
use super::set_metrics::{self, part_clip, set_scores};
use super::{Case, role_of};
use crate::music::{Clip, TrackRole};

/// Row names shared by every model's evaluation.
pub const MODEL: &str = "model";
pub const TRUTH: &str = "true hole";
pub const REAL: &str = "real (other songs)";
pub const COPY: &str = "copy";
pub const RANDOM: &str = "random (data)";

/// What one row produced: `outputs[seed][window]`, the whole clip for each case (`None` where
/// the row has nothing, such as a short set of other songs), and the wall time it took.
#[derive(Clone, Debug)]
pub struct RowOutputs {
    pub name: String,
    pub outputs: Vec<Vec<Option<Clip>>>,
    pub seconds: f64,
}

impl RowOutputs {
    /// A row of one run: `outputs[window]`.
    pub fn one_run(name: &str, outputs: Vec<Option<Clip>>, seconds: f64) -> Self {
        RowOutputs {
            name: name.into(),
            outputs: vec![outputs],
            seconds,
        }
    }

    /// The true hole's row: every case's truth.
    pub fn truth(cases: &[Case]) -> Self {
        Self::one_run(
            TRUTH,
            cases.iter().map(|c| Some(c.truth.clone())).collect(),
            0.0,
        )
    }

    /// The real (other songs) row: case `i` gets the region of `other(i)`, a window of another
    /// song ([`other_song_output`]), where there is one.
    pub fn other_songs<'a>(cases: &[Case], other: impl Fn(usize) -> Option<&'a Clip>) -> Self {
        let outputs = cases
            .iter()
            .enumerate()
            .map(|(i, c)| Some(other_song_output(c, other(i)?)))
            .collect();
        Self::one_run(REAL, outputs, 0.0)
    }
}

/// A metric's name and how it is judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricInfo {
    pub name: String,
    pub goal: Goal,
    /// A set metric (one number per set) rather than a mean of per-window values.
    pub set: bool,
}

/// One row's value of one metric.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RowMetric {
    pub interval: Interval,
    /// Per-window values (means over seeds) of a per-window metric; empty for set metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_window: Vec<Option<f64>>,
    /// Per-window losses (lower is better; for "like the truth" metrics the distance to the
    /// true hole's value), for paired comparisons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loss: Vec<Option<f64>>,
    /// Bootstrap replicates of a set metric (NaN as null), for paired comparisons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicates: Vec<Option<f64>>,
    /// The first row against each other row (by name): paired bootstrap verdicts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verdicts: BTreeMap<String, Verdict>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RowReport {
    pub name: String,
    pub seconds: f64,
    /// In the order of [`TaskReport::metrics`].
    pub metrics: Vec<RowMetric>,
    /// Model-specific numbers without an interval (such as the latent model's Fréchet
    /// distance), as (name, value).
    #[serde(default)]
    pub extra: Vec<(String, f64)>,
}

/// Every row and metric of one task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskReport {
    pub task: String,
    /// Case ids, in window order.
    pub windows: Vec<String>,
    pub seeds: usize,
    pub resample_seed: u64,
    pub metrics: Vec<MetricInfo>,
    pub rows: Vec<RowReport>,
}

/// A whole evaluation, as `--json` writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    /// The command line that made it.
    pub command: String,
    pub split: String,
    pub tasks: Vec<TaskReport>,
}

impl EvalReport {
    /// A report of the evaluation `command` on `split`, without tasks yet.
    pub fn new(command: &str, split: impl ToString) -> Self {
        EvalReport {
            command: command.to_string(),
            split: split.to_string(),
            tasks: Vec::new(),
        }
    }

    /// Score `rows` on `cases` as the task `name` ([`evaluate_task`]) and add it; `progress`
    /// hears how long the scoring took.
    pub fn score_task(
        &mut self,
        name: &str,
        cases: &[Case],
        rows: &[RowOutputs],
        resample_seed: u64,
        progress: &mut impl FnMut(&str),
    ) -> Result<()> {
        let started = Instant::now();
        self.tasks
            .push(evaluate_task(name, cases, rows, resample_seed)?);
        progress(&format!(
            "{name}: scored in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<EvalReport> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an evaluation report", path.display()))
    }

    pub fn markdown(&self) -> String {
        self.tasks
            .iter()
            .map(TaskReport::markdown)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every task's [`TaskReport::summary_markdown`] and the first row's verdict counts
    /// against real music, copy and random, with the command that made the report.
    pub fn summary_markdown(&self) -> String {
        let mut out = format!("Made by `{}` ({} split).\n\n", self.command, self.split);
        for task in &self.tasks {
            out.push_str(&task.summary_markdown());
            let judged = task.rows.first().map_or("", |r| r.name.as_str());
            for other in [REAL, COPY, RANDOM] {
                let counts = task.verdict_counts(other);
                if counts.is_empty() {
                    continue;
                }
                let text: Vec<String> = counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
                out.push_str(&format!(
                    "\nEvery metric, the {judged} vs {other}: {}.",
                    text.join(", ")
                ));
            }
            out.push_str("\n\n");
        }
        out
    }
}

fn loss(goal: Goal, value: f64, truth: Option<f64>) -> Option<f64> {
    match goal {
        Goal::Higher => Some(-value),
        Goal::Lower => Some(value),
        Goal::LikeTruth => truth.map(|t| (value - t).abs()),
    }
}

/// Score every row of one task on `cases`. The first row is the one judged (verdicts against
/// every other row); `resample_seed` fixes the bootstrap resamples.
pub fn evaluate_task(
    task: &str,
    cases: &[Case],
    rows: &[RowOutputs],
    resample_seed: u64,
) -> Result<TaskReport> {
    if cases.is_empty() || rows.is_empty() {
        bail!(
            "{task}: nothing to evaluate ({} windows, {} rows)",
            cases.len(),
            rows.len()
        );
    }
    let mut roles: Vec<TrackRole> = Vec::new();
    for case in cases {
        for role in case.roles() {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    roles.sort_by_key(|r| *r as u8);
    let parts = part_fit::parts(&roles);
    let mut metrics: Vec<MetricInfo> = parts
        .iter()
        .flat_map(|&p| p.metrics().into_iter().map(move |m| (p, m)))
        .map(|(p, m)| MetricInfo {
            name: part_fit::metric_name(p, m),
            goal: m.goal(),
            set: false,
        })
        .collect();
    let per_window_count = metrics.len();
    metrics.extend(set_metrics::names().into_iter().map(|name| MetricInfo {
        name,
        goal: Goal::Higher,
        set: true,
    }));
    let n = cases.len();
    let resamples = Resamples::new(n, REPLICATES, resample_seed);
    let truth_scores: Vec<Vec<Option<f64>>> = cases
        .iter()
        .map(|c| {
            part_fit::score(c, &c.truth, &parts)
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        })
        .collect();
    let reference: Vec<Clip> = cases
        .iter()
        .map(|c| part_clip(c, &c.truth_part()))
        .collect();

    let mut reports = Vec::new();
    let mut set_replicates: Vec<Vec<Vec<f64>>> = Vec::new();
    for row in rows {
        // [window][seed][metric]
        let mut scores: Vec<Vec<Vec<Option<f64>>>> = vec![Vec::new(); n];
        let mut parts_of: Vec<Vec<Clip>> = vec![Vec::new(); n];
        for seed_outputs in &row.outputs {
            for (w, output) in seed_outputs.iter().enumerate().take(n) {
                if let Some(output) = output {
                    let case = &cases[w];
                    scores[w].push(
                        part_fit::score(case, output, &parts)
                            .into_iter()
                            .map(|(_, v)| v)
                            .collect(),
                    );
                    parts_of[w].push(part_clip(case, &case.generated(output)));
                }
            }
        }
        let mut row_metrics = Vec::new();
        for (m, info) in metrics.iter().enumerate().take(per_window_count) {
            let per_window: Vec<Option<f64>> = scores
                .iter()
                .map(|seeds| mean_of(seeds.iter().filter_map(|s| s[m])))
                .collect();
            let losses: Vec<Option<f64>> = scores
                .iter()
                .enumerate()
                .map(|(w, seeds)| {
                    mean_of(
                        seeds
                            .iter()
                            .filter_map(|s| loss(info.goal, s[m]?, truth_scores[w][m])),
                    )
                })
                .collect();
            row_metrics.push(RowMetric {
                interval: mean_interval(&per_window, &resamples),
                per_window,
                loss: losses,
                ..RowMetric::default()
            });
        }
        let set = set_scores(&reference, &parts_of, &resamples);
        for (interval, reps) in set.intervals().into_iter().zip(&set.replicates) {
            row_metrics.push(RowMetric {
                interval,
                replicates: reps.iter().map(|x| x.is_finite().then_some(*x)).collect(),
                ..RowMetric::default()
            });
        }
        set_replicates.push(set.replicates);
        reports.push(RowReport {
            name: row.name.clone(),
            seconds: row.seconds,
            metrics: row_metrics,
            extra: Vec::new(),
        });
    }
    // Verdicts of the first row against every other one.
    for other in 1..reports.len() {
        let name = reports[other].name.clone();
        for m in 0..metrics.len() {
            let verdict = if m < per_window_count {
                paired_verdict(
                    &reports[0].metrics[m].loss,
                    &reports[other].metrics[m].loss,
                    &resamples,
                )
            } else {
                let s = m - per_window_count;
                let differences: Vec<f64> = set_replicates[0][s]
                    .iter()
                    .zip(&set_replicates[other][s])
                    .map(|(a, b)| b - a)
                    .collect();
                verdict_from_differences(&differences)
            };
            reports[0].metrics[m].verdicts.insert(name.clone(), verdict);
        }
    }
    Ok(TaskReport {
        task: task.to_string(),
        windows: cases.iter().map(|c| c.id.clone()).collect(),
        seeds: rows.iter().map(|r| r.outputs.len()).max().unwrap_or(0),
        resample_seed,
        metrics,
        rows: reports,
    })
}

fn goal_name(goal: Goal) -> &'static str {
    match goal {
        Goal::Higher => "higher",
        Goal::Lower => "lower",
        Goal::LikeTruth => "like truth",
    }
}

impl TaskReport {
    /// The value of `metric` in row `row`.
    pub fn value(&self, row: &str, metric: &str) -> Option<&RowMetric> {
        let m = self.metrics.iter().position(|x| x.name == metric)?;
        self.rows.iter().find(|r| r.name == row)?.metrics.get(m)
    }

    /// One line per metric: each row's value with its 95% interval, then the first row's
    /// verdict against each other row but the true hole.
    pub fn markdown(&self) -> String {
        self.markdown_of(&|_| true)
    }

    /// The summary the README shows: the part-fit metrics of all generated notes, the melody's
    /// voices and continuity, and the set summaries (mean OA, consistency).
    pub fn summary_markdown(&self) -> String {
        self.markdown_of(&|info| {
            let name = info.name.as_str();
            name.starts_with("all: ")
                || matches!(
                    name,
                    "melody: voices (max)"
                        | "melody: leap from last given note"
                        | "accompaniment: voices (mean)"
                        | "set: mean OA"
                        | "set: mean OA to reference"
                        | "set: pitch consistency"
                        | "set: duration consistency"
                )
                || name.starts_with("Fréchet")
        })
    }

    /// [`TaskReport::markdown`] of the metrics `keep` keeps.
    pub fn markdown_of(&self, keep: &dyn Fn(&MetricInfo) -> bool) -> String {
        let judged = self.rows.first().map_or("", |r| r.name.as_str());
        let others: Vec<&str> = self
            .rows
            .iter()
            .skip(1)
            .map(|r| r.name.as_str())
            .filter(|n| *n != TRUTH)
            .collect();
        let mut out = format!(
            "**{}** ({} windows × {} seeds; mean [95% interval]; verdicts of the {judged} by paired bootstrap)\n\n| metric | goal | {} | {} |\n|---|---|{}{}\n",
            self.task,
            self.windows.len(),
            self.seeds,
            self.rows
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
            others
                .iter()
                .map(|o| format!("vs {o}"))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(self.rows.len()),
            "---|".repeat(others.len()),
        );
        for (m, info) in self.metrics.iter().enumerate() {
            if !keep(info) {
                continue;
            }
            let cells: Vec<String> = self
                .rows
                .iter()
                .map(|r| r.metrics[m].interval.cell())
                .collect();
            let verdicts: Vec<&str> = others
                .iter()
                .map(|o| {
                    self.rows
                        .first()
                        .and_then(|r| r.metrics[m].verdicts.get(*o))
                        .map_or("-", |v| v.name())
                })
                .collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                info.name,
                goal_name(info.goal),
                cells.join(" | "),
                verdicts.join(" | ")
            ));
        }
        let mut extra_names: Vec<&str> = Vec::new();
        for row in &self.rows {
            for (name, _) in &row.extra {
                if !extra_names.contains(&name.as_str()) {
                    extra_names.push(name);
                }
            }
        }
        for name in extra_names {
            let cells: Vec<String> = self
                .rows
                .iter()
                .map(|r| {
                    r.extra
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("-".into(), |(_, v)| format!("{v:.3}"))
                })
                .collect();
            out.push_str(&format!(
                "| {name} | lower | {} |{}\n",
                cells.join(" | "),
                " - |".repeat(others.len())
            ));
        }
        out.push_str(&format!(
            "\nseconds per row: {}\n",
            self.rows
                .iter()
                .map(|r| format!("{} {:.1}", r.name, r.seconds))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out
    }

    /// For the first row: per verdict, the count of metrics against `other`.
    pub fn verdict_counts(&self, other: &str) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        if let Some(first) = self.rows.first() {
            for (m, info) in self.metrics.iter().enumerate() {
                if info.name == "set: mean OA" {
                    continue; // a summary of the per-feature OAs
                }
                if let Some(v) = first.metrics[m].verdicts.get(other) {
                    *out.entry(v.name()).or_default() += 1;
                }
            }
        }
        out
    }
}

/// `--compare A B`: per task and metric, row `row` of A against the same row of B, paired over
/// the windows both evaluated (set metrics need the same windows and resample seed).
pub fn compare(a: &EvalReport, b: &EvalReport, row: &str) -> Result<String> {
    let mut out =
        format!("| task | metric | A: {row} | B: {row} | A vs B |\n|---|---|---|---|---|\n");
    let mut any = false;
    for ta in &a.tasks {
        let Some(tb) = b.tasks.iter().find(|t| t.task == ta.task) else {
            continue;
        };
        let (Some(ra), Some(rb)) = (
            ta.rows.iter().find(|r| r.name == row),
            tb.rows.iter().find(|r| r.name == row),
        ) else {
            continue;
        };
        any = true;
        let same_windows = ta.windows == tb.windows && ta.resample_seed == tb.resample_seed;
        // Windows of A also in B, for the per-window metrics.
        let common: Vec<(usize, usize)> = ta
            .windows
            .iter()
            .enumerate()
            .filter_map(|(i, id)| tb.windows.iter().position(|x| x == id).map(|j| (i, j)))
            .collect();
        let resamples = Resamples::new(common.len(), REPLICATES, ta.resample_seed);
        for (m, info) in ta.metrics.iter().enumerate() {
            let Some(mb) = tb.metrics.iter().position(|x| x.name == info.name) else {
                continue;
            };
            let (va, vb) = (&ra.metrics[m], &rb.metrics[mb]);
            let verdict = if info.set {
                if same_windows && va.replicates.len() == vb.replicates.len() {
                    let differences: Vec<f64> = va
                        .replicates
                        .iter()
                        .zip(&vb.replicates)
                        .filter_map(|(x, y)| Some(y.as_ref()? - x.as_ref()?))
                        .collect();
                    verdict_from_differences(&differences)
                } else {
                    Verdict::Unknown
                }
            } else {
                let la: Vec<Option<f64>> = common
                    .iter()
                    .map(|&(i, _)| va.loss.get(i).copied().flatten())
                    .collect();
                let lb: Vec<Option<f64>> = common
                    .iter()
                    .map(|&(_, j)| vb.loss.get(j).copied().flatten())
                    .collect();
                paired_verdict(&la, &lb, &resamples)
            };
            let name = match verdict {
                Verdict::Better => "A better",
                Verdict::Worse => "B better",
                Verdict::NoDifference => "no difference",
                Verdict::Unknown => "-",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {name} |\n",
                ta.task,
                info.name,
                va.interval.cell(),
                vb.interval.cell()
            ));
        }
    }
    if !any {
        bail!("the reports share no task with a '{row}' row");
    }
    Ok(out)
}

/// The track of `clip` a role's notes belong on: the first track of that role, else the first
/// pitched track.
pub fn track_for(clip: &Clip, role: TrackRole) -> Option<u16> {
    clip.track_with_role(role).or_else(|| {
        clip.tracks
            .iter()
            .position(|t| !t.is_drums())
            .map(|i| i as u16)
    })
}

/// The notes of `other` (a window of another song) in `case`'s region, moved onto `case`'s
/// tracks by role: the "real music of other songs" row's output for `case`.
pub fn other_song_output(case: &Case, other: &Clip) -> Clip {
    let wanted: Vec<TrackRole> = case.roles();
    let notes = other
        .notes
        .iter()
        .filter(|n| case.region.steps.contains(&n.start))
        .filter_map(|n| {
            let role = role_of(other, n);
            if role == TrackRole::Drums || !wanted.contains(&role) {
                return None;
            }
            let track = track_for(&case.truth, role)?;
            Some(crate::music::Note { track, ..*n })
        });
    case.with_notes(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::Region;
    use crate::evaluation::test_music::quarters_over_chords;
    use crate::music::Note;

    fn case(id: &str, shift: u8) -> Case {
        let clip = quarters_over_chords(
            4,
            ("Chords", TrackRole::Accompaniment),
            |bar, beat| 70 + shift + ((bar * 4 + beat) % 5) as u8,
            |_| vec![48 + shift],
        );
        Case {
            id: id.into(),
            truth: clip,
            region: Region {
                steps: 32..64,
                tracks: Some(vec![0]),
            },
        }
    }

    #[test]
    fn the_truth_row_beats_a_chord_stack_row_and_a_report_compares_with_itself() {
        let cases: Vec<Case> = (0..12)
            .map(|i| case(&format!("s:{i}"), (i % 4) as u8))
            .collect();
        let truth = RowOutputs {
            name: TRUTH.into(),
            outputs: vec![cases.iter().map(|c| Some(c.truth.clone())).collect()],
            seconds: 0.0,
        };
        let stacks = RowOutputs {
            name: "stacks".into(),
            outputs: vec![
                cases
                    .iter()
                    .map(|c| {
                        Some(c.with_notes((0..8u32).flat_map(|i| {
                            [60, 64, 67, 72].map(|p| Note::new(32 + i * 4, p, 4, 90, 0))
                        })))
                    })
                    .collect(),
            ],
            seconds: 0.0,
        };
        let report = evaluate_task("fill melody", &cases, &[truth, stacks], 0).unwrap();
        let voices = report.value(TRUTH, "melody: voices (mean)").unwrap();
        assert_eq!(voices.interval.value, Some(1.0));
        assert_eq!(
            report
                .value("stacks", "melody: voices (mean)")
                .unwrap()
                .interval
                .value,
            Some(4.0)
        );
        assert_eq!(voices.verdicts.get("stacks"), Some(&Verdict::Better));
        let counts = report.verdict_counts("stacks");
        assert!(
            counts.get("better").copied().unwrap_or(0) >= 5,
            "{counts:?}"
        );
        assert_eq!(counts.get("worse"), None, "{counts:?}");
        let table = report.markdown();
        assert!(table.contains("| melody: voices (mean) | like truth | 1.000 [1.000, 1.000] | 4.000 [4.000, 4.000] | better |"), "{table}");

        let eval = EvalReport {
            command: "test".into(),
            split: "test".into(),
            tasks: vec![report],
        };
        let dir = std::env::temp_dir().join(format!("bandmate-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        eval.write(&path).unwrap();
        let back = EvalReport::read(&path).unwrap();
        let same = compare(&back, &eval, "stacks").unwrap();
        assert!(
            !same.contains("A better") && !same.contains("B better"),
            "{same}"
        );
        let vs = compare(&back, &eval, TRUTH).unwrap();
        assert!(vs.contains("no difference"));
        assert!(compare(&back, &eval, "missing").is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
