//! Safe, human-friendly text for the terminal: escaped names and byte counts and rates.
//!
//! Anything that came off the network goes through [`escape`] before it is printed, so that
//! no byte can move the cursor, clear the screen, set a window title or start a new line.

use std::fmt::Write as _;
use std::time::Duration;

/// Whether `c` would draw nothing, reorder text or break a line if printed raw: Unicode's
/// format characters (bidi controls, zero-width spaces, the BOM, tag characters), the line
/// and paragraph separators, and the fillers that render as blank.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{0600}'..='\u{0605}' | '\u{06DD}'
        | '\u{070F}' | '\u{0890}' | '\u{0891}' | '\u{08E2}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Escapes text for one line of a terminal, Rust-style: `\n`, `\t`, `\r`, `\\`, `\"` and
/// `\u{..}` for control and invisible characters. Printable text, Hangul included, is kept.
///
/// # Example
///
/// ```
/// assert_eq!(fup::text::escape("a\nb\u{1b}[2J\u{202e}"), r"a\nb\u{1b}[2J\u{202e}");
/// assert_eq!(fup::text::escape("사진 1.jpg"), "사진 1.jpg");
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

/// Like [`escape`] for bytes that may not be UTF-8: invalid bytes show as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut out, chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() || is_invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// How many characters of a peer's text are shown: a name, a path or a reason from the other
/// side is cut to this many, then `…`, before it reaches a terminal, a log or a reply.
pub const MAX_SHOWN: usize = 200;

/// `text` cut to at most `max` characters (on a character's boundary), with `…` after it when
/// anything was cut.
///
/// # Example
///
/// ```
/// assert_eq!(fup::text::cut("abcdef", 3), "abc…");
/// assert_eq!(fup::text::cut("사진", 5), "사진");
/// ```
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]).into(),
        None => text.into(),
    }
}

/// Text that came from the other side, made safe for one line of a terminal or a log: cut to
/// [`MAX_SHOWN`] characters, then escaped (see [`escape`]).
///
/// # Example
///
/// ```
/// let hostile = format!("\u{1b}]0;pwned\u{7}{}", "x".repeat(100_000));
/// let shown = fup::text::from_peer(&hostile);
/// assert!(shown.starts_with(r"\u{1b}]0;pwned\u{7}xxx") && shown.ends_with('…'));
/// assert!(shown.len() < 300);
/// ```
pub fn from_peer(text: &str) -> String {
    escape(&cut(text, MAX_SHOWN))
}

/// Like [`from_peer`] for bytes that may not be UTF-8: at most [`MAX_SHOWN`] characters
/// or invalid bytes (shown as `\xNN`), then `…`.
pub fn from_peer_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut shown = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown == MAX_SHOWN {
                out.push('…');
                return out;
            }
            push_escaped(&mut out, c.encode_utf8(&mut [0; 4]));
            shown += 1;
        }
        for b in chunk.invalid() {
            if shown == MAX_SHOWN {
                out.push('…');
                return out;
            }
            let _ = write!(out, "\\x{b:02x}");
            shown += 1;
        }
    }
    out
}

/// Text that came from the other side, kept as text but defused: cut to [`MAX_SHOWN`]
/// characters, and every control or invisible character written as `\u{..}` (quotes and
/// backslashes stay as they are). For what is kept or printed as data (JSON fields, a
/// program's own messages); what is printed for people still goes through [`escape`].
///
/// # Example
///
/// ```
/// assert_eq!(fup::text::defuse("\"a\" \u{1b}[2J"), r#""a" \u{1b}[2J"#);
/// ```
pub fn defuse(text: &str) -> String {
    visible(&cut(text, MAX_SHOWN))
}

