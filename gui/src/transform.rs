//! The one mapping between (step, pitch) and screen positions, both ways.

use egui::{Pos2, Rect, pos2};

/// Zoom and scroll of a piano roll, kept in egui memory under the widget id.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    /// Step (fractional) at the left edge of the grid.
    pub first_step: f32,
    /// Pitch (fractional, row `p` spans `p..p+1`) at the top edge of the grid.
    pub top_pitch: f32,
    /// Points per grid step.
    pub step_width: f32,
    /// Points per pitch row.
    pub row_height: f32,
}

impl Default for View {
    fn default() -> Self {
        Self {
            first_step: 0.0,
            top_pitch: 84.0,
            step_width: 12.0,
            row_height: 10.0,
        }
    }
}

/// Maps (step, pitch) in a [`View`] to points inside `rect`, and back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RollTransform {
    pub rect: Rect,
    pub view: View,
}

impl RollTransform {
    pub fn new(rect: Rect, view: View) -> Self {
        Self { rect, view }
    }

    pub fn step_to_x(&self, step: f32) -> f32 {
        self.rect.left() + (step - self.view.first_step) * self.view.step_width
    }

    pub fn x_to_step(&self, x: f32) -> f32 {
        self.view.first_step + (x - self.rect.left()) / self.view.step_width
    }

    /// Y of the continuous pitch `pitch` (row `p`'s bottom edge is `pitch_to_y(p)`).
    pub fn pitch_to_y(&self, pitch: f32) -> f32 {
        self.rect.top() + (self.view.top_pitch - pitch) * self.view.row_height
    }

    pub fn y_to_pitch(&self, y: f32) -> f32 {
        self.view.top_pitch - (y - self.rect.top()) / self.view.row_height
    }

    /// Screen position of (step, continuous pitch).
    pub fn to_screen(&self, step: f32, pitch: f32) -> Pos2 {
        pos2(self.step_to_x(step), self.pitch_to_y(pitch))
    }

    /// (step, continuous pitch) at a screen position.
    pub fn from_screen(&self, pos: Pos2) -> (f32, f32) {
        (self.x_to_step(pos.x), self.y_to_pitch(pos.y))
    }

    /// The grid cell under `pos`, if it is a valid step and MIDI pitch.
    pub fn cell_at(&self, pos: Pos2) -> Option<(u32, u8)> {
        let (s, p) = self.from_screen(pos);
        (s >= 0.0 && (0.0..128.0).contains(&p)).then(|| (s.floor() as u32, p.floor() as u8))
    }

    /// Rectangle of `length` steps from `start` in row `pitch`.
    pub fn cells_rect(&self, start: u32, length: u32, pitch: u8) -> Rect {
        Rect::from_min_max(
            self.to_screen(start as f32, pitch as f32 + 1.0),
            self.to_screen((start + length) as f32, pitch as f32),
        )
    }

    /// First and one-past-last visible steps (clamped at 0).
    pub fn visible_steps(&self) -> (u32, u32) {
        let lo = self.x_to_step(self.rect.left()).floor().max(0.0) as u32;
        let hi = self.x_to_step(self.rect.right()).ceil().max(0.0) as u32;
        (lo, hi)
    }

    /// Lowest and highest visible pitch rows (clamped to 0–127).
    pub fn visible_pitches(&self) -> (u8, u8) {
        let lo = self
            .y_to_pitch(self.rect.bottom())
            .floor()
            .clamp(0.0, 127.0) as u8;
        let hi = self.y_to_pitch(self.rect.top()).floor().clamp(0.0, 127.0) as u8;
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_and_grid_round_trip() {
        let t = RollTransform::new(
            Rect::from_min_size(pos2(40.0, 20.0), egui::vec2(800.0, 400.0)),
            View {
                first_step: 6.5,
                top_pitch: 90.25,
                step_width: 13.0,
                row_height: 9.0,
            },
        );
        for &(s, p) in &[(0.0f32, 0.0f32), (6.5, 90.25), (17.3, 61.7), (100.0, 127.9)] {
            let (s2, p2) = t.from_screen(t.to_screen(s, p));
            assert!(
                (s - s2).abs() < 1e-3 && (p - p2).abs() < 1e-3,
                "{s},{p} -> {s2},{p2}"
            );
        }
        let r = t.cells_rect(10, 4, 60);
        assert_eq!(t.cell_at(r.center() + egui::vec2(1.0, 0.0)), Some((12, 60)));
        assert_eq!(
            t.cell_at(r.left_top() + egui::vec2(0.5, 0.5)),
            Some((10, 60))
        );
        assert!((r.width() - 52.0).abs() < 1e-3 && (r.height() - 9.0).abs() < 1e-3);
        assert_eq!(t.cell_at(t.to_screen(-1.0, 60.5)), None);
    }
}
