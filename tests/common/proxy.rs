//! A TCP proxy in front of MySQL that loses the answer of one COMMIT: the server commits, the
//! client never hears it (its connection closes), as when the network or the server's host
//! fails at the worst moment. What the sink's "a lost COMMIT that had landed" path is tested
//! with against the real server.
//!
//! Every connection is forwarded byte for byte; the client's packets are read one by one (the
//! protocol frames every client packet: three bytes of length, a sequence number, the
//! payload). The `nth` COMMIT (`COM_QUERY "COMMIT"`) sent on a connection that ran a
//! `LOAD DATA` since its last COMMIT reaches the server; the server's answer is read and
//! dropped, and the connection is closed both ways.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

pub struct CommitDropper {
    pub port: u16,
    /// Bulk-load COMMITs seen so far, over every connection.
    seen: Arc<AtomicUsize>,
    /// Answers dropped (0 or 1).
    dropped: Arc<AtomicUsize>,
}

impl CommitDropper {
    /// Listens on a free loopback port, forwarding to `upstream` (host:port).
    pub fn start(upstream: &str, nth: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("a free loopback port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the proxy's address: {e}"))
            .port();
        let seen = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (seen_l, dropped_l, upstream) = (
            Arc::clone(&seen),
            Arc::clone(&dropped),
            upstream.to_string(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                connection(
                    client,
                    server,
                    nth,
                    Arc::clone(&seen_l),
                    Arc::clone(&dropped_l),
                );
            }
        });
        CommitDropper {
            port,
            seen,
            dropped,
        }
    }

    pub fn seen(&self) -> usize {
        self.seen.load(SeqCst)
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(SeqCst)
    }
}

fn connection(
    client: TcpStream,
    server: TcpStream,
    nth: usize,
    seen: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
) {
    let swallow = Arc::new(AtomicBool::new(false));
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let (mut s_read, mut c_write) = (server, client);
    let swallow_s = Arc::clone(&swallow);
    // Server to client: relayed, until an answer is to be lost.
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match s_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if swallow_s.load(SeqCst) {
                // The COMMIT's answer: the server has committed; nobody hears it.
                let _ = s_read.shutdown(Shutdown::Both);
                let _ = c_write.shutdown(Shutdown::Both);
                break;
            }
            if c_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c_write.shutdown(Shutdown::Both);
    });
    // Client to server: packet by packet.
    std::thread::spawn(move || {
        let mut loaded = false;
        loop {
            let mut header = [0u8; 4];
            if c_read.read_exact(&mut header).is_err() {
                break;
            }
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            let mut payload = vec![0u8; len];
            if c_read.read_exact(&mut payload).is_err() {
                break;
            }
            // COM_QUERY
            if payload.first() == Some(&0x03) {
                let text = &payload[1..];
                if text.len() >= 9 && text[..9].eq_ignore_ascii_case(b"LOAD DATA") {
                    loaded = true;
                }
                if text.eq_ignore_ascii_case(b"COMMIT") {
                    if loaded {
                        let k = seen.fetch_add(1, SeqCst) + 1;
                        if k == nth {
                            dropped.fetch_add(1, SeqCst);
                            swallow.store(true, SeqCst);
                        }
                    }
                    loaded = false;
                }
            }
            if s_write.write_all(&header).is_err() || s_write.write_all(&payload).is_err() {
                break;
            }
            if swallow.load(SeqCst) {
                // The server-to-client side closes both once the answer arrives.
                return;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
}
