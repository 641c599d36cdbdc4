//! Operator policies that decide without asking: address ranges to accept from, and sizes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP address range such as `10.0.0.0/8`, `192.168.1.7` (one host) or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range. IPv4 peers seen on an IPv6 socket (`::ffff:a.b.c.d`) count
    /// as the IPv4 address they are.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `ADDR/PREFIX` or a bare `ADDR` (a single host).
    ///
    /// ```
    /// use fup::policy::Cidr;
    ///
    /// let lan: Cidr = "192.168.0.0/16".parse()?;
    /// assert!(lan.contains("192.168.4.2".parse().unwrap()));
    /// assert!(!lan.contains("10.0.0.1".parse().unwrap()));
    /// # Ok::<(), String>(())
    /// ```
    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{p:?} is not a prefix length of 0 to {max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
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
/// use fup::policy::parse_size;
///
/// assert_eq!(parse_size("10GiB"), Ok(10 << 30));
/// assert_eq!(parse_size("1.5K"), Ok(1536));
/// assert_eq!(parse_size("2MB"), Ok(2_000_000));
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_ranges() {
        let cases = [
            ("10.0.0.0/8", "10.255.0.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("127.0.0.1/32", "::ffff:127.0.0.1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1", "::1", true),
            ("10.0.0.0/8", "::1", false),
        ];
        for (range, addr, inside) in cases {
            let cidr: Cidr = range.parse().unwrap();
            assert_eq!(cidr.contains(ip(addr)), inside, "{range} {addr}");
        }
        for bad in ["", "x", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "10.1.0.0/16".parse::<Cidr>().unwrap().to_string(),
            "10.1.0.0/16"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("64K"), Ok(65_536));
        assert_eq!(parse_size("10 MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        for bad in ["", "x", "10XB", "-1", "1e30T", "1..2"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
