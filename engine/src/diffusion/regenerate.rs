//! The engine under every roll task: a region of a clip (a mask) regenerated window by window
//! by the roll diffusion model, for the merged model ([`regenerate`]) or one part at a time
//! ([`regenerate_part`]), with the options every task shares ([`RollOptions`]).
//!
//! - Clips longer than the model's 4-bar window are sampled window by window (hop 2 bars);
//!   each window commits its first half and the next window sees it as context; a window with
//!   nothing to write in its half is skipped. Clips shorter than 4 bars are padded with free
//!   cells that are generated and dropped.
//! - The model's pitch window is moved by whole octaves to hold most of the clip's notes.
//! - Notes whose first cell is outside the mask come back exactly unchanged.

use std::ops::{Range, RangeInclusive};
use std::sync::Arc;

use anyhow::{Result, bail};

use super::model::RollModel;
use super::parts::one_voice;
use super::sampler::{PartProblem, SamplerKind, SamplerOptions, WindowProblem};
use crate::models::roll::{Config, OtherParts, PartRole};
use crate::music::velocity::assign_velocities;
use crate::music::{
    Clip, Key, Mask, Note, ONSET, PianoRoll, SUSTAIN, TimeSignature, Track, TrackRole, pitch_name,
};
use crate::settings::DEFAULT_STEPS;

/// Sampling and steering options shared by every task.
#[derive(Clone, Debug, PartialEq)]
pub struct RollOptions {
    /// Network evaluations (10..=T recommended; 1..=T accepted).
    pub steps: usize,
    pub sampler: SamplerKind,
    pub seed: u64,
    /// Key lock: generated cells outside the scale stay off.
    pub key: Option<Key>,
    /// Generated notes stay inside these pitches.
    pub pitch_range: Option<RangeInclusive<u8>>,
    /// Multiplies the predicted odds of a cell being on: below 1 sparser, above 1 denser. The
    /// model's per-task calibration (`Config::density`) multiplies it again, so 1 is the density
    /// that scored best on the valid split.
    pub density: f32,
    /// Divides the model's logits before each draw (see [`SamplerOptions::temperature`]):
    /// 1 as trained, lower tamer, higher wilder.
    pub temperature: f32,
    /// Classifier-free guidance weight for a conditioned model (see
    /// [`SamplerOptions::guidance`]); `None` takes the model's per-task calibration
    /// (`Config::guidance`).
    pub guidance: Option<f32>,
    /// Echo strength for fill and continue (see [`crate::models::roll::EchoCalibration`]):
    /// start from the bars before the hole, noised to step `echo · T`; 0 = from noise; `None`
    /// takes the model's calibration (`Config::echo`).
    pub echo: Option<f32>,
    /// Progress and cancellation: called after every network evaluation.
    pub on_step: Option<StepHook>,
}

/// Called with (network evaluations done, planned) after each one; returning `false` cancels
/// the task, which then fails with an error saying "cancelled".
#[derive(Clone)]
pub struct StepHook(pub Arc<dyn Fn(usize, usize) -> bool + Send + Sync>);

impl StepHook {
    pub fn new(f: impl Fn(usize, usize) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for StepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepHook")
    }
}

impl PartialEq for StepHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for RollOptions {
    fn default() -> Self {
        Self {
            steps: DEFAULT_STEPS,
            sampler: SamplerKind::Algorithm1,
            seed: 0,
            key: None,
            pitch_range: None,
            density: 1.0,
            temperature: 1.0,
            guidance: None,
            echo: None,
            on_step: None,
        }
    }
}

