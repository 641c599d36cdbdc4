//! The client side: [`upload`] sends one file over any `Read + Write` stream and returns the
//! server's verdict.

use std::fs::File;
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

use crate::conn::{Conn, Deadline};
use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, MsgType};
use crate::message::{Body, FileRequest, MAX_DATA_LEN, Message, Outcome, Verdict};

/// Bytes per data message unless told otherwise. Measured over loopback, tmpfs to tmpfs, on
/// 2 cores (README, performance): 1 MiB is the fastest into both our server (about 1.8 GiB/s,
/// like 256 KiB; 64 KiB about 1.5) and the Python original (about 2 GiB/s; 4 KiB 0.5).
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// Most data messages the original Python server can take in one upload: it compares `seq`
/// with an unbounded counter, so a wrapped `seq` fails there.
pub const MAX_UNWRAPPED_CHUNKS: u64 = 1 << 16;
/// The msgid of our request, which every data message repeats (as the Python client does).
pub const REQUEST_ID: u32 = 1;

/// Default time allowed for connecting, for each write, and for the server's result.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time allowed for the server's answer to a request, which waits for its operator
/// (and for any questions queued before it).
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// How an upload is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Bytes per data message, 1 to [`MAX_DATA_LEN`].
    pub chunk_size: u32,
    /// Time allowed for the server's result once all data is sent.
    pub timeout: Duration,
    /// Time allowed for the server's answer to the request.
    pub answer_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            chunk_size: DEFAULT_CHUNK_SIZE,
            timeout: DEFAULT_TIMEOUT,
            answer_timeout: DEFAULT_ANSWER_TIMEOUT,
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

/// Uploads `size` bytes read from `file` under `name`, in data messages of
/// `options.chunk_size` bytes (the last may be shorter). Calls `progress(0)` once the server
/// accepts, then `progress` with the total sent after each data message.
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
/// [`Error::FileChanged`] if `file` ends before `size` bytes, and [`Error::Io`] otherwise.
///
/// # Panics
///
/// If the chunk size is 0 or above [`MAX_DATA_LEN`].
pub fn upload<S, F>(
    stream: S,
    mut file: F,
    name: &str,
    size: u64,
    options: &Options,
    progress: impl FnMut(u64),
) -> Result<Delivery>
where
    S: Conn,
    F: Read,
{
    exchange(stream, name, size, options, progress, |stream, progress| {
        send_data(stream, &mut file, size, options.chunk_size, progress)
    })
}

/// Like [`upload`] for a file over TCP, the fast way: on Linux each data message is its header
/// (sent with `MSG_MORE`) followed by the file's bytes handed to the socket with `sendfile(2)`,
/// which never copies them through user space. Elsewhere, and for files that cannot be sent
/// that way, it reads through a buffer like [`upload`]. Sends from the start of `file`.
///
/// # Errors
///
/// As [`upload`].
///
/// # Panics
///
/// If the chunk size is 0 or above [`MAX_DATA_LEN`].
pub fn upload_file(
    stream: &TcpStream,
    file: &File,
    name: &str,
    size: u64,
    options: &Options,
    progress: impl FnMut(u64),
) -> Result<Delivery> {
    #[cfg(target_os = "linux")]
    return exchange(stream, name, size, options, progress, |stream, progress| {
        sendfile::send_data(stream, file, size, options.chunk_size, progress)
    });
    #[cfg(not(target_os = "linux"))]
    return upload(
        stream,
        io::BufReader::new(file),
        name,
        size,
        options,
        progress,
    );
}

/// A reader that computes the SHA-256 of everything read through it, so that a file is hashed
/// while it is sent, with no pass over it before.
#[derive(Debug)]
pub struct Sha256Reader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Sha256Reader<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> Sha256Reader<R> {
        Sha256Reader {
            inner,
            hasher: sha2::Digest::new(),
        }
    }

    /// The SHA-256 of everything read so far.
    pub fn sha256(&self) -> [u8; 32] {
        sha2::Digest::finalize(self.hasher.clone()).into()
    }
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

