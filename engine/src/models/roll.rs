//! UNet that predicts the clean two-channel piano roll x̂_0 from a noisy one x_t (binomial
//! diffusion, Atassi 2023). Strided-conv downsampling, nearest-neighbour upsampling, skip
//! connections, a sinusoidal timestep embedding added in every residual block.
//!
//! Input and output are `[batch, 2, steps, pitches]` (channel 0 onsets, 1 sustain); the output
//! is logits of p(x_0 = 1 | x_t). A `conditioned` model also reads what is known: its input has
//! three more channels, the known cells' clean values (onset, sustain; 0 where free) and a plane
//! that is 1 on known cells, so that it sees a given melody or context from the first step
//! instead of only through the known cells of x_t, which are as noisy as the rest at large t.

use crate::nn::{Linear, linear};
use candle_core::{DType, Module, Result, Tensor, bail};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use crate::nn::upsample_nearest2x;
use crate::nn::{Conv2d, GroupNormSilu, add_channel_bias, add_same, cat_channels};

/// Shapes of the network and the diffusion it was trained for (stored as `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Grid steps in one window (16th notes): 64 = 4 bars of 4/4.
    pub steps: usize,
    /// Lowest MIDI pitch of the window.
    pub pitch_lo: u8,
    /// Number of pitches in the window.
    pub pitches: usize,
    /// Channels of the first level; level `i` has `base_channels * channel_mults[i]`.
    pub base_channels: usize,
    pub channel_mults: Vec<usize>,
    /// Residual blocks per level on the way down (one more on the way up).
    pub res_blocks: usize,
    /// Groups of every GroupNorm (divides every channel count).
    pub groups: usize,
    /// The up path's 3×3 conv runs before the ×2 nearest-neighbour upsampling and maps to the
    /// next level's channels (a quarter of the multiply-adds there, and fewer in the next
    /// level's first block); absent in older configs: after upsampling, channels kept.
    #[serde(default)]
    pub conv_before_upsample: bool,
    /// Diffusion steps T.
    pub diffusion_steps: usize,
    /// Prior p of the binomial diffusion per channel (onset, sustain): the training data's mean
    /// cell density.
    pub prior: [f32; 2],
    /// Per-task density factors chosen after training on the valid split (absent in older
    /// configs: all 1).
    #[serde(default)]
    pub density: DensityCalibration,
    /// The network also reads the known cells and where they are (3 more input channels:
    /// known onset, known sustain, known-cell plane); absent in older configs: x_t only.
    #[serde(default)]
    pub conditioned: bool,
    /// Per-task guidance weights chosen on the valid split (absent in older configs: none).
    #[serde(default)]
    pub guidance: GuidanceCalibration,
    /// Per-task echo strengths chosen on the valid split (absent in older configs: none).
    #[serde(default)]
    pub echo: EchoCalibration,
    /// The network generates one part of a clip (its role in four one-hot planes) and reads the
    /// clip's other parts apart from it (onset, sustain, known-cell plane): 7 more input
    /// channels after the conditioned ones; needs `conditioned`. Absent in older configs: the
    /// net sees one merged roll.
    #[serde(default)]
    pub parts: bool,
}

/// The role of the part a [`Config::parts`] model generates (one input plane each, in this
/// order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartRole {
    /// The lead line: one voice.
    Melody,
    /// A second line beside the melody (POP909's bridge): mostly one voice.
    CounterMelody,
    /// Chords, a piano part, pads: any texture.
    Accompaniment,
    /// The lowest line: one voice.
    Bass,
}

impl PartRole {
    pub const ALL: [PartRole; 4] = [
        PartRole::Melody,
        PartRole::CounterMelody,
        PartRole::Accompaniment,
        PartRole::Bass,
    ];

    /// Its input plane.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parts that are one line (a melody or a bass): the tasks keep one voice of what the
    /// model writes for them.
    pub fn is_line(self) -> bool {
        matches!(self, PartRole::Melody | PartRole::Bass)
    }

