//! Moving a file's bytes between a connection and a file, both ways: zero-copy where the
//! kernel can (`splice` in, `sendfile` out, Linux sockets), through one buffer otherwise, and
//! hashed on the way when asked. The choice is made here, the same way for both sides.

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Conn;
use super::deadline::Deadline;
#[cfg(target_os = "linux")]
use super::deadline::timed_out;
use crate::wire::HEADER_LEN;

/// Size of the buffer (or pipe) a data body moves through: it bounds the memory per upload.
/// Measured on 2 cores with a 1 MiB L2 each, 1 GiB tmpfs to tmpfs: a 256 KiB pipe 1.8 GiB/s,
/// 512 KiB and 1 MiB 2.4-2.6 GiB/s, 2 MiB and 4 MiB 1.2-1.3 GiB/s (what is in flight no
/// longer fits in L2, so the copy into the page cache reads from memory). Also the default
/// pipe-max-size, so unprivileged servers get it.
pub const BUFFER_LEN: usize = 1024 * 1024;

/// Bytes hashed at a time while moving: small enough to be hashed while still in the
/// cache, large enough for BLAKE3's SIMD to take many chunks at once.
const HASH_SLAB: usize = 128 * 1024;

/// Reads and drops what the peer sends, until its end of stream, `max` bytes, `deadline`, or a
/// pause of `idle` with nothing arriving; returns how many bytes were dropped. A server that
/// gives up on an upload reads what the client already sent before closing, so that the
/// kernel does not answer that data with a reset, which would destroy the result just sent
/// before the client reads it. Data in flight arrives without pauses; a quiet client has sent
/// all it will.
pub fn discard<C: Conn + ?Sized>(
    conn: &mut C,
    max: u64,
    deadline: Deadline,
    idle: Duration,
) -> u64 {
    let mut buf = [0; 16 * 1024];
    let mut dropped = 0;
    while dropped < max {
        let Ok(left) = deadline.time_left() else {
            break;
        };
        let want = buf
            .len()
            .min(usize::try_from(max - dropped).unwrap_or(usize::MAX));
        match Deadline::after(left.min(idle))
            .reader(conn)
            .read(&mut buf[..want])
        {
            Ok(0) => break,
            Ok(n) => dropped += n as u64,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    dropped
}

/// Where the bytes of an upload come from: a file, read at positions from its start (and
/// `sendfile`-able), or any reader, read in order.
pub enum Source<'a> {
    /// A file, sent from its start.
    File {
        /// The file.
        file: &'a File,
        /// Where the next chunk starts.
        offset: u64,
    },
    /// Any reader.
    Reader(&'a mut dyn Read),
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File { offset, .. } => write!(f, "Source::File {{ offset: {offset} }}"),
            Source::Reader(_) => f.write_str("Source::Reader"),
        }
    }
}

impl<'a> Source<'a> {
    /// `file`, from its start.
    pub fn file(file: &'a File) -> Source<'a> {
        Source::File { file, offset: 0 }
    }

    /// Reads until `buf` is full or the source ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = match self {
                Source::File { file, offset } => {
                    crate::sys::read_at(file, &mut buf[filled..], *offset)
                }
                Source::Reader(reader) => reader.read(&mut buf[filled..]),
            };
            match n {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    if let Source::File { offset, .. } = self {
                        *offset += n as u64;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(filled)
    }
}

/// Moves one upload's bytes, message after message, reusing its buffer (and on Linux its
/// pipe), each made on first use. With hashing, every byte moved is hashed, which needs the
/// bytes in memory, so the buffered way is taken.
#[derive(Debug, Default)]
pub struct Mover {
    buf: Vec<u8>,
    #[cfg(target_os = "linux")]
    pipe: Option<crate::sys::Pipe>,
    hasher: Option<Sha256>,
    /// BLAKE3 of the current file, for secure mode's end-to-end check.
    blake3: Option<Box<blake3::Hasher>>,
}

impl Mover {
    /// A mover that hashes everything it moves when `hash` is set.
    pub fn new(hash: bool) -> Mover {
        Mover {
            hasher: hash.then(Sha256::new),
            ..Mover::default()
        }
    }

