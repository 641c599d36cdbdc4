//! Where identities live and how they are pinned: the configuration directory, the rule for
//! private key files, and the two trust files, `trusted_clients` (a server's) and
//! `known_hosts` (a client's, like ssh's).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::id::{IdError, Identity};

/// The server's trusted clients' file, in the configuration directory.
pub const TRUSTED_CLIENTS: &str = "trusted_clients";
/// The client's pinned servers' file, in the configuration directory.
pub const KNOWN_HOSTS: &str = "known_hosts";

/// The configuration directory: `$FUP_CONFIG_DIR`, else (on Windows) `%APPDATA%\\fup`, else
/// `$XDG_CONFIG_HOME/fup`, else `~/.config/fup`; `None` when none of those can be known.
/// `var` reads the environment.
pub fn config_dir(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name| var(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("FUP_CONFIG_DIR") {
        return Some(dir.into());
    }
    if cfg!(windows)
        && let Some(dir) = set("APPDATA")
    {
        return Some(Path::new(&dir).join("fup"));
    }
    if let Some(dir) = set("XDG_CONFIG_HOME") {
        return Some(Path::new(&dir).join("fup"));
    }
    set("HOME").map(|home| Path::new(&home).join(".config").join("fup"))
}

/// Checks that a private key file is readable by its owner only.
///
/// # Errors
///
/// If the file cannot be read, or its group or others may read or write it: the message says
/// which mode it has and how to mend it.
pub fn check_private(path: &Path) -> io::Result<()> {
    match crate::sys::mode(&fs::metadata(path)?) {
        Some(mode) => refuse_mode(path, mode, 0o077, "read"),
        // Windows: the configuration directory is in the user's profile, whose access list
        // lets that user (and the system's administrators) in, no one else.
        None => Ok(()),
    }
}

/// Checks that a trust file can be changed by its owner only: whoever may write to it
/// decides whom the program trusts.
///
/// # Errors
///
/// If its group or others may write to it: the message says which mode it has and how to
/// mend it.
pub fn check_trust_file(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    match crate::sys::mode(meta) {
        Some(mode) => refuse_mode(path, mode, 0o022, "changed"),
        None => Ok(()),
    }
}

/// Refuses `path` if its `mode` has any bit of `others` (who else may do `what` to it), with
/// the `chmod` that mends it.
fn refuse_mode(path: &Path, mode: u32, others: u32, what: &str) -> io::Result<()> {
    let mode = mode & 0o777;
    if mode & others == 0 {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} may be {what} by others (mode {mode:03o}): run chmod 600 on it",
            path.display()
        ),
    ))
}

/// The text of a trust file, once it passed [`check_trust_file`]; `None` if it is missing.
fn read_trust_file(path: &Path) -> Result<Option<String>, FileError> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(file_error(path, 0, err.to_string())),
    };
    let fail = |err: io::Error| file_error(path, 0, err.to_string());
    let meta = file.metadata().map_err(fail)?;
    check_trust_file(path, &meta).map_err(fail)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(fail)?;
    Ok(Some(text))
}

/// Creates `path` with `contents`, readable by its owner only, never replacing a file.
///
/// # Errors
///
/// If the file exists or cannot be written.
pub fn create_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file =
        crate::sys::owner_only(OpenOptions::new().write(true).create_new(true)).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A line of a trust file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}, line {line}: {problem}")]
pub struct FileError {
    /// The file.
    pub path: String,
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// One trusted client: its identity and an optional label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trusted {
    /// The client's identity.
    pub id: Identity,
    /// What the operator calls it, if anything.
    pub label: Option<String>,
}

/// Reads a `trusted_clients` file: one identity per line, a label after it if any, `#`
/// comments and blank lines ignored. A missing file trusts no one.
///
/// # Errors
///
/// For a file that cannot be read or that others may change, or a line whose identity does
/// not check out (with its line number: a trust file must never be half read).
pub fn read_trusted(path: &Path) -> Result<Vec<Trusted>, FileError> {
    let Some(text) = read_trust_file(path)? else {
        return Ok(Vec::new());
    };
    let mut trusted = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (id, label) = match line.split_once(char::is_whitespace) {
            Some((id, label)) => (id, Some(label.trim().to_string())),
            None => (line, None),
        };
        let id = id
            .parse()
            .map_err(|err: IdError| file_error(path, i + 1, err.to_string()))?;
        trusted.push(Trusted { id, label });
    }
    Ok(trusted)
}

