//! Which names an upload may be stored under: the checks every name passes, and the
//! `name (1).ext` names tried when it is taken. Pure rules, no file system.

use std::fmt;

use crate::text::is_invisible;
use crate::wire::MAX_NAME_LEN;

/// How many `stem (n).ext` names are tried before giving up on a crowded directory.
pub const MAX_RENAMES: u32 = 10_000;

/// Why a file name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is `.` or `..`.
    DotOrDotDot,
    /// The name is not valid UTF-8.
    NotUtf8,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong,
    /// The name contains `/` or `\`, so it is not a single path component.
    Separator,
    /// The name contains a NUL byte.
    Nul,
    /// The name starts with `.` (a hidden file).
    Hidden,
    /// The name contains a control character (C0, DEL or C1).
    Control,
    /// The name contains an invisible or bidi formatting character.
    Invisible,
    /// The name contains `:` (a Windows drive or stream name).
    Colon,
    /// The name is a Windows device name such as `CON` or `nul.txt`.
    Device,
    /// The name ends in a dot or a space.
    TrailingDotOrSpace,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "name is empty",
            NameProblem::DotOrDotDot => "name is . or ..",
            NameProblem::NotUtf8 => "name is not valid UTF-8",
            NameProblem::TooLong => "name is longer than 255 bytes",
            NameProblem::Separator => "name contains a path separator",
            NameProblem::Nul => "name contains a NUL byte",
            NameProblem::Hidden => "name starts with a dot",
            NameProblem::Control => "name contains a control character",
            NameProblem::Invisible => "name contains an invisible or bidi formatting character",
            NameProblem::Colon => "name contains a colon",
            NameProblem::Device => "name is a Windows device name",
            NameProblem::TrailingDotOrSpace => "name ends in a dot or a space",
        })
    }
}

/// Checks that `raw` is a safe name for a new file: one plain path component that means the
/// same on every common file system and prints harmlessly. Returns it as `&str`.
///
/// Odd but harmless names such as `-rf`, `$(x)`, names with spaces or in Hangul are accepted
/// and must be stored under exactly those bytes.
///
/// # Errors
///
/// The first [`NameProblem`] found.
///
/// # Example
///
/// ```
/// use fup::server::names::{check_name, NameProblem};
///
/// assert_eq!(check_name("사진 1.jpg".as_bytes()), Ok("사진 1.jpg"));
/// assert_eq!(check_name(b"../etc/passwd"), Err(NameProblem::Separator));
/// ```
pub fn check_name(raw: &[u8]) -> Result<&str, NameProblem> {
    if raw.is_empty() {
        return Err(NameProblem::Empty);
    }
    if raw.len() > MAX_NAME_LEN {
        return Err(NameProblem::TooLong);
    }
    if raw.contains(&0) {
        return Err(NameProblem::Nul);
    }
    let name = std::str::from_utf8(raw).map_err(|_| NameProblem::NotUtf8)?;
    if name == "." || name == ".." {
        return Err(NameProblem::DotOrDotDot);
    }
    if name.contains(['/', '\\']) {
        return Err(NameProblem::Separator);
    }
    if name.starts_with('.') {
        return Err(NameProblem::Hidden);
    }
    if name.chars().any(char::is_control) {
        return Err(NameProblem::Control);
    }
    if name.chars().any(is_invisible) {
        return Err(NameProblem::Invisible);
    }
    if name.contains(':') {
        return Err(NameProblem::Colon);
    }
    if name.ends_with(['.', ' ']) {
        return Err(NameProblem::TrailingDotOrSpace);
    }
    if is_device_name(name) {
        return Err(NameProblem::Device);
    }
    Ok(name)
}

/// Windows reserves these names with any extension (`nul.txt`), in any case, and ignores
/// trailing spaces before the extension (`CON .txt`).
fn is_device_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let number = upper
                .strip_prefix("COM")
                .or_else(|| upper.strip_prefix("LPT"));
            matches!(
                number,
                Some("0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³")
            )
        }
    }
}