    pub fn name(self) -> &'static str {
        match self {
            PartRole::Melody => "melody",
            PartRole::CounterMelody => "counter-melody",
            PartRole::Accompaniment => "accompaniment",
            PartRole::Bass => "bass",
        }
    }
}

/// What a [`Config::parts`] model reads besides the target part: the other parts' cells
/// (`[2, steps, pitches]` onset, sustain) and where they are known (`[steps, pitches]`).
#[derive(Clone, Debug, PartialEq)]
pub struct OtherParts {
    pub roll: Vec<f32>,
    pub known: Vec<bool>,
}

/// How a fill starts from the bars before the hole (0 = off): the sampler noises the notes of
/// the bars just before the free region, repeated across it, to step `strength · T` and
/// denoises from there, as a variation does (Atassi's Figure 7) — pop songs repeat, and the
/// echo hands the model the song's own material to vary instead of a blank. A fill with no
/// bars before it, or nothing in them, starts from noise as before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EchoCalibration {
    /// Fill and continue (0 = start from noise; up to 1, where the echo is all but noised away)
    /// when there is no `fill_range`.
    pub fill: f32,
    /// A fill of one track under other tracks' notes (an accompaniment written to a given
    /// melody after the bars before it); absent in older configs: the fill's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accompaniment: Option<f32>,
    /// `[lowest, highest]`: fill and continue draw their strength per sample, uniformly from
    /// this range (seeded by the sampling seed), instead of always `fill` — as songs sometimes
    /// come back almost as they were and sometimes move on. Absent in older configs: `fill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_range: Option<[f32; 2]>,
}

impl EchoCalibration {
    /// The echo strength of a fill that accompanies given notes.
    pub fn accompaniment(&self) -> f32 {
        self.accompaniment.unwrap_or(self.fill)
    }

    /// The echo strength of a fill or continuation sampled with `seed`: drawn from
    /// `fill_range` when there is one (the same seed, the same strength), else `fill`.
    pub fn fill_for(&self, seed: u64) -> f32 {
        match self.fill_range {
            Some([lowest, highest]) => {
                let u: f32 = ChaCha8Rng::seed_from_u64(seed ^ 0xec40).random();
                lowest + (highest - lowest) * u
            }
            None => self.fill,
        }
    }
}

/// Guidance weights w per task for a conditioned net (classifier-free guidance, Ho & Salimans
/// 2022): the sampler runs each step twice, with and without the known cells, and uses
/// `cond + w · (cond − uncond)` as the logits, which leans the result on what is known. The
/// net learnt both, since a fifth of its training windows had nothing known. 0 = one pass.
/// Generating from nothing has nothing to lean on, hence no entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuidanceCalibration {
    /// Fill, vary and continue.
    pub fill: f32,
    /// Harmonize.
    pub harmonize: f32,
}

/// Factors the sampler multiplies the user's density by, per task, so that density 1 gives
/// the best-scoring density on the valid split (`bandmate eval-roll --split valid --density d`):
/// a model fitted to whole songs can be too busy when it only writes an accompaniment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DensityCalibration {
    /// Fill, vary and continue.
    pub fill: f32,
    /// Harmonize (the accompaniment under a given melody).
    pub harmonize: f32,
    /// Generate from nothing.
    pub generate: f32,
}

impl Default for DensityCalibration {
    fn default() -> Self {
        Self {
            fill: 1.0,
            harmonize: 1.0,
            generate: 1.0,
        }
    }
}

super::presets!(Config {
    "tiny" => tiny,
    "fast-parts" => fast_parts,
    "fast" => fast,
    "fast-cond" => fast_conditioned,
    "small" => small,
    "base" => base,
});

impl Config {
    /// This shape with 8 base channels in 4 groups: narrow enough for tests to build, run and
    /// train in moments (same window, diffusion and conditioning).
    pub fn narrow(self) -> Self {
        Self {
            base_channels: 8,
            groups: 4,
            ..self
        }
    }

