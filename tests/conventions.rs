//! The conventions people expect at the command line: short options, units, environment
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
    with_config(cmd.args(args).arg(&file).envs(envs.iter().copied()));
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    (out.status.code(), text(&out).1)
}

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
    for bad in [["--chunk-size", "17M"], ["--timeout", "2w"], ["-t", "0"]] {
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
    let second = Running::command(&mut cmd, Input::Text(""));
    ok(&["-p", &second.port(), "127.0.0.1"], &[]);
    assert_eq!(fs::read(dir2.path().join("c.txt")).unwrap(), b"conventions");
}

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

/// Runs `fup-server ARGS… DIR` bound to every interface inside a network namespace of its
/// own (a user namespace makes it possible without root) with one interface besides
/// loopback, 192.0.2.9; `None` where namespaces cannot be made.
fn server_in_namespace(args: &str, dir: &std::path::Path) -> Option<Running> {
    let setup = "ip link set lo up && ip link add v0 type veth peer name v1 \
                 && ip addr add 192.0.2.9/24 dev v0 && ip link set v0 up && ip link set v1 up";
    let possible = Command::new("unshare")
        .args(["-rn", "sh", "-c", setup])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !possible {
        eprintln!("SKIPPED: cannot make a network namespace here (unshare -rn)");
        return None;
    }
    let script = format!(
        "{setup} && exec {} --yes -p 0 {args} {}",
        env!("CARGO_BIN_EXE_fup-server"),
        dir.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-rn", "sh", "-c", &script]);
    Some(Running::command_every_interface(&mut cmd, Input::Text("")))
}

#[test]
fn a_server_on_every_interface_says_which_addresses_clients_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = server_in_namespace("", dir.path()) else {
        return;
    };
    let port = server.port();
    server.identity();
    // Not 0.0.0.0, not loopback: the one address a client elsewhere could use.
    assert_eq!(server.raw_line(), format!("reachable at 192.0.2.9:{port}"));
    let warning = server.err_line_containing("--yes accepts every upload");
    assert_eq!(server.web()[0], format!("web: http://192.0.2.9:{port}/"));
    // The warning names the port it got, not the 0 it was asked for.
    assert!(
        warning.ends_with(&format!("on all interfaces (port {port}); consider --bind")),
        "{warning}"
    );
    let Some(server) = server_in_namespace("--json -b ::", dir.path()) else {
        return;
    };
    // IPv6's any address takes IPv4 too; link-local addresses are left out.
    let json: serde_json::Value = serde_json::from_str(&server.ready).unwrap();
    let port = server.port();
    assert_eq!(json["listening"], format!("[::]:{port}"), "{json}");
    assert_eq!(
        json["reachable"],
        serde_json::json!([format!("192.0.2.9:{port}")]),
        "{json}"
    );
    // And the page at that address, the one a phone on the network can open.
    assert_eq!(
        json["web"],
        serde_json::json!([format!("http://192.0.2.9:{port}/")]),
        "{json}"
    );
}

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