/// The exchange around the data: request, answer, `send` the data, result.
fn exchange<S: Conn>(
    mut stream: S,
    name: &str,
    size: u64,
    options: &Options,
    mut progress: impl FnMut(u64),
    send: impl FnOnce(&mut S, &mut dyn FnMut(u64)) -> Result<()>,
) -> Result<Delivery> {
    let chunk_size = options.chunk_size;
    assert!(
        (1..=MAX_DATA_LEN).contains(&chunk_size),
        "chunk size {chunk_size} out of range"
    );
    Message::single(REQUEST_ID, Body::Request(FileRequest::new(size, name)))
        .write_to(&mut stream)?;
    stream.flush()?;
    match expect(
        &mut stream,
        MsgType::Response,
        options.answer_timeout,
        "the server's answer",
    )? {
        Body::Response {
            request_id: REQUEST_ID,
            verdict: Verdict::Accepted,
        } => {}
        Body::Response {
            request_id: REQUEST_ID,
            verdict: Verdict::Denied,
        } => return Ok(Delivery::Denied),
        Body::Response { request_id, .. } => {
            return Err(Error::MessageId {
                expected: REQUEST_ID,
                got: request_id,
            });
        }
        _ => unreachable!("expect() returns only the asked-for type"),
    }
    progress(0);
    if let Err(err) = send(&mut stream, &mut progress) {
        // A write that failed may mean the server gave up and said why before closing; a
        // local failure (the file changed) has nothing to wait for.
        if matches!(err, Error::Io(_)) {
            let said = Message::read_from(Deadline::new(&mut stream, options.timeout));
            if let Ok(Some(Message {
                body:
                    Body::Result {
                        outcome: Outcome::Failure,
                        ..
                    },
                ..
            })) = said
            {
                return Ok(Delivery::Failed);
            }
        }
        return Err(err);
    }
    match expect(
        &mut stream,
        MsgType::Result,
        options.timeout,
        "the server's result",
    )? {
        Body::Result {
            request_id: REQUEST_ID,
            outcome: Outcome::Success,
        } => Ok(Delivery::Stored),
        Body::Result {
            request_id: REQUEST_ID,
            outcome: Outcome::Failure,
        } => Ok(Delivery::Failed),
        Body::Result { request_id, .. } => Err(Error::MessageId {
            expected: REQUEST_ID,
            got: request_id,
        }),
        _ => unreachable!("expect() returns only the asked-for type"),
    }
}

/// The header of data message `seq` of `len` bytes.
fn data_header(seq: u16, fragmented: bool, last: bool, len: usize) -> [u8; HEADER_LEN] {
    // At most the chunk size, which is at most MAX_DATA_LEN, so it fits in u32.
    let msg = Message {
        id: REQUEST_ID,
        seq,
        fragmented,
        last,
        body: Body::Data { len: len as u32 },
    };
    msg.header().encode()
}

/// Sends the file as data messages, each header and body in one write from one reused buffer.
fn send_data<S: io::Write, F: Read>(
    stream: &mut S,
    file: &mut F,
    size: u64,
    chunk_size: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let chunk = u64::from(chunk_size);
    // Small files get a small buffer; the largest is HEADER_LEN + MAX_DATA_LEN.
    let mut buf = vec![0; HEADER_LEN + chunk.min(size) as usize];
    // "Fragmented" when the file takes more than one message.
    let fragmented = size > chunk;
    let mut sent: u64 = 0;
    let mut seq: u16 = 0;
    loop {
        // At most chunk_size, so it fits in u32 and in the buffer.
        let len = chunk.min(size - sent) as usize;
        let got = read_full(file, &mut buf[HEADER_LEN..HEADER_LEN + len])?;
        if got < len {
            return Err(Error::FileChanged {
                expected: size,
                got: sent + got as u64,
            });
        }
        let last = sent + len as u64 == size;
        buf[..HEADER_LEN].copy_from_slice(&data_header(seq, fragmented, last, len));
        stream.write_all(&buf[..HEADER_LEN + len])?;
        sent += len as u64;
        seq = seq.wrapping_add(1);
        progress(sent);
        if last {
            stream.flush()?;
            return Ok(());
        }
    }
}

/// Zero-copy sending on Linux: header with `send(MSG_MORE)`, body with `sendfile(2)`.
#[cfg(target_os = "linux")]
mod sendfile {
    use std::fs::File;
    use std::io::{self, Write};
    use std::net::TcpStream;
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::fs::FileExt;

    use super::data_header;
    use crate::error::{Error, Result};

