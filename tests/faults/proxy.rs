//! A cuttable TCP proxy on 127.0.0.1 for the fault-injection tests: clients connect to
//! the proxy, the proxy connects to the box's sshd and copies bytes both ways, until the
//! test cuts every connection (both peers see the connection end) or black-holes them:
//! the sockets stay open but nothing is forwarded any more, in either direction, while
//! new connections work (a stalled network path, or a box that rebooted without a word
//! to its peers).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    closing: AtomicBool,
    /// Both ends of every live connection, to shut them down on a cut, and the flag
    /// that black-holes the connection.
    sockets: Mutex<Vec<(TcpStream, Arc<AtomicBool>)>>,
    accepted: AtomicUsize,
}

impl Shared {
    /// Returns once forwarding may go on (or the proxy is going away).
    fn wait_while_silenced(&self, silenced: &AtomicBool) {
        while silenced.load(Ordering::SeqCst) && !self.closing.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A proxy in front of one upstream port; stops everything when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream_port` there.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("proxy listener");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            closing: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.closing.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(shared.upstream) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let silenced = Arc::new(AtomicBool::new(false));
                    {
                        let mut sockets = shared.sockets.lock().unwrap();
                        sockets.push((client.try_clone().unwrap(), silenced.clone()));
                        sockets.push((server.try_clone().unwrap(), silenced.clone()));
                    }
                    for (from, to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let (shared, silenced) = (shared.clone(), silenced.clone());
                        thread::spawn(move || pump(from, to, &shared, &silenced));
                    }
                }
            })
        };
        Proxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Drops every live connection: both the client and sshd see it end. New
    /// connections are still forwarded.
    pub fn cut(&self) {
        for (socket, _) in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Silences every live connection for good, keeping its sockets open; new
    /// connections are forwarded as usual.
    pub fn blackhole(&self) {
        for (_, silenced) in self.shared.sockets.lock().unwrap().iter() {
            silenced.store(true, Ordering::SeqCst);
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, silenced: &AtomicBool) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        shared.wait_while_silenced(silenced);
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        // Bytes read just before the silence are held back too.
        shared.wait_while_silenced(silenced);
        if shared.closing.load(Ordering::SeqCst) || to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the acceptor so it sees `closing`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut();
    }
}
