//! Time to lay out and tessellate one frame of the editor over a 16-bar, 500-note clip with a
//! 4-bar mask (headless egui context). Prints p50/p99 over 500 frames after 20 warm-up frames.

use bandmate::music::{Clip, Mask, Note, Track, TrackRole};
use bandmate_gui::{EditorState, editor_ui};
use egui::{Context, Event, Pos2, RawInput, Rect, pos2, vec2};
use std::time::{Duration, Instant};

fn clip_16_bars_500_notes() -> Clip {
    let mut clip = Clip::new(16);
    clip.add_track(Track::new("Bass", TrackRole::Bass, 1));
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as u32
    };
    for _ in 0..500 {
        let track = (next(4) == 0) as u16;
        let pitch = if track == 1 {
            36 + next(12)
        } else {
            55 + next(24)
        } as u8;
        clip.notes.push(Note::new(
            next(256),
            pitch,
            1 + next(6),
            40 + next(87) as u8,
            track,
        ));
    }
    clip.fit_bars_to_notes();
    clip
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let clip = clip_16_bars_500_notes();
    let mut state = EditorState::new(clip);
    state.mask = Mask::bars(&state.clip, 4..=7);
    state.selection.extend(0..40);
    let ctx = Context::default();
    let screen = Rect::from_min_size(Pos2::ZERO, vec2(1200.0, 720.0));
    let (warmup, frames) = (20, 500);
    let (mut layout, mut tess, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut prims = 0;
    for i in 0..warmup + frames {
        let input = RawInput {
            screen_rect: Some(screen),
            time: Some(i as f64 / 60.0),
            events: vec![Event::PointerMoved(pos2(300.0 + (i % 400) as f32, 400.0))],
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut out = ctx.run_ui(input, |ui| {
            editor_ui(ui, &mut state);
        });
        let t1 = Instant::now();
        let shapes = std::mem::take(&mut out.shapes);
        let primitives = ctx.tessellate(shapes, out.pixels_per_point);
        let t2 = Instant::now();
        prims = primitives
            .iter()
            .map(|p| match &p.primitive {
                egui::epaint::Primitive::Mesh(m) => m.indices.len() / 3,
                egui::epaint::Primitive::Callback(_) => 0,
            })
            .sum::<usize>();
        out.drop_without_applying_deltas();
        if i >= warmup {
            layout.push(t1 - t0);
            tess.push(t2 - t1);
            total.push(t2 - t0);
        }
    }
    for (name, v) in [
        ("layout", &mut layout),
        ("tessellate", &mut tess),
        ("frame", &mut total),
    ] {
        v.sort();
        println!(
            "editor {name:10} p50 {:7.3} ms  p99 {:7.3} ms  (16 bars, {} notes, {frames} frames)",
            percentile(v, 0.5).as_secs_f64() * 1e3,
            percentile(v, 0.99).as_secs_f64() * 1e3,
            state.clip.notes.len(),
        );
    }
    println!("triangles per frame: {prims}");
}
