//! The client side: [`upload`] and [`upload_file`] send one file over any
//! [`Conn`](crate::net::Conn) and return the server's verdict: request, answer, data, result;
//! [`batch::send_batch`] sends the files and trees of a whole command at once (secure mode);
//! [`command::run`] is the whole `fup-client` command, events to a sink.

pub mod batch;
pub mod command;

use std::fs::File;
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::{self, Conn, Deadline, Mover, Source};
use crate::wire::{
    Body, FileRequest, MAX_DATA_LEN, Message, MsgType, Outcome, REQUEST_ID, ResponseByte, Verdict,
    data_header,
};

/// Bytes per data message unless told otherwise. Measured over loopback, tmpfs to tmpfs, on
/// 2 cores (README, performance): 1 MiB is the fastest into both our server (about 1.8 GiB/s,
/// like 256 KiB; 64 KiB about 1.5) and the Python original (about 2 GiB/s; 4 KiB 0.5).
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// Most data messages the original Python server can take in one upload: it compares `seq`
/// with an unbounded counter, so a wrapped `seq` fails there.
pub const MAX_UNWRAPPED_CHUNKS: u64 = 1 << 16;

/// Default time allowed for connecting, for each write, and for the server's result.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time allowed for the server's answer to a request, which waits for its operator
/// (and for any questions queued before it).
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a client that was not told the server's convention waits, after a response byte
/// of 1, for the server to close. A Python-convention server that denies closes in the same
/// instant (its end of stream trails the response by microseconds; 16-28 µs measured over
/// loopback); a server of the other convention that accepts keeps the connection open, so
/// its uploads start this much later, while its operator has typed `yes` anyway. Long
/// enough for an end of stream lost once on the way and sent again.
pub const DENIAL_CLOSE_WAIT: Duration = Duration::from_millis(500);

/// How an upload is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Bytes per data message, 1 to [`MAX_DATA_LEN`].
    pub chunk_size: u32,
    /// Time allowed for the server's result once all data is sent.
    pub timeout: Duration,
    /// Time allowed for the server's answer to the request.
    pub answer_timeout: Duration,
    /// Compute the SHA-256 of the file while sending it (see [`Sent::sha256`]). This takes the
    /// buffered path instead of the zero-copy one.
    pub checksum: bool,
    /// The response byte that means "accepted" for this server (`--accept-byte`), or `None`
    /// to tell from whether the server closes at once, as every known server does when it
    /// denies (see [`DENIAL_CLOSE_WAIT`]).
    pub accept_byte: Option<ResponseByte>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            chunk_size: DEFAULT_CHUNK_SIZE,
            timeout: DEFAULT_TIMEOUT,
            answer_timeout: DEFAULT_ANSWER_TIMEOUT,
            checksum: false,
            accept_byte: None,
        }
    }
}

/// How an upload ended, as far as the server said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The server accepted the request and reported success.
    Stored,
    /// The server denied the request; no data was sent.
    Denied,
    /// The server accepted the request but reported failure.
    Failed,
}

/// What an upload came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The server's verdict.
    pub delivery: Delivery,
    /// The SHA-256 of the bytes sent, with [`Options::checksum`] and once data was sent.
    pub sha256: Option<[u8; 32]>,
}

impl Sent {
    const DENIED: Sent = Sent {
        delivery: Delivery::Denied,
        sha256: None,
    };
}

/// What the server's response came to, before any data is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Accepted,
    Denied,
    /// A 0 from a server whose convention we were not told: accepted, unless it turns out to
    /// have closed at once, a denial by a server that uses 1 for accepted.
    AcceptedUnlessClosed,
}

/// How sending the data ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sending {
    /// Every data message went out.
    All,
    /// The server spoke (or hung up) before we were done: we stopped to read it.
    Interrupted,
}

/// The chunk size to use for a file of `size` bytes: `base`, grown just enough that the file
/// fits in [`MAX_UNWRAPPED_CHUNKS`] messages so that the Python server can take it, and never
/// above [`MAX_DATA_LEN`] (past 1 TiB, `seq` wraps, which only our server accepts).
///
/// ```
/// use fup::client::auto_chunk_size;
///
/// assert_eq!(auto_chunk_size(1 << 20, 65_536), 65_536);
/// assert_eq!(auto_chunk_size(8 << 30, 65_536), 131_072);
/// ```
pub fn auto_chunk_size(size: u64, base: u32) -> u32 {
    let needed = size.div_ceil(MAX_UNWRAPPED_CHUNKS);
    u32::try_from(needed)
        .unwrap_or(u32::MAX)
        .max(base)
        .clamp(1, MAX_DATA_LEN)
}