    /// The shipped model's shape. Pitches 32–95 (G#1–B6) hold 99.9% of the notes of POP909's
    /// train split (0.08% lie below, 0.04% above).
    pub fn small() -> Self {
        Self {
            steps: 64,
            pitch_lo: 32,
            pitches: 64,
            base_channels: 32,
            channel_mults: vec![1, 2, 2, 4],
            res_blocks: 1,
            groups: 8,
            conv_before_upsample: false,
            diffusion_steps: 100,
            prior: [0.01, 0.05],
            density: DensityCalibration::default(),
            conditioned: false,
            guidance: GuidanceCalibration::default(),
            echo: EchoCalibration::default(),
            parts: false,
        }
    }

    /// Half the channels of [`Config::small`].
    pub fn tiny() -> Self {
        Self {
            base_channels: 16,
            channel_mults: vec![1, 2, 2, 4],
            groups: 4,
            ..Self::small()
        }
    }

    /// Wider and deeper than [`Config::small`].
    pub fn base() -> Self {
        Self {
            base_channels: 48,
            channel_mults: vec![1, 2, 3, 4],
            res_blocks: 2,
            ..Self::small()
        }
    }

    /// Fewer channels near the full resolution than [`Config::small`] and more at the coarse
    /// levels, with the up path's convs before upsampling: 0.61 G multiply-adds per window
    /// instead of 1.09 G, for the 25-step fill's latency.
    pub fn fast() -> Self {
        Self {
            base_channels: 24,
            channel_mults: vec![1, 2, 4, 4],
            conv_before_upsample: true,
            ..Self::small()
        }
    }

    /// [`Config::fast`] reading the known cells too (`conditioned`).
    pub fn fast_conditioned() -> Self {
        Self {
            conditioned: true,
            ..Self::fast()
        }
    }

    /// [`Config::fast_conditioned`] generating one part beside the others (`parts`).
    pub fn fast_parts() -> Self {
        Self {
            parts: true,
            ..Self::fast_conditioned()
        }
    }

    /// Channels of level `i`.
    pub fn level_channels(&self, i: usize) -> usize {
        self.base_channels * self.channel_mults[i]
    }

    /// Channels of the network's input: x_t (onset, sustain), then for a conditioned model the
    /// known onset, known sustain and known-cell planes, then for a parts model the other
    /// parts' onset, sustain and known planes and the four role planes.
    pub fn input_channels(&self) -> usize {
        2 + if self.conditioned { 3 } else { 0 } + if self.parts { 7 } else { 0 }
    }

    /// Channels that the first layer of a parts model adds to the conditioned model's input.
    pub const PART_CHANNELS: usize = 7;

    /// Channels of the timestep embedding.
    pub fn time_channels(&self) -> usize {
        self.base_channels * 4
    }