/// `text` with every control or invisible character written as `\u{..}`, quotes and
/// backslashes as they are, nothing cut: for the program's own messages, which may quote
/// paths and names (what came from the other side is [`defuse`]d first).
///
/// # Example
///
/// ```
/// assert_eq!(fup::text::visible("cannot open \"a\nb\""), r#"cannot open "a\u{a}b""#);
/// ```
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if c.is_control() || is_invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Bytes as lowercase hex, as `sha256sum` prints digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `N` bytes that `text` writes in hex ([`hex`]'s inverse), if it is exactly that.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0; N];
    // Digits only: `from_str_radix` would take a sign too.
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A byte count in binary units with one decimal: `512 B`, `1.5 KiB`, `10.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `part` of `whole` as a whole percentage, rounded down (so 100% means all of it): `62%`.
pub fn percent(part: u64, whole: u64) -> String {
    match whole {
        0 => "100%".to_string(),
        _ => format!("{}%", u128::from(part.min(whole)) * 100 / u128::from(whole)),
    }
}

/// A transfer rate, `bytes` moved in `elapsed`, in binary units per second.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "- B/s".to_string();
    }
    let per_sec = bytes as f64 / secs;
    format!("{}/s", self::bytes(per_sec.min(u64::MAX as f64) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_down() {
        assert_eq!(percent(0, 10), "0%");
        assert_eq!(percent(62, 100), "62%");
        assert_eq!(percent(999, 1000), "99%");
        assert_eq!(percent(1000, 1000), "100%");
        assert_eq!(percent(5, 0), "100%");
        assert_eq!(percent(u64::MAX / 2, u64::MAX), "49%");
    }

    #[test]
    fn escapes_everything_that_could_steer_a_terminal() {
        let cases = [
            ("plain name.txt", "plain name.txt"),
            ("line\nbreak", r"line\nbreak"),
            ("\u{1b}]0;title\u{7}", r"\u{1b}]0;title\u{7}"),
            ("\u{1b}[2J", r"\u{1b}[2J"),
            ("csi\u{9b}31m", r"csi\u{9b}31m"),
            ("del\u{7f}", r"del\u{7f}"),
            ("evil\u{202e}txt.exe", r"evil\u{202e}txt.exe"),
            ("zero\u{200b}width", r"zero\u{200b}width"),
            ("\u{feff}bom", r"\u{feff}bom"),
            ("sep\u{2028}line", r"sep\u{2028}line"),
            ("back\\slash \"q\"", r#"back\\slash \"q\""#),
            ("한글 파일.txt", "한글 파일.txt"),
            ("cr\rtab\t", r"cr\rtab\t"),
        ];
        for (raw, shown) in cases {
            assert_eq!(escape(raw), shown, "{raw:?}");
            assert!(
                !escape(raw)
                    .chars()
                    .any(|c| c.is_control() || is_invisible(c))
            );
        }
    }

    #[test]
    fn peer_text_is_cut_then_escaped() {
        assert_eq!(cut("", 0), "");
        assert_eq!(cut("ab", 0), "…");
        assert_eq!(cut("ab", 2), "ab");
        let long = "한".repeat(MAX_SHOWN + 1);
        let shown = from_peer(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN + 1);
        assert!(shown.ends_with('…'));
        // Escaping after the cut: a cut never splits an escape sequence.
        let evil = format!("{}\u{1b}[2J", "a".repeat(MAX_SHOWN - 1));
        assert_eq!(
            from_peer(&evil),
            format!("{}\\u{{1b}}…", "a".repeat(MAX_SHOWN - 1))
        );
    }

    #[test]
    fn defused_text_keeps_quotes_and_loses_controls() {
        let hostile = "ok \"q\" \\ \u{1b}]0;t\u{7}\u{9b}31m\u{202e}";
        let defused = defuse(hostile);
        assert_eq!(defused, r#"ok "q" \ \u{1b}]0;t\u{7}\u{9b}31m\u{202e}"#);
        assert!(!defused.chars().any(|c| c.is_control() || is_invisible(c)));
        assert!(defuse(&"x".repeat(10_000)).ends_with('…'));
    }

    #[test]
    fn peer_bytes_are_cut_too() {
        assert_eq!(from_peer_bytes(b"ok\xff\n"), r"ok\xff\n");
        let long = [b'a'; 1000];
        assert_eq!(
            from_peer_bytes(&long),
            format!("{}…", "a".repeat(MAX_SHOWN))
        );
        let bad = [0xffu8; 1000];
        assert_eq!(
            from_peer_bytes(&bad),
            format!("{}…", r"\xff".repeat(MAX_SHOWN))
        );
    }

    #[test]
    fn escapes_invalid_utf8_as_hex() {
        assert_eq!(escape_bytes(b"ok\xff\xfe\n"), r"ok\xff\xfe\n");
        assert_eq!(escape_bytes("한".as_bytes()), "한");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex::<3>("00ab10"), Some([0, 0xab, 0x10]));
        assert_eq!(unhex::<3>("00ab1"), None);
        assert_eq!(unhex::<2>("zz00"), None);
        assert_eq!(unhex::<1>("+1"), None, "a sign is not a digit");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(rate(2048, Duration::from_secs(2)), "1.0 KiB/s");
        assert_eq!(rate(1, Duration::ZERO), "- B/s");
    }
}