/// Connects to `host`:`port`, trying each of its addresses for `timeout`, and sets the
/// connection up for an upload (no Nagle delay, writes limited to `timeout`).
///
/// # Errors
///
/// If the name does not resolve or no address accepts.
pub fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    net::connect((host, port), timeout)
}

/// Uploads `size` bytes read from `reader` under `name`, in data messages of
/// `options.chunk_size` bytes (the last may be shorter). Calls `progress(0)` once the server
/// accepts, then `progress` with the bytes that reached it, after each data message and
/// while the last ones go.
///
/// Follows the original client byte for byte (PROTOCOL.md): request msgid 1; data messages
/// repeat it with `seq` 0, 1, 2, … (wrapping modulo 2^16). Unlike the original, an empty file
/// is sent as one empty last data message, so that every server completes.
///
/// # Errors
///
/// [`Error::Closed`] or [`Error::Truncated`] if the server hangs up early,
/// [`Error::TimedOut`] if it stalls past the options' limits, [`Error::Unexpected`] and the
/// other protocol errors if it sends something else than the exchange calls for,
/// [`Error::FileChanged`] if `reader` ends before `size` bytes, and [`Error::Io`] otherwise.
///
/// # Panics
///
/// If the chunk size is 0 or above [`MAX_DATA_LEN`].
pub fn upload<S: Conn, R: Read>(
    mut stream: S,
    mut reader: R,
    name: &str,
    size: u64,
    options: &Options,
    progress: impl FnMut(u64),
) -> Result<Sent> {
    let source = Source::Reader(&mut reader);
    exchange(&mut stream, source, name, size, options, progress)
}

/// Like [`upload`] for a file, sent from its start, the fast way where it can: over a Linux
/// socket, and unless [`Options::checksum`] asks for the bytes, each data message is its
/// header (sent with `MSG_MORE`) followed by the file's bytes handed to the socket with
/// `sendfile(2)`, which never copies them through user space. Otherwise, and for files that
/// cannot be sent that way, it reads through a buffer.
///
/// # Errors
///
/// As [`upload`].
///
/// # Panics
///
/// If the chunk size is 0 or above [`MAX_DATA_LEN`].
pub fn upload_file<S: Conn>(
    mut stream: S,
    file: &File,
    name: &str,
    size: u64,
    options: &Options,
    progress: impl FnMut(u64),
) -> Result<Sent> {
    exchange(
        &mut stream,
        Source::file(file),
        name,
        size,
        options,
        progress,
    )
}

/// The exchange around the data: request, answer, data, result.
fn exchange<S: Conn>(
    stream: &mut S,
    mut source: Source<'_>,
    name: &str,
    size: u64,
    options: &Options,
    mut progress: impl FnMut(u64),
) -> Result<Sent> {
    let chunk_size = options.chunk_size;
    assert!(
        (1..=MAX_DATA_LEN).contains(&chunk_size),
        "chunk size {chunk_size} out of range"
    );
    Message::single(REQUEST_ID, Body::Request(FileRequest::new(size, name)))
        .write_to(&mut *stream)?;
    stream.flush()?;
    let answer = await_answer(stream, options)?;
    if answer == Answer::Denied {
        return Ok(Sent::DENIED);
    }
    progress(0);
    let mut mover = Mover::new(options.checksum);
    let mut messages = 0;
    // What `progress` was last told.
    let told = std::cell::Cell::new(0);
    // "Fragmented" when the file takes more than one message.
    let fragmented = size > u64::from(chunk_size);
    let sending = send_data(
        stream,
        &mut source,
        size,
        &Framing {
            chunk_size,
            header: &|seq, last, len| data_header(REQUEST_ID, seq, fragmented, last, len),
        },
        &mut mover,
        &mut |sent, unacknowledged| {
            messages += 1;
            told.set(sent.saturating_sub(unacknowledged));
            progress(told.get());
        },
        // The server only speaks before the end to give up: its result says why.
        &mut |_| Ok(true),
    )
    .and_then(|sending| {
        if sending == Sending::All {
            stream.flush()?;
        }
        Ok(sending)
    });
    let outcome = match sending {
        Ok(Sending::All) => {
            await_delivery(stream, size, told.get(), options.timeout, &mut |at| {
                progress(at)
            });
            await_outcome(stream, options.timeout)
        }
        Ok(Sending::Interrupted) => match await_outcome(stream, options.timeout) {
            Ok(Outcome::Success) => Err(Error::EarlyResult),
            other => other,
        },
        // A write that failed may mean the server gave up and said why before closing; a
        // local failure (the file changed) has nothing to wait for.
        Err(err @ Error::Io(_)) => match await_outcome(stream, options.timeout) {
            Ok(Outcome::Failure) => Ok(Outcome::Failure),
            _ => Err(err),
        },
        Err(err) => Err(err),
    };
    let delivery = match outcome {
        Ok(Outcome::Success) => Delivery::Stored,
        Ok(Outcome::Failure) => Delivery::Failed,
        // Closed without a result, having taken at most our first message: it closed at once
        // after its 0, which is how a server that uses 1 for accepted denies.
        Err(err) if answer == Answer::AcceptedUnlessClosed && messages <= 1 && err.is_hang_up() => {
            return Ok(Sent::DENIED);
        }
        Err(err) => return Err(err),
    };
    Ok(Sent {
        delivery,
        sha256: mover.sha256(),
    })
}