    /// Check that the shapes fit together.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let levels = self.channel_mults.len();
        if levels == 0 || self.base_channels == 0 || self.groups == 0 {
            return Err("base_channels, groups and channel_mults must be non-zero".into());
        }
        // Sizes first, so that the arithmetic below cannot overflow on a hostile config file.
        if levels > 8
            || self.base_channels > 4096
            || self.channel_mults.iter().any(|&m| m > 64)
            || self.steps > 4096
            || self.pitches > 128
        {
            return Err(format!(
                "sizes out of range: {levels} levels (at most 8), base_channels {} (at most \
                 4096), channel_mults {:?} (each at most 64), steps {} (at most 4096), pitches \
                 {} (at most 128)",
                self.base_channels, self.channel_mults, self.steps, self.pitches
            ));
        }
        let factor = 1usize << (levels - 1);
        if self.steps == 0
            || !self.steps.is_multiple_of(factor)
            || self.pitches == 0
            || !self.pitches.is_multiple_of(factor)
        {
            return Err(format!(
                "steps ({}) and pitches ({}) must be multiples of 2^(levels-1) = {factor}",
                self.steps, self.pitches
            ));
        }
        if self.pitch_lo as usize + self.pitches > 128 {
            return Err(format!(
                "pitch window {}+{} leaves the MIDI range",
                self.pitch_lo, self.pitches
            ));
        }
        for i in 0..levels {
            if self.level_channels(i) == 0 || !self.level_channels(i).is_multiple_of(self.groups) {
                return Err(format!(
                    "level {i} has {} channels, not a multiple of {} groups",
                    self.level_channels(i),
                    self.groups
                ));
            }
        }
        if self.diffusion_steps < 2 {
            return Err("diffusion_steps must be at least 2".into());
        }
        if self
            .prior
            .iter()
            .any(|p| !(p.is_finite() && *p > 0.0 && *p < 1.0))
        {
            return Err(format!(
                "prior {:?} must lie strictly between 0 and 1",
                self.prior
            ));
        }
        let d = self.density;
        if [d.fill, d.harmonize, d.generate]
            .iter()
            .any(|f| !(f.is_finite() && *f > 0.0 && *f <= 100.0))
        {
            return Err(format!(
                "density calibration {d:?} must be positive factors (at most 100)"
            ));
        }
        let g = self.guidance;
        if [g.fill, g.harmonize]
            .iter()
            .any(|w| !(w.is_finite() && (0.0..=10.0).contains(w)))
        {
            return Err(format!("guidance {g:?} must be weights from 0 to 10"));
        }
        if self.parts && !self.conditioned {
            return Err(
                "a parts model reads the known cells: \"parts\" needs \"conditioned\"".into(),
            );
        }
        if !self.conditioned && (g.fill > 0.0 || g.harmonize > 0.0) {
            return Err("guidance needs a conditioned net (\"conditioned\": true)".into());
        }
        let range = self.echo.fill_range.unwrap_or([self.echo.fill; 2]);
        if [
            self.echo.fill,
            self.echo.accompaniment(),
            range[0],
            range[1],
        ]
        .iter()
        .any(|e| !(e.is_finite() && (0.0..=1.0).contains(e)))
            || range[0] > range[1]
        {
            return Err(format!(
                "echo {:?} must be strengths from 0 to 1 (a range lowest first)",
                self.echo
            ));
        }
        Ok(())
    }
}

/// The network input of one window, flat `[input channels, steps, pitches]`, appended to `out`:
/// `x_t` (`[2, plane]`), then for a conditioned model the known cells' values of `x0`
/// (`[2, plane]`, 0 on free cells) and the known-cell plane (1 where `free` is false). `free`
/// `[plane]`; `None` means every cell is free (nothing known).
pub fn conditioned_input(
    cfg: &Config,
    x_t: &[f32],
    x0: &[f32],
    free: Option<&[bool]>,
    out: &mut Vec<f32>,
) {
    let plane = cfg.steps * cfg.pitches;
    out.extend_from_slice(&x_t[..2 * plane]);
    if !cfg.conditioned {
        return;
    }
    let known = |i: usize| free.is_some_and(|f| !f[i]);
    for c in 0..2 {
        out.extend((0..plane).map(|i| if known(i) { x0[c * plane + i] } else { 0.0 }));
    }
    out.extend((0..plane).map(|i| if known(i) { 1.0 } else { 0.0 }));
}

/// The parts model's extra input of one window, flat `[7, steps, pitches]`, appended to `out`
/// (nothing for other models): the other parts' known onset and sustain (0 where not known),
/// their known-cell plane, and the role's one-hot planes. `others` `None`: nothing of the other
/// parts is known.
pub fn part_input(cfg: &Config, others: Option<&OtherParts>, role: PartRole, out: &mut Vec<f32>) {
    if !cfg.parts {
        return;
    }
    let plane = cfg.steps * cfg.pitches;
    match others {
        Some(o) => {
            let known = |i: usize| o.known.get(i).copied().unwrap_or(false);
            for c in 0..2 {
                out.extend((0..plane).map(|i| {
                    if known(i) {
                        o.roll.get(c * plane + i).copied().unwrap_or(0.0)
                    } else {
                        0.0
                    }
                }));
            }
            out.extend((0..plane).map(|i| if known(i) { 1.0 } else { 0.0 }));
        }
        None => out.extend(std::iter::repeat_n(0.0, 3 * plane)),
    }
    for r in PartRole::ALL {
        let v = if r == role { 1.0 } else { 0.0 };
        out.extend(std::iter::repeat_n(v, plane));
    }
}

