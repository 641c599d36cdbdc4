//! Parsers for the command line's values (seconds, sizes), shared by the programs, so each
//! option reads the same everywhere and clap's defaults come from the library's constants.

use std::fmt;
use std::time::Duration;

use crate::wire::ResponseByte;

/// A number of seconds as typed on the command line (`60`, `0.5`). Its `Display` is what is
/// typed, so clap can show a library constant as an option's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

impl From<Seconds> for Duration {
    fn from(seconds: Seconds) -> Duration {
        seconds.0
    }
}

/// Parses a positive number of seconds such as `60` or `0.5`, for clap's `value_parser`.
///
/// # Errors
///
/// A message for clap to print if the text is not a positive, finite number of seconds.
///
/// ```
/// use std::time::Duration;
/// use fup::term::args::{seconds, Seconds};
///
/// assert_eq!(seconds("1.5"), Ok(Seconds(Duration::from_millis(1500))));
/// assert!(seconds("0").is_err());
/// ```
pub fn seconds(text: &str) -> Result<Seconds, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs <= 0.0 {
        return Err("must be more than 0 seconds".to_string());
    }
    Duration::try_from_secs_f64(secs)
        .map(Seconds)
        .map_err(|_| format!("{text:?} seconds is out of range"))
}

/// Parses a number of seconds that may be 0, such as an interval between rounds.
///
/// # Errors
///
/// A message for clap to print if the text is not a finite number of seconds, 0 or more.
pub fn seconds_or_zero(text: &str) -> Result<Seconds, String> {
    if text.trim().parse::<f64>() == Ok(0.0) {
        return Ok(Seconds(Duration::ZERO));
    }
    seconds(text)
}

/// Parses `--accept-byte`: `0` or `1`, the response byte that means "accepted".
///
/// # Errors
///
/// A message for clap to print for anything else.
pub fn response_byte(text: &str) -> Result<ResponseByte, String> {
    match text.trim() {
        "0" => Ok(ResponseByte::Zero),
        "1" => Ok(ResponseByte::One),
        _ => Err(format!("{text:?} is neither 0 nor 1")),
    }
}

/// Parses a size such as `1500`, `64K`, `10MiB`, `1.5GB` or `2T`. `K`, `M`, `G`, `T` and the
/// `KiB` forms are powers of 1024; `KB`, `MB`, `GB`, `TB` are powers of 1000.
///
/// # Errors
///
/// A message for clap to print if the text is not such a size.
///
/// ```
/// use fup::term::args::size;
///
/// assert_eq!(size("10GiB"), Ok(10 << 30));
/// assert_eq!(size("1.5K"), Ok(1536));
/// assert_eq!(size("2MB"), Ok(2_000_000));
/// ```
pub fn size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, K, M, G, T, KiB…, KB…)"
            ));
        }
    };
    let bytes = (number * scale).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds() {
        let secs = |s| Ok(Seconds(Duration::from_millis(s)));
        assert_eq!(seconds("60"), secs(60_000));
        assert_eq!(seconds(" 0.25 "), secs(250));
        for bad in ["", "x", "-1", "0", "0.0", "inf", "NaN", "1e300"] {
            assert!(seconds(bad).is_err(), "{bad:?}");
        }
        assert_eq!(seconds_or_zero("0"), secs(0));
        assert_eq!(seconds_or_zero("0.5"), secs(500));
        assert!(seconds_or_zero("-1").is_err());
    }

    #[test]
    fn defaults_show_as_typed_and_parse_back() {
        for ms in [1000, 60_000, 120_000, 600_000, 500, 50] {
            let shown = Seconds(Duration::from_millis(ms)).to_string();
            assert_eq!(
                seconds(&shown),
                Ok(Seconds(Duration::from_millis(ms))),
                "{shown}"
            );
        }
        assert_eq!(Seconds(Duration::from_secs(60)).to_string(), "60");
    }

    #[test]
    fn response_bytes() {
        assert_eq!(response_byte("0"), Ok(ResponseByte::Zero));
        assert_eq!(response_byte("1"), Ok(ResponseByte::One));
        for bad in ["", "2", "yes", "01", "-1"] {
            assert!(response_byte(bad).is_err(), "{bad:?}");
        }
        for byte in [ResponseByte::Zero, ResponseByte::One] {
            assert_eq!(response_byte(&byte.to_string()), Ok(byte));
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("1500"), Ok(1500));
        assert_eq!(size("64K"), Ok(65_536));
        assert_eq!(size("10 MiB"), Ok(10 << 20));
        assert_eq!(size("1GB"), Ok(1_000_000_000));
        assert_eq!(size("2t"), Ok(2 << 40));
        for bad in ["", "x", "10XB", "-1", "1e30T", "1..2"] {
            assert!(size(bad).is_err(), "{bad:?}");
        }
    }
}