/// How often, at most, the bytes still on their way are looked at while the last of them go
/// (first after a millisecond, then twice as long each time up to this).
const DELIVERY_POLL: Duration = Duration::from_millis(100);

/// After the last bytes are written (`sent` in all), tells `progress` how many reached the
/// peer as they arrive (when it changes from `told`), until all did, the peer speaks, or
/// `limit` passes: a slow link's buffers hold seconds of data that "sent" would count already.
pub(crate) fn await_delivery<S: Conn>(
    stream: &S,
    sent: u64,
    mut told: u64,
    limit: Duration,
    progress: &mut dyn FnMut(u64),
) {
    let deadline = Deadline::after(limit);
    let mut pause = Duration::from_millis(1);
    loop {
        let unacknowledged = stream.unacknowledged();
        let there = sent.saturating_sub(unacknowledged);
        if there != told {
            told = there;
            progress(there);
        }
        if unacknowledged == 0 || stream.has_input() || deadline.time_left().is_err() {
            return;
        }
        // Woken at once if the server speaks meanwhile.
        if stream.closes_within(pause).is_none() {
            std::thread::sleep(pause);
        }
        pause = (pause * 2).min(DELIVERY_POLL);
    }
}

/// Waits up to the answer timeout for the server's response to our request, and says what it
/// means: in the convention we were told, or else by what the server does next. Every known
/// server closes at once when it denies and keeps the connection open when it accepts
/// (PROTOCOL.md, "Closing"), so the byte only says what to look for.
fn await_answer<S: Conn>(stream: &mut S, options: &Options) -> Result<Answer> {
    let msg = Deadline::after(options.answer_timeout).read_message(stream, MsgType::Response)?;
    let byte = match msg.body {
        Body::Response {
            request_id: REQUEST_ID,
            byte,
        } => byte,
        Body::Response { request_id, .. } => {
            return Err(Error::MessageId {
                expected: REQUEST_ID,
                got: request_id,
            });
        }
        other => return Err(other.unexpected(MsgType::Response)),
    };
    if let Some(accept) = options.accept_byte {
        return Ok(match byte.meaning(accept) {
            Verdict::Accepted => Answer::Accepted,
            Verdict::Denied => Answer::Denied,
        });
    }
    Ok(match byte.meaning(ResponseByte::DEFAULT_ACCEPT) {
        // A Python-convention denial: the close follows at once. No close: the other
        // convention, accepting. A stream that cannot tell gets the Python convention.
        Verdict::Denied => match stream.closes_within(DENIAL_CLOSE_WAIT) {
            Some(false) => Answer::Accepted,
            Some(true) | None => Answer::Denied,
        },
        // A Python-convention acceptance: no wait (it would cost every upload), only a look
        // at whether the close is already there; sending then watches for it.
        Verdict::Accepted => match stream.closes_within(Duration::ZERO) {
            Some(true) => Answer::Denied,
            Some(false) => Answer::AcceptedUnlessClosed,
            None => Answer::Accepted,
        },
    })
}

/// Waits up to `limit` for the server's result of our upload.
fn await_outcome<S: Conn>(stream: &mut S, limit: Duration) -> Result<Outcome> {
    let msg = Deadline::after(limit).read_message(stream, MsgType::Result)?;
    match msg.body {
        Body::Result {
            request_id: REQUEST_ID,
            outcome,
        } => Ok(outcome),
        Body::Result { request_id, .. } => Err(Error::MessageId {
            expected: REQUEST_ID,
            got: request_id,
        }),
        other => Err(other.unexpected(MsgType::Result)),
    }
}

