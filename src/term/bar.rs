//! The sender's progress line, fitted to the terminal's width at every draw: the name (cut),
//! a bar (as wide as there is room for, or none), the bytes, the rate, and the time left or
//! what is being waited for. Never wider than the terminal, so it never wraps.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::text;

/// No bytes for this long while sending, and the bar says "stalled".
pub const STALLED_AFTER: Duration = Duration::from_secs(5);

/// What a live bar names besides its figures; read at every draw, so that "stalled" comes
/// by itself.
#[derive(Clone, Debug, Default)]
pub struct Caption {
    /// What is being sent.
    pub name: String,
    /// Whether the server has yet to accept.
    pub waiting: bool,
    /// When bytes last moved.
    pub moved_at: Option<Instant>,
}

/// A live bar of `total` bytes on stderr: one [`line`] fitted to the terminal's width at
/// every draw (re-read, so a resize is followed), naming what `caption` says.
pub fn progress_bar(caption: &Arc<Mutex<Caption>>, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let caption = Arc::clone(caption);
    let style = ProgressStyle::with_template("{line}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("line", move |s: &ProgressState, w: &mut dyn fmt::Write| {
            let width = console::Term::stderr()
                .size_checked()
                .map_or(80, |(_, cols)| usize::from(cols));
            let caption = caption
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let message = match (caption.waiting, caption.moved_at) {
                (true, _) => "waiting for the server to accept",
                (false, Some(at)) if at.elapsed() >= STALLED_AFTER => "stalled",
                _ => "",
            };
            let line = line(
                &Bar {
                    name: &caption.name,
                    done: s.pos(),
                    total: s.len().unwrap_or(0),
                    rate: s.per_sec(),
                    eta: (s.per_sec() > 0.0).then(|| s.eta()),
                    message,
                },
                width,
            );
            let _ = w.write_str(&line);
        });
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// What the line shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar<'a> {
    /// The file's name, or what a batch holds (shown as sent: escaped here).
    pub name: &'a str,
    /// Bytes there so far.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
    /// Bytes per second, lately.
    pub rate: f64,
    /// Time left, when it can be told.
    pub eta: Option<Duration>,
    /// What is being waited for, or that nothing moves (`waiting for the server to accept`,
    /// `stalled`): shown instead of the time left.
    pub message: &'a str,
}

/// The widest a byte count is written (`1023.9 KiB`).
const BYTES_WIDTH: usize = 10;
/// The widest a bar is drawn.
const MAX_BAR: usize = 30;
/// The narrowest bar worth drawing.
const MIN_BAR: usize = 5;

/// The line for `bar` in `width` columns (one spare: a line that fills the last column wraps
/// on some terminals).
pub fn line(bar: &Bar<'_>, width: usize) -> String {
    let room = width.saturating_sub(1).max(1);
    // Each figure in a field of its own width, so that the bar keeps its width as they change.
    let bytes = format!(
        "{:>w$}/{}",
        text::bytes(bar.done),
        text::bytes(bar.total),
        w = BYTES_WIDTH
    );
    // While waiting there is no rate to show: what is waited for is.
    let figures = match (bar.message, bar.eta) {
        ("", eta) => {
            let rate = text::bytes(bar.rate.max(0.0).min(u64::MAX as f64) as u64);
            let eta = eta.map(short_time).unwrap_or_default();
            format!("{bytes} {rate:>w$}/s eta {eta:<6}", w = BYTES_WIDTH)
        }
        (message, _) => format!("{bytes} {message}"),
    };
    let figures_width = console::measure_text_width(&figures);
    // The name gets at most a third of the line, less if the figures need it, and at
    // least a few characters.
    let name_room = (room / 3)
        .min(room.saturating_sub(figures_width + 1))
        .max(8);
    let name = text::escape(bar.name);
    let name = format!(
        "\"{}\"",
        console::truncate_str(&name, name_room.saturating_sub(2), "…")
    );
    let used = console::measure_text_width(&name) + figures_width + 2;
    let bar_room = room.saturating_sub(used + 3).min(MAX_BAR);
    let line = match bar_room >= MIN_BAR {
        true => {
            let filled = match bar.total {
                0 => bar_room,
                total => {
                    (u128::from(bar.done.min(total)) * bar_room as u128 / u128::from(total))
                        as usize
                }
            };
            let mut drawn = "=".repeat(filled);
            if filled < bar_room {
                drawn.push('>');
                drawn.push_str(&" ".repeat(bar_room - filled - 1));
            }
            format!("{name} [{drawn}] {figures}")
        }
        false => format!("{name} {figures}"),
    };
    console::truncate_str(line.trim_end(), room, "…").into_owned()
}

/// `1h02m`, `3m05s`, `12s`: rounded up, so that what is left is never shown as nothing.
fn short_time(left: Duration) -> String {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar<'a>(name: &'a str, message: &'a str) -> Bar<'a> {
        Bar {
            name,
            done: 32 << 20,
            total: 64 << 20,
            rate: 10.0 * 1024.0 * 1024.0,
            eta: Some(Duration::from_secs(3)),
            message,
        }
    }

    #[test]
    fn the_line_fits_every_width() {
        let long = "a very long name of a file that goes on and on.tar.gz";
        for width in [20, 40, 64, 80, 100, 200] {
            for message in ["", "waiting for the server to accept", "stalled"] {
                let line = line(&bar(long, message), width);
                assert!(
                    console::measure_text_width(&line) < width,
                    "{width}: {line:?}"
                );
            }
        }
        assert_eq!(
            line(&bar("a.bin", ""), 80),
            "\"a.bin\" [============>           ]   32.0 MiB/64.0 MiB   10.0 MiB/s eta 3s"
        );
        // The bar keeps its place and width as the figures change.
        let at = |done: u64, rate: f64, secs: u64| {
            let mut b = bar("a.bin", "");
            (b.done, b.rate, b.eta) = (done, rate, Some(Duration::from_secs(secs)));
            let line = line(&b, 80);
            (line.find('[').unwrap(), line.find(']').unwrap())
        };
        let first = at(279 << 10, 1.7e6, 1);
        for (done, rate, secs) in [(1 << 20, 150.0, 2900), (63 << 20, 1.5e9, 0), (0, 0.0, 59)] {
            assert_eq!(at(done, rate, secs), first, "{done} {rate} {secs}");
        }
        // At 64 columns the name is cut, and the bar narrows.
        let narrow = line(&bar(long, "waiting for the server to accept"), 64);
        assert!(narrow.starts_with("\"a very"), "{narrow}");
        assert!(
            narrow.ends_with(" waiting for the server to accept"),
            "{narrow}"
        );
        // Names are escaped.
        assert!(line(&bar("a\u{1b}[2J", ""), 80).starts_with(r#""a\u{1b}[2J""#));
    }

    #[test]
    fn times_are_short() {
        assert_eq!(short_time(Duration::from_secs(12)), "12s");
        assert_eq!(short_time(Duration::from_secs(185)), "3m05s");
        assert_eq!(short_time(Duration::from_secs(3720)), "1h02m");
        assert_eq!(short_time(Duration::from_millis(300)), "1s");
        assert_eq!(short_time(Duration::ZERO), "0s");
    }
}
