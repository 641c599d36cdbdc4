//! Where identities live and how they are pinned: the configuration directory, the rule for
//! private key files, and the two trust files, `trusted_clients` (a server's) and
//! `known_hosts` (a client's, like ssh's).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::id::{IdError, Identity};

/// The server's trusted clients' file, in the configuration directory.
pub const TRUSTED_CLIENTS: &str = "trusted_clients";
/// The client's pinned servers' file, in the configuration directory.
pub const KNOWN_HOSTS: &str = "known_hosts";

/// The configuration directory: `$FUP_CONFIG_DIR`, else `$XDG_CONFIG_HOME/fup`, else
/// `~/.config/fup`; `None` when none of those can be known. `var` reads the environment.
pub fn config_dir(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name| var(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("FUP_CONFIG_DIR") {
        return Some(dir.into());
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
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} may be read by others (mode {mode:03o}): run chmod 600 on it",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Creates `path` with `contents`, readable by its owner only, never replacing a file.
///
/// # Errors
///
/// If the file exists or cannot be written.
pub fn create_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
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
/// For a file that cannot be read, or a line whose identity does not check out (with its
/// line number: a trust file must never be half read).
pub fn read_trusted(path: &Path) -> Result<Vec<Trusted>, FileError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(file_error(path, 0, err.to_string())),
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
/// For a file that cannot be read or a line that cannot be read as such an entry.
pub fn known_host(path: &Path, host: &HostPort) -> Result<Option<Known>, FileError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(file_error(path, 0, err.to_string())),
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
/// owner's alone.
fn append(path: &Path, line: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(line.as_bytes())?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
