//! Keys, scales and pitch names (for the key lock, diatonicity and the CLI's `--pitches`).

use serde::{Deserialize, Serialize};

pub const PITCH_CLASS_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

/// A scale as the set of its intervals above the tonic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    #[default]
    Major,
    Minor,
    HarmonicMinor,
    Dorian,
    Mixolydian,
    PentatonicMajor,
    PentatonicMinor,
    Blues,
    Chromatic,
}

impl Scale {
    pub const ALL: [Scale; 9] = [
        Scale::Major,
        Scale::Minor,
        Scale::HarmonicMinor,
        Scale::Dorian,
        Scale::Mixolydian,
        Scale::PentatonicMajor,
        Scale::PentatonicMinor,
        Scale::Blues,
        Scale::Chromatic,
    ];

    pub fn intervals(self) -> &'static [u8] {
        match self {
            Scale::Major => &[0, 2, 4, 5, 7, 9, 11],
            Scale::Minor => &[0, 2, 3, 5, 7, 8, 10],
            Scale::HarmonicMinor => &[0, 2, 3, 5, 7, 8, 11],
            Scale::Dorian => &[0, 2, 3, 5, 7, 9, 10],
            Scale::Mixolydian => &[0, 2, 4, 5, 7, 9, 10],
            Scale::PentatonicMajor => &[0, 2, 4, 7, 9],
            Scale::PentatonicMinor => &[0, 3, 5, 7, 10],
            Scale::Blues => &[0, 3, 5, 6, 7, 10],
            Scale::Chromatic => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scale::Major => "major",
            Scale::Minor => "minor",
            Scale::HarmonicMinor => "harmonic minor",
            Scale::Dorian => "dorian",
            Scale::Mixolydian => "mixolydian",
            Scale::PentatonicMajor => "major pentatonic",
            Scale::PentatonicMinor => "minor pentatonic",
            Scale::Blues => "blues",
            Scale::Chromatic => "chromatic",
        }
    }
}

/// A key: tonic pitch class (0 = C) and scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub tonic: u8,
    pub scale: Scale,
}

impl Key {
    pub fn new(tonic: u8, scale: Scale) -> Self {
        Self {
            tonic: tonic % 12,
            scale,
        }
    }

    /// Which of the 12 pitch classes belong to the key.
    pub fn pitch_classes(&self) -> [bool; 12] {
        let mut set = [false; 12];
        for &i in self.scale.intervals() {
            set[((self.tonic + i) % 12) as usize] = true;
        }
        set
    }

    pub fn contains(&self, pitch: u8) -> bool {
        self.pitch_classes()[(pitch % 12) as usize]
    }

    /// Parse "C", "F#m", "Bb minor", "D dorian", or POP909's "Gb:maj" / "E:min".
    pub fn parse(text: &str) -> Result<Key, String> {
        let t = text.trim();
        let (root, rest) = split_pitch_class(t)
            .ok_or_else(|| format!("'{text}' does not start with a note name"))?;
        let rest = rest
            .trim_start_matches([':', ' '])
            .trim()
            .to_ascii_lowercase();
        let scale = match rest.as_str() {
            "" | "maj" | "major" | "ionian" => Scale::Major,
            "m" | "min" | "minor" | "aeolian" => Scale::Minor,
            "harmonic minor" | "harmonic_minor" | "hmin" => Scale::HarmonicMinor,
            "dorian" | "dor" => Scale::Dorian,
            "mixolydian" | "mix" => Scale::Mixolydian,
            "major pentatonic" | "pentatonic" | "pent" | "major_pentatonic" => {
                Scale::PentatonicMajor
            }
            "minor pentatonic" | "minor_pentatonic" | "mpent" => Scale::PentatonicMinor,
            "blues" => Scale::Blues,
            "chromatic" => Scale::Chromatic,
            other => return Err(format!("unknown scale '{other}' in '{text}'")),
        };
        Ok(Key::new(root, scale))
    }

    /// The major or minor key whose Krumhansl–Kessler profile best correlates with the
    /// duration-weighted pitch-class histogram. `None` for an empty histogram.
    pub fn estimate(pitch_class_weights: &[f64; 12]) -> Option<Key> {
        const MAJOR: [f64; 12] = [
            6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
        ];
        const MINOR: [f64; 12] = [
            6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
        ];
        if pitch_class_weights.iter().sum::<f64>() <= 0.0 {
            return None;
        }
        let mut best = (f64::NEG_INFINITY, Key::new(0, Scale::Major));
        for tonic in 0..12u8 {
            for (profile, scale) in [(&MAJOR, Scale::Major), (&MINOR, Scale::Minor)] {
                let rotated: [f64; 12] =
                    std::array::from_fn(|pc| profile[(pc + 12 - tonic as usize) % 12]);
                let r = correlation(pitch_class_weights, &rotated);
                if r > best.0 {
                    best = (r, Key::new(tonic, scale));
                }
            }
        }
        Some(best.1)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            PITCH_CLASS_NAMES[self.tonic as usize],
            self.scale.name()
        )
    }
}

