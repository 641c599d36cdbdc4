//! Secure mode as a [`Conn`]: TLS 1.3 (rustls) over any other `Conn`, so that the server's
//! session and the client's upload run over it unchanged. The handshake runs to its end
//! against a [`Deadline`] before a byte of the exchange is read or written.

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection, SideData,
    Stream,
};

use super::id::Identity;
use super::tls::{SERVER_NAME, peer_identity};
use crate::net::deadline::timed_out;
use crate::net::{Conn, Deadline};

/// Bytes read from the socket at once under TLS. rustls asks for about 4 KiB at a time (four
/// system calls per 16 KiB record); reading up to 256 KiB (sixteen records) per call costs
/// one copy in memory instead. Measured on a secure 1 GiB upload: about 64 KiB and 256 KiB
/// alike, within this machine's noise.
const READ_AHEAD: usize = 256 * 1024;

/// Plaintext rustls may hold encrypted and unsent, per connection: each write is cut into
/// records of up to 16 KiB and sent before the next, so memory stays at this bound.
const SEND_BUFFER: usize = 256 * 1024;

/// A `Conn` read through a buffer of [`READ_AHEAD`] bytes (writes go straight through).
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
}

impl<S> ReadAhead<S> {
    fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            buf: vec![0; READ_AHEAD].into_boxed_slice(),
            pos: 0,
            len: 0,
        }
    }

    fn buffered(&self) -> usize {
        self.len - self.pos
    }
}

impl<S: Read> Read for ReadAhead<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len {
            if out.len() >= self.buf.len() {
                return self.inner.read(out);
            }
            self.len = self.inner.read(&mut self.buf)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buffered());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<S: Write> Write for ReadAhead<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads what comes before the peer's handshake (the probe's answer), from the socket.
pub type BeforeHandshake<'a, S> = &'a mut dyn FnMut(&mut S) -> io::Result<()>;

/// A TLS connection over `S`: a [`Conn`] whose bytes are encrypted and authenticated, and
/// whose peer proved the [`Identity`] returned by [`Tls::peer`] (a browser proves none).
pub struct Tls<C, S> {
    conn: C,
    sock: ReadAhead<S>,
    peer: Option<Identity>,
}

/// The server's end of a secure connection.
pub type ServerTls<S> = Tls<ServerConnection, S>;
/// The client's end of a secure connection.
pub type ClientTls<S> = Tls<ClientConnection, S>;

impl<C, S> fmt::Debug for Tls<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<C, S> Tls<C, S> {
    /// The identity the peer proved in the handshake: always there for fup's own ends
    /// ([`accept`], [`connect`]), never for a browser's ([`accept_browser`]).
    pub fn peer(&self) -> Option<Identity> {
        self.peer
    }

    /// The connection under TLS.
    pub fn get_ref(&self) -> &S {
        &self.sock.inner
    }
}

impl<C, D, S> Tls<C, S>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
    S: Conn,
{
    /// Runs the handshake to its end by `deadline`, then checks that the peer showed a key
    /// when `need_peer`.
    /// With `first_flight`, our first handshake message is sent at once, and `first_flight`
    /// then reads what comes before the peer's (the probe's answer) straight from `sock`.
    fn handshake(
        mut conn: C,
        sock: S,
        deadline: Deadline,
        first_flight: Option<BeforeHandshake<'_, S>>,
        need_peer: bool,
    ) -> io::Result<Tls<C, S>> {
        conn.set_buffer_limit(Some(SEND_BUFFER));
        let mut sock = ReadAhead::new(sock);
        if let Some(before) = first_flight {
            while conn.wants_write() {
                conn.write_tls(&mut sock)?;
            }
            sock.flush()?;
            // Nothing has been read ahead yet: the answer is still in the socket.
            before(&mut sock.inner)?;
        }
        // Each round reads or writes at least one byte or fails; each read is bounded by
        // the time left, so a peer that trickles its handshake is cut off at the deadline.
        while conn.is_handshaking() {
            deadline.arm(&sock.inner)?;
            conn.complete_io(&mut sock).map_err(timed_out)?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut sock)?;
        }
        let peer = peer_identity(&conn);
        if need_peer && peer.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer showed no certificate",
            ));
        }
        Ok(Tls { conn, sock, peer })
    }

    /// 32 bytes of keying material exported from the session under `label` (RFC 8446, 7.5):
    /// the same on both ends of one TLS session, different on any other, for binding what
    /// runs inside to this channel.
    ///
    /// # Errors
    ///
    /// If rustls cannot export (the handshake is not complete).
    pub fn exporter(&self, label: &[u8]) -> io::Result<[u8; 32]> {
        self.conn
            .export_keying_material([0; 32], label, None)
            .map_err(io::Error::other)
    }

    /// Ends the session with TLS's `close_notify`, best effort: the peer then knows nothing
    /// was cut.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock).is_err() {
                break;
            }
        }
        let _ = self.sock.flush();
    }

    fn stream(&mut self) -> Stream<'_, C, ReadAhead<S>> {
        Stream::new(&mut self.conn, &mut self.sock)
    }
}

/// Accepts a secure connection on `sock`, whose client just had the probe answered.
///
/// # Errors
///
/// If the handshake fails (a malformed or hostile one included), the client shows no key,
/// or the deadline passes ([`io::ErrorKind::TimedOut`]).
pub fn accept<S: Conn>(
    sock: S,
    config: Arc<ServerConfig>,
    deadline: Deadline,
) -> io::Result<ServerTls<S>> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    Tls::handshake(conn, sock, deadline, None, true)
}

