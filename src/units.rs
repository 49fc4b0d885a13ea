//! Parsing of the human units used on the command line and in profiles ("250ms", "1.5s",
//! "1%", "50ms"), in one place so flags and TOML accept exactly the same spellings.

use std::time::Duration;

/// Parses "250ms", "1.5s", "2m", "1h", "800us". A bare number is refused: units are explicit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration '{text}' needs a unit (us, ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration '{text}' does not start with a number"))?;
    let seconds_per_unit = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "duration '{text}' has unknown unit '{other}' (use us, ms, s, m, h)"
            ))
        }
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > 366.0 * 86400.0 {
        return Err(format!("duration '{text}' is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses "1%", "0.5%" or a fraction "0.01" into a fraction in [0, 1].
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let value = match text.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|v| v / 100.0),
        None => text.parse::<f64>(),
    }
    .map_err(|_| format!("'{text}' is not a percentage (e.g. 1% or 0.01)"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("'{text}' is not between 0% and 100%"));
    }
    Ok(value)
}

/// Formats a duration in milliseconds for tables: "0.41ms", "23.1ms", "1.20s".
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0}ms")
    } else if ms >= 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.2}ms")
    }
}

/// "500", "12.5": a rate as short as it can be written.
pub fn fmt_rate(rps: f64) -> String {
    if rps.fract() == 0.0 {
        format!("{rps:.0}")
    } else {
        format!("{rps:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("800us").unwrap(), Duration::from_micros(800));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("10 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_fraction("1%").unwrap(), 0.01);
        assert_eq!(parse_fraction("0.05").unwrap(), 0.05);
        assert!(parse_fraction("120%").is_err());
        assert!(parse_fraction("lots").is_err());
    }
}
