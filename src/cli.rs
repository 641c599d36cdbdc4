//! Helpers the command-line programs share.

use std::time::Duration;

/// Parses a positive number of seconds such as `60` or `0.5`, for clap's `value_parser`.
///
/// # Errors
///
/// A message for clap to print if the text is not a positive, finite number of seconds.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(fup::cli::seconds("1.5"), Ok(Duration::from_millis(1500)));
/// assert!(fup::cli::seconds("0").is_err());
/// ```
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs <= 0.0 {
        return Err("must be more than 0 seconds".to_string());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} seconds is out of range"))
}

/// Parses a number of seconds that may be 0, such as an interval between rounds.
///
/// # Errors
///
/// A message for clap to print if the text is not a finite number of seconds, 0 or more.
pub fn seconds_or_zero(text: &str) -> Result<Duration, String> {
    if text.trim().parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    seconds(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds() {
        assert_eq!(seconds("60"), Ok(Duration::from_secs(60)));
        assert_eq!(seconds(" 0.25 "), Ok(Duration::from_millis(250)));
        for bad in ["", "x", "-1", "0", "0.0", "inf", "NaN", "1e300"] {
            assert!(seconds(bad).is_err(), "{bad:?}");
        }
        assert_eq!(seconds_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(seconds_or_zero("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds_or_zero("-1").is_err());
    }
}
