//! What `fup-client` says about its files: one line per file for people, one JSON object
//! per file for programs (the schema below), one line for a cause that ended many files at
//! once, and the totals. Every name and reason is escaped here, before a terminal sees it.
//!
//! The JSON schema (every key always there, `null` where it does not apply):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `file` | string | the path here, as given or found inside a folder; `-` for standard input |
//! | `name` | string | its name at the server's end (`photos/a.jpg`) |
//! | `verdict` | string | `stored`, `denied`, `failed`, `skipped`, `error` |
//! | `code` | string | why, for programs: `stored`, `denied`, `too-large`, `no-space`, `refused`, `mismatch`, `server-error`, `cut`, `busy`, `shutting-down`, `unknown` (the server's), or `unreadable`, `special`, `symlink`, `name`, `directory`, `limit`, `changed`, `connection`, `identity`, `not-secure`, `old-server`, `protocol` (the client's) |
//! | `reason` | string or null | why, for people |
//! | `stored` | bool | whether the server stored it |
//! | `stored_as` | string or null | the name it was stored under, when the server said it (secure mode; it differs from `name` when that existed) |
//! | `size` | number or null | bytes |
//! | `seconds` | number or null | time its bytes took, when stored |
//! | `rate` | number or null | bytes per second, when stored and bytes moved |
//! | `blake3` | string or null | hex, checked end to end (secure mode) |
//! | `sha256` | string or null | hex, of what was sent (plain mode, `--checksum`) |
//! | `resumed` | number | bytes the server had from a try that was cut |
//! | `secure` | bool | whether its fate was settled over a secure connection (false for what never left) |

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::batch::Totals;
use crate::client::batch::Resumed;
use crate::client::command::{Cause, Digest, FileResult, Report, Verdict};
use crate::secure::dial::Note;
use crate::text;

/// Where a line goes: stored files on stdout, the rest on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// `path` (one of this machine's) as a terminal may show it: control and invisible
/// characters written out, backslashes (Windows' separators) as they are.
pub fn shown(path: &Path) -> String {
    text::visible(&path.to_string_lossy())
}

/// One file's line for people, and where it goes; none for a stored file with `quiet`.
/// With `many`, a file of a batch leaves its time to the totals line.
pub fn file_line(result: &FileResult, quiet: bool, many: bool) -> Option<(String, Stream)> {
    let name = text::escape(&result.name);
    let size = sized(result.size);
    let how = how(result);
    // Reasons keep their quotes; control characters are shown, not obeyed.
    let why = result.reason.as_deref().map(text::visible);
    // A plain server says no more than yes or no: its reason is the verdict again.
    let server_why = why.as_ref().filter(|_| result.secure);
    let line = match result.verdict {
        Verdict::Stored if quiet => return None,
        Verdict::Stored => {
            let renamed = match &result.stored_as {
                Some(to) if *to != result.name => format!(" as \"{}\"", text::escape(to)),
                _ => String::new(),
            };
            // In a batch, the totals line has the time and rate.
            let timing = match result.elapsed.filter(|_| !(many && result.secure)) {
                Some(elapsed) => format!(
                    " in {:.2} s ({})",
                    elapsed.as_secs_f64(),
                    text::rate(result.moved, elapsed)
                ),
                _ => String::new(),
            };
            let resumed = match (result.resumed, result.size) {
                (0, _) | (_, None) => String::new(),
                (bytes, Some(size)) if bytes >= size => ", by an earlier try".to_string(),
                (bytes, Some(size)) => format!(", resumed at {}", text::percent(bytes, size)),
            };
            let line = format!("sent \"{name}\"{size}{timing}: stored{renamed}, {how}{resumed}");
            return Some((line, Stream::Out));
        }
        Verdict::Denied => {
            let why = server_why.map(|w| format!(" ({w})")).unwrap_or_default();
            format!("fup-client: \"{name}\"{size}: denied by server{why}, {how}")
        }
        Verdict::Failed if matches!(result.code, Cause::Server(_)) => {
            let why = server_why.map(|w| format!(": {w}")).unwrap_or_default();
            format!(
                "fup-client: \"{name}\"{size}: server reported that storing the file failed{why}, {how}"
            )
        }
        Verdict::Failed => format!("fup-client: \"{name}\"{size}: {}", why.unwrap_or_default()),
        Verdict::Skipped => format!(
            "fup-client: warning: skipped {}: {}",
            shown(&result.file),
            why.unwrap_or_default()
        ),
        Verdict::Error => format!(
            "fup-client: {}: {}",
            shown(&result.file),
            why.unwrap_or_default()
        ),
    };
    Some((line, Stream::Err))
}

