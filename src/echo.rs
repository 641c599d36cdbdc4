//! The echo pair: a server loop that returns every byte it gets, and one client round trip.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Size of the echo server's buffer per connection.
const ECHO_BUF_LEN: usize = 64 * 1024;

/// A client that goes quiet this long is dropped by the echo server, so idle peers cannot pin
/// threads forever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one echo round may wait for its connection or for its echo.
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between the echo client's rounds unless told otherwise, as in ping.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Echoes everything read from `stream` back to it until the peer closes its side. Returns
/// the number of bytes echoed.
///
/// # Errors
///
/// If reading or writing fails.
pub fn serve<S: Read + Write>(mut stream: S) -> io::Result<u64> {
    let mut buf = vec![0; ECHO_BUF_LEN];
    let mut total = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// One round trip's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// Bytes sent.
    pub sent: usize,
    /// What came back: at most `sent` bytes, fewer if the server closed early.
    pub echo: Vec<u8>,
    /// Time from the first byte sent to the last byte back.
    pub rtt: Duration,
}

impl Round {
    /// Whether the server sent back exactly what was sent.
    pub fn is_exact(&self, message: &[u8]) -> bool {
        self.echo == message
    }
}

/// Sends `message` on a fresh connection, closes the sending side (so a server that reads to
/// the end, or reads once like the original, both answer), and reads back as many bytes as
/// were sent, or until the server closes.
///
/// # Errors
///
/// If the connection fails before anything comes back.
pub fn round_trip(stream: &TcpStream, message: &[u8]) -> io::Result<Round> {
    let started = Instant::now();
    let mut writer = stream;
    // A server that reads once (the Python original) may close before taking all of a long
    // message; what it did echo is still worth reading, so a failed write is not yet an error.
    let write_result = writer
        .write_all(message)
        .and_then(|()| stream.shutdown(Shutdown::Write));
    let mut echo = Vec::with_capacity(message.len());
    let read_result = stream.take(message.len() as u64).read_to_end(&mut echo);
    let round = Round {
        sent: message.len(),
        echo,
        rtt: started.elapsed(),
    };
    // A partial echo is a result to report (a short echo), not an error.
    if round.echo.is_empty() {
        write_result?;
        read_result?;
    }
    Ok(round)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn round_trip_over_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let mut echoed = Vec::new();
            for _ in 0..3 {
                let (stream, _) = listener.accept().unwrap();
                echoed.push(serve(&stream).unwrap());
            }
            echoed
        });
        let big = vec![b'x'; 100_000];
        for message in [&b"hello"[..], b"", &big] {
            let stream = TcpStream::connect(addr).unwrap();
            let round = round_trip(&stream, message).unwrap();
            assert!(round.is_exact(message));
            assert_eq!(round.sent, message.len());
        }
        assert_eq!(server.join().unwrap(), [5, 0, 100_000]);
    }

    #[test]
    fn short_echo_is_reported_not_hidden() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Like the original: one read of at most 1024 bytes, echo, close.
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0; 1024];
            let mut n = 0;
            while n < buf.len() {
                match stream.read(&mut buf[n..]).unwrap() {
                    0 => break,
                    got => n += got,
                }
            }
            stream.write_all(&buf[..n]).unwrap();
        });
        let message = vec![b'y'; 2000];
        let stream = TcpStream::connect(addr).unwrap();
        let round = round_trip(&stream, &message).unwrap();
        server.join().unwrap();
        assert_eq!(round.echo, &message[..1024]);
        assert!(!round.is_exact(&message));
    }
}