/// How data messages are cut and framed.
pub(crate) struct Framing<'a> {
    /// Bytes per message.
    pub chunk_size: u32,
    /// Frames each message, given `(seq, last, len)`: the plain protocol's data header, or a
    /// batch's (see [`batch`]).
    pub header: &'a dyn Fn(u16, bool, u32) -> [u8; crate::wire::HEADER_LEN],
}

/// Sends `size` bytes of `source` as data messages of `chunk_size` bytes, telling
/// `progress` after each the bytes sent and those the peer has not acknowledged yet (so that
/// what reached it can be shown, not what sits in buffers). Between messages it
/// looks, without waiting, for anything from the server, and hands it to `heard`, which says
/// whether to stop (a plain server only speaks before the end to give up, and then its
/// result says why; a batch's server also tells of items done meanwhile).
pub(crate) fn send_data<S: Conn>(
    stream: &mut S,
    source: &mut Source<'_>,
    size: u64,
    framing: &Framing<'_>,
    mover: &mut Mover,
    progress: &mut dyn FnMut(u64, u64),
    heard: &mut dyn FnMut(&mut S) -> Result<bool>,
) -> Result<Sending> {
    let (chunk, header) = (u64::from(framing.chunk_size), framing.header);
    let mut sent: u64 = 0;
    let mut seq: u16 = 0;
    loop {
        // At most chunk_size, which is at most MAX_DATA_LEN, so it fits in u32 and usize.
        let len = chunk.min(size - sent) as u32;
        let last = sent + u64::from(len) == size;
        let moved = mover.send(stream, &header(seq, last, len), source, len as usize)?;
        if moved < len as usize {
            return Err(Error::FileChanged {
                expected: size,
                got: sent + moved as u64,
            });
        }
        sent += u64::from(len);
        seq = seq.wrapping_add(1);
        progress(sent, stream.unacknowledged());
        if last {
            return Ok(Sending::All);
        }
        if stream.has_input() && heard(stream)? {
            return Ok(Sending::Interrupted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn response(byte: ResponseByte, request_id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        Message::single(0, Body::Response { request_id, byte })
            .write_to(&mut out)
            .unwrap();
        out
    }

    fn send(file: &[u8], chunk: u32, server: &[&[u8]]) -> (Result<Delivery>, Vec<u8>) {
        let mut duplex = Duplex::new(server);
        let options = Options {
            chunk_size: chunk,
            ..Options::default()
        };
        let result = upload(&mut duplex, file, "f", file.len() as u64, &options, |_| {});
        (result.map(|sent| sent.delivery), duplex.output)
    }

    #[test]
    fn golden_upload_sends_exactly_the_captured_bytes() {
        let mut duplex = Duplex::new(&[GOLDEN_RESPONSE, GOLDEN_RESULT]);
        let mut seen = Vec::new();
        let options = Options {
            chunk_size: 4096,
            ..Options::default()
        };
        let delivery = upload(&mut duplex, &b"hi\n"[..], "hello.txt", 3, &options, |n| {
            seen.push(n)
        })
        .unwrap();
        assert_eq!(
            delivery,
            Sent {
                delivery: Delivery::Stored,
                sha256: None
            }
        );
        assert_eq!(duplex.output, [GOLDEN_REQUEST, GOLDEN_DATA].concat());
        assert_eq!(seen, [0, 3]);
    }

    /// The zero-copy path sends exactly what the buffered path sends, over a real socket.
    #[test]
    fn upload_file_matches_upload_byte_for_byte() {
        use std::io::Write as _;
        use std::net::TcpListener;
        for len in [0usize, 1, 4095, 4096, 4097, 300_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&data).unwrap();
            let options = Options {
                chunk_size: 4096,
                ..Options::default()
            };
            let (_, expected) = {
                let mut duplex = Duplex::new(&[GOLDEN_RESPONSE, GOLDEN_RESULT]);
                let result = upload(&mut duplex, &data[..], "f", len as u64, &options, |_| {});
                (result.unwrap(), duplex.output)
            };
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let want = expected.len();
            // A server as real ones are: the result only once all the data is in.
            let server = std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut got = vec![0; 25];
                conn.read_exact(&mut got).unwrap();
                conn.write_all(GOLDEN_RESPONSE).unwrap();
                got.resize(want, 0);
                conn.read_exact(&mut got[25..]).unwrap();
                conn.write_all(GOLDEN_RESULT).unwrap();
                got
            });
            let stream = TcpStream::connect(addr).unwrap();
            let mut seen = Vec::new();
            let sent =
                upload_file(&stream, &file, "f", len as u64, &options, |n| seen.push(n)).unwrap();
            drop(stream);
            assert_eq!(sent.delivery, Delivery::Stored);
            assert!(server.join().unwrap() == expected, "{len} bytes");
            assert_eq!(seen.last(), Some(&(len as u64)));
        }
    }

    #[test]
    fn upload_file_reports_a_file_shorter_than_announced() {
        use std::io::Write as _;
        use std::net::TcpListener;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1; 5000]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(GOLDEN_RESPONSE).unwrap();
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink);
        });
        let stream = TcpStream::connect(addr).unwrap();
        let options = Options {
            chunk_size: 4096,
            ..Options::default()
        };
        let result = upload_file(&stream, &file, "f", 9000, &options, |_| {});
        assert!(
            matches!(
                result,
                Err(Error::FileChanged {
                    expected: 9000,
                    got: 5000
                })
            ),
            "{result:?}"
        );
        drop(stream);
        server.join().unwrap();
    }

    #[test]
    fn checksum_hashes_what_is_sent_on_either_path() {
        let options = Options {
            checksum: true,
            ..Options::default()
        };
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let mut duplex = Duplex::new(&[GOLDEN_RESPONSE, GOLDEN_RESULT]);
        let sent = upload(&mut duplex, &b"abc"[..], "f", 3, &options, |_| {}).unwrap();
        assert_eq!(crate::text::hex(&sent.sha256.unwrap()), abc);
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, b"abc").unwrap();
        let mut duplex = Duplex::new(&[GOLDEN_RESPONSE, GOLDEN_RESULT]);
        let sent = upload_file(&mut duplex, &file, "f", 3, &options, |_| {}).unwrap();
        assert_eq!(crate::text::hex(&sent.sha256.unwrap()), abc);
        // Denied: nothing was sent, nothing hashed.
        let mut denied = GOLDEN_RESPONSE.to_vec();
        denied[20] = 1;
        let sent = upload(
            Duplex::new(&[&denied]),
            &b"abc"[..],
            "f",
            3,
            &options,
            |_| {},
        );
        assert_eq!(sent.unwrap().sha256, None);
    }

    #[test]
    fn denied_sends_no_data() {
        let (result, output) = send(b"hi\n", 4096, &[&response(ResponseByte::One, 1)]);
        assert_eq!(result.unwrap(), Delivery::Denied);
        assert_eq!(output.len(), 16 + 8 + 1);
    }

    /// Uploads "hi\n" over a scripted server that hangs up once its script is read, as a
    /// socket shows it, with `accept_byte` forced or not.
    fn over(script: &[&[u8]], accept_byte: Option<ResponseByte>) -> (Result<Delivery>, Vec<u8>) {
        let mut duplex = Duplex::hanging_up(script);
        let options = Options {
            accept_byte,
            ..Options::default()
        };
        let result = upload(&mut duplex, &b"hi\n"[..], "f", 3, &options, |_| {});
        (result.map(|sent| sent.delivery), duplex.output)
    }

    #[test]
    fn both_response_conventions_without_a_flag() {
        use ResponseByte::{One, Zero};
        let (zero, one) = (response(Zero, 1), response(One, 1));
        let request_only = 16 + 8 + 1;
        // (what, server's script, delivery, bytes the client sent)
        let cases: [(&str, Vec<&[u8]>, Delivery, usize); 4] = [
            (
                "0 and open: accepted",
                vec![&zero, GOLDEN_RESULT],
                Delivery::Stored,
                44,
            ),
            (
                "1 and closed: denied",
                vec![&one],
                Delivery::Denied,
                request_only,
            ),
            (
                "1 and open: the other convention accepted",
                vec![&one, GOLDEN_RESULT],
                Delivery::Stored,
                44,
            ),
            (
                "0 and closed: the other convention denied",
                vec![&zero],
                Delivery::Denied,
                request_only,
            ),
        ];
        for (what, script, delivery, sent) in cases {
            let (result, output) = over(&script, None);
            assert_eq!(result.unwrap(), delivery, "{what}");
            assert_eq!(output.len(), sent, "{what}");
        }
    }

    #[test]
    fn a_forced_convention_is_taken_as_said() {
        use ResponseByte::{One, Zero};
        let (zero, one) = (response(Zero, 1), response(One, 1));
        let (result, _) = over(&[&one, GOLDEN_RESULT], Some(One));
        assert_eq!(result.unwrap(), Delivery::Stored);
        let (result, _) = over(&[&zero], Some(One));
        assert_eq!(result.unwrap(), Delivery::Denied);
        // Told 0: a close without a result is an error, not a guess.
        let (result, _) = over(&[&zero], Some(Zero));
        assert!(
            matches!(result, Err(Error::Closed(MsgType::Result))),
            "{result:?}"
        );
        let (result, _) = over(&[&one], Some(Zero));
        assert_eq!(result.unwrap(), Delivery::Denied);
    }

    #[test]
    fn failure_result_is_reported() {
        let mut failure = GOLDEN_RESULT.to_vec();
        failure[20] = 0;
        let (result, _) = send(b"hi\n", 4096, &[GOLDEN_RESPONSE, &failure]);
        assert_eq!(result.unwrap(), Delivery::Failed);
    }

    #[test]
    fn empty_file_is_one_empty_last_data_message() {
        let (result, output) = send(b"", 4096, &[GOLDEN_RESPONSE, GOLDEN_RESULT]);
        assert_eq!(result.unwrap(), Delivery::Stored);
        let data = &output[16 + 8 + 1..];
        assert_eq!(data, [1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn chunks_follow_the_python_client_and_seq_wraps() {
        let file: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let (result, output) = send(&file, 1, &[GOLDEN_RESPONSE, GOLDEN_RESULT]);
        assert_eq!(result.unwrap(), Delivery::Stored);
        let mut stream = &output[16 + 8 + 1..];
        for (i, byte) in file.iter().enumerate() {
            let msg = Message::read_from(&mut stream).unwrap().unwrap();
            assert_eq!(msg.id, REQUEST_ID);
            assert_eq!(msg.seq, i as u16, "wraps modulo 2^16");
            assert!(msg.fragmented);
            assert_eq!(msg.last, i + 1 == file.len());
            assert_eq!(msg.body, Body::Data { len: 1 });
            assert_eq!(stream[0], *byte);
            stream = &stream[1..];
        }
        assert!(stream.is_empty());
    }

    #[test]
    fn misbehaving_servers_give_errors_not_panics() {
        let cases: Vec<(&str, Vec<&[u8]>)> = vec![
            ("closed before response", vec![]),
            ("truncated response", vec![&GOLDEN_RESPONSE[..20]]),
            ("result instead of response", vec![GOLDEN_RESULT]),
            ("closed before result", vec![GOLDEN_RESPONSE]),
            (
                "response instead of result",
                vec![GOLDEN_RESPONSE, GOLDEN_RESPONSE],
            ),
            ("garbage", vec![&[0xee; 40]]),
        ];
        for (what, script) in cases {
            let (result, _) = send(b"hi\n", 4096, &script);
            assert!(result.is_err(), "{what}: {result:?}");
        }
        let (result, _) = send(b"hi\n", 4096, &[&response(ResponseByte::Zero, 9)]);
        assert!(
            matches!(
                result,
                Err(Error::MessageId {
                    expected: 1,
                    got: 9
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn file_shorter_than_announced_is_an_error() {
        let mut duplex = Duplex::new(&[GOLDEN_RESPONSE, GOLDEN_RESULT]);
        let result = upload(&mut duplex, &b"hi"[..], "f", 3, &Options::default(), |_| {});
        assert!(
            matches!(
                result,
                Err(Error::FileChanged {
                    expected: 3,
                    got: 2
                })
            ),
            "{result:?}"
        );
    }

    proptest::proptest! {
        /// Whatever a server sends, the client returns an answer or an error, never panics.
        #[test]
        fn any_server_bytes_never_panic(
            prefix in proptest::sample::select(vec![&[][..], GOLDEN_RESPONSE]),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let _ = send(b"hi\n", 2, &[prefix, &noise]);
        }
    }

    #[test]
    fn chunk_size_grows_only_past_the_python_limit() {
        assert_eq!(auto_chunk_size(0, 4096), 4096);
        assert_eq!(auto_chunk_size(256 << 20, 4096), 4096);
        assert_eq!(auto_chunk_size((256 << 20) + 1, 4096), 4097);
        assert_eq!(auto_chunk_size(u64::MAX, 4096), MAX_DATA_LEN);
    }
}
