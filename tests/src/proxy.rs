//! A TCP proxy on loopback that a test can cut: a partition between an agent and the
//! control plane with both processes alive. While cut, bytes are no longer forwarded
//! (the connections stay open, as behind a firewall that drops packets) and new
//! connections are held unanswered; healing closes every connection made so far, so
//! both ends see their connections fail and reconnect through the healed proxy.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct State {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Connections made before this epoch are closed.
    epoch: AtomicU64,
    conns: Mutex<Vec<(u64, TcpStream)>>,
}

/// See the module docs. Stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let state = Arc::new(State {
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let st = Arc::clone(&state);
        std::thread::spawn(move || accept_loop(listener, target, st));
        Proxy { addr, state }
    }

    /// The address agents dial (`https://` + this).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding: every byte in either direction is held back from now on.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
    }

    /// Forwards again; every connection made so far is closed.
    pub fn heal(&self) {
        let epoch = self.state.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let mut conns = self.state.conns.lock().unwrap_or_else(|e| e.into_inner());
        for (e, s) in conns.iter() {
            if *e < epoch {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        conns.retain(|(e, _)| *e >= epoch);
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let conns = self.state.conns.lock().unwrap_or_else(|e| e.into_inner());
        for (_, s) in conns.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, st: Arc<State>) {
    while !st.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let epoch = st.epoch.load(Ordering::SeqCst);
                let st = Arc::clone(&st);
                std::thread::spawn(move || connect(client, target, epoch, st));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn connect(client: TcpStream, target: SocketAddr, epoch: u64, st: Arc<State>) {
    // A connection made while cut waits, unanswered, for the heal (which closes it).
    while st.cut.load(Ordering::SeqCst) {
        if st.stop.load(Ordering::SeqCst) || st.epoch.load(Ordering::SeqCst) != epoch {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if st.epoch.load(Ordering::SeqCst) != epoch {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(server) = TcpStream::connect(target) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut conns = st.conns.lock().unwrap_or_else(|e| e.into_inner());
        for s in [&client, &server] {
            if let Ok(c) = s.try_clone() {
                conns.push((epoch, c));
            }
        }
    }
    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    let st2 = Arc::clone(&st);
    std::thread::spawn(move || pump(c2, s2, st2));
    pump(server, client, st);
}

/// Copies `from` → `to` while not cut; stops at EOF, an error or the proxy's end.
fn pump(mut from: TcpStream, mut to: TcpStream, st: Arc<State>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if st.stop.load(Ordering::SeqCst) {
            break;
        }
        if st.cut.load(Ordering::SeqCst) {
            // Held back: read nothing, so the sender's window fills as behind a drop rule.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