/// Adds a client to a `trusted_clients` file (created if missing).
///
/// # Errors
///
/// If the file cannot be written.
pub fn add_trusted(path: &Path, id: &Identity, label: Option<&str>) -> io::Result<()> {
    let line = match label {
        Some(label) => format!("{id} {}\n", one_line(label)),
        None => format!("{id}\n"),
    };
    append(path, &line)
}

/// Where a server was met: the host as the user named it, and the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address, without brackets.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// A server's pinned identity, and the line of `known_hosts` that pins it (to be named when
/// the identity changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The identity pinned.
    pub id: Identity,
    /// Its line in the file, from 1.
    pub line: usize,
}

/// Looks `host` up in a `known_hosts` file: lines `HOST:PORT ID` (`[IPv6]:PORT ID`), `#`
/// comments; the first line for that host and port counts. A missing file knows no one.
///
/// # Errors
///
/// For a file that cannot be read or that others may change, or a line that cannot be read
/// as such an entry.
pub fn known_host(path: &Path, host: &HostPort) -> Result<Option<Known>, FileError> {
    let Some(text) = read_trust_file(path)? else {
        return Ok(None);
    };
    let wanted = host.to_string();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let bad = |problem: &str| file_error(path, i + 1, problem.to_string());
        let (at, id) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("expected HOST:PORT and an identity"))?;
        let id: Identity = id
            .trim()
            .parse()
            .map_err(|err: IdError| bad(&err.to_string()))?;
        if at.eq_ignore_ascii_case(&wanted) {
            return Ok(Some(Known { id, line: i + 1 }));
        }
    }
    Ok(None)
}

/// Pins `id` for `host` in a `known_hosts` file (created if missing).
///
/// # Errors
///
/// If the file cannot be written.
pub fn add_known_host(path: &Path, host: &HostPort, id: &Identity) -> io::Result<()> {
    append(path, &format!("{host} {id}\n"))
}