/// The start content of an echo (`[2, padded steps, pitches]` like `free`'s rolls): the bars
/// just before the first free step, as many as the free region spans (at most as many as there
/// are), repeated across the clip from there; `None` when the free region starts in the first
/// bar or the echoed cells hold no onset. `source` are the notes that may be echoed, `draw`
/// puts a note into a roll.
pub(crate) fn echo_content<'a>(
    source: impl Iterator<Item = &'a Note>,
    free: &[bool],
    len: usize,
    pitches: usize,
    steps_per_bar: usize,
    draw: &dyn Fn(&mut [f32], &Note),
) -> Option<Vec<f32>> {
    let plane = free.len();
    let free_step = |s: &usize| free[s * pitches..(s + 1) * pitches].iter().any(|&f| f);
    let first = (0..len).find(free_step)?;
    let last = (0..len).rev().find(free_step)?;
    let first_bar = first / steps_per_bar.max(1);
    let span_bars = last / steps_per_bar.max(1) - first_bar + 1;
    let period = span_bars.min(first_bar) * steps_per_bar;
    if period == 0 {
        return None;
    }
    let hole = first_bar * steps_per_bar;
    let mut before = vec![0.0f32; 2 * plane];
    for n in source {
        draw(&mut before, n);
    }
    let mut content = vec![0.0f32; 2 * plane];
    let mut onsets = 0usize;
    for s in hole..len {
        let from = hole - period + (s - hole) % period;
        for c in 0..2 {
            let (to, src) = (c * plane + s * pitches, c * plane + from * pitches);
            content[to..to + pitches].copy_from_slice(&before[src..src + pitches]);
        }
        onsets += (0..pitches)
            .filter(|&o| free[s * pitches + o] && content[s * pitches + o] > 0.5)
            .count();
    }
    (onsets > 0).then_some(content)
}

/// Whether `mask`'s cells cover the first cell of `n`, whatever track the mask names.
pub(crate) fn mask_covers_any_track(mask: &Mask, n: &Note) -> bool {
    mask.get(n.start, n.pitch)
}

/// Check what every task needs of a clip.
pub(crate) fn check_clip(clip: &Clip) -> Result<()> {
    if clip.bars == 0 || clip.steps() == 0 {
        bail!("the clip is empty (0 bars)");
    }
    let four = TimeSignature::FOUR_FOUR;
    if clip.time_signature != four || clip.meter_changes.iter().any(|m| m.time_signature != four) {
        let other = std::iter::once(clip.time_signature)
            .chain(clip.meter_changes.iter().map(|m| m.time_signature))
            .find(|t| *t != four)
            .unwrap_or(four);
        bail!("the roll model works on 4/4 clips; this clip is in {other}");
    }
    Ok(())
}

/// The octave shift (in octaves, added to the clip's pitches) that puts the most context
/// notes inside the model's window, taken only when at least a tenth of them lie outside it
/// unshifted; 0 otherwise or without notes. The model learned where accompaniment lies from
/// the notes' absolute pitch, so shifting a melody whose few top notes leave the window would
/// move everything it writes under it by an octave.
pub(crate) fn octave_shift(clip: &Clip, lo: u8, pitches: usize) -> i32 {
    let pitched: Vec<i32> = clip
        .notes
        .iter()
        .filter(|n| {
            !clip
                .tracks
                .get(n.track as usize)
                .is_some_and(Track::is_drums)
        })
        .map(|n| n.pitch as i32)
        .collect();
    let inside = |k: i32| {
        pitched
            .iter()
            .filter(|&&p| {
                let p = p + 12 * k;
                p >= lo as i32 && p < lo as i32 + pitches as i32
            })
            .count()
    };
    let unshifted = inside(0);
    if unshifted * 10 >= pitched.len() * 9 {
        return 0;
    }
    let mut best = (unshifted, 0);
    for k in [-1, 1, -2, 2, -3, 3] {
        let window_lo = lo as i32 - 12 * k;
        if window_lo < 0 || window_lo + pitches as i32 > 128 {
            continue;
        }
        let n = inside(k);
        if n > best.0 {
            best = (n, k);
        }
    }
    best.1
}

/// Which track generated notes go to (adding a "Generated" track when needed).
pub(crate) fn target_track(clip: &mut Clip, mask: &Mask) -> Result<u16> {
    if let Some(t) = mask.track {
        if t as usize >= clip.tracks.len() {
            bail!(
                "the mask names track {} but the clip has {} tracks",
                t + 1,
                clip.tracks.len()
            );
        }
        if clip.tracks[t as usize].is_drums() {
            bail!(
                "track {} ('{}') is a drum track; the roll model writes pitched notes",
                t + 1,
                clip.tracks[t as usize].name
            );
        }
        return Ok(t);
    }
    let pitched: Vec<u16> = (0..clip.tracks.len() as u16)
        .filter(|&t| !clip.tracks[t as usize].is_drums())
        .collect();
    if pitched.len() == 1 {
        return Ok(pitched[0]);
    }
    let channel = free_channel(clip);
    Ok(clip.add_track(Track::new("Generated", TrackRole::Accompaniment, channel)))
}