fn correlation(a: &[f64; 12], b: &[f64; 12]) -> f64 {
    let (ma, mb) = (a.iter().sum::<f64>() / 12.0, b.iter().sum::<f64>() / 12.0);
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for i in 0..12 {
        num += (a[i] - ma) * (b[i] - mb);
        da += (a[i] - ma).powi(2);
        db += (b[i] - mb).powi(2);
    }
    if da == 0.0 || db == 0.0 {
        0.0
    } else {
        num / (da * db).sqrt()
    }
}

/// Split a leading note name ("C", "F#", "Bb", "e") off `text`: (pitch class, rest).
fn split_pitch_class(text: &str) -> Option<(u8, &str)> {
    let mut chars = text.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let base: i32 = match letter {
        'C' => 0,
        'D' => 2,
        'E' => 4,
        'F' => 5,
        'G' => 7,
        'A' => 9,
        'B' => 11,
        _ => return None,
    };
    let rest = &text[1..];
    let (shift, rest) = match rest.chars().next() {
        Some('#') | Some('♯') => (1, &rest[rest.chars().next().unwrap().len_utf8()..]),
        Some('b') | Some('♭') if !rest.starts_with("blues") => {
            (-1, &rest[rest.chars().next().unwrap().len_utf8()..])
        }
        _ => (0, rest),
    };
    Some(((base + shift).rem_euclid(12) as u8, rest))
}

/// Octave number of middle C (MIDI 60) in pitch names. Bandmate names pitches as Ableton Live,
/// Cubase and FL Studio do: C3 = 60.
pub const MIDDLE_C_OCTAVE: i32 = 3;

/// Parse a pitch: a MIDI number ("60") or a name ("C3", "F#2", "Bb-1"), with C3 = 60.
pub fn parse_pitch(text: &str) -> Result<u8, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return u8::try_from(n)
            .ok()
            .filter(|&p| p <= 127)
            .ok_or_else(|| format!("pitch {n} is outside 0-127"));
    }
    let (pc, rest) =
        split_pitch_class(t).ok_or_else(|| format!("'{text}' is not a pitch (try 60 or C3)"))?;
    let octave: i32 = rest
        .parse()
        .map_err(|_| format!("'{text}' has no octave number (try C3 = 60)"))?;
    let midi = (octave - MIDDLE_C_OCTAVE + 5) * 12 + pc as i32;
    u8::try_from(midi)
        .ok()
        .filter(|&p| p <= 127)
        .ok_or_else(|| format!("pitch '{text}' is outside the MIDI range"))
}

/// Name of a MIDI pitch with C3 = 60.
pub fn pitch_name(pitch: u8) -> String {
    let octave = pitch as i32 / 12 - 5 + MIDDLE_C_OCTAVE;
    format!("{}{}", PITCH_CLASS_NAMES[(pitch % 12) as usize], octave)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_in_the_forms_we_meet() {
        assert_eq!(Key::parse("Gb:maj").unwrap(), Key::new(6, Scale::Major));
        assert_eq!(Key::parse("E:min").unwrap(), Key::new(4, Scale::Minor));
        assert_eq!(Key::parse("F#m").unwrap(), Key::new(6, Scale::Minor));
        assert_eq!(Key::parse("Bb minor").unwrap(), Key::new(10, Scale::Minor));
        assert_eq!(Key::parse("b blues").unwrap(), Key::new(11, Scale::Blues));
        assert!(Key::parse("H major").is_err());
        assert!(Key::parse("C lydian-ish").is_err());
    }

    #[test]
    fn pitch_names_use_c3_as_middle_c() {
        assert_eq!(parse_pitch("C3").unwrap(), 60);
        assert_eq!(parse_pitch("A3").unwrap(), 69);
        assert_eq!(parse_pitch("C-2").unwrap(), 0);
        assert_eq!(parse_pitch("G8").unwrap(), 127);
        assert_eq!(parse_pitch("64").unwrap(), 64);
        assert!(parse_pitch("G#8").is_err());
        assert!(parse_pitch("200").is_err());
        assert_eq!(pitch_name(61), "C#3");
    }

    #[test]
    fn estimates_the_key_of_a_scale() {
        let mut w = [0.0; 12];
        for (i, pc) in [7u8, 9, 11, 0, 2, 4, 6].iter().enumerate() {
            w[*pc as usize] = if i == 0 { 3.0 } else { 1.0 };
        }
        w[2] = 2.0;
        assert_eq!(Key::estimate(&w), Some(Key::new(7, Scale::Major)));
        assert_eq!(Key::estimate(&[0.0; 12]), None);
        assert!(Key::new(7, Scale::Major).contains(66) && !Key::new(7, Scale::Major).contains(65));
    }
}
