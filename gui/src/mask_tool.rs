//! The mask tool: painting time × pitch rectangles, and drawing masked cells hatched.

use crate::transform::RollTransform;
use bandmate::music::{Clip, Mask};
use egui::{Color32, Pos2, Rect, Shape, Stroke, pos2};
use std::collections::BTreeSet;

/// `mask` with the rectangle spanned by cells `a` and `b` (inclusive) set to `on`.
pub fn paint_rect(mask: &Mask, a: (u32, u8), b: (u32, u8), on: bool) -> Mask {
    let mut out = mask.clone();
    let steps = a.0.min(b.0)..a.0.max(b.0).saturating_add(1).min(mask.steps);
    for s in steps {
        for p in a.1.min(b.1)..=a.1.max(b.1).min(127) {
            out.set(s, p, on);
        }
    }
    out
}

/// Mask of the cells under the selected notes (each note's steps at its pitch).
pub fn mask_selection(clip: &Clip, selection: &BTreeSet<usize>, base: &Mask) -> Mask {
    let mut out = base.resized(clip.steps());
    for n in selection.iter().filter_map(|&i| clip.notes.get(i)) {
        for s in n.start..n.end() {
            out.set(s, n.pitch, true);
        }
    }
    out
}

/// Masked cells merged into rectangles (runs of steps in a row, joined with identical runs in
/// the rows above), in (first step, end step, low pitch, high pitch) form, within the view.
pub fn mask_rects(mask: &Mask, t: &RollTransform) -> Vec<(u32, u32, u8, u8)> {
    let (s_lo, s_hi) = t.visible_steps();
    let s_hi = s_hi.min(mask.steps);
    let (p_lo, p_hi) = t.visible_pitches();
    let mut done: Vec<(u32, u32, u8, u8)> = Vec::new();
    let mut open: Vec<(u32, u32, u8, u8)> = Vec::new();
    for p in p_lo..=p_hi {
        let mut runs = Vec::new();
        let mut s = s_lo;
        while s < s_hi {
            if mask.get(s, p) {
                let start = s;
                while s < s_hi && mask.get(s, p) {
                    s += 1;
                }
                runs.push((start, s));
            } else {
                s += 1;
            }
        }
        let mut next = Vec::with_capacity(runs.len());
        for (a, b) in runs {
            match open.iter().position(|r| r.0 == a && r.1 == b) {
                Some(i) => {
                    let r = open.swap_remove(i);
                    next.push((a, b, r.2, p));
                }
                None => next.push((a, b, p, p)),
            }
        }
        done.append(&mut open);
        open = next;
    }
    done.append(&mut open);
    done
}

/// Masked cells as a translucent fill with diagonal hatching.
pub fn paint_mask(shapes: &mut Vec<Shape>, mask: &Mask, t: &RollTransform) {
    let fill = Color32::from_rgba_unmultiplied(230, 190, 60, 28);
    let hatch = Stroke::new(1.0, Color32::from_rgba_unmultiplied(230, 190, 60, 110));
    const SPACING: f32 = 8.0;
    for (a, b, lo, hi) in mask_rects(mask, t) {
        let r = Rect::from_min_max(
            t.to_screen(a as f32, hi as f32 + 1.0),
            t.to_screen(b as f32, lo as f32),
        )
        .intersect(t.rect);
        if !r.is_positive() {
            continue;
        }
        shapes.push(Shape::rect_filled(r, 0.0, fill));
        // Lines x - y = c (going up-right), c on a global lattice so rectangles line up.
        let c0 = ((r.left() - r.bottom()) / SPACING).floor() * SPACING;
        let mut c = c0;
        while c < r.right() - r.top() {
            if let Some(seg) = clip_diagonal(r, c) {
                shapes.push(Shape::line_segment(seg, hatch));
            }
            c += SPACING;
        }
    }
}

/// The part inside `r` of the line x - y = c.
fn clip_diagonal(r: Rect, c: f32) -> Option<[Pos2; 2]> {
    // Parametrise by x: y = x - c.
    let x0 = r.left().max(r.top() + c);
    let x1 = r.right().min(r.bottom() + c);
    (x1 > x0).then(|| [pos2(x0, x0 - c), pos2(x1, x1 - c)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::View;
    use bandmate::music::Note;

    #[test]
    fn painted_rectangles_merge_into_one_shape_per_block() {
        let mask = paint_rect(&Mask::empty(64), (4, 60), (11, 64), true);
        assert_eq!(mask.count(), 8 * 5);
        let t = RollTransform::new(
            Rect::from_min_size(pos2(0.0, 0.0), egui::vec2(640.0, 400.0)),
            View {
                top_pitch: 90.0,
                step_width: 10.0,
                ..View::default()
            },
        );
        assert_eq!(mask_rects(&mask, &t), vec![(4, 12, 60, 64)]);
        let erased = paint_rect(&mask, (11, 64), (4, 60), false);
        assert!(erased.is_empty());
    }

    #[test]
    fn selection_mask_covers_the_selected_notes_only() {
        let mut clip = Clip::new(1);
        clip.notes = vec![Note::new(0, 60, 4, 100, 0), Note::new(8, 64, 2, 100, 0)];
        let m = mask_selection(&clip, &BTreeSet::from([1]), &Mask::empty(16));
        assert_eq!(m.count(), 2);
        assert!(m.get(8, 64) && m.get(9, 64) && !m.get(0, 60));
    }
}
