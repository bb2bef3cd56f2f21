//! Beat lists of performance-timed files (POP909's `beat_midi.txt`) and the map from seconds
//! to beats they define.
//!
//! POP909 convention, checked on all 909 songs: every row is one beat (`time_s col2 col3`).
//! Column 2 is 1.0 on every 2nd beat in 880 duple-meter songs and on every 3rd beat in 29
//! triple-meter songs; column 3 is 1.0 on every 4th beat (duple) or every 6th (triple).
//! So column 3 marks 4/4 downbeats in duple songs, and column 2 marks 3/4 downbeats in triple
//! songs. [`parse_beat_file`] picks the column accordingly: when the usual spacing of column-2
//! marks is 3 beats, column 2 is the downbeat marker, otherwise column 3.

use super::error::MidiError;

/// One beat of a performance: its time and whether a bar starts on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BeatMark {
    pub time_s: f64,
    pub downbeat: bool,
}

/// Parse a beat file: one beat per line, whitespace-separated columns.
///
/// - 3 columns (POP909): `time_s beat_marker downbeat_marker`, downbeats as in the module docs;
/// - 2 columns: `time_s downbeat` (non-zero marks a downbeat);
/// - 1 column: `time_s`, no downbeats.
///
/// Blank lines and lines starting with `#` are skipped. Times must be finite and increase.
pub fn parse_beat_file(text: &str) -> Result<Vec<BeatMark>, MidiError> {
    let mut rows: Vec<[f64; 3]> = Vec::new();
    let mut columns = None;
    let mut last_time = f64::NEG_INFINITY;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = |problem: String| MidiError::BeatFile {
            line: line_no,
            problem,
        };
        let mut row = [0.0; 3];
        let mut count = 0;
        for field in line.split_whitespace() {
            if count == 3 {
                return Err(problem("more than 3 columns".into()));
            }
            row[count] = field
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| problem(format!("{field:?} is not a finite number")))?;
            count += 1;
        }
        match columns {
            None => columns = Some(count),
            Some(c) if c != count => {
                return Err(problem(format!("{count} columns, earlier lines have {c}")));
            }
            Some(_) => {}
        }
        if row[0] <= last_time {
            return Err(problem(format!(
                "beat time {} does not come after the previous beat at {last_time}",
                row[0]
            )));
        }
        last_time = row[0];
        rows.push(row);
    }
    let downbeat_column = match columns {
        None => return Ok(Vec::new()),
        Some(1) => None,
        Some(2) => Some(1),
        Some(_) => {
            let col2: Vec<usize> = (0..rows.len()).filter(|&i| rows[i][1] != 0.0).collect();
            let spacing = most_common_gap(&col2);
            Some(if spacing == Some(3) { 1 } else { 2 })
        }
    };
    Ok(rows
        .iter()
        .map(|row| BeatMark {
            time_s: row[0],
            downbeat: downbeat_column.is_some_and(|c| row[c] != 0.0),
        })
        .collect())
}

/// The most frequent difference between consecutive indices (the smaller one on ties).
fn most_common_gap(indices: &[usize]) -> Option<usize> {
    let mut gaps: Vec<usize> = indices.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let mut best: Option<(usize, usize)> = None; // (gap, count)
    for run in gaps.chunk_by(|a, b| a == b) {
        if best.is_none_or(|(_, count)| run.len() > count) {
            best = Some((run[0], run.len()));
        }
    }
    best.map(|(gap, _)| gap)
}

/// Seconds → fractional beat index, by piecewise-linear interpolation over the beats and
/// linear extrapolation with the first/last beat interval outside them.
#[derive(Clone, Debug)]
pub(crate) struct BeatGrid {
    times: Vec<f64>,
    /// Index of the first downbeat (0 if no beat is marked).
    pub first_downbeat: usize,
    /// Most common number of beats between downbeats (4 if fewer than two downbeats).
    pub beats_per_bar: u8,
    /// Quarter notes per minute from the median beat interval.
    pub tempo: f64,
}

