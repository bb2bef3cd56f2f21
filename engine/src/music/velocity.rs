//! Velocities for generated notes, following the surrounding notes instead of a constant.
//!
//! Each generated note gets the weighted mean velocity of the context notes within two bars
//! (weight 1 / (1 + |Δsteps|/4 + |Δpitch|/12), notes of the same track only when there are
//! any), plus the clip's metric accent: how much louder or softer than average the context
//! plays on downbeats, beats, eighths and sixteenths (when at least 4 notes show it).

use super::Note;

/// Velocity when there is no context at all.
pub const DEFAULT_VELOCITY: u8 = 80;

/// Metric position class of a step: 0 downbeat, 1 beat, 2 eighth, 3 sixteenth.
fn metric_class(step: u32, steps_per_bar: u32) -> usize {
    if step.is_multiple_of(steps_per_bar.max(1)) {
        0
    } else if step.is_multiple_of(4) {
        1
    } else if step.is_multiple_of(2) {
        2
    } else {
        3
    }
}

/// Set the velocity of every note of `generated` from `context` (see the module docs).
pub fn assign_velocities(context: &[Note], generated: &mut [Note], track: u16, steps_per_bar: u32) {
    let overall = if context.is_empty() {
        DEFAULT_VELOCITY as f64
    } else {
        context.iter().map(|n| n.velocity as f64).sum::<f64>() / context.len() as f64
    };
    let mut sums = [(0.0f64, 0usize); 4];
    for n in context {
        let c = metric_class(n.start, steps_per_bar);
        sums[c].0 += n.velocity as f64;
        sums[c].1 += 1;
    }
    let accent: Vec<f64> = sums
        .iter()
        .map(|&(s, k)| if k >= 4 { s / k as f64 - overall } else { 0.0 })
        .collect();
    let window = 2 * steps_per_bar.max(1) as i64;
    let same_track = context.iter().any(|n| n.track == track);
    for g in generated.iter_mut() {
        let (mut wsum, mut vsum) = (0.0f64, 0.0f64);
        for n in context.iter().filter(|n| !same_track || n.track == track) {
            let dt = (n.start as i64 - g.start as i64).abs();
            if dt > window {
                continue;
            }
            let w = 1.0 / (1.0 + dt as f64 / 4.0 + (n.pitch as f64 - g.pitch as f64).abs() / 12.0);
            wsum += w;
            vsum += w * n.velocity as f64;
        }
        let base = if wsum > 0.0 { vsum / wsum } else { overall };
        let v = base + accent[metric_class(g.start, steps_per_bar)];
        g.velocity = v.round().clamp(1.0, 127.0) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velocities_follow_the_neighbours_and_the_accent() {
        // Loud downbeats (110), soft offbeats (60).
        let mut context = Vec::new();
        for bar in 0..4 {
            context.push(Note::new(bar * 16, 60, 2, 110, 0));
            for s in [2, 6, 10, 14] {
                context.push(Note::new(bar * 16 + s, 64, 1, 60, 0));
            }
        }
        let mut generated = vec![Note::new(32, 62, 2, 1, 0), Note::new(34, 62, 1, 1, 0)];
        assign_velocities(&context, &mut generated, 0, 16);
        assert!(
            generated[0].velocity > generated[1].velocity + 20,
            "{generated:?}"
        );
        assert!((50..=127).contains(&generated[0].velocity));

        let mut alone = vec![Note::new(0, 60, 1, 1, 0)];
        assign_velocities(&[], &mut alone, 0, 16);
        assert_eq!(alone[0].velocity, DEFAULT_VELOCITY);
    }
}