/// One part regenerated by a parts model ([`crate::models::roll::Config::parts`]): its track and role, and the
/// tracks regenerated after it in the same request, whose masked notes it does not hear.
#[derive(Clone, Debug, PartialEq)]
pub struct PartTarget {
    pub track: u16,
    pub role: PartRole,
    pub pending: Vec<u16>,
}

/// [`regenerate`] for one part: only `part.track`'s masked notes are rewritten, the model
/// reading that track's other notes as known cells and the other tracks apart; what it writes
/// goes to that track, one voice for a melody or bass.
pub fn regenerate_part(
    model: &RollModel,
    clip: &Clip,
    mask: &Mask,
    part: &PartTarget,
    strength: Option<f32>,
    opts: &RollOptions,
) -> Result<Clip> {
    if !model.config().parts {
        bail!("{} is not a parts model", model.source);
    }
    let mut mask = mask.clone();
    mask.track = Some(part.track);
    regenerate_window_by_window(model, clip, &mask, Some(part), strength, opts)
}

/// [`regenerate`] and [`regenerate_part`]: check the request, draw the clip into the model's
/// rolls, sample its windows in turn, and read the generated cells back as notes.
pub(crate) fn regenerate_window_by_window(
    model: &RollModel,
    clip: &Clip,
    mask: &Mask,
    part: Option<&PartTarget>,
    strength: Option<f32>,
    opts: &RollOptions,
) -> Result<Clip> {
    check_clip(clip)?;
    let cfg = model.config();
    check_request(clip, mask, opts, cfg.diffusion_steps)?;
    let mut out = clip.clone();
    let target = target_track(&mut out, mask)?;
    let is_drum = |n: &Note| {
        out.tracks
            .get(n.track as usize)
            .is_some_and(Track::is_drums)
    };
    let grid = RollGrid::new(cfg, clip);

    // Notes to regenerate: pitched, first cell masked (and on the mask's track), in the window.
    let regenerated =
        |n: &Note| !is_drum(n) && mask.covers_note(n) && grid.offset(n.pitch).is_some();
    let (old, context): (Vec<Note>, Vec<Note>) = out.notes.iter().partition(|n| regenerated(n));
    let mut rolls = WindowRolls::new(grid, &context, &old, &is_drum, mask, part, opts)?;
    let generated_cells = rolls.free.clone();

    // A fresh fill with an echo starts from the bars before the hole; a variation from the
    // notes it replaces.
    let strength = match (strength, opts.echo) {
        (None, Some(e)) if e > 0.0 => {
            let source = context.iter().filter(|n| {
                !is_drum(n)
                    && mask.track.is_none_or(|t| n.track == t)
                    && grid.offset(n.pitch).is_some()
            });
            let echoed = echo_content(
                source,
                &rolls.free,
                grid.len,
                grid.pitches,
                clip.steps_per_bar() as usize,
                &|roll: &mut [f32], n: &Note| grid.draw(roll, n),
            );
            match echoed {
                Some(echoed) => {
                    rolls.content = echoed;
                    Some(e)
                }
                None => None,
            }
        }
        _ => strength,
    };

    let plan = WindowPlan::new(cfg, grid.padded, strength, opts.steps);
    rolls.sample(model, &plan, part, strength.is_some(), opts)?;

    let mut notes = rolls.generated_notes(&generated_cells, target);
    if let Some(p) = part
        && p.role.is_line()
    {
        one_voice(&mut notes, p.role == PartRole::Bass);
    }
    assign_velocities(&context, &mut notes, target, out.steps_per_bar());
    out.notes = context;
    out.notes.extend(notes);
    out.sort_notes();
    Ok(out)
}

/// Check the sampling options of a request (`t_max`: the model's diffusion steps) and its mask.
fn check_request(clip: &Clip, mask: &Mask, opts: &RollOptions, t_max: usize) -> Result<()> {
    if opts.steps == 0 || opts.steps > t_max {
        bail!(
            "{} sampling steps: choose 1..={t_max} (10 or more recommended)",
            opts.steps
        );
    }
    if !(opts.density.is_finite() && opts.density > 0.0) {
        bail!("density {} must be a positive number", opts.density);
    }
    if !(opts.temperature.is_finite() && opts.temperature > 0.0) {
        bail!("temperature {} must be a positive number", opts.temperature);
    }
    if let Some(w) = opts.guidance
        && !(w.is_finite() && (0.0..=10.0).contains(&w))
    {
        bail!("guidance {w} must be a weight from 0 to 10");
    }
    if let Some(e) = opts.echo
        && !(e.is_finite() && (0.0..=1.0).contains(&e))
    {
        bail!("echo {e} must be a strength from 0 to 1");
    }
    if mask.steps != clip.steps() {
        bail!(
            "the mask covers {} steps but the clip has {}",
            mask.steps,
            clip.steps()
        );
    }
    if mask.is_empty() {
        bail!("the mask covers no cell: nothing to regenerate");
    }
    Ok(())
}

