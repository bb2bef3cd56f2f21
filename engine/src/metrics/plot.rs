//! `plot_histograms`: a PNG with the distributions of both sets side by side.

use super::eval::EvalOptions;
use super::features::{ClipFeatures, Feature, NOTE_LENGTH_CLASSES};
use super::rhythm::onset_positions;
use super::stats::{self, DensityPair};
use super::yang_lerch;
use crate::music::Clip;
use crate::music::key::PITCH_CLASS_NAMES;
use anyhow::{Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const REFERENCE_COLOR: RGBColor = RGBColor(31, 119, 180);
const GENERATED_COLOR: RGBColor = RGBColor(230, 110, 20);
const INTER_COLOR: RGBColor = RGBColor(60, 60, 60);
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1800, 1040);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Register the bundled Ubuntu Light font as "sans-serif" (once; plotters loads no system fonts).
pub(crate) fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        bail!("the bundled Ubuntu Light font could not be loaded")
    }
}

/// Draw the pitch-class histogram, note-length histogram, average IOI, pitch range, onset
/// positions of both sets side by side, and the densities of the pitch-class-histogram distances
/// (intra-set and inter-set, with their overlapping area), into the PNG file `path`.
pub fn plot_histograms(reference: &[Clip], generated: &[Clip], path: &Path) -> Result<()> {
    if reference.is_empty() && generated.is_empty() {
        bail!("{}: no clips to plot", path.display());
    }
    let is_png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!(
            "{}: the plot is written as PNG; name the file *.png",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        bail!(
            "{}: folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    ensure_font()?;
    draw(reference, generated, path).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn draw(
    reference: &[Clip],
    generated: &[Clip],
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let ref_features: Vec<ClipFeatures> = reference.iter().map(ClipFeatures::of).collect();
    let gen_features: Vec<ClipFeatures> = generated.iter().map(ClipFeatures::of).collect();
    let names = [
        format!("reference ({} clips)", reference.len()),
        format!("generated ({} clips)", generated.len()),
    ];

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 3));

    let mean_vector = |features: &[ClipFeatures], f: Feature| -> Vec<f64> {
        let vectors: Vec<Vec<f64>> = features.iter().map(|c| c.vector(f)).collect();
        (0..f.dimensions())
            .map(|d| stats::mean(&vectors.iter().map(|v| v[d]).collect::<Vec<_>>()).unwrap_or(0.0))
            .collect()
    };
    // The feature's mean vector of each set, as bars per dimension.
    let mean_bars = |area: &Area, title: &str, labels: &[String], f: Feature| {
        let means = [mean_vector(&ref_features, f), mean_vector(&gen_features, f)];
        category_bars(area, title, labels, [&means[0], &means[1]], &names)
    };
    let pc_labels: Vec<String> = PITCH_CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    mean_bars(
        &panels[0],
        "Pitch-class histogram (duration-weighted, mean)",
        &pc_labels,
        Feature::PitchClassHistogram,
    )?;
    let length_labels: Vec<String> = NOTE_LENGTH_CLASSES
        .iter()
        .map(|(name, _)| short_length_name(name))
        .collect();
    mean_bars(
        &panels[1],
        "Note-length histogram (mean)",
        &length_labels,
        Feature::NoteLengthHistogram,
    )?;
    // A one-number feature, one value per clip of each set.
    let scalar_histogram = |area: &Area, title: &str, f: Feature| {
        let scalar = |features: &[ClipFeatures]| -> Vec<f64> {
            features.iter().map(|c| c.vector(f)[0]).collect()
        };
        let values = [scalar(&ref_features), scalar(&gen_features)];
        value_histogram(area, title, [&values[0], &values[1]], &names)
    };
    scalar_histogram(
        &panels[2],
        "Average inter-onset interval per clip (steps)",
        Feature::AvgIoi,
    )?;
    scalar_histogram(
        &panels[3],
        "Pitch range per clip (semitones)",
        Feature::PitchRange,
    )?;
    let onset_shares = |clips: &[Clip]| -> Vec<f64> {
        let mut counts = [0usize; 4];
        for c in clips {
            counts
                .iter_mut()
                .zip(onset_positions(c))
                .for_each(|(a, b)| *a += b);
        }
        let total = counts.iter().sum::<usize>().max(1) as f64;
        counts.iter().map(|&c| c as f64 / total).collect()
    };
    let position_labels: Vec<String> = ["downbeat", "beat", "8th", "odd 16th"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    category_bars(
        &panels[4],
        "Onset position in the bar (share of onsets)",
        &position_labels,
        [&onset_shares(reference), &onset_shares(generated)],
        &names,
    )?;
    distance_densities(&panels[5], reference, generated, &names)?;
    root.present()?;
    Ok(())
}

/// "dotted quarter" → "1/4.", "half triplet" → "1/2T".
fn short_length_name(name: &str) -> String {
    let value = |word: &str| match word {
        "whole" => "1",
        "half" => "1/2",
        "quarter" => "1/4",
        "8th" => "1/8",
        _ => "1/16",
    };
    let words: Vec<&str> = name.split(' ').collect();
    match words.as_slice() {
        ["dotted", v] => format!("{}.", value(v)),
        [v, "triplet"] => format!("{}T", value(v)),
        [v] => value(v).to_string(),
        _ => name.to_string(),
    }
}

/// The top of a bar chart's value axis: 1.3 × the highest of `values` (at least a tiny bit).
fn bar_top<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    values.fold(0.0f64, |a, &b| a.max(b)).max(1e-6) * 1.3
}

/// A chart titled `title` on `area` spanning `x` by `y`, with room for axis labels below
/// (`x_label_area` pixels) and to the left.
fn chart_on<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    x_label_area: u32,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    Ok(ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(x_label_area)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)?)
}

