//! Parsers for the command line's values (seconds, sizes), shared by the programs, so each
//! option reads the same everywhere and clap's defaults come from the library's constants.

use std::fmt;
use std::time::Duration;

use crate::client::{DEFAULT_CHUNK_SIZE, MAX_UNWRAPPED_CHUNKS};
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

/// Splits `1.5 GiB` into its number and its unit (which may be empty), the one syntax of
/// sizes and durations.
fn number_and_unit(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

/// Parses a positive duration such as `60` or `0.5` (seconds), `90s`, `500ms`, `2m` or `1h`,
/// for clap's `value_parser`.
///
/// # Errors
///
/// A message for clap to print if the text is not a positive, finite duration.
///
/// ```
/// use std::time::Duration;
/// use fup::term::args::{seconds, Seconds};
///
/// assert_eq!(seconds("1.5"), Ok(Seconds(Duration::from_millis(1500))));
/// assert_eq!(seconds("2m"), Ok(Seconds(Duration::from_secs(120))));
/// assert!(seconds("0").is_err());
/// ```
pub fn seconds(text: &str) -> Result<Seconds, String> {
    let (number, unit) = number_and_unit(text)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 60, 90s, 2m, 500ms)"))?;
    let scale = match unit {
        "" | "s" | "sec" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d; a bare number is seconds)"
            ));
        }
    };
    let secs = number * scale;
    if secs <= 0.0 {
        return Err("must be more than 0 seconds".to_string());
    }
    Duration::try_from_secs_f64(secs)
        .map(Seconds)
        .map_err(|_| format!("{text:?} is out of range"))
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

/// A server's address as typed: a host name or IP address, with a port when one was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Address {
    /// The host name or IP address, without brackets.
    pub host: String,
    /// The port given with it (`HOST:PORT`, `[IPv6]:PORT`).
    pub port: Option<u16>,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.host.contains(':'), self.port) {
            (true, Some(port)) => write!(f, "[{}]:{port}", self.host),
            (false, Some(port)) => write!(f, "{}:{port}", self.host),
            (_, None) => f.write_str(&self.host),
        }
    }
}

/// Parses a server address in every form the servers print and people type: `HOST`, `IPv4`,
/// `IPv6`, `[IPv6]`, `HOST:PORT`, `IPv4:PORT` and `[IPv6]:PORT`.
///
/// # Errors
///
/// A message for clap to print if the text is not such an address.
///
/// ```
/// use fup::term::args::address;
///
/// assert_eq!(address("[::1]:6000")?.port, Some(6000));
/// assert_eq!(address("::1")?.host, "::1");
/// assert_eq!(address("example.org:6000")?.host, "example.org");
/// # Ok::<(), String>(())
/// ```
pub fn address(text: &str) -> Result<Address, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not an address (HOST, HOST:PORT, IPv6 or [IPv6]:PORT)");
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} in {text:?} is not a port number"))
    };
    // An IPv6 address, maybe with a zone (`fe80::1%eth0`), which the resolver takes.
    let is_ipv6 = |h: &str| {
        let addr = h.split_once('%').map_or(h, |(addr, _)| addr);
        addr.parse::<std::net::Ipv6Addr>().is_ok()
    };
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        if !is_ipv6(host) {
            return Err(bad());
        }
        match after {
            "" => (host, None),
            _ => (host, Some(port(after.strip_prefix(':').ok_or_else(bad)?)?)),
        }
    } else if t.matches(':').count() > 1 {
        // More than one colon and no brackets: a bare IPv6 address, which has no port.
        if !is_ipv6(t) {
            return Err(bad());
        }
        (t, None)
    } else if let Some((host, p)) = t.split_once(':') {
        (host, Some(port(p)?))
    } else {
        (t, None)
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(Address {
        host: host.to_string(),
        port,
    })
}

/// Parses the program's arguments, with the server's port taken from its address when it has
/// one: that port wins over `--port`'s default and environment value, and a different
/// `--port` given on the command line is a usage error (exit 2, as clap's own).
pub fn parse_with_address<A: clap::Parser>(
    address: impl Fn(&mut A) -> (&mut Address, &mut u16),
) -> A {
    let matches = A::command().get_matches();
    let mut args = A::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let given = matches.value_source("port") == Some(clap::parser::ValueSource::CommandLine);
    let (addr, port) = address(&mut args);
    match addr.port {
        Some(p) if given && p != *port => A::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("the address {addr} names port {p} but --port says {port}"),
            )
            .exit(),
        Some(p) => *port = p,
        None => addr.port = Some(*port),
    }
    args
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