/// Accepts a browser's connection on `sock` with `config`
/// ([`browser_config`](super::tls::browser_config)): no client certificate.
///
/// # Errors
///
/// If the handshake fails, or the deadline passes ([`io::ErrorKind::TimedOut`]).
pub fn accept_browser<S: Conn>(
    sock: S,
    config: Arc<ServerConfig>,
    deadline: Deadline,
) -> io::Result<ServerTls<S>> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    Tls::handshake(conn, sock, deadline, None, false)
}

/// Opens a secure connection on `sock`, whose server just answered the probe.
///
/// # Errors
///
/// If the handshake fails (a server identity the configuration refuses included), or the
/// deadline passes ([`io::ErrorKind::TimedOut`]).
pub fn connect<S: Conn>(
    sock: S,
    config: Arc<ClientConfig>,
    deadline: Deadline,
) -> io::Result<ClientTls<S>> {
    connect_pipelined(sock, config, deadline, None)
}

/// Like [`connect`], for a server known to answer the probe (a pinned one): the handshake's
/// first message follows the probe at once, saving a round trip, and `answer` reads and
/// checks the probe's answer from `sock` before the server's handshake is read.
///
/// # Errors
///
/// As [`connect`], and whatever `answer` returns.
pub fn connect_pipelined<S: Conn>(
    sock: S,
    config: Arc<ClientConfig>,
    deadline: Deadline,
    answer: Option<BeforeHandshake<'_, S>>,
) -> io::Result<ClientTls<S>> {
    let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    Tls::handshake(conn, sock, deadline, answer, true)
}

impl<C, D, S> Read for Tls<C, S>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
    S: Conn,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream().read(buf)
    }
}

impl<C, D, S> Write for Tls<C, S>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
    S: Conn,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream().flush()
    }
}

impl<C, D, S> Conn for Tls<C, S>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
    S: Conn,
{
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.get_ref().set_read_timeout(timeout)
    }

    // No `socket()`: its bytes are ciphertext, so file data must not be spliced to or from
    // it. The checks below look at the socket under TLS instead.

    fn peer_closed(&self) -> bool {
        self.sock.buffered() == 0 && self.get_ref().peer_closed()
    }

    fn has_input(&self) -> bool {
        // Nothing arrives unasked inside our TLS (no session tickets, no renegotiation), so
        // bytes waiting under it are the peer speaking.
        self.sock.buffered() > 0 || self.get_ref().has_input()
    }

    fn closes_within(&self, wait: Duration) -> Option<bool> {
        match self.sock.buffered() {
            0 => self.get_ref().closes_within(wait),
            _ => Some(false),
        }
    }

    fn unacknowledged(&self) -> u64 {
        // Ciphertext, a few bytes more per record than what was written through TLS: close
        // enough for progress.
        self.get_ref().unacknowledged()
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.get_ref().shutdown_write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::tls::{client_config, server_config};
    use std::time::Duration;

    use crate::secure::keys::test_keys as keys;

    #[test]
    fn a_megabyte_each_way_and_each_side_knows_the_other() {
        let (_s, server_keys) = keys();
        let (_c, client_keys) = keys();
        let (a, b) = crate::testing::socket_pair();
        let config = server_config(&server_keys).unwrap();
        let deadline = Deadline::after(Duration::from_secs(10));
        let server = std::thread::spawn(move || {
            let mut tls = accept(a, config, deadline).unwrap();
            let mut got = vec![0; 1 << 20];
            tls.read_exact(&mut got).unwrap();
            tls.write_all(&got).unwrap();
            tls.flush().unwrap();
            tls.peer().unwrap()
        });
        let (config, _) = client_config(&client_keys, None).unwrap();
        let mut tls = connect(b, config, deadline).unwrap();
        assert_eq!(tls.peer(), Some(server_keys.identity()));
        let sent: Vec<u8> = (0..1 << 20).map(|i: u32| ((i * 31) >> 3) as u8).collect();
        tls.write_all(&sent).unwrap();
        tls.flush().unwrap();
        let mut back = vec![0; sent.len()];
        tls.read_exact(&mut back).unwrap();
        assert!(back == sent);
        assert_eq!(server.join().unwrap(), client_keys.identity());
        assert!(tls.socket().is_none(), "ciphertext must never be spliced");
    }

    #[test]
    fn a_silent_or_garbage_peer_fails_the_handshake_by_the_deadline() {
        let (_s, server_keys) = keys();
        let config = server_config(&server_keys).unwrap();
        // Silent: the deadline ends it.
        let (a, _b) = crate::testing::socket_pair();
        let started = std::time::Instant::now();
        let err = accept(
            a,
            Arc::clone(&config),
            Deadline::after(Duration::from_millis(200)),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Garbage, and a record header that claims 64 KiB: refused at once.
        for junk in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[22, 3, 1, 0xff, 0xff, 1, 2, 3],
        ] {
            let (a, mut b) = crate::testing::socket_pair();
            b.write_all(junk).unwrap();
            let err = accept(
                a,
                Arc::clone(&config),
                Deadline::after(Duration::from_secs(5)),
            )
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }
}