/// ` 1.0 MiB`, or nothing for a size not known.
fn sized(size: Option<u64>) -> String {
    size.map(|s| format!(" {}", text::bytes(s)))
        .unwrap_or_default()
}

/// How it went: `secure, verified`, `secure` or `plain`.
fn how(result: &FileResult) -> &'static str {
    match (result.secure, result.digest) {
        (true, Some(Digest::Blake3(_))) => "secure, verified",
        (true, _) => "secure",
        (false, _) => "plain",
    }
}

/// One line for a cause that ended `files` at once: a batch denied whole (`totals`), a
/// connection lost, an identity refused.
pub fn together_line(
    verdict: Verdict,
    reason: &str,
    totals: Option<&Totals>,
    files: &[FileResult],
) -> String {
    let reason = text::visible(reason);
    let how = match files.first().is_some_and(|f| f.secure) {
        true => "secure",
        false => "plain",
    };
    match (verdict, files) {
        (Verdict::Denied, [one]) => {
            let why = match reason.is_empty() {
                true => String::new(),
                false => format!(" ({reason})"),
            };
            format!(
                "fup-client: \"{}\"{}: denied by server{why}, {how}",
                text::escape(&one.name),
                sized(one.size)
            )
        }
        (Verdict::Denied, _) => {
            let what = totals.map_or_else(|| files_count(files.len()), Totals::to_string);
            let why = match reason.is_empty() {
                true => String::new(),
                false => format!(": {reason}"),
            };
            format!("fup-client: batch of {what} denied by server{why}, {how}")
        }
        (_, [_]) => format!("fup-client: {reason}"),
        (_, _) => format!(
            "fup-client: {reason} ({} not stored)",
            files_count(files.len())
        ),
    }
}

/// `1 file`, `3 files`.
fn files_count(n: usize) -> String {
    match n {
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    }
}

/// How a batch went on the wire, for the totals line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchFigures {
    /// What it held.
    pub totals: Totals,
    /// From the server's acceptance.
    pub elapsed: Duration,
    /// Bytes moved in this run.
    pub moved: u64,
    /// Bytes there from cut tries.
    pub resumed: u64,
}

/// The totals after several files: counts, and for a batch its size, time and rate (a rate
/// only for bytes that moved).
pub fn totals_line(report: &Report, batch: Option<&BatchFigures>) -> String {
    let mut line = format!("{} stored", report.stored);
    for (count, what) in [
        (report.denied, "denied"),
        (report.failed, "failed"),
        (report.errors, "not sent"),
        (report.skipped, "skipped"),
    ] {
        if count > 0 {
            line.push_str(&format!(", {count} {what}"));
        }
    }
    match batch {
        Some(b) if b.moved > 0 => {
            // What moved, when it was not the whole batch (some refused, some there already).
            let moved = match b.moved + b.resumed == b.totals.bytes {
                true => String::new(),
                false => format!(" ({} sent)", text::bytes(b.moved)),
            };
            let resumed = match b.resumed {
                0 => String::new(),
                bytes => format!(", resumed with {} there", text::bytes(bytes)),
            };
            format!(
                "batch of {}{moved} in {:.2} s ({}{resumed}): {line}",
                b.totals,
                b.elapsed.as_secs_f64(),
                text::rate(b.moved, b.elapsed)
            )
        }
        Some(b) => format!("batch of {}: {line}", b.totals),
        None => line,
    }
}

