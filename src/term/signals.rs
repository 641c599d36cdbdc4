//! How the programs end on a signal: SIGINT, SIGTERM or SIGHUP runs a cleanup, then the
//! process exits with 128 + the signal's number (130, 143, 129), as shells report a death by
//! that signal, so scripts see the same codes from every program.

use std::io;
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The exit status for a process ended by signal `signal`: 128 + its number.
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// What a signal is called in a message: "interrupted", "terminated" or "hung up".
pub fn describe(signal: i32) -> &'static str {
    match signal {
        SIGINT => "interrupted",
        SIGTERM => "terminated",
        SIGHUP => "hung up",
        _ => "stopped by a signal",
    }
}

/// From now on, SIGINT, SIGTERM and SIGHUP call `cleanup` with the signal (on a thread of its
/// own), then exit with [`exit_code`].
///
/// # Errors
///
/// If the handlers or their thread cannot be set up.
pub fn exit_on_signals(cleanup: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    thread::Builder::new()
        .name("fup signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                cleanup(signal);
                std::process::exit(exit_code(signal));
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_words() {
        assert_eq!(
            (exit_code(SIGINT), exit_code(SIGTERM), exit_code(SIGHUP)),
            (130, 143, 129)
        );
        assert_eq!(describe(SIGTERM), "terminated");
        assert_eq!(describe(SIGINT), "interrupted");
    }
}
