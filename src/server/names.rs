//! Which names an upload may be stored under: how a request's name is read (UTF-8, or CP949
//! from Korean Windows; a path as typed is cut to its last part), the checks every stored name
//! passes, and the `name (1).ext` names tried when it is taken. Pure rules, no file system.

use std::fmt;

use crate::text::is_invisible;

/// Longest name a file is stored under, in bytes (the usual file-system limit for one path
/// component).
pub const MAX_NAME_LEN: usize = 255;
/// How many `stem (n).ext` names are tried before giving up on a crowded directory.
pub const MAX_RENAMES: u32 = 10_000;

/// A request's name, read and checked: what was sent, and the one component it is stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestName {
    /// The name as sent, decoded: a path when the client sent the path as typed.
    pub sent: String,
    /// The name to store under: `sent` itself, or its last path component. It passed
    /// [`check_name`].
    pub stored: String,
    /// Whether the bytes sent were CP949 (the Korean Windows code page), not UTF-8.
    pub cp949: bool,
}

impl RequestName {
    /// Whether the client sent a path, of which only the last part is used.
    pub fn is_path(&self) -> bool {
        self.sent != self.stored
    }
}

/// Reads a request's name the way every known client sends it, and checks it.
///
/// The bytes are UTF-8, or else CP949 when they decode as that cleanly (the older C# clients
/// on Korean Windows); a name with `/` or `\` is a path as typed (the C# clients), and only
/// its last component is used, never a directory. That component must pass [`check_name`].
///
/// # Errors
///
/// The first [`NameProblem`] found: [`NameProblem::NotUtf8`] for bytes that are neither
/// encoding, [`NameProblem::NoFileName`] for a path that ends in a separator.
///
/// # Example
///
/// ```
/// use fup::server::names::{NameProblem, read_request_name};
///
/// let name = read_request_name(br"C:\Users\u\f.bin")?;
/// assert_eq!((name.sent.as_str(), name.stored.as_str()), (r"C:\Users\u\f.bin", "f.bin"));
/// // "사진.jpg" from Korean Windows.
/// let name = read_request_name(b"\xbb\xe7\xc1\xf8.jpg")?;
/// assert_eq!((name.stored.as_str(), name.cp949), ("사진.jpg", true));
/// assert_eq!(read_request_name(b"photos/"), Err(NameProblem::NoFileName));
/// # Ok::<(), NameProblem>(())
/// ```
pub fn read_request_name(raw: &[u8]) -> Result<RequestName, NameProblem> {
    if raw.is_empty() {
        return Err(NameProblem::Empty);
    }
    // Checked on the bytes: no decoder gets to turn a NUL into something else.
    if raw.contains(&0) {
        return Err(NameProblem::Nul);
    }
    let (sent, cp949) = match std::str::from_utf8(raw) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => {
            let text = encoding_rs::EUC_KR
                .decode_without_bom_handling_and_without_replacement(raw)
                .ok_or(NameProblem::NotUtf8)?;
            (text.into_owned(), true)
        }
    };
    let stored = match sent.rfind(['/', '\\']) {
        None => sent.clone(),
        Some(at) => {
            let last = &sent[at + 1..];
            if last.is_empty() {
                return Err(NameProblem::NoFileName);
            }
            last.to_owned()
        }
    };
    check_name(stored.as_bytes())?;
    Ok(RequestName {
        sent,
        stored,
        cp949,
    })
}

/// Why a file name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is `.` or `..`.
    DotOrDotDot,
    /// The name is neither UTF-8 nor CP949.
    NotUtf8,
    /// The name is a path that ends in a separator: there is no file name to store under.
    NoFileName,
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
    /// On a Windows server: the name contains a character Windows does not allow in names
    /// (`<`, `>`, `"`, `|`, `?` or `*`).
    NotOnWindows,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "name is empty",
            NameProblem::DotOrDotDot => "name is . or ..",
            NameProblem::NotUtf8 => "name is neither UTF-8 nor CP949",
            NameProblem::NoFileName => "name is a path that ends in a separator",
            NameProblem::TooLong => "name is longer than 255 bytes",
            NameProblem::Separator => "name contains a path separator",
            NameProblem::Nul => "name contains a NUL byte",
            NameProblem::Hidden => "name starts with a dot",
            NameProblem::Control => "name contains a control character",
            NameProblem::Invisible => "name contains an invisible or bidi formatting character",
            NameProblem::Colon => "name contains a colon",
            NameProblem::Device => "name is a Windows device name",
            NameProblem::TrailingDotOrSpace => "name ends in a dot or a space",
            NameProblem::NotOnWindows => {
                "name contains a character Windows does not allow (< > \" | ? *)"
            }
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
    check(raw, false, cfg!(windows))
}