/// The `n`-th name tried for `name`: the name itself, then `stem (n).ext`, with the stem cut
/// short if needed so the result still fits in [`MAX_NAME_LEN`] bytes.
///
/// ```
/// use fup::server::names::candidate_name;
///
/// assert_eq!(candidate_name("a.txt", 0), "a.txt");
/// assert_eq!(candidate_name("a.txt", 2), "a (2).txt");
/// assert_eq!(candidate_name("README", 1), "README (1)");
/// ```
pub fn candidate_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let number = format!(" ({n})");
    let (stem, ext) = match name.rfind('.') {
        // Keep the extension only if a useful part of the stem still fits beside it.
        Some(dot) if dot > 0 && name.len() - dot + number.len() < MAX_NAME_LEN / 2 => {
            name.split_at(dot)
        }
        _ => (name, ""),
    };
    let mut keep = MAX_NAME_LEN
        .saturating_sub(number.len() + ext.len())
        .min(stem.len());
    while !stem.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{number}{ext}", &stem[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn accepts_odd_but_harmless_names() {
        let long = "가".repeat(85); // 255 bytes
        for name in [
            "a",
            "-rf",
            "$(x)",
            "a b c.txt",
            "사진 1.jpg",
            "*?<>|\"",
            "a..b",
            long.as_str(),
            "COM10",
            "console.log",
            "nul_not",
        ] {
            assert_eq!(check_name(name.as_bytes()), Ok(name), "{name:?}");
        }
    }

    #[test]
    fn refuses_dangerous_names() {
        use NameProblem::*;
        let cases: &[(&[u8], NameProblem)] = &[
            (b"", Empty),
            (b".", DotOrDotDot),
            (b"..", DotOrDotDot),
            (b"../x", Separator),
            (b"/etc/passwd", Separator),
            (b"a\\b", Separator),
            (b"a\0b", Nul),
            (b"\xff\xfe", NotUtf8),
            (&[b'a'; 256], TooLong),
            (b".bashrc", Hidden),
            (b".fup-x.part", Hidden),
            (b"a\nb", Control),
            (b"\x1b[2J", Control),
            (b"a\x7f", Control),
            ("a\u{9b}b".as_bytes(), Control),
            ("evil\u{202e}txt.exe".as_bytes(), Invisible),
            ("a\u{200b}".as_bytes(), Invisible),
            ("\u{feff}a".as_bytes(), Invisible),
            ("a\u{2028}b".as_bytes(), Invisible),
            (b"CON", Device),
            (b"nul.txt", Device),
            (b"Com1.tar.gz", Device),
            (b"lpt9", Device),
            (b"CON .txt", Device),
            (b"C:x", Colon),
            (b"a:b", Colon),
            (b"trailing.", TrailingDotOrSpace),
            (b"trailing ", TrailingDotOrSpace),
        ];
        for (raw, problem) in cases {
            assert_eq!(
                check_name(raw),
                Err(*problem),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    proptest::proptest! {
        /// Whatever is accepted is one plain, printable path component, and so is every name
        /// it may be renamed to.
        #[test]
        fn accepted_names_are_single_printable_components(name in "\\PC{0,90}|[a-zA-Z0-9. :\\\\/_-]{0,260}") {
            if let Ok(ok) = check_name(name.as_bytes()) {
                proptest::prop_assert_eq!(ok, name.as_str());
                let parts: Vec<_> = Path::new(ok).components().collect();
                proptest::prop_assert_eq!(parts, vec![std::path::Component::Normal(ok.as_ref())]);
                proptest::prop_assert!(!ok.chars().any(|c| c.is_control() || is_invisible(c)));
                proptest::prop_assert!(ok.len() <= MAX_NAME_LEN && !ok.starts_with('.'));
                for n in [1, 2, 99, MAX_RENAMES - 1] {
                    let renamed = candidate_name(ok, n);
                    proptest::prop_assert_eq!(check_name(renamed.as_bytes()), Ok(renamed.as_str()), "{}", n);
                }
            }
        }

        #[test]
        fn any_bytes_are_checked_without_panicking(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = check_name(&raw);
        }
    }

    #[test]
    fn long_extensions_still_leave_room_for_the_number() {
        let name = format!("a.{}", "e".repeat(253));
        let renamed = candidate_name(&name, 10_000);
        assert!(renamed.len() <= MAX_NAME_LEN, "{}", renamed.len());
        assert!(
            renamed.starts_with("a.eee") && renamed.ends_with(" (10000)"),
            "{renamed}"
        );
        assert_eq!(check_name(renamed.as_bytes()), Ok(renamed.as_str()));
    }

    #[test]
    fn candidate_names_fit() {
        assert_eq!(candidate_name("archive.tar.gz", 1), "archive.tar (1).gz");
        let long = format!("{}.txt", "가".repeat(83)); // 253 bytes
        let renamed = candidate_name(&long, 12);
        assert!(renamed.len() <= MAX_NAME_LEN, "{}", renamed.len());
        assert!(renamed.ends_with(" (12).txt"));
        assert_eq!(check_name(renamed.as_bytes()), Ok(renamed.as_str()));
    }
}