impl BeatGrid {
    pub fn new(beats: &[BeatMark]) -> Result<BeatGrid, MidiError> {
        if beats.len() < 2 {
            return Err(MidiError::Beats(format!(
                "{} beats, at least 2 are needed",
                beats.len()
            )));
        }
        for (i, pair) in beats.windows(2).enumerate() {
            if !(pair[0].time_s.is_finite() && pair[1].time_s.is_finite()) {
                return Err(MidiError::Beats(format!(
                    "beat {} has a non-finite time",
                    i + 1
                )));
            }
            if pair[1].time_s <= pair[0].time_s {
                return Err(MidiError::Beats(format!(
                    "beat {} at {} s does not come after beat {} at {} s",
                    i + 2,
                    pair[1].time_s,
                    i + 1,
                    pair[0].time_s
                )));
            }
        }
        let times: Vec<f64> = beats.iter().map(|b| b.time_s).collect();
        let downbeats: Vec<usize> = (0..beats.len()).filter(|&i| beats[i].downbeat).collect();
        let beats_per_bar = most_common_gap(&downbeats).map_or(4, |g| g.clamp(1, 16) as u8);
        let mut intervals: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        intervals.sort_by(f64::total_cmp);
        let median = intervals[intervals.len() / 2];
        Ok(BeatGrid {
            first_downbeat: downbeats.first().copied().unwrap_or(0),
            beats_per_bar,
            tempo: 60.0 / median,
            times,
        })
    }

    /// Fractional beat index of time `t` (beat `i` is at `times[i]`).
    pub fn beat_at(&self, t: f64) -> f64 {
        let times = &self.times;
        let n = times.len();
        // Index of the segment [times[i], times[i + 1]] used for t, extrapolating at the ends.
        let i = times
            .partition_point(|&b| b <= t)
            .saturating_sub(1)
            .min(n - 2);
        i as f64 + (t - times[i]) / (times[i + 1] - times[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop909_duple_songs_use_column_3() {
        let text = "0.5 1.0 1.0\n1.0 0.0 0.0\n1.5 1.0 0.0\n2.0 0.0 0.0\n2.5 1.0 1.0\n3.0 0.0 0.0\n";
        let beats = parse_beat_file(text).unwrap();
        let down: Vec<bool> = beats.iter().map(|b| b.downbeat).collect();
        assert_eq!(down, [true, false, false, false, true, false]);
        assert_eq!(BeatGrid::new(&beats).unwrap().beats_per_bar, 4);
    }

    #[test]
    fn pop909_triple_songs_use_column_2() {
        let mut text = String::new();
        for i in 0..12 {
            let col2 = u8::from(i % 3 == 1);
            let col3 = u8::from(i % 6 == 1);
            text += &format!("{} {col2}.0 {col3}.0\n", 0.25 + i as f64 * 0.6);
        }
        let beats = parse_beat_file(&text).unwrap();
        let grid = BeatGrid::new(&beats).unwrap();
        assert_eq!(grid.first_downbeat, 1);
        assert_eq!(grid.beats_per_bar, 3);
        assert!((grid.tempo - 100.0).abs() < 1e-9);
    }

    #[test]
    fn interpolates_and_extrapolates() {
        let beats: Vec<BeatMark> = [1.0, 2.0, 2.5, 3.5]
            .iter()
            .map(|&time_s| BeatMark {
                time_s,
                downbeat: false,
            })
            .collect();
        let grid = BeatGrid::new(&beats).unwrap();
        assert_eq!(grid.beat_at(1.0), 0.0);
        assert_eq!(grid.beat_at(2.25), 1.5);
        assert_eq!(grid.beat_at(0.0), -1.0); // first interval is 1 s
        assert_eq!(grid.beat_at(4.0), 3.5); // last interval is 1 s
        assert_eq!(grid.beat_at(3.5), 3.0);
    }

    #[test]
    fn bad_beat_files_are_rejected_with_the_line() {
        let err = parse_beat_file("0.5 1 1\n0.4 0 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse_beat_file("0.5 x 1\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("\"x\""), "{err}");
        let err = parse_beat_file("0.5 1 1\n0.6 1\n").unwrap_err().to_string();
        assert!(err.contains("columns"), "{err}");
        assert!(BeatGrid::new(&[]).is_err());
    }
}