/// Like [`check_name`] for a name inside a folder of a batch, where a hidden name (a leading
/// `.`: `.gitignore`, `.env`) is fine: it can never meet the server's own hidden files, which
/// live at the top of the upload directory. `.` and `..` are still refused.
///
/// # Errors
///
/// The first [`NameProblem`] found.
///
/// # Example
///
/// ```
/// use fup::server::names::{NameProblem, check_name, check_name_in_folder};
///
/// assert_eq!(check_name_in_folder(b".gitignore"), Ok(".gitignore"));
/// assert_eq!(check_name(b".gitignore"), Err(NameProblem::Hidden));
/// assert_eq!(check_name_in_folder(b".."), Err(NameProblem::DotOrDotDot));
/// assert_eq!(check_name_in_folder(b".\x1b[2J"), Err(NameProblem::Control));
/// ```
pub fn check_name_in_folder(raw: &[u8]) -> Result<&str, NameProblem> {
    check(raw, true, cfg!(windows))
}

/// The rule; `windows` adds the characters only Windows refuses (the rest of its rules hold
/// everywhere, so that a name means the same on every common file system).
fn check(raw: &[u8], hidden_ok: bool, windows: bool) -> Result<&str, NameProblem> {
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
    if name.starts_with('.') && !hidden_ok {
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
    if windows && name.contains(['<', '>', '"', '|', '?', '*']) {
        return Err(NameProblem::NotOnWindows);
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
    fn a_windows_server_refuses_what_windows_cannot_store() {
        for name in ["a?b.txt", "x*", "<x>", "say \"hi\"", "a|b", "what?"] {
            assert_eq!(
                check(name.as_bytes(), false, true),
                Err(NameProblem::NotOnWindows),
                "{name}"
            );
            // Elsewhere they are plain names.
            assert_eq!(check(name.as_bytes(), false, false), Ok(name));
        }
        // Windows' other reserved names are refused on every platform.
        for name in ["CON", "nul.txt", "COM1", "a:b", "end.", "end "] {
            assert!(check(name.as_bytes(), false, false).is_err(), "{name}");
        }
        assert_eq!(check("사진.jpg".as_bytes(), false, true), Ok("사진.jpg"));
    }

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
            assert_eq!(check(name.as_bytes(), false, false), Ok(name), "{name:?}");
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

    #[test]
    fn request_names_as_every_known_client_sends_them() {
        // (bytes sent, name as sent, name stored, CP949)
        let hangul_cp949: &[u8] = b"\xc7\xd1\xb1\xdb \xc0\xcc\xb8\xa7.bin"; // 한글 이름.bin
        let cases: &[(&[u8], &str, &str, bool)] = &[
            (b"f.bin", "f.bin", "f.bin", false),
            (
                "한글 이름.bin".as_bytes(),
                "한글 이름.bin",
                "한글 이름.bin",
                false,
            ),
            (b"sub/f.bin", "sub/f.bin", "f.bin", false),
            (b"/home/u/f.bin", "/home/u/f.bin", "f.bin", false),
            (br"C:\Users\u\f.bin", r"C:\Users\u\f.bin", "f.bin", false),
            (b"../../etc/passwd", "../../etc/passwd", "passwd", false),
            (b"a\\b/c", "a\\b/c", "c", false),
            // An overlong UTF-8 "/" is not UTF-8; as CP949 it is the syllable 유, no separator.
            (b"\xc0\xaf", "유", "유", true),
            (hangul_cp949, "한글 이름.bin", "한글 이름.bin", true),
            (
                b"C:\\\xbb\xe7\xc1\xf8\\\xbb\xe7\xc1\xf8.jpg",
                "C:\\사진\\사진.jpg",
                "사진.jpg",
                true,
            ),
        ];
        for (raw, sent, stored, cp949) in cases {
            let name = read_request_name(raw).unwrap();
            assert_eq!(
                (name.sent.as_str(), name.stored.as_str(), name.cp949),
                (*sent, *stored, *cp949),
                "{raw:?}"
            );
            assert_eq!(name.is_path(), sent != stored);
        }
    }

    #[test]
    fn request_names_that_are_still_refused() {
        use NameProblem::*;
        let long = format!("dir/{}", "a".repeat(256));
        let cases: &[(&[u8], NameProblem)] = &[
            (b"", Empty),
            (b"a/", NoFileName),
            (br"C:\Users\", NoFileName),
            (b"/", NoFileName),
            (b"a/..", DotOrDotDot),
            (b"a/.", DotOrDotDot),
            (b"dir/.hidden", Hidden),
            (b"dir/a\nb", Control),
            (b"dir/CON", Device),
            (b"C:x", Colon),
            (b"a\0/b", Nul),
            (b"\xff\xfe", NotUtf8),
            (b"\x80", NotUtf8),
            (b"a\xc7", NotUtf8),
            (long.as_bytes(), TooLong),
            // Decodes as CP949 but is refused like any other name: ESC and a Hangul syllable.
            (b"\x1b\xb0\xa1", Control),
        ];
        for (raw, problem) in cases {
            assert_eq!(read_request_name(raw), Err(*problem), "{raw:?}");
        }
    }

    proptest::proptest! {
        /// Whatever bytes arrive, what is stored is one plain component, never a path.
        #[test]
        fn stored_names_are_single_components(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(name) = read_request_name(&raw) {
                proptest::prop_assert_eq!(check_name(name.stored.as_bytes()), Ok(name.stored.as_str()));
                proptest::prop_assert!(!name.stored.contains(['/', '\\']));
            }
        }
    }
}
