//! Secure mode's first pieces (#11): the installation's identity.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::*;

/// Runs `program --show-identity` with `FUP_CONFIG_DIR=dir`.
fn show_identity(program: &str, dir: &std::path::Path) -> std::process::Output {
    assert_cmd::Command::new(program)
        .arg("--show-identity")
        .env("FUP_CONFIG_DIR", dir)
        .timeout(TIMEOUT)
        .output()
        .unwrap()
}

// See: #11
#[test]
fn both_programs_show_the_installations_identity() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fup");
    let server = show_identity(env!("CARGO_BIN_EXE_fup-server"), &dir);
    let client = show_identity(env!("CARGO_BIN_EXE_fup-client"), &dir);
    assert_eq!(server.status.code(), Some(0), "{}", text(&server).1);
    assert_eq!(
        client.stdout, server.stdout,
        "one installation, one identity"
    );
    let id = text(&server).0;
    let groups: Vec<&str> = id.trim_end().split('-').collect();
    assert_eq!(groups.len(), 8, "{id}");
    assert!(groups.iter().all(|g| g.len() == 7), "{id}");
    assert!(id.parse::<fup::secure::Identity>().is_ok(), "{id}");
    let key = dir.join("identity.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Another installation has another identity.
    let other = show_identity(env!("CARGO_BIN_EXE_fup-server"), &root.path().join("b"));
    assert_ne!(other.stdout, server.stdout);
    // A key that others may read is refused, with how to mend it.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let refused = show_identity(env!("CARGO_BIN_EXE_fup-client"), &dir);
    assert_eq!(refused.status.code(), Some(1));
    let (stdout, stderr) = text(&refused);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!(
            "fup-client: cannot use this installation's identity: {} may be read by others (mode 644): run chmod 600 on it\n",
            key.display()
        )
    );
}
