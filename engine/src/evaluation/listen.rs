//! `--listen DIR`: what the rows wrote, to hear and to see. For the first windows of the first
//! seed, one MIDI file per row (the context with that row's version of the hole) and one PNG
//! sheet of piano rolls, a line per window and a column per row: given notes grey, generated
//! notes coloured by role, the region shaded.

use anyhow::{Result, anyhow, bail};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

use super::report::RowOutputs;
use super::{Case, role_of};
use crate::music::{Clip, TrackRole};

const CELL: (u32, u32) = (360, 220);
const TITLE: u32 = 28;

/// A file-name-safe form of `name`.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Write `DIR/<task>/<window>-<row>.mid` for the first `count` windows and
/// `DIR/<task>.png`; returns the files written.
pub fn write(
    dir: &Path,
    task: &str,
    cases: &[Case],
    rows: &[RowOutputs],
    count: usize,
) -> Result<Vec<PathBuf>> {
    let count = count.min(cases.len());
    if count == 0 {
        bail!("{task}: no window to listen to");
    }
    let task_dir = dir.join(slug(task));
    std::fs::create_dir_all(&task_dir)
        .map_err(|e| anyhow!("cannot create {}: {e}", task_dir.display()))?;
    let mut written = Vec::new();
    for (w, case) in cases.iter().take(count).enumerate() {
        for row in rows {
            let Some(Some(output)) = row.outputs.first().and_then(|o| o.get(w)) else {
                continue;
            };
            let path = task_dir.join(format!("{w:02}-{}-{}.mid", slug(&case.id), slug(&row.name)));
            crate::midi::write_file(output, &path)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            written.push(path);
        }
    }
    let sheet = dir.join(format!("{}.png", slug(task)));
    write_sheet(&sheet, task, &cases[..count], rows)?;
    written.push(sheet);
    Ok(written)
}

/// One PNG sheet at `path`: a line per case, a column per row (row `r`'s version of case `w`
/// is `rows[r].outputs[0][w]`), titled `title`.
pub fn write_sheet(path: &Path, title: &str, cases: &[Case], rows: &[RowOutputs]) -> Result<()> {
    if cases.is_empty() || rows.is_empty() {
        bail!("{title}: nothing to draw");
    }
    crate::metrics::plot::ensure_font()?;
    draw_sheet(path, title, cases, rows).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn role_color(role: TrackRole) -> RGBColor {
    match role {
        TrackRole::Melody => RGBColor(214, 39, 40),
        TrackRole::Accompaniment => RGBColor(31, 119, 180),
        TrackRole::Bass => RGBColor(44, 160, 44),
        TrackRole::Drums => RGBColor(120, 120, 120),
    }
}

fn draw_sheet(
    path: &Path,
    task: &str,
    cases: &[Case],
    rows: &[RowOutputs],
) -> Result<(), Box<dyn std::error::Error>> {
    let size = (
        CELL.0 * rows.len() as u32,
        TITLE + CELL.1 * cases.len() as u32,
    );
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let font = ("sans-serif", 16).into_font();
    root.draw(&Text::new(
        format!("{task}: given notes grey, generated coloured (melody red, accompaniment blue, bass green); region shaded"),
        (8, 6),
        font.clone(),
    ))?;
    for (w, case) in cases.iter().enumerate() {
        // One pitch span per line, so that the rows of a window compare at a glance.
        let outputs: Vec<Option<&Clip>> = rows
            .iter()
            .map(|r| {
                r.outputs
                    .first()
                    .and_then(|o| o.get(w))
                    .and_then(Option::as_ref)
            })
            .collect();
        let pitches = outputs
            .iter()
            .flatten()
            .flat_map(|c| c.notes.iter().map(|n| n.pitch))
            .chain(case.truth.notes.iter().map(|n| n.pitch));
        let (lo, hi) = pitches.fold((127u8, 0u8), |(lo, hi), p| (lo.min(p), hi.max(p)));
        let (lo, hi) = if lo > hi {
            (48, 84)
        } else {
            (lo.saturating_sub(2), hi.saturating_add(2).min(127))
        };
        let steps = case.truth.steps().max(1);
        for (r, (row, output)) in rows.iter().zip(&outputs).enumerate() {
            let x0 = r as u32 * CELL.0;
            let y0 = TITLE + w as u32 * CELL.1;
            let label_h = 20;
            let (pw, ph) = (CELL.0 - 12, CELL.1 - label_h - 10);
            let to_x = |step: u32| (x0 + 6 + step * pw / steps) as i32;
            let to_y = |pitch: u8| {
                (y0 + label_h + ph - (pitch - lo) as u32 * ph / (hi - lo + 1) as u32) as i32
            };
            let row_h = (ph / (hi - lo + 1) as u32).max(1) as i32;
            root.draw(&Text::new(
                format!("{} · {}", case.id, row.name),
                (x0 as i32 + 6, y0 as i32 + 2),
                font.clone(),
            ))?;
            root.draw(&Rectangle::new(
                [
                    (to_x(0), (y0 + label_h) as i32),
                    (to_x(steps), (y0 + label_h + ph) as i32),
                ],
                RGBColor(235, 235, 235).filled(),
            ))?;
            root.draw(&Rectangle::new(
                [
                    (to_x(case.region.steps.start), (y0 + label_h) as i32),
                    (
                        to_x(case.region.steps.end.min(steps)),
                        (y0 + label_h + ph) as i32,
                    ),
                ],
                RGBColor(255, 243, 200).filled(),
            ))?;
            let spb = case.truth.steps_per_bar().max(1);
            for bar in (0..steps).step_by(spb as usize) {
                root.draw(&PathElement::new(
                    vec![
                        (to_x(bar), (y0 + label_h) as i32),
                        (to_x(bar), (y0 + label_h + ph) as i32),
                    ],
                    RGBColor(190, 190, 190),
                ))?;
            }
            let Some(output) = output else {
                continue;
            };
            let generated = case.generated(output);
            for n in &output.notes {
                let color = if generated.contains(n) {
                    role_color(role_of(output, n))
                } else {
                    RGBColor(150, 150, 150)
                };
                let y = to_y(n.pitch.clamp(lo, hi));
                root.draw(&Rectangle::new(
                    [
                        (to_x(n.start), y - row_h),
                        (to_x(n.end().min(steps)).max(to_x(n.start) + 2), y),
                    ],
                    color.filled(),
                ))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_are_file_names() {
        assert_eq!(super::slug("infill bars 3-4"), "infill-bars-3-4");
        assert_eq!(super::slug("real (other songs)"), "real-other-songs");
        assert_eq!(super::slug("001:12"), "001-12");
    }
}