/// A count of at least 1.
///
/// # Errors
///
/// Not a number, or 0.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

/// A [`size`] that may also be 0.
///
/// # Errors
///
/// As [`size`].
pub fn size_or_zero(text: &str) -> Result<u64, String> {
    match text.trim() {
        "0" => Ok(0),
        _ => size(text),
    }
}

/// `--chunk-size`'s help, with the figures taken from the library so it cannot drift.
pub fn chunk_size_help() -> String {
    let grown_past_gib = (u64::from(DEFAULT_CHUNK_SIZE) * MAX_UNWRAPPED_CHUNKS) >> 30;
    format!(
        "Bytes per data message (e.g. 64K, 1M), used exactly; seq wraps past {} messages, \
         which only fup servers accept [default: {DEFAULT_CHUNK_SIZE}, grown for files over \
         {grown_past_gib} GiB so that the original Python server can take them]",
        thousands(MAX_UNWRAPPED_CHUNKS)
    )
}

/// `65536` as `65,536`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Parses a data message size for `--chunk-size`: a [`size`] from 1 byte to the protocol's
/// largest data message.
///
/// # Errors
///
/// A message for clap to print if the text is not such a size.
pub fn chunk_size(text: &str) -> Result<u32, String> {
    let max = crate::wire::MAX_DATA_LEN;
    match u32::try_from(size(text)?) {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be from 1 byte to {} ({max})",
            crate::text::bytes(max.into())
        )),
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
    let (number, unit) = number_and_unit(text).ok_or_else(|| format!("{text:?} is not a size"))?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
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
    fn counts_and_sizes_that_may_be_zero() {
        assert_eq!(at_least_one(" 3 "), Ok(3));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert!(at_least_one("x").is_err());
        assert_eq!(size_or_zero("0"), Ok(0));
        assert_eq!(size_or_zero("16G"), Ok(16 << 30));
        assert_eq!(size_or_zero("0K"), size("0K"));
    }

    #[test]
    fn chunk_size_help_reads_as_before() {
        assert_eq!(thousands(65_536), "65,536");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        let help = chunk_size_help();
        assert!(
            help.contains("past 65,536 messages")
                && help.contains("[default: 1048576, grown for files over 64 GiB so"),
            "{help}"
        );
    }

    #[test]
    fn parses_seconds() {
        let secs = |s| Ok(Seconds(Duration::from_millis(s)));
        assert_eq!(seconds("60"), secs(60_000));
        assert_eq!(seconds(" 0.25 "), secs(250));
        assert_eq!(seconds("90s"), secs(90_000));
        assert_eq!(seconds("2m"), secs(120_000));
        assert_eq!(seconds("1.5min"), secs(90_000));
        assert_eq!(seconds("500ms"), secs(500));
        assert_eq!(seconds("1h"), secs(3_600_000));
        assert_eq!(seconds("2d"), secs(172_800_000));
        for bad in [
            "", "x", "-1", "0", "0.0", "inf", "NaN", "1e300", "2w", "0ms", "1e400h",
        ] {
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
    fn addresses_in_every_printed_form() {
        let cases = [
            ("127.0.0.1", "127.0.0.1", None),
            ("127.0.0.1:6000", "127.0.0.1", Some(6000)),
            ("::1", "::1", None),
            ("[::1]", "::1", None),
            ("[::1]:6000", "::1", Some(6000)),
            ("fe80::1%eth0", "fe80::1%eth0", None),
            ("localhost", "localhost", None),
            ("files.example.org:0", "files.example.org", Some(0)),
        ];
        for (text, host, port) in cases {
            let parsed = address(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((parsed.host.as_str(), parsed.port), (host, port), "{text}");
        }
        for bad in [
            "",
            ":6000",
            "[::1",
            "[::1]6000",
            "[nope]:1",
            "host:",
            "host:x",
            "host:70000",
            "1:2:3",
            "a b",
        ] {
            assert!(address(bad).is_err(), "{bad:?}");
        }
        assert_eq!(address("[::1]:6000").unwrap().to_string(), "[::1]:6000");
        assert_eq!(address("h:1").unwrap().to_string(), "h:1");
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
    fn chunk_sizes() {
        assert_eq!(chunk_size("1M"), Ok(1 << 20));
        assert_eq!(chunk_size("4096"), Ok(4096));
        assert_eq!(chunk_size("16MiB"), Ok(16 << 20));
        for bad in ["0", "17M", "1T", "x"] {
            assert!(chunk_size(bad).is_err(), "{bad:?}");
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