#[test]
fn json_on_both_sides_for_a_mixed_run() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::limited_fup_server(dir.path(), "--json", Input::Pipe);
    let files: Vec<String> = [("ok.txt", 10), ("no.txt", 20), ("big.bin", 200_000)]
        .into_iter()
        .map(|(name, len)| {
            let path = src.path().join(name);
            fs::write(&path, pattern(len)).unwrap();
            path.to_str().unwrap().to_string()
        })
        .chain([src.path().join("missing").to_str().unwrap().to_string()])
        .collect();
    let port = server.port();
    pin_shared(&port);
    let client = {
        // Plain: one question and one SHA-256 per file (secure mode asks once for the batch
        // and prints BLAKE3).
        let mut args = vec![
            "--json".to_string(),
            "--plain".into(),
            "--checksum".into(),
            "-p".into(),
            port,
            "127.0.0.1".into(),
        ];
        args.extend(files.iter().cloned());
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(env!("CARGO_BIN_EXE_fup-client"), &args)
        })
    };
    for answer in ["y", "n", "y"] {
        server.err_line_containing("accept? [y/N");
        server.answer(answer);
    }
    let out = client.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = text(&out);
    assert!(stderr.is_empty(), "all of it is in the JSON: {stderr}");
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let verdicts: Vec<&str> = objects
        .iter()
        .map(|o| o["verdict"].as_str().unwrap())
        .collect();
    // The missing file is said before connecting; the rest as each ends.
    assert_eq!(verdicts, ["error", "stored", "denied", "failed"]);
    for o in &objects {
        check_schema(o);
    }
    let missing = &objects[0];
    assert_eq!(missing["file"], files[3].as_str());
    assert_eq!(missing["stored"], false);
    assert!(
        missing["reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot open file"),
        "{missing}"
    );
    let ok = &objects[1];
    assert_eq!(ok["name"], "ok.txt");
    assert_eq!(ok["stored"], true);
    assert_eq!(ok["size"], 10);
    assert!(ok["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(ok["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(ok["secure"], false);
    assert_eq!(objects[2]["code"], "denied");
    assert_eq!(
        objects[2]["seconds"],
        serde_json::Value::Null,
        "no transfer"
    );
    assert_eq!(
        objects[3]["reason"],
        "the server reported that storing the file failed"
    );
    // The server's side: one object per connection, with the time.
    let lines: Vec<serde_json::Value> = (0..3)
        .map(|_| serde_json::from_str(&server.raw_line()).unwrap())
        .collect();
    let verdicts: Vec<&str> = lines
        .iter()
        .map(|o| o["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["stored", "denied", "failed"]);
    assert_eq!(
        lines[0]["stored"],
        dir.path().join("ok.txt").to_str().unwrap()
    );
    assert_eq!(lines[0]["received"], 10);
    assert!(lines[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(stamp_len(&format!("{} x", lines[0]["time"].as_str().unwrap())).is_some());
    assert!(
        lines[2]["error"]
            .as_str()
            .unwrap()
            .contains("File too large"),
        "{}",
        lines[2]
    );
    eprintln!("client --json:\n{stdout}server --json:");
    for line in &lines {
        eprintln!("{line}");
    }
}

#[test]
fn unattended_log_lines_carry_rfc3339_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes", "--checksum"], Input::Text(""));
    let (code, stderr) = client(&["-p", &server.port(), "127.0.0.1"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = server.raw_line();
    let len = stamp_len(&line).unwrap_or_else(|| panic!("no timestamp: {line:?}"));
    assert!(line[len..].starts_with("stored \"c.txt\""), "{line}");
    // The digest line stays in sha256sum's format.
    let digest = server.raw_line();
    assert!(
        digest.ends_with("/c.txt") && digest.find("  ") == Some(64),
        "{digest}"
    );
}

#[test]
fn standard_input_is_uploaded_under_the_given_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let data = pattern(300_000);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
    with_config(&mut cmd);
    let out = assert_cmd::Command::from_std(cmd)
        .args([
            "-p",
            &server.port(),
            "127.0.0.1",
            "-",
            "--name",
            "piped.bin",
        ])
        .write_stdin(data.clone())
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(text(&out).0.starts_with("sent \"piped.bin\" 293.0 KiB in "));
    assert!(fs::read(dir.path().join("piped.bin")).unwrap() == data);
    // `-` needs --name, and --name needs `-`: usage errors.
    for args in [
        vec!["-"],
        vec!["--name", "x", "/etc/hostname"],
        vec!["-", "-", "--name", "x"],
    ] {
        let mut all = vec!["-p", "1", "127.0.0.1"];
        all.extend(args.iter());
        let out = run(env!("CARGO_BIN_EXE_fup-client"), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn completions_and_man_pages_come_from_the_programs() {
    let programs = [
        env!("CARGO_BIN_EXE_fup-server"),
        env!("CARGO_BIN_EXE_fup-client"),
        env!("CARGO_BIN_EXE_echo-server"),
        env!("CARGO_BIN_EXE_echo-client"),
    ];
    for program in programs {
        let name = std::path::Path::new(program)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        // Without the program's required arguments.
        let man = run(program, &["--man"]);
        assert_eq!(man.status.code(), Some(0), "{name}");
        let page = text(&man).0;
        assert!(
            page.contains(&format!(".TH {name} 1")),
            "{name}: {page:.200}"
        );
        assert!(
            page.contains("\\-\\-port"),
            "{name}: options are documented"
        );
        for shell in ["bash", "zsh", "fish"] {
            let out = run(program, &["--completions", shell]);
            assert_eq!(out.status.code(), Some(0), "{name} {shell}");
            let script = text(&out).0;
            assert!(
                script.contains("port") && script.contains(name),
                "{name} {shell}"
            );
        }
        assert_eq!(
            run(program, &["--completions", "cmd"]).status.code(),
            Some(2)
        );
    }
}
