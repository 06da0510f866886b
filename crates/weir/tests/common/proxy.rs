//! A TCP proxy the test controls, for cutting links between real
//! processes: it forwards every connection to one target and can stop
//! forwarding for the connections coming from one source address (or all
//! of them), as a network partition does: nothing is closed, bytes just
//! stop arriving, in both directions, until the link is healed. New
//! connections during a cut are accepted and held the same way.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    /// Sources whose links are cut.
    cut: Mutex<HashSet<IpAddr>>,
    /// Every link is cut.
    all: AtomicBool,
    stop: AtomicBool,
    /// Every socket opened, shut at drop so the pumps end.
    sockets: Mutex<Vec<TcpStream>>,
}

impl State {
    fn is_cut(&self, from: IpAddr) -> bool {
        self.all.load(Ordering::Relaxed) || self.cut.lock().unwrap().contains(&from)
    }
}

/// A proxy listening on `addr`, forwarding to its target.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on `bind` (port 0: any) and forwards to `target`.
    pub fn start(bind: SocketAddr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("proxy on {bind}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        std::thread::spawn(move || {
            while !st.stop.load(Ordering::Relaxed) {
                let (client, peer) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    // The target is down: the client sees its connection
                    // closed, as it would with the target itself.
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut socks = st.sockets.lock().unwrap();
                    socks.push(client.try_clone().unwrap());
                    socks.push(server.try_clone().unwrap());
                }
                let from = peer.ip();
                for (rd, wr) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let st = st.clone();
                    std::thread::spawn(move || pump(rd, wr, from, &st));
                }
            }
        });
        Proxy { addr, state }
    }

    /// Stops forwarding the links from `from` (both ways).
    pub fn cut(&self, from: IpAddr) {
        self.state.cut.lock().unwrap().insert(from);
    }

    /// Forwards the links from `from` again.
    pub fn heal(&self, from: IpAddr) {
        self.state.cut.lock().unwrap().remove(&from);
    }

    /// Stops (`true`) or resumes (`false`) forwarding every link.
    pub fn cut_all(&self, cut: bool) {
        self.state.all.store(cut, Ordering::Relaxed);
    }
}

/// Copies `rd` to `wr` while the link is not cut; a cut holds the bytes
/// (nothing is read, so the sender's buffers fill as over a dead link).
fn pump(mut rd: TcpStream, mut wr: TcpStream, from: IpAddr, st: &State) {
    let _ = rd.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if st.stop.load(Ordering::Relaxed) {
            return;
        }
        if st.is_cut(from) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let n = match rd.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // Bytes read just before a cut are held until it heals.
        while st.is_cut(from) && !st.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if wr.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = wr.shutdown(Shutdown::Write);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        for s in self.state.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