/// Sinusoidal embedding of (possibly fractional) timesteps. `t: [batch]` -> `[batch, dim]`.
pub fn timestep_embedding(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f32.ln()) * i as f32 / half as f32).exp())
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?; // [batch, half]
    Tensor::cat(&[args.sin()?, args.cos()?], 1)
}

/// GroupNorm → SiLU → conv, plus the projected timestep embedding, twice; 1×1 conv on the skip
/// when the channel count changes.
#[derive(Clone, Debug)]
struct ResBlock {
    norm1: GroupNormSilu,
    conv1: Conv2d,
    time: Linear,
    norm2: GroupNormSilu,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(cin: usize, cout: usize, cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: GroupNormSilu::new(cfg.groups, cin, 1e-5, vb.pp("norm1"))?,
            conv1: Conv2d::new(cin, cout, 3, 1, 1, vb.pp("conv1"))?,
            time: linear(cfg.time_channels(), cout, vb.pp("time"))?,
            norm2: GroupNormSilu::new(cfg.groups, cout, 1e-5, vb.pp("norm2"))?,
            conv2: Conv2d::new(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            skip: if cin == cout {
                None
            } else {
                Some(Conv2d::new(cin, cout, 1, 1, 0, vb.pp("skip"))?)
            },
        })
    }

    /// `x: [batch, cin, h, w]`, `temb: [batch, time_channels]` (already through SiLU) ->
    /// `[batch, cout, h, w]`
    fn forward(&self, x: &Tensor, temb: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?)?;
        let h = add_channel_bias(&h, &self.time.forward(temb)?)?; // + [batch, cout]
        let h = self.conv2.forward(&self.norm2.forward(&h)?)?;
        match &self.skip {
            Some(skip) => add_same(&skip.forward(x)?, &h),
            None => add_same(x, &h),
        }
    }
}

/// One level of the UNet's down path.
#[derive(Clone, Debug)]
struct DownLevel {
    blocks: Vec<ResBlock>,
    /// 3×3 stride-2 conv halving steps and pitches (none on the last level).
    down: Option<Conv2d>,
}

/// One level of the up path.
#[derive(Clone, Debug)]
struct UpLevel {
    blocks: Vec<ResBlock>,
    /// Conv after nearest-neighbour upsampling ×2, or before it with
    /// `conv_before_upsample` (none on the top level).
    up: Option<Conv2d>,
}

/// The denoiser: `forward(x_t, t)` gives logits of x̂_0.
#[derive(Clone, Debug)]
pub struct RollUnet {
    cfg: Config,
    time1: Linear,
    time2: Linear,
    conv_in: Conv2d,
    down: Vec<DownLevel>,
    mid: [ResBlock; 2],
    up: Vec<UpLevel>,
    norm_out: GroupNormSilu,
    conv_out: Conv2d,
}

impl RollUnet {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if let Err(e) = cfg.validate() {
            bail!("roll model config: {e}");
        }
        let levels = cfg.channel_mults.len();
        let tc = cfg.time_channels();
        let c0 = cfg.level_channels(0);
        let time1 = linear(cfg.base_channels, tc, vb.pp("time_embed.0"))?;
        let time2 = linear(tc, tc, vb.pp("time_embed.2"))?;
        let conv_in = Conv2d::new(cfg.input_channels(), c0, 3, 1, 1, vb.pp("conv_in"))?;

