//! Training loops for the models (CPU-friendly: wall-time budgets, checkpoints, resume).

pub mod adamw;
pub mod band;
pub mod ema;
pub mod latent;
pub mod parts;
pub mod plot;
pub mod roll;
pub mod run_files;
pub mod run_loop;
pub mod vae;

/// `1h30m`, `95m`, `45s`, `2h` or a plain number of minutes, as a duration.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    if let Ok(minutes) = t.parse::<f64>() {
        return Ok(std::time::Duration::from_secs_f64(minutes.max(0.0) * 60.0));
    }
    let mut total = 0.0f64;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("duration '{text}': expected e.g. 1h30m, 95m or 45s"))?;
        number.clear();
        total += value
            * match c {
                'h' => 3600.0,
                'm' => 60.0,
                's' => 1.0,
                _ => return Err(format!("duration '{text}': unknown unit '{c}' (h, m, s)")),
            };
    }
    if !number.is_empty() {
        return Err(format!(
            "duration '{text}': a number without unit at the end"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// `1h02m03s`-style text for progress lines.
pub fn format_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("95").unwrap().as_secs(), 95 * 60);
        assert_eq!(parse_duration("45s").unwrap().as_secs(), 45);
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("1h30").is_err());
        assert_eq!(
            format_duration(std::time::Duration::from_secs(3725)),
            "1h02m"
        );
    }
}