/// Where a clip's cells lie in the model's rolls: the model's pitch window, moved by whole
/// octaves to hold most of the clip's notes ([`octave_shift`]), over the clip's steps padded to
/// at least one window. Rolls are `[2, padded, pitches]` (onsets, then sustains), cell masks
/// `[padded, pitches]`.
#[derive(Clone, Copy, Debug)]
struct RollGrid {
    /// The lowest pitch of the moved window.
    window_lo: i32,
    pitches: usize,
    /// The clip's steps.
    len: usize,
    /// The clip's steps, at least one window.
    padded: usize,
}

impl RollGrid {
    fn new(cfg: &Config, clip: &Clip) -> Self {
        let shift = octave_shift(clip, cfg.pitch_lo, cfg.pitches);
        let len = clip.steps() as usize;
        Self {
            window_lo: cfg.pitch_lo as i32 - 12 * shift,
            pitches: cfg.pitches,
            len,
            padded: len.max(cfg.steps),
        }
    }

    /// Cells of one channel of a roll.
    fn plane(&self) -> usize {
        self.padded * self.pitches
    }

    /// The roll column of `pitch`; `None` outside the window.
    fn offset(&self, pitch: u8) -> Option<usize> {
        let o = pitch as i32 - self.window_lo;
        (o >= 0 && (o as usize) < self.pitches).then_some(o as usize)
    }

    /// The pitch of roll column `o`.
    fn pitch(&self, o: usize) -> u8 {
        (self.window_lo + o as i32) as u8
    }

    /// Set the cells of `n` in `roll`: its onset and sustain, within the window and the steps.
    fn draw(&self, roll: &mut [f32], n: &Note) {
        let Some(o) = self.offset(n.pitch) else {
            return;
        };
        let (pitches, padded, plane) = (self.pitches, self.padded, self.plane());
        let s0 = n.start as usize;
        if s0 < padded {
            roll[s0 * pitches + o] = 1.0;
        }
        for s in s0..(n.end() as usize).min(padded) {
            roll[plane + s * pitches + o] = 1.0;
        }
    }
}

/// The rolls of a request over the whole padded clip ([`RollGrid`]), from which each window's
/// problem is cut and into which each window commits what it generated.
struct WindowRolls {
    grid: RollGrid,
    /// Known values: the context notes (a parts model's own track only), then the cells each
    /// window commits.
    known: Vec<f32>,
    /// A parts model's other tracks (without the masked notes of the tracks regenerated after
    /// this one), and which of their cells are known.
    others: Option<(Vec<f32>, Vec<bool>)>,
    /// Where the free cells of a variation or an echo start from: the notes being replaced, or
    /// the echoed bars.
    content: Vec<f32>,
    /// Cells still to generate: masked in the clip and not known, and all the padding.
    free: Vec<bool>,
    /// Cells a generated note may take (key lock and pitch range).
    allowed: Vec<bool>,
}

