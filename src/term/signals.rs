//! How the programs end on a signal: SIGINT, SIGTERM or SIGHUP runs a cleanup, then the
//! process exits with 128 + the signal's number (130, 143, 129), as shells report a death by
//! that signal, so scripts see the same codes from every program. On Windows, Ctrl-C and
//! Ctrl-Break count as SIGINT, and closing the console, logging off or shutting down as
//! SIGTERM.

use std::io;

#[cfg(unix)]
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The interrupt from the terminal (Ctrl-C).
#[cfg(windows)]
pub const SIGINT: i32 = 2;
/// A request to end (a service manager, `kill`; on Windows the console closing).
#[cfg(windows)]
pub const SIGTERM: i32 = 15;
/// The terminal went away.
#[cfg(windows)]
pub const SIGHUP: i32 = 1;

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
#[cfg(unix)]
pub fn exit_on_signals(cleanup: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("fup signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                cleanup(signal);
                std::process::exit(exit_code(signal));
            }
        })?;
    Ok(())
}

/// From now on, Ctrl-C (and the console closing) call `cleanup` with the signal it counts
/// as (on a thread of its own), then exit with [`exit_code`].
///
/// # Errors
///
/// If the handler cannot be set up.
#[cfg(windows)]
pub fn exit_on_signals(cleanup: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    let cleanup = std::sync::Mutex::new(Some(cleanup));
    ctrlc::set_handler(move || {
        let taken = cleanup.lock().ok().and_then(|mut c| c.take());
        if let Some(cleanup) = taken {
            cleanup(SIGINT);
            std::process::exit(exit_code(SIGINT));
        }
    })
    .map_err(io::Error::other)
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