/// What the client says of what the dialer did: a plain server met, an identity pinned
/// (`asked`: after the user said yes; else without a terminal to ask).
pub fn note_line(note: &Note, host: &str, asked: bool) -> String {
    match note {
        Note::Plain => format!(
            "fup-client: note: {host} does not offer secure mode; sending in plain \
             (unencrypted, unauthenticated; --secure refuses this)"
        ),
        Note::Pinned { id, file } if asked => format!(
            "fup-client: {host}'s identity {id} is now pinned in {}",
            shown(file)
        ),
        Note::Pinned { id, file } => format!(
            "fup-client: first contact with {host}: pinned its identity {id} in {} \
             (no terminal to ask)",
            shown(file)
        ),
        Note::Paired { id, file, label } => format!(
            "fup-client: paired with {host} by its code: pinned its identity {id} in {}; it \
             trusts this client as \"{}\" from now on",
            shown(file),
            text::escape(label)
        ),
    }
}

/// What the client says when a batch resumes a cut try.
pub fn resumed_line(resumed: &Resumed, total: u64) -> String {
    let mut line = format!(
        "resuming at {} ({} already there",
        text::percent(resumed.bytes, total),
        text::bytes(resumed.bytes)
    );
    if resumed.files > 0 {
        let s = if resumed.files == 1 { "" } else { "s" };
        line.push_str(&format!(", {} file{s} stored before", resumed.files));
    }
    line.push(')');
    if let Some(differed) = resumed.differed {
        line.push_str(&format!(
            "; the {} the server kept of the next file differ from this copy: it starts over",
            text::bytes(differed)
        ));
    }
    line
}

/// What a cut upload leaves, said when the user stops the client: `secure` (a fup server
/// keeps it hidden for a resume) or plain (discarded); `done` of `total` bytes had reached
/// the server. Nothing when nothing was under way.
pub fn interrupted_words(secure: Option<bool>, under_way: bool, done: u64, total: u64) -> String {
    match (secure, under_way) {
        (Some(true), true) => format!(
            "; the server keeps what reached it ({} of {}) for a resume: run the same command again",
            text::bytes(done),
            text::bytes(total)
        ),
        (Some(false), true) => "; a plain server discards what it received of the file".into(),
        _ => String::new(),
    }
}

/// One file's result as a JSON object, in the schema above.
pub fn json(result: &FileResult) -> Value {
    let stored = result.verdict == Verdict::Stored;
    let seconds = result.elapsed.filter(|_| stored).map(|e| e.as_secs_f64());
    let rate = seconds
        .filter(|&secs| secs > 0.0 && result.moved > 0)
        .map(|secs| (result.moved as f64 / secs).round() as u64);
    let (blake3, sha256) = match result.digest {
        Some(Digest::Blake3(d)) => (Some(text::hex(&d)), None),
        Some(Digest::Sha256(d)) => (None, Some(text::hex(&d))),
        None => (None, None),
    };
    json!({
        "file": result.file.to_string_lossy(),
        "name": result.name,
        "verdict": result.verdict.name(),
        "code": result.code.name(),
        "reason": result.reason,
        "stored": stored,
        "stored_as": result.stored_as.as_ref().filter(|_| stored),
        "size": result.size,
        "seconds": seconds,
        "rate": rate,
        "blake3": blake3,
        "sha256": sha256,
        "resumed": result.resumed,
        "secure": result.secure,
    })
}