        // Channels of every skip tensor, in the order they are pushed.
        let mut skips = vec![c0];
        let mut ch = c0;
        let mut down = Vec::with_capacity(levels);
        for i in 0..levels {
            let vbl = vb.pp(format!("down.{i}"));
            let cout = cfg.level_channels(i);
            let mut blocks = Vec::with_capacity(cfg.res_blocks);
            for j in 0..cfg.res_blocks {
                blocks.push(ResBlock::new(ch, cout, cfg, vbl.pp(format!("res.{j}")))?);
                ch = cout;
                skips.push(ch);
            }
            let down_conv = if i + 1 < levels {
                skips.push(ch);
                Some(Conv2d::new(ch, ch, 3, 2, 1, vbl.pp("down"))?)
            } else {
                None
            };
            down.push(DownLevel {
                blocks,
                down: down_conv,
            });
        }
        let mid = [
            ResBlock::new(ch, ch, cfg, vb.pp("mid.0"))?,
            ResBlock::new(ch, ch, cfg, vb.pp("mid.1"))?,
        ];
        let mut up = Vec::with_capacity(levels);
        for i in (0..levels).rev() {
            let vbl = vb.pp(format!("up.{i}"));
            let cout = cfg.level_channels(i);
            let mut blocks = Vec::with_capacity(cfg.res_blocks + 1);
            for j in 0..=cfg.res_blocks {
                let skip = skips.pop().expect("one skip per up block");
                blocks.push(ResBlock::new(
                    ch + skip,
                    cout,
                    cfg,
                    vbl.pp(format!("res.{j}")),
                )?);
                ch = cout;
            }
            let up_conv = if i > 0 {
                let cout = if cfg.conv_before_upsample {
                    cfg.level_channels(i - 1)
                } else {
                    ch
                };
                let conv = Conv2d::new(ch, cout, 3, 1, 1, vbl.pp("up"))?;
                ch = cout;
                Some(conv)
            } else {
                None
            };
            up.push(UpLevel {
                blocks,
                up: up_conv,
            });
        }
        let norm_out = GroupNormSilu::new(cfg.groups, ch, 1e-5, vb.pp("norm_out"))?;
        let conv_out = Conv2d::new(ch, 2, 3, 1, 1, vb.pp("conv_out"))?;
        Ok(Self {
            cfg: cfg.clone(),
            time1,
            time2,
            conv_in,
            down,
            mid,
            up,
            norm_out,
            conv_out,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device the weights are on, where the inputs go.
    pub fn device(&self) -> &candle_core::Device {
        self.conv_in.weight().device()
    }

    /// `x_t: [batch, input channels, steps, pitches]` (0/1 values: x_t, then for a conditioned
    /// model the known cells, see [`conditioned_input`]), `t: [batch]` timesteps (f32, 1..=T) ->
    /// logits of x̂_0 `[batch, 2, steps, pitches]`.
    pub fn forward(&self, x_t: &Tensor, t: &Tensor) -> Result<Tensor> {
        let (_, c, steps, pitches) = x_t.dims4()?;
        let want = self.cfg.input_channels();
        if c != want || steps != self.cfg.steps || pitches != self.cfg.pitches {
            bail!(
                "roll model expects [batch, {want}, {}, {}], got {:?}",
                self.cfg.steps,
                self.cfg.pitches,
                x_t.dims()
            );
        }
        let temb = timestep_embedding(t, self.cfg.base_channels)?; // [batch, base]
        let temb = self
            .time2
            .forward(&self.time1.forward(&temb)?.silu()?)?
            .silu()?; // [batch, 4·base]

        let mut h = self.conv_in.forward(x_t)?; // [batch, c0, steps, pitches]
        let mut skips = vec![h.clone()];
        for level in &self.down {
            for block in &level.blocks {
                h = block.forward(&h, &temb)?;
                skips.push(h.clone());
            }
            if let Some(down) = &level.down {
                h = down.forward(&h)?; // [batch, c, h/2, w/2]
                skips.push(h.clone());
            }
        }
        for block in &self.mid {
            h = block.forward(&h, &temb)?;
        }
        for level in &self.up {
            for block in &level.blocks {
                let skip = skips.pop().expect("one skip per up block");
                h = block.forward(&cat_channels(&h, &skip)?, &temb)?;
            }
            if let Some(up) = &level.up {
                h = if self.cfg.conv_before_upsample {
                    upsample_nearest2x(&up.forward(&h)?)?
                } else {
                    up.forward(&upsample_nearest2x(&h)?)?
                }; // [batch, c, 2h, 2w]
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h)?) // [batch, 2, steps, pitches]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    #[test]
    fn output_has_the_input_shape() {
        let cfg = Config {
            steps: 16,
            pitches: 24,
            ..Config::tiny().narrow()
        };
        for conv_before_upsample in [false, true] {
            let cfg = Config {
                conv_before_upsample,
                ..cfg.clone()
            };
            let map = VarMap::new();
            let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
            let net = RollUnet::new(&cfg, vb).unwrap();
            let x = Tensor::zeros((3, 2, 16, 24), DType::F32, &Device::Cpu).unwrap();
            let t = Tensor::new(&[1f32, 50., 100.], &Device::Cpu).unwrap();
            assert_eq!(net.forward(&x, &t).unwrap().dims(), &[3, 2, 16, 24]);
            let wrong = Tensor::zeros((1, 2, 16, 20), DType::F32, &Device::Cpu).unwrap();
            assert!(net.forward(&wrong, &t.narrow(0, 0, 1).unwrap()).is_err());
            // The up convs map to the next level's channels when they come first.
            let up1 = map.data().lock().unwrap()["up.1.up.weight"].dims().to_vec();
            let want_out = if conv_before_upsample {
                cfg.level_channels(0)
            } else {
                cfg.level_channels(1)
            };
            assert_eq!(up1, [want_out, cfg.level_channels(1), 3, 3]);
        }
        // A conditioned model reads 5 channels and refuses 2.
        let cfg = Config {
            conditioned: true,
            ..cfg
        };
        let map = VarMap::new();
        let net = RollUnet::new(
            &cfg,
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let t = Tensor::new(&[1f32, 50.], &Device::Cpu).unwrap();
        let x = Tensor::zeros((2, 5, 16, 24), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&x, &t).unwrap().dims(), &[2, 2, 16, 24]);
        let two = Tensor::zeros((2, 2, 16, 24), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward(&two, &t).is_err());
    }

    #[test]
    fn conditioned_input_holds_the_known_cells() {
        let cfg = Config {
            steps: 2,
            pitches: 2,
            ..Config::fast_conditioned()
        };
        let x_t = [1., 0., 0., 1., 0., 0., 1., 1.];
        let x0 = [0., 1., 1., 0., 1., 1., 0., 1.];
        let free = [true, false, true, false];
        let mut out = Vec::new();
        conditioned_input(&cfg, &x_t, &x0, Some(&free), &mut out);
        #[rustfmt::skip]
        assert_eq!(out, [
            1., 0., 0., 1., 0., 0., 1., 1., // x_t
            0., 1., 0., 0., 0., 1., 0., 1., // known onset, sustain
            0., 1., 0., 1., // known plane
        ]);
        out.clear();
        conditioned_input(&cfg, &x_t, &x0, None, &mut out);
        assert_eq!(&out[8..], &[0.0; 12]);
        out.clear();
        let plain = Config {
            conditioned: false,
            ..cfg
        };
        conditioned_input(&plain, &x_t, &x0, Some(&free), &mut out);
        assert_eq!(out, x_t);
    }

    #[test]
    fn upsampling_matches_candle() {
        let x = Tensor::arange(0f32, 24., &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 3, 4))
            .unwrap();
        let want = x
            .upsample_nearest2d(6, 8)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = upsample_nearest2x(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn hostile_config_sizes_are_rejected_without_overflowing() {
        // Each once panicked inside `validate` (shift or multiplication overflow), taking the
        // embedded models down with a bad user model.
        let hostile = [
            Config {
                channel_mults: vec![1; 70],
                ..Config::small()
            },
            Config {
                base_channels: usize::MAX,
                ..Config::small()
            },
            Config {
                pitches: usize::MAX,
                ..Config::small()
            },
            Config {
                channel_mults: vec![usize::MAX, 2],
                ..Config::small()
            },
        ];
        for cfg in hostile {
            let result = std::panic::catch_unwind(|| cfg.validate());
            assert!(matches!(result, Ok(Err(_))), "{:?}", cfg.channel_mults);
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(
            Config {
                pitches: 60,
                ..Config::small()
            }
            .validate()
            .is_err()
        );
        assert!(
            Config {
                prior: [0.0, 0.1],
                ..Config::small()
            }
            .validate()
            .is_err()
        );
        // Guidance needs a conditioned net and a weight in 0..=10.
        let guided = |conditioned: bool, harmonize: f32| Config {
            conditioned,
            guidance: GuidanceCalibration {
                fill: 0.0,
                harmonize,
            },
            ..Config::fast()
        };
        assert!(guided(true, 0.5).validate().is_ok());
        assert!(guided(false, 0.5).validate().is_err());
        assert!(guided(false, 0.0).validate().is_ok());
        assert!(guided(true, -0.5).validate().is_err());
        assert!(guided(true, f32::NAN).validate().is_err());
        for name in ["tiny", "small", "fast", "fast-cond", "base"] {
            assert!(Config::preset(name).unwrap().validate().is_ok(), "{name}");
        }
        // Echo strengths lie in 0..=1, the accompaniment's too.
        let echoed = |fill: f32, accompaniment: Option<f32>| Config {
            echo: EchoCalibration {
                fill,
                accompaniment,
                fill_range: None,
            },
            ..Config::fast()
        };
        assert!(echoed(0.7, Some(0.3)).validate().is_ok());
        assert!(echoed(0.7, Some(1.5)).validate().is_err());
        assert!(echoed(-0.1, None).validate().is_err());
        assert!(echoed(0.7, Some(f32::NAN)).validate().is_err());
    }

    #[test]
    fn an_older_config_without_the_accompaniment_echo_takes_the_fills() {
        let old: Config = serde_json::from_str(
            &serde_json::to_string(&Config::fast())
                .unwrap()
                .replace("\"echo\":{\"fill\":0.0}", "\"echo\":{\"fill\":0.4}"),
        )
        .unwrap();
        assert_eq!(old.echo.fill, 0.4);
        assert_eq!(old.echo.accompaniment, None);
        assert_eq!(old.echo.accompaniment(), 0.4);
        // The shipped parts model fills from noise (no echo was needed on the valid split).
        let shipped: Config =
            serde_json::from_str(include_str!("../../../assets/roll/config.json")).unwrap();
        assert!(shipped.parts && shipped.conditioned);
        assert_eq!(shipped.echo.fill, 0.0);
        assert_eq!(shipped.echo.accompaniment(), 0.0);
        assert_eq!(shipped.echo.fill_range, None);
        // Without a range every fill takes `fill`.
        assert_eq!(old.echo.fill_for(3), 0.4);
    }

    #[test]
    fn a_fill_range_draws_one_strength_per_seed_inside_it() {
        let echo = EchoCalibration {
            fill: 0.7,
            accompaniment: Some(0.3),
            fill_range: Some([0.4, 1.0]),
        };
        let drawn: Vec<f32> = (0..200).map(|seed| echo.fill_for(seed)).collect();
        assert!(drawn.iter().all(|e| (0.4..1.0).contains(e)));
        assert_eq!(echo.fill_for(17), echo.fill_for(17));
        // Spread over the range: both thirds at the ends are drawn often.
        assert!(drawn.iter().filter(|&&e| e < 0.6).count() > 40);
        assert!(drawn.iter().filter(|&&e| e > 0.8).count() > 40);
        assert_eq!(echo.accompaniment(), 0.3);
        // A range outside 0..=1 or upside down is refused.
        let with_range = |range| {
            let mut cfg = Config::fast();
            cfg.echo.fill_range = Some(range);
            cfg.validate()
        };
        assert!(with_range([0.4, 1.0]).is_ok());
        assert!(with_range([0.8, 0.4]).is_err());
        assert!(with_range([0.4, 1.2]).is_err());
        assert!(with_range([f32::NAN, 0.5]).is_err());
    }
}