    /// Sends the whole header, telling TCP that the body follows (so the two share segments).
    fn send_header(sock: RawFd, mut header: &[u8], more: bool) -> io::Result<()> {
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        while !header.is_empty() {
            // SAFETY: a socket descriptor we borrow, and a buffer of `header.len()` bytes.
            let n = unsafe { libc::send(sock, header.as_ptr().cast(), header.len(), flags) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Err(io::ErrorKind::TimedOut.into()),
                    _ => return Err(err),
                }
            }
            header = &header[n as usize..];
        }
        Ok(())
    }

    /// Sends up to `len` bytes of `file` from `*offset`; returns how many, 0 at the file's end,
    /// or `None` if this file cannot be sent with sendfile.
    fn send_body(
        sock: RawFd,
        file: RawFd,
        offset: &mut libc::off_t,
        len: usize,
    ) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: descriptors we borrow and an offset we own; the kernel advances it.
            let n = unsafe { libc::sendfile(sock, file, offset, len) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Err(io::ErrorKind::TimedOut.into()),
                Some(libc::EINVAL | libc::ENOSYS) => return Ok(None),
                _ => return Err(err),
            }
        }
    }

    pub fn send_data(
        stream: &mut &TcpStream,
        file: &File,
        size: u64,
        chunk_size: u32,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let sock = stream.as_raw_fd();
        let chunk = u64::from(chunk_size);
        let fragmented = size > chunk;
        let mut offset: libc::off_t = 0;
        let mut fallback: Vec<u8> = Vec::new();
        let mut seq: u16 = 0;
        loop {
            let sent = offset as u64;
            let len = chunk.min(size - sent) as usize;
            let last = sent + len as u64 == size;
            send_header(sock, &data_header(seq, fragmented, last, len), len > 0)?;
            let mut left = len;
            while left > 0 {
                match send_body(sock, file.as_raw_fd(), &mut offset, left)? {
                    Some(0) => {
                        return Err(Error::FileChanged {
                            expected: size,
                            got: offset as u64,
                        });
                    }
                    Some(n) => left -= n,
                    None => {
                        // A file system without sendfile support: read and write this chunk.
                        fallback.resize(left, 0);
                        file.read_exact_at(&mut fallback, offset as u64).map_err(
                            |err| match err.kind() {
                                io::ErrorKind::UnexpectedEof => Error::FileChanged {
                                    expected: size,
                                    got: offset as u64,
                                },
                                _ => Error::from(err),
                            },
                        )?;
                        stream.write_all(&fallback)?;
                        offset += left as libc::off_t;
                        left = 0;
                    }
                }
            }
            seq = seq.wrapping_add(1);
            progress(offset as u64);
            if last {
                return Ok(());
            }
        }
    }
}

/// Reads the next message within `limit`; it must be of type `want`. Returns its body.
fn expect<S: Conn>(
    stream: &mut S,
    want: MsgType,
    limit: Duration,
    waiting_for: &'static str,
) -> Result<Body> {
    let msg = Message::read_from(Deadline::new(stream, limit))
        .map_err(|e| e.or_timed_out(waiting_for, limit))?
        .ok_or(Error::Closed(want))?;
    if msg.body.msg_type() != want {
        return Err(Error::Unexpected {
            expected: want,
            got: msg.body.msg_type(),
        });
    }
    Ok(msg.body)
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn response(verdict: Verdict, request_id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        Message::single(
            0,
            Body::Response {
                request_id,
                verdict,
            },
        )
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
        (result, duplex.output)
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
        assert_eq!(delivery, Delivery::Stored);
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
            let server = std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                conn.write_all(GOLDEN_RESPONSE).unwrap();
                conn.write_all(GOLDEN_RESULT).unwrap();
                conn.shutdown(std::net::Shutdown::Write).unwrap();
                let mut got = Vec::new();
                conn.read_to_end(&mut got).unwrap();
                got
            });
            let stream = TcpStream::connect(addr).unwrap();
            let mut seen = Vec::new();
            let delivery =
                upload_file(&stream, &file, "f", len as u64, &options, |n| seen.push(n)).unwrap();
            drop(stream);
            assert_eq!(delivery, Delivery::Stored);
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
    fn sha256_reader_hashes_what_passes() {
        let mut reader = Sha256Reader::new(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        let hex: String = reader.sha256().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn denied_sends_no_data() {
        let (result, output) = send(b"hi\n", 4096, &[&response(Verdict::Denied, 1)]);
        assert_eq!(result.unwrap(), Delivery::Denied);
        assert_eq!(output.len(), 16 + 8 + 1);
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
        let (result, _) = send(b"hi\n", 4096, &[&response(Verdict::Accepted, 9)]);
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