    /// Hashes with BLAKE3 too, file by file (see [`Mover::take_blake3`]).
    pub fn with_blake3(mut self) -> Mover {
        self.blake3 = Some(Box::default());
        self
    }

    /// The BLAKE3 of what was moved since the last call (one file's bytes), and a fresh
    /// start for the next file.
    pub fn take_blake3(&mut self) -> Option<[u8; 32]> {
        let hasher = self.blake3.as_mut()?;
        let digest = *hasher.finalize().as_bytes();
        hasher.reset();
        Some(digest)
    }

    /// The BLAKE3 of the current file's bytes moved so far, and how many there were,
    /// without ending it (for a partial kept at a cut).
    pub fn blake3_so_far(&self) -> Option<(u64, [u8; 32])> {
        let hasher = self.blake3.as_ref()?;
        Some((hasher.count(), *hasher.finalize().as_bytes()))
    }

    /// Starts the current file's BLAKE3 over (a resumed file starting from zero after all).
    pub fn restart_blake3(&mut self) {
        if let Some(hasher) = &mut self.blake3 {
            hasher.reset();
        }
    }

    /// Hashes the first `len` bytes of `file` (from its start) as the current file's
    /// beginning, and returns their BLAKE3: a resumed file's prefix, read back from disk on
    /// either side. Leaves the file's position at `len`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::UnexpectedEof`] if the file is shorter, and any read error.
    pub fn hash_prefix(&mut self, file: &mut File, len: u64) -> io::Result<[u8; 32]> {
        use std::io::{Read, Seek, SeekFrom};
        file.seek(SeekFrom::Start(0))?;
        let mut left = len;
        // Without end-to-end checks (a bench), the prefix is hashed all the same, alone.
        let hashing = self.blake3.is_some();
        let mut hasher = self.blake3.take().unwrap_or_default();
        let buf = self.buf(BUFFER_LEN);
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                self.blake3 = hashing.then_some(hasher);
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        let digest = *hasher.finalize().as_bytes();
        self.blake3 = hashing.then_some(hasher);
        Ok(digest)
    }

    /// Whether bytes must pass through memory to be hashed.
    #[cfg(target_os = "linux")]
    fn hashes(&self) -> bool {
        self.hasher.is_some() || self.blake3.is_some()
    }

    /// The SHA-256 of everything moved so far, when hashing.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        self.hasher.as_ref().map(|h| h.clone().finalize().into())
    }

    /// The buffer, at least `len` bytes, made on first use.
    fn buf(&mut self, len: usize) -> &mut [u8] {
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        &mut self.buf[..len]
    }