fn legend_box(color: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
}

fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 17))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Two bars per category (reference left, generated right).
fn category_bars(
    area: &Area,
    title: &str,
    labels: &[String],
    values: [&[f64]; 2],
    names: &[String; 2],
) -> Result<(), Box<dyn std::error::Error>> {
    let n = labels.len();
    let top = bar_top(values.iter().flat_map(|v| v.iter()));
    let mut chart = chart_on(area, title, 34, -0.5f64..n as f64 - 0.5, 0f64..top)?;
    let labels_for_axis = labels.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels_for_axis.len() {
                labels_for_axis[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style((FONT, 15))
        .draw()?;
    draw_bars(&mut chart, values, names, |k, i| {
        let x = i as f64 + if k == 0 { -0.4 } else { 0.0 };
        (x, x + 0.4)
    })
}

/// Histogram of one value per clip, both sets on common bins, as shares of each set's clips.
fn value_histogram(
    area: &Area,
    title: &str,
    values: [&[f64]; 2],
    names: &[String; 2],
) -> Result<(), Box<dyn std::error::Error>> {
    const BINS: usize = 16;
    let all = values.iter().flat_map(|v| v.iter()).copied();
    let lo = all.clone().fold(f64::INFINITY, f64::min);
    let hi = all.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (0.0, 1.0)
    };
    let width = (hi - lo) / BINS as f64;
    let shares: Vec<Vec<f64>> = values
        .iter()
        .map(|v| {
            let mut counts = [0.0; BINS];
            for &x in v.iter() {
                counts[(((x - lo) / width) as usize).min(BINS - 1)] += 1.0;
            }
            counts.iter().map(|c| c / v.len().max(1) as f64).collect()
        })
        .collect();
    let top = bar_top(shares.iter().flatten());
    let mut chart = chart_on(area, title, 34, lo..hi, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(9)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .y_desc("share of clips")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;
    draw_bars(&mut chart, [&shares[0], &shares[1]], names, |k, i| {
        let x0 = lo + (i as f64 + 0.05 + 0.45 * k as f64) * width;
        (x0, x0 + 0.45 * width)
    })
}

/// Bar `i` of set `k` (reference, generated) from `x_of(k, i)` (left and right edge) up to
/// `values[k][i]`, in the set's color and named in the legend; then the legend.
fn draw_bars<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    values: [&[f64]; 2],
    names: &[String; 2],
    x_of: impl Fn(usize, usize) -> (f64, f64),
) -> Result<(), Box<dyn std::error::Error>> {
    for (k, color) in [REFERENCE_COLOR, GENERATED_COLOR].into_iter().enumerate() {
        chart
            .draw_series(values[k].iter().enumerate().map(|(i, &v)| {
                let (x0, x1) = x_of(k, i);
                Rectangle::new([(x0, 0.0), (x1, v)], color.mix(0.85).filled())
            }))?
            .label(names[k].as_str())
            .legend(legend_box(color));
    }
    draw_legend(chart)
}

/// Kernel density estimates of the pitch-class-histogram distances: intra-set of each set and
/// inter-set, with OA(intra reference, inter) in the title. Sampled as `evaluate` does by default.
fn distance_densities(
    area: &Area,
    reference: &[Clip],
    generated: &[Clip],
    names: &[String; 2],
) -> Result<(), Box<dyn std::error::Error>> {
    let opts = EvalOptions::default();
    let yl = yang_lerch::compare(
        reference,
        generated,
        &yang_lerch::sample_indices(reference.len(), opts.max_clips, opts.seed),
        &yang_lerch::sample_indices(generated.len(), opts.max_clips, opts.seed),
    );
    let feature = Feature::PitchClassHistogram;
    let distances = yl
        .distances
        .iter()
        .find(|(f, _)| *f == feature)
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    let curves = |p: &[f64], q: &[f64]| match DensityPair::new(p, q) {
        Some(DensityPair::Curves { grid, p, q }) => {
            let xs: Vec<f64> = (0..grid.len).map(|i| grid.x(i)).collect();
            Some((xs, p, q))
        }
        _ => None,
    };
    let to_reference = curves(&distances.intra_reference, &distances.inter);
    let to_generated = curves(&distances.intra_generated, &distances.inter);
    let oa = DensityPair::new(&distances.intra_reference, &distances.inter)
        .map(|d| format!("{:.3}", d.overlap_area()))
        .unwrap_or_else(|| "-".to_string());
    let title = format!("Pitch-class-histogram distances (KDE), OA = {oa}");
    type Curve = (String, RGBColor, Vec<(f64, f64)>);
    let mut lines: Vec<Curve> = Vec::new();
    if let Some((xs, p, q)) = &to_reference {
        lines.push((format!("intra {}", names[0]), REFERENCE_COLOR, zip(xs, p)));
        lines.push(("inter-set".to_string(), INTER_COLOR, zip(xs, q)));
    }
    if let Some((xs, p, _)) = &to_generated {
        lines.push((format!("intra {}", names[1]), GENERATED_COLOR, zip(xs, p)));
    }
    let points = lines.iter().flat_map(|(_, _, l)| l.iter());
    let x_lo = points.clone().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_hi = points
        .clone()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max);
    let y_hi = points.map(|p| p.1).fold(0.0f64, f64::max);
    let (x_lo, x_hi) = if x_hi > x_lo {
        (x_lo, x_hi)
    } else {
        (0.0, 1.0)
    };
    let mut chart = chart_on(area, &title, 40, x_lo..x_hi, 0f64..y_hi.max(1e-6) * 1.3)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|x| format!("{x:.2}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .x_desc("Euclidean distance")
        .y_desc("density")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;
    if lines.is_empty() {
        area.draw(&Text::new(
            "fewer than 2 clips in a set: no distance distribution",
            (40, 120),
            (FONT, 18),
        ))?;
        return Ok(());
    }
    for (label, color, line) in lines {
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(3)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
            });
    }
    draw_legend(&mut chart)
}

/// The curve (x, y), thinned to about 200 points for drawing.
fn zip(xs: &[f64], ys: &[f64]) -> Vec<(f64, f64)> {
    let stride = xs.len().div_ceil(200).max(1);
    xs.iter()
        .copied()
        .zip(ys.iter().copied())
        .step_by(stride)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_of_the_length_classes() {
        let names: Vec<String> = NOTE_LENGTH_CLASSES
            .iter()
            .map(|(n, _)| short_length_name(n))
            .collect();
        assert_eq!(
            names,
            [
                "1", "1/2", "1/4", "1/8", "1/16", "1/2.", "1/4.", "1/8.", "1/16.", "1/2T", "1/4T",
                "1/8T"
            ]
        );
    }
}
