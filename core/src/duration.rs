//! Durations as people write them (`500ms`, `30s`, `1h30m`), read the same by every front
//! end: the command line, scenario files and scripts.

use std::time::Duration;

/// Parses `30s`, `5m`, `1h30m`, `500ms`, `1.5s`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{s}`: use e.g. 500ms, 30s, 5m, 1h30m");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_end);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        total += n * match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            _ => return Err(bad()),
        };
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}