/// The keys every JSON object has, in the schema's order.
pub const JSON_KEYS: [&str; 14] = [
    "file",
    "name",
    "verdict",
    "code",
    "reason",
    "stored",
    "stored_as",
    "size",
    "seconds",
    "rate",
    "blake3",
    "sha256",
    "resumed",
    "secure",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::frame::Code;
    use std::path::PathBuf;

    fn result(verdict: Verdict, code: Cause) -> FileResult {
        FileResult {
            file: PathBuf::from("dir/a\nb.txt"),
            name: "a\nb.txt".into(),
            verdict,
            code,
            reason: None,
            stored_as: None,
            size: Some(2048),
            elapsed: None,
            moved: 0,
            resumed: 0,
            digest: None,
            secure: true,
        }
    }

    #[test]
    fn every_verdict_has_every_key_and_names_escaped() {
        let mut stored = result(Verdict::Stored, Cause::Server(Code::Stored));
        stored.stored_as = Some("a\nb (1).txt".into());
        stored.elapsed = Some(Duration::from_secs(2));
        stored.moved = 2048;
        stored.digest = Some(Digest::Blake3([0xab; 32]));
        let mut denied = result(Verdict::Denied, Cause::Server(Code::TooLarge));
        denied.reason = Some("larger than --max-size 1.0 KiB".into());
        let mut failed = result(Verdict::Failed, Cause::Connection);
        failed.reason = Some("connection lost: \u{1b}[2J".into());
        let mut skipped = result(Verdict::Skipped, Cause::Symlink);
        skipped.reason = Some("a symbolic link (never followed)".into());
        let mut error = result(Verdict::Error, Cause::Unreadable);
        error.reason = Some("cannot open file: denied".into());
        error.size = None;
        for r in [&stored, &denied, &failed, &skipped, &error] {
            let object = json(r);
            let keys: Vec<&str> = object
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut expected = JSON_KEYS.to_vec();
            expected.sort_unstable();
            let mut keys = keys;
            keys.sort_unstable();
            assert_eq!(keys, expected, "{object}");
            assert_eq!(object["verdict"], r.verdict.name());
            assert_eq!(object["stored"], r.verdict == Verdict::Stored);
        }
        let object = json(&stored);
        assert_eq!(object["code"], "stored");
        assert_eq!(object["stored_as"], "a\nb (1).txt");
        assert_eq!(object["seconds"], 2.0);
        assert_eq!(object["rate"], 1024);
        assert_eq!(object["blake3"], "ab".repeat(32));
        assert_eq!(object["sha256"], Value::Null);
        let object = json(&denied);
        assert_eq!(object["code"], "too-large");
        assert_eq!(object["seconds"], Value::Null);
        assert_eq!(object["stored_as"], Value::Null);
        assert_eq!(json(&error)["size"], Value::Null);

        let lines: Vec<String> = [&stored, &denied, &failed, &skipped, &error]
            .into_iter()
            .map(|r| file_line(r, false, false).unwrap().0)
            .collect();
        assert_eq!(
            lines,
            [
                "sent \"a\\nb.txt\" 2.0 KiB in 2.00 s (1.0 KiB/s): stored as \"a\\nb (1).txt\", secure, verified",
                "fup-client: \"a\\nb.txt\" 2.0 KiB: denied by server (larger than --max-size 1.0 KiB), secure",
                "fup-client: \"a\\nb.txt\" 2.0 KiB: connection lost: \\u{1b}[2J",
                "fup-client: warning: skipped dir/a\\u{a}b.txt: a symbolic link (never followed)",
                "fup-client: dir/a\\u{a}b.txt: cannot open file: denied",
            ]
        );
        assert_eq!(file_line(&stored, false, false).unwrap().1, Stream::Out);
        assert_eq!(file_line(&denied, false, false).unwrap().1, Stream::Err);
        assert_eq!(file_line(&stored, true, false), None);
        assert!(file_line(&denied, true, false).is_some());
    }

    #[test]
    fn one_cause_is_said_once_and_totals_show_no_rate_for_nothing() {
        let files = vec![result(Verdict::Failed, Cause::Server(Code::ServerError)); 305];
        assert_eq!(
            together_line(Verdict::Failed, "cannot create \"x\": denied", None, &files),
            "fup-client: cannot create \"x\": denied (305 files not stored)"
        );
        let report = Report {
            failed: 305,
            ..Report::default()
        };
        let figures = BatchFigures {
            totals: Totals {
                files: 305,
                dirs: 1,
                bytes: 1 << 30,
                ..Totals::default()
            },
            elapsed: Duration::from_millis(1),
            moved: 0,
            resumed: 0,
        };
        let line = totals_line(&report, Some(&figures));
        assert!(!line.contains("/s"), "{line}");
        assert!(line.ends_with(": 0 stored, 305 failed"), "{line}");
        // Some refused: what moved is said.
        let report = Report {
            stored: 4,
            denied: 1,
            errors: 1,
            skipped: 1,
            ..Report::default()
        };
        let figures = BatchFigures {
            elapsed: Duration::from_millis(500),
            moved: 3 << 20,
            ..figures
        };
        assert_eq!(
            totals_line(&report, Some(&figures)),
            "batch of 305 files, 1 folder, 1.0 GiB (3.0 MiB sent) in 0.50 s (6.0 MiB/s): \
             4 stored, 1 denied, 1 not sent, 1 skipped"
        );
    }
}