    /// Moves exactly `len` bytes from `conn` to `file` (at its position) by `deadline`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::UnexpectedEof`] if the peer closes first, [`io::ErrorKind::TimedOut`]
    /// past the deadline, and any error of the socket or the file.
    pub fn receive<C: Conn + ?Sized>(
        &mut self,
        conn: &mut C,
        file: &mut File,
        len: u64,
        deadline: Deadline,
    ) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        let mut left = len;
        #[cfg(not(target_os = "linux"))]
        let left = len;
        #[cfg(target_os = "linux")]
        if let (false, Some(sock)) = (self.hashes(), conn.socket()) {
            left = self.splice_in(&*conn, sock, file, len, deadline)?;
        }
        self.receive_buffered(conn, file, left, deadline)
    }

    /// The portable way: read into the buffer, write it out, until `len` bytes have moved.
    fn receive_buffered<C: Conn + ?Sized>(
        &mut self,
        conn: &mut C,
        file: &mut File,
        len: u64,
        deadline: Deadline,
    ) -> io::Result<()> {
        let mut left = len;
        let mut reader = deadline.reader(conn);
        while left > 0 {
            let want = BUFFER_LEN.min(usize::try_from(left).unwrap_or(usize::MAX));
            // The buffer is filled before it is written: a stream that yields little at a
            // time (TLS: a record of 16 KiB) would otherwise cost a write per read.
            self.buf(want);
            let Mover {
                buf,
                hasher,
                blake3,
                ..
            } = self;
            let buf = &mut buf[..want];
            let (mut n, mut hashed) = (0, 0);
            while n < want {
                match reader.read(&mut buf[n..]) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(got) => n += got,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
                // Hashed while still in the cache, a slab at a time (smaller updates are
                // slower: BLAKE3 hashes many chunks at once).
                if n - hashed >= HASH_SLAB || n == want {
                    if let Some(hasher) = hasher.as_mut() {
                        hasher.update(&buf[hashed..n]);
                    }
                    if let Some(hasher) = blake3.as_mut() {
                        hasher.update(&buf[hashed..n]);
                    }
                    hashed = n;
                }
            }
            file.write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Socket → pipe → file with `splice(2)`. Returns how many bytes are left for the portable
    /// way: 0, or the rest if the file system cannot take spliced data.
    #[cfg(target_os = "linux")]
    fn splice_in<C: Conn + ?Sized>(
        &mut self,
        conn: &C,
        sock: std::os::fd::BorrowedFd<'_>,
        file: &mut File,
        len: u64,
        deadline: Deadline,
    ) -> io::Result<u64> {
        use crate::sys::{Pipe, splice};
        use std::os::fd::AsFd;

        if self.pipe.is_none() {
            self.pipe = Some(Pipe::new(BUFFER_LEN)?);
        }
        // Taken out while in use; a failed upload leaves bytes in it, so it is then dropped,
        // not put back.
        let Some(pipe) = self.pipe.take() else {
            return Ok(len);
        };
        let mut left = len;
        let mut first = true;
        while left > 0 {
            // The socket's receive timeout also bounds a splice from it.
            deadline.arm(conn)?;
            let want = BUFFER_LEN.min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match splice(sock, pipe.write.as_fd(), want).map_err(timed_out)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => n,
            };
            let mut in_pipe = n;
            while in_pipe > 0 {
                match splice(pipe.read.as_fd(), file.as_fd(), in_pipe) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => in_pipe -= m,
                    // Nothing written yet and the file cannot be spliced into: copy the pipe's
                    // bytes out by hand, then let the caller go on the portable way.
                    Err(err) if first && err.raw_os_error() == Some(libc::EINVAL) => {
                        let mut rest = vec![0; in_pipe];
                        File::from(pipe.read.try_clone()?).read_exact(&mut rest)?;
                        file.write_all(&rest)?;
                        self.pipe = Some(pipe);
                        return Ok(left - n as u64);
                    }
                    Err(err) => return Err(err),
                }
                first = false;
            }
            left -= n as u64;
        }
        self.pipe = Some(pipe);
        Ok(0)
    }

    /// Sends one data message: `header`, then `len` bytes from `source`. Returns how many
    /// bytes of body the source had: fewer than `len` means it ended early (the file shrank),
    /// and the message is then incomplete.
    ///
    /// # Errors
    ///
    /// Any error of the socket or the source; [`io::ErrorKind::TimedOut`] when the socket's
    /// write timeout runs out in the zero-copy path.
    pub fn send<C: Conn + ?Sized>(
        &mut self,
        conn: &mut C,
        header: &[u8; HEADER_LEN],
        source: &mut Source<'_>,
        len: usize,
    ) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        let (mut head, mut sent) = (HEADER_LEN, 0);
        #[cfg(not(target_os = "linux"))]
        let (head, sent) = (HEADER_LEN, 0);
        #[cfg(target_os = "linux")]
        if let (None, Some(sock), Source::File { file, offset }) =
            (self.hashes().then_some(()), conn.socket(), &mut *source)
        {
            match sendfile_out(sock, header, file, offset, len)? {
                Zero::Sent(n) => return Ok(n),
                // The header went out; this file system cannot sendfile the body.
                Zero::Unsupported { sent: n } => (head, sent) = (0, n),
            }
        }
        // One buffer for header and body, and one write: no segment holds a header alone.
        let rest = len - sent;
        self.buf(head + rest);
        let Mover {
            buf,
            hasher,
            blake3,
            ..
        } = self;
        let buf = &mut buf[..head + rest];
        // Read and hashed a slab at a time, while each is still in the cache.
        let mut got = 0;
        while got < rest {
            let slab = &mut buf[head + got..head + rest.min(got + HASH_SLAB)];
            let n = source.fill(slab)?;
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&slab[..n]);
            }
            if let Some(hasher) = blake3.as_mut() {
                hasher.update(&slab[..n]);
            }
            got += n;
            if n < slab.len() {
                return Ok(sent + got);
            }
        }
        buf[..head].copy_from_slice(&header[..head]);
        conn.write_all(buf)?;
        Ok(len)
    }
}