impl WindowRolls {
    /// The rolls of the `context` notes kept and the `old` notes regenerated; an error when the
    /// mask leaves no cell to generate in the window or the pitch range lies outside it.
    fn new(
        grid: RollGrid,
        context: &[Note],
        old: &[Note],
        is_drum: &dyn Fn(&Note) -> bool,
        mask: &Mask,
        part: Option<&PartTarget>,
        opts: &RollOptions,
    ) -> Result<Self> {
        let (len, padded, pitches, plane) = (grid.len, grid.padded, grid.pitches, grid.plane());
        let mut known = vec![0.0f32; 2 * plane];
        // A parts model reads its own track's notes as known cells and the other tracks apart
        // (without the masked notes of tracks regenerated after this one).
        let mut others = part.map(|_| vec![0.0f32; 2 * plane]);
        let hidden = |n: &Note| {
            part.is_some_and(|p| p.pending.contains(&n.track) && mask_covers_any_track(mask, n))
        };
        for n in context.iter().filter(|n| !is_drum(n)) {
            match (&mut others, part) {
                (Some(o), Some(p)) if n.track != p.track => {
                    if !hidden(n) {
                        grid.draw(o, n);
                    }
                }
                _ => grid.draw(&mut known, n),
            }
        }
        let others = match (others, part) {
            (Some(o), Some(p)) => {
                let mut masked_step = vec![false; padded];
                for s in mask.masked_steps() {
                    if (s as usize) < padded {
                        masked_step[s as usize] = true;
                    }
                }
                let known: Vec<bool> = (0..plane)
                    .map(|i| {
                        let s = i / pitches;
                        ((p.pending.is_empty() || !masked_step[s]) && s < len) || o[plane + i] > 0.5
                    })
                    .collect();
                Some((o, known))
            }
            _ => None,
        };
        let mut content = vec![0.0f32; 2 * plane];
        for n in old {
            grid.draw(&mut content, n);
        }
        let mut free = vec![false; plane];
        let mut allowed = vec![false; plane];
        let mut free_in_clip = 0usize;
        for s in 0..padded {
            for o in 0..pitches {
                let pitch = grid.pitch(o);
                let i = s * pitches + o;
                let occupied = known[i] > 0.5 || known[plane + i] > 0.5;
                free[i] = if s < len {
                    mask.get(s as u32, pitch) && !occupied
                } else {
                    true
                };
                if free[i] && s < len {
                    free_in_clip += 1;
                }
                allowed[i] = opts.key.is_none_or(|k| k.contains(pitch))
                    && opts.pitch_range.as_ref().is_none_or(|r| r.contains(&pitch));
            }
        }
        if free_in_clip == 0 {
            bail!(
                "the mask has no free cell inside the model's pitch window {}–{}",
                pitch_name(grid.pitch(0)),
                pitch_name(grid.pitch(pitches - 1))
            );
        }
        if let Some(r) = &opts.pitch_range
            && !(0..pitches).any(|o| r.contains(&grid.pitch(o)))
        {
            bail!(
                "pitch range {}–{} lies outside the model's window",
                pitch_name(*r.start()),
                pitch_name(*r.end())
            );
        }
        Ok(Self {
            grid,
            known,
            others,
            content,
            free,
            allowed,
        })
    }

    /// Whether a cell of `steps` is still free.
    fn has_free(&self, steps: Range<usize>) -> bool {
        let pitches = self.grid.pitches;
        self.free[steps.start * pitches..steps.end * pitches]
            .iter()
            .any(|&f| f)
    }

    /// Sample the windows of `plan` in turn, each committing its cells; a window with no free
    /// cell to commit is skipped. Free cells start from [`WindowRolls::content`] when
    /// `from_content`, else empty.
    fn sample(
        &mut self,
        model: &RollModel,
        plan: &WindowPlan,
        part: Option<&PartTarget>,
        from_content: bool,
        opts: &RollOptions,
    ) -> Result<()> {
        let planned = plan.eval_steps
            * (0..plan.starts.len())
                .filter(|&w| self.has_free(plan.commits(w)))
                .count();
        let mut done_before = 0;
        for (w, &ws) in plan.starts.iter().enumerate() {
            let commits = plan.commits(w);
            if !self.has_free(commits.clone()) {
                continue;
            }
            let window = ws..ws + plan.window_steps;
            let problem = self.problem(window.clone(), part, from_content);
            let sampler = SamplerOptions {
                kind: opts.sampler,
                steps: plan.eval_steps,
                start: plan.start_step,
                density: opts.density,
                guidance: opts.guidance.unwrap_or(0.0),
                temperature: opts.temperature,
                seed: opts.seed.wrapping_add(1_000_003 * w as u64),
            };
            let mut after_step = |done: usize| match &opts.on_step {
                Some(hook) => (hook.0)((done_before + done).min(planned), planned),
                None => true,
            };
            let result = model
                .sample_with_hook(std::slice::from_ref(&problem), &sampler, &mut after_step)?
                .remove(0);
            done_before += plan.eval_steps;
            self.commit(window, commits, &result);
        }
        Ok(())
    }

