//! The conventions people expect at the command line (#10): short options, units, environment
//! defaults, addresses as the server prints them, exit codes on signals, plain errors.

use std::fs;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Uploads a small file with `fup-client ARGS… FILE`; returns the exit code and stderr.
fn client(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("c.txt");
    fs::write(&file, b"conventions").unwrap();
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_fup-client"))
        .args(args)
        .arg(&file)
        .envs(envs.iter().copied())
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    (out.status.code(), text(&out).1)
}

// See: #10
#[test]
fn short_options_units_and_environment_defaults() {
    let dir = tempfile::tempdir().unwrap();
    // Short options on the server, and a duration with a unit.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-server"));
    cmd.args(["-p", "0", "-b", "127.0.0.1", "-y", "-t", "2m", "-q"])
        .arg(dir.path());
    let server = Running::command(&mut cmd, Input::Text(""));
    let port = server.port();
    let ok = |args: &[&str], envs: &[(&str, &str)]| {
        let (code, stderr) = client(args, envs);
        assert_eq!(code, Some(0), "{args:?} {envs:?}: {stderr}");
    };
    ok(
        &["-p", &port, "-t", "90s", "--chunk-size", "1M", "127.0.0.1"],
        &[],
    );
    ok(
        &["--chunk-size", "4KiB", "127.0.0.1"],
        &[("FUP_PORT", &port)],
    );
    ok(
        &["127.0.0.1"],
        &[("FUP_PORT", &port), ("FUP_TIMEOUT", "500ms")],
    );
    for bad in [["--chunk-size", "17M"], ["--timeout", "2d"], ["-t", "0"]] {
        let (code, stderr) = client(&[bad[0], bad[1], "-p", &port, "127.0.0.1"], &[]);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
    }
    // The environment also starts a server.
    let dir2 = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-server"));
    cmd.arg("--yes")
        .env("FUP_PORT", "0")
        .env("FUP_BIND", "127.0.0.1")
        .env("FUP_DIR", dir2.path());
    let second = Running::command_with_env(&mut cmd, Input::Text(""));
    ok(&["-p", &second.port(), "127.0.0.1"], &[]);
    assert_eq!(fs::read(dir2.path().join("c.txt")).unwrap(), b"conventions");
}

// See: #10
#[test]
fn the_client_takes_every_address_form_the_server_prints() {
    let dir = tempfile::tempdir().unwrap();
    let v4 = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let port = v4.port();
    let printed = v4.addr.to_string(); // "127.0.0.1:PORT", as the server prints it
    assert_eq!(client(&[&printed], &[]).0, Some(0), "{printed}");
    // The address's port wins over the default and the environment…
    assert_eq!(client(&[&printed], &[("FUP_PORT", "1")]).0, Some(0));
    // …and the same port again is fine, a different one a usage error.
    assert_eq!(client(&["-p", &port, &printed], &[]).0, Some(0));
    let (code, stderr) = client(&["-p", "1", &printed], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the address {printed} names port {port} but --port says 1"
        )),
        "{stderr}"
    );
    // IPv6: bare, bracketed, bracketed with the port, as `listening on [::1]:PORT` prints it.
    let dir6 = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-server"));
    cmd.args(["--yes", "-p", "0", "-b", "::1"]).arg(dir6.path());
    let v6 = Running::command_any_address(&mut cmd, Input::Text(""));
    let port6 = v6.addr.port().to_string();
    let printed6 = v6.addr.to_string();
    assert_eq!(printed6, format!("[::1]:{port6}"));
    for form in [printed6.as_str(), "::1", "[::1]"] {
        let (code, stderr) = client(&["-p", &port6, form], &[]);
        assert_eq!(code, Some(0), "{form}: {stderr}");
    }
    let (code, _) = client(&[&printed6], &[]);
    assert_eq!(code, Some(0));
    for bad in ["[::1", "host:port", ":::x"] {
        assert_eq!(client(&[bad], &[]).0, Some(2), "{bad}");
    }
}

// See: #10
#[test]
fn every_program_exits_128_plus_the_signal() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        // Servers: fup-server (after its cleanup) and echo-server.
        let dir = tempfile::tempdir().unwrap();
        let mut fup = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
        signal_to(fup.pid(), signal);
        assert_eq!(fup.wait_exit(), Some(code), "fup-server {signal}");
        let mut echo = Running::echo_server();
        signal_to(echo.pid(), signal);
        assert_eq!(echo.wait_exit(), Some(code), "echo-server {signal}");
        // Clients: echo-client between rounds, fup-client waiting for an answer.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo-client"));
        let echo = Running::echo_server();
        cmd.args(["-c", "100", "-i", "1", "-p", &echo.port(), "127.0.0.1", "x"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut first = [0; 1];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        signal_to(child.id(), signal);
        assert_eq!(wait(&mut child), Some(code), "echo-client {signal}");
    }
}

fn signal_to(pid: u32, name: &str) {
    signal(pid, name);
}

fn wait(child: &mut std::process::Child) -> Option<i32> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// See: #10
#[test]
fn plain_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let server = env!("CARGO_BIN_EXE_fup-server");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![file.display().to_string()],
            format!(
                "cannot use upload directory {}: it is a file, not a directory",
                file.display()
            ),
        ),
        (
            vec!["/proc/self".into()],
            "cannot use upload directory /proc/self: it is not writable: ".into(),
        ),
        (
            vec![
                "-b".into(),
                "127.0.0.1".into(),
                "-p".into(),
                taken_port.clone(),
                dir.path().display().to_string(),
            ],
            format!(
                "cannot listen on 127.0.0.1:{taken_port}: the port is already in use (another server? choose one with --port)"
            ),
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(server, &args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("fup-server: {message}")),
            "{stderr}"
        );
    }
}