/// How far the zero-copy way got with one data message.
#[cfg(target_os = "linux")]
enum Zero {
    /// This many bytes of body were sent (fewer than asked: the file ended).
    Sent(usize),
    /// The header and `sent` bytes went out, and the file cannot be sent with sendfile.
    Unsupported {
        /// Bytes of body already sent.
        sent: usize,
    },
}

/// The header with `MSG_MORE`, then the body with `sendfile(2)` straight from the page cache.
#[cfg(target_os = "linux")]
fn sendfile_out(
    sock: std::os::fd::BorrowedFd<'_>,
    header: &[u8; HEADER_LEN],
    file: &File,
    offset: &mut u64,
    len: usize,
) -> io::Result<Zero> {
    use crate::sys::{send, sendfile};
    use std::os::fd::AsFd;

    let mut head = &header[..];
    while !head.is_empty() {
        let n = send(sock, head, len > 0).map_err(timed_out)?;
        head = &head[n..];
    }
    let mut sent = 0;
    while sent < len {
        match sendfile(sock, file.as_fd(), offset, len - sent) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                return Ok(Zero::Unsupported { sent });
            }
            Err(err) => return Err(timed_out(err)),
        }
    }
    Ok(Zero::Sent(sent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Duplex;
    use std::io::Seek;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 253) as u8).collect()
    }

    fn contents(file: &mut File) -> Vec<u8> {
        let mut got = Vec::new();
        file.seek(io::SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut got).unwrap();
        got
    }

    /// Every way of receiving into a file: spliced from a socket, buffered because hashing,
    /// buffered because the stream is not a socket.
    #[test]
    fn receive_moves_exact_bytes_and_honours_the_deadline() {
        let data = pattern(1_000_003);
        for hash in [false, true] {
            let (mut a, mut b) = crate::testing::socket_pair();
            let sender = {
                let data = data.clone();
                std::thread::spawn(move || {
                    b.write_all(&data).unwrap();
                    b.write_all(b"next").unwrap();
                    b
                })
            };
            let mut file = tempfile::tempfile().unwrap();
            let mut mover = Mover::new(hash);
            let deadline = Deadline::after(Duration::from_secs(10));
            mover
                .receive(&mut a, &mut file, data.len() as u64, deadline)
                .unwrap();
            let _b = sender.join().unwrap();
            let mut rest = [0; 4];
            a.read_exact(&mut rest).unwrap();
            assert_eq!(&rest, b"next", "nothing past len was consumed");
            assert!(contents(&mut file) == data, "hash: {hash}");
            assert_eq!(mover.sha256().is_some(), hash);
            // Nothing more comes: the deadline ends the wait.
            let err = mover
                .receive(
                    &mut a,
                    &mut file,
                    1,
                    Deadline::after(Duration::from_millis(50)),
                )
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        }
        let mut duplex = Duplex::new(&[b"abc"]);
        let mut file = tempfile::tempfile().unwrap();
        let deadline = Deadline::after(Duration::from_secs(1));
        let mut mover = Mover::new(true);
        mover.receive(&mut duplex, &mut file, 3, deadline).unwrap();
        assert_eq!(contents(&mut file), b"abc");
        assert_eq!(
            crate::text::hex(&mover.sha256().unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let err = mover
            .receive(&mut duplex, &mut file, 1, deadline)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Sends `data` as messages of `chunk` bytes over a real TCP socket with `send`; returns
    /// what arrived and the mover's digest.
    fn send_over_tcp(
        data: &[u8],
        chunk: usize,
        hash: bool,
        source: impl FnOnce(&File) -> Vec<u8>,
    ) -> (Vec<u8>, Option<[u8; 32]>) {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(data).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            got
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut mover = Mover::new(hash);
        let bytes = source(&file);
        let mut by_reader = &bytes[..];
        let mut source = if bytes.is_empty() {
            Source::file(&file)
        } else {
            Source::Reader(&mut by_reader)
        };
        for (seq, part) in data.chunks(chunk).enumerate() {
            let header = [seq as u8; HEADER_LEN];
            let n = mover
                .send(&mut stream, &header, &mut source, part.len())
                .unwrap();
            assert_eq!(n, part.len());
        }
        drop(stream);
        (reader.join().unwrap(), mover.sha256())
    }

    #[test]
    fn send_frames_the_same_bytes_every_way() {
        let data = pattern(300_001);
        let mut expected = Vec::new();
        for (seq, part) in data.chunks(4096).enumerate() {
            expected.extend_from_slice(&[seq as u8; HEADER_LEN]);
            expected.extend_from_slice(part);
        }
        // Zero-copy from the file, buffered from the file (hashing), buffered from a reader.
        let (zero_copy, none) = send_over_tcp(&data, 4096, false, |_| Vec::new());
        let (hashed, digest) = send_over_tcp(&data, 4096, true, |_| Vec::new());
        let (read, _) = send_over_tcp(&data, 4096, false, |_| data.clone());
        assert!(zero_copy == expected && hashed == expected && read == expected);
        assert_eq!(none, None);
        let mut reference = Sha256::new();
        reference.update(&data);
        assert_eq!(digest, Some(reference.finalize().into()));
    }

    #[test]
    fn discard_is_bounded_by_bytes_end_and_time() {
        let mut duplex = Duplex::new(&[&[7; 100_000]]);
        let deadline = Deadline::after(Duration::from_secs(5));
        let idle = Duration::from_secs(5);
        assert_eq!(discard(&mut duplex, 70_000, deadline, idle), 70_000);
        let rest = discard(&mut duplex, 70_000, deadline, idle);
        assert_eq!(rest, 30_000, "then its end");
        // A quiet peer: the deadline, or a pause, ends it.
        let (mut a, mut b) = crate::testing::socket_pair();
        let started = std::time::Instant::now();
        let soon = Deadline::after(Duration::from_millis(50));
        assert_eq!(discard(&mut a, u64::MAX, soon, idle), 0);
        b.write_all(&[1; 10]).unwrap();
        let later = Deadline::after(Duration::from_secs(5));
        let pause = Duration::from_millis(50);
        assert_eq!(discard(&mut a, u64::MAX, later, pause), 10);
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn send_reports_a_source_that_ends_early() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1; 5000]).unwrap();
        let (mut a, _b) = crate::testing::socket_pair();
        let mut mover = Mover::default();
        let header = [0; HEADER_LEN];
        let mut source = Source::file(&file);
        assert_eq!(
            mover.send(&mut a, &header, &mut source, 4096).unwrap(),
            4096
        );
        assert_eq!(mover.send(&mut a, &header, &mut source, 4096).unwrap(), 904);
        let mut duplex = Duplex::default();
        let mut short = &b"ab"[..];
        let mut source = Source::Reader(&mut short);
        assert_eq!(mover.send(&mut duplex, &header, &mut source, 3).unwrap(), 2);
        assert!(
            duplex.output.is_empty(),
            "an incomplete message is not sent"
        );
    }
}