    /// The problem of the window over `steps`.
    fn problem(
        &self,
        steps: Range<usize>,
        part: Option<&PartTarget>,
        from_content: bool,
    ) -> WindowProblem {
        let (pitches, plane) = (self.grid.pitches, self.grid.plane());
        let range = steps.start * pitches..steps.end * pitches;
        let mut x0 = vec![0.0f32; 2 * range.len()];
        for c in 0..2 {
            for i in range.clone() {
                let local = c * range.len() + (i - range.start);
                let g = c * plane + i;
                x0[local] = if self.free[i] {
                    if from_content { self.content[g] } else { 0.0 }
                } else {
                    self.known[g]
                };
            }
        }
        WindowProblem {
            x0,
            free: self.free[range.clone()].to_vec(),
            allowed: self.allowed[range.clone()].to_vec(),
            part: match (part, &self.others) {
                (Some(p), Some((o, k))) => Some(PartProblem {
                    role: p.role,
                    others: OtherParts {
                        roll: (0..2)
                            .flat_map(|c| {
                                o[c * plane + range.start..c * plane + range.end]
                                    .iter()
                                    .copied()
                            })
                            .collect(),
                        known: k[range.clone()].to_vec(),
                    },
                }),
                _ => None,
            },
        }
    }

    /// Write the free cells of `steps` as known cells from `result`, what was sampled for
    /// `window`.
    fn commit(&mut self, window: Range<usize>, steps: Range<usize>, result: &[f32]) {
        let (pitches, plane) = (self.grid.pitches, self.grid.plane());
        let (start, window_cells) = (window.start, window.len() * pitches);
        for s in steps {
            for o in 0..pitches {
                let i = s * pitches + o;
                if self.free[i] {
                    let local = (s - start) * pitches + o;
                    self.known[i] = result[local];
                    self.known[plane + i] = result[window_cells + local];
                    self.free[i] = false;
                }
            }
        }
    }

    /// The notes of the `generated` cells (on `track`), read from their onsets.
    fn generated_notes(&self, generated: &[bool], track: u16) -> Vec<Note> {
        let (len, pitches, plane) = (self.grid.len, self.grid.pitches, self.grid.plane());
        let mut roll = PianoRoll::zeros(len, 0, 128);
        for s in 0..len {
            for o in 0..pitches {
                let i = s * pitches + o;
                if generated[i] {
                    let pitch = self.grid.pitch(o);
                    roll.set(ONSET, s, pitch, self.known[i]);
                    roll.set(SUSTAIN, s, pitch, self.known[plane + i]);
                }
            }
        }
        roll.to_notes_from_onsets(0.5, 1, track)
    }
}

/// The windows a request samples: windows of the model's steps, hop half a window, the last
/// one flush with the end; and how each is sampled.
struct WindowPlan {
    window_steps: usize,
    starts: Vec<usize>,
    padded: usize,
    /// The diffusion step sampling starts from: T fresh, lower for a variation.
    start_step: usize,
    /// Network evaluations per window.
    eval_steps: usize,
}

impl WindowPlan {
    /// The windows over `padded` steps, sampled with `steps` network evaluations, fresh
    /// (`strength` None) or from the start content noised to `strength`.
    fn new(cfg: &Config, padded: usize, strength: Option<f32>, steps: usize) -> Self {
        let (window_steps, t_max) = (cfg.steps, cfg.diffusion_steps);
        let hop = window_steps / 2;
        let mut starts: Vec<usize> = (0..)
            .map(|i| i * hop)
            .take_while(|&s| s + window_steps <= padded)
            .collect();
        if starts.last().is_none_or(|&s| s + window_steps < padded) {
            starts.push(padded - window_steps);
        }
        let start_step = strength.map_or(t_max, |s| {
            ((s * t_max as f32).round() as usize).clamp(1, t_max)
        });
        let eval_steps = strength
            .map_or(steps, |s| ((steps as f32 * s).round() as usize).max(1))
            .min(start_step);
        Self {
            window_steps,
            starts,
            padded,
            start_step,
            eval_steps,
        }
    }

    /// The steps window `w` keeps of what it generates: [its start, the next window's start).
    /// The commit ranges cover the clip once, so a window without free cells in its own range
    /// is skipped (a later window, which hears what comes after, writes those cells).
    fn commits(&self, w: usize) -> Range<usize> {
        self.starts[w]..self.starts.get(w + 1).copied().unwrap_or(self.padded)
    }
}

/// A MIDI channel no track uses (not 10, the drums'), else 1.
pub(crate) fn free_channel(clip: &Clip) -> u8 {
    (0..16u8)
        .find(|c| *c != 9 && !clip.tracks.iter().any(|t| t.channel == *c))
        .unwrap_or(0)
}