/// Appends one line, creating the file (and its directory) if missing; trust files are the
/// owner's alone. Under an exclusive lock of the file, so that programs adding at once never
/// interleave; and on a line of its own, whatever the file ended with.
///
/// # Errors
///
/// If the file cannot be written, or others may change it.
fn append(path: &Path, line: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = crate::sys::owner_only(OpenOptions::new().read(true).append(true).create(true))
        .open(path)?;
    check_trust_file(path, &file.metadata()?)?;
    file.lock()?;
    let len = file.metadata()?.len();
    let mut last = [b'\n'];
    if len > 0 {
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
    }
    let text = match last {
        [b'\n'] => line.to_string(),
        _ => format!("\n{line}"),
    };
    // In append mode every write goes to the end, wherever the read left the cursor.
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// A label kept to one line without comment marks, so the file reads back as written.
fn one_line(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_control() || c == '#' { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn file_error(path: &Path, line: usize, problem: String) -> FileError {
    FileError {
        path: path.display().to_string(),
        line,
        problem,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn id(seed: u8) -> Identity {
        Identity::of_public_key(&[seed; 44])
    }

    #[test]
    fn config_dir_in_its_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = env(&[
            ("FUP_CONFIG_DIR", "/c"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(config_dir(all), Some("/c".into()));
        let xdg = env(&[
            ("FUP_CONFIG_DIR", ""),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(config_dir(xdg), Some("/x/fup".into()));
        assert_eq!(
            config_dir(env(&[("HOME", "/h")])),
            Some("/h/.config/fup".into())
        );
        assert_eq!(config_dir(env(&[])), None);
    }

    #[test]
    fn private_files_are_the_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        create_private(&key, b"secret").unwrap();
        check_private(&key).unwrap();
        assert!(create_private(&key, b"again").is_err(), "never replaced");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_private(&key).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} may be read by others (mode 644): run chmod 600 on it",
                key.display()
            )
        );
    }

    #[test]
    fn trusted_clients_read_back_what_was_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/trusted_clients");
        assert_eq!(read_trusted(&path), Ok(vec![]));
        add_trusted(&path, &id(1), Some("laptop # mine\n")).unwrap();
        add_trusted(&path, &id(2), None).unwrap();
        let mut text = fs::read_to_string(&path).unwrap();
        text.insert_str(0, "# trusted clients\n\n");
        text.push_str(&format!(
            "{}  build server  # CI\n",
            id(3).to_string().to_lowercase()
        ));
        fs::write(&path, &text).unwrap();
        let trusted = read_trusted(&path).unwrap();
        let label = |s: &str| Some(s.to_string());
        assert_eq!(
            trusted,
            [
                Trusted {
                    id: id(1),
                    label: label("laptop   mine")
                },
                Trusted {
                    id: id(2),
                    label: None
                },
                Trusted {
                    id: id(3),
                    label: label("build server")
                },
            ]
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // One bad line: the file is refused, with its line.
        let mut typo = id(4).to_string();
        typo.replace_range(0..1, if typo.starts_with('A') { "B" } else { "A" });
        fs::write(&path, format!("{}\n{typo} x\n", id(1))).unwrap();
        let err = read_trusted(&path).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.to_string().contains("typo in the identity"), "{err}");
    }

    // Before: a file without a final newline was corrupted; others could rewrite it.
    #[test]
    fn appends_start_a_line_of_their_own_and_others_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted_clients");
        fs::write(&path, format!("{} laptop", id(1))).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        add_trusted(&path, &id(2), None).unwrap();
        let ids: Vec<Identity> = read_trusted(&path).unwrap().iter().map(|t| t.id).collect();
        assert_eq!(ids, [id(1), id(2)]);
        // Many at once, each whole on its line.
        let adders: Vec<_> = (10..30)
            .map(|n| {
                let path = path.clone();
                std::thread::spawn(move || add_trusted(&path, &id(n), Some("x")).unwrap())
            })
            .collect();
        adders.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(read_trusted(&path).unwrap().len(), 22);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let err = read_trusted(&path).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("may be changed by others (mode 666): run chmod 600 on it"),
            "{err}"
        );
        assert!(add_trusted(&path, &id(3), None).is_err());
        let host = HostPort {
            host: "h".into(),
            port: 1,
        };
        let known = dir.path().join("known_hosts");
        fs::write(&known, format!("a:1 {}", id(1))).unwrap();
        fs::set_permissions(&known, fs::Permissions::from_mode(0o600)).unwrap();
        add_known_host(&known, &host, &id(2)).unwrap();
        assert_eq!(known_host(&known, &host).unwrap().unwrap().line, 2);
        fs::set_permissions(&known, fs::Permissions::from_mode(0o620)).unwrap();
        assert!(known_host(&known, &host).is_err());
    }

    #[test]
    fn known_hosts_pin_by_host_and_port() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let host = |h: &str, port| HostPort {
            host: h.into(),
            port,
        };
        assert_eq!(known_host(&path, &host("a", 1)), Ok(None));
        add_known_host(&path, &host("files.lan", 5425), &id(1)).unwrap();
        add_known_host(&path, &host("::1", 6000), &id(2)).unwrap();
        add_known_host(&path, &host("files.lan", 6000), &id(3)).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().lines().nth(1).unwrap(),
            format!("[::1]:6000 {}", id(2))
        );
        let cases = [
            (host("files.lan", 5425), Some((id(1), 1))),
            (host("FILES.LAN", 5425), Some((id(1), 1))),
            (host("::1", 6000), Some((id(2), 2))),
            (host("files.lan", 6000), Some((id(3), 3))),
            (host("files.lan", 5426), None),
            (host("other", 5425), None),
        ];
        for (at, expected) in cases {
            let found = known_host(&path, &at).unwrap().map(|k| (k.id, k.line));
            assert_eq!(found, expected, "{at}");
        }
        fs::write(&path, "files.lan:5425\n").unwrap();
        assert_eq!(known_host(&path, &host("x", 1)).unwrap_err().line, 1);
    }
}
