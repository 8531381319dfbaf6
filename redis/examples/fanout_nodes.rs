//! The fan-out benchmark's server as several hub nodes joined through Redis: ferrule-tokio's
//! `fanout` (every native text message a client sends goes to every other client) run by N
//! nodes on one port, so that `../shared/bench/peers/fanout.sh` measures fan-out across nodes
//! beside the same load on one node.
//!
//! ```text
//! cargo run --release -p ferrule-redis --example fanout_nodes -- [ADDR] [--nodes N] [--redis URL]
//! ```
//!
//! Each node is a hub with its own Redis connection and its own single-threaded tokio runtime
//! (one OS thread each, as separate processes would have), listening on `ADDR` (default
//! 127.0.0.1:9001) with `SO_REUSEPORT`, so the kernel spreads the connections over the nodes
//! (3 by default). A message from a client reaches the clients of its own node directly and
//! those of the others through Redis: published once per message, framed once per node.
//! Without `--redis`, the example starts a `redis-server` of its own on a free port (no
//! persistence) as a child process, so that a benchmark counts its CPU with the server's, and
//! stops it on Ctrl-C.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferrule_redis::{RedisBackplane, RedisConfig};
use ferrule_tokio::hub::{Hub, SlowRecipients, Socket};
use ferrule_tokio::{Message, Options, OriginPolicy, Tokio};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args { addr, nodes, redis } = parse_args()?;
    // A redis-server of our own unless one was given; killed when `_own` is dropped.
    let (url, _own) = match redis {
        Some(url) => (url, None),
        None => {
            let server = OwnRedis::start()?;
            (server.url(), Some(server))
        }
    };
    let prefix = format!("fanout-nodes-{}", std::process::id());
    // Ctrl-C is awaited here, once, and passed on to every node.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let threads: Vec<_> = (0..nodes)
        .map(|n| {
            let (url, prefix, stopped) = (url.clone(), prefix.clone(), stopped.clone());
            std::thread::spawn(move || node(addr, n, &url, &prefix, stopped))
        })
        .collect();
    eprintln!("fanout: {nodes} nodes through {url}, listening on ws://{addr} (Ctrl-C stops them)");
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(tokio::signal::ctrl_c())?;
    let _ = stop.send(true);
    for thread in threads {
        thread.join().map_err(|_| "a node's thread panicked")??;
    }
    Ok(())
}

/// Node `n`: a hub on its own runtime, serving `addr` beside the other nodes, until `stopped`
/// turns true.
fn node(
    addr: SocketAddr,
    n: usize,
    url: &str,
    prefix: &str,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let config = RedisConfig::new(url, format!("n{n}")).prefix(prefix);
        let backplane = RedisBackplane::new(config).map_err(|e| e.to_string())?;
        let hub = Hub::builder(Tokio)
            .backplane(backplane)
            // A subscriber that cannot keep up loses messages rather than holding up the others.
            .slow_recipients(SlowRecipients::Drop)
            .on_native(|socket: &Socket<Tokio>, message: &Message| {
                if let Message::Text(_) = message {
                    socket.broadcast().send(message.clone());
                }
            })
            .build();
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(|e| e.to_string())?;
        socket.set_reuseport(true).map_err(|e| e.to_string())?;
        socket.bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
        let listener = socket.listen(1024).map_err(|e| e.to_string())?;
        // Load generators send no Origin; any is accepted.
        let options =
            Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build().map_err(|e| e.to_string())?;
        let server = ferrule_tokio::serve(listener, options, hub.handler_factory());
        // Also ends if main is gone (the sender dropped).
        let _ = stopped.wait_for(|stop| *stop).await;
        server.shutdown(Duration::from_secs(5)).await;
        Ok(())
    })
}

/// The command line.
struct Args {
    addr: SocketAddr,
    nodes: usize,
    redis: Option<String>,
}

/// `[ADDR] [--nodes N] [--redis URL]`.
fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    const USAGE: &str = "usage: fanout_nodes [ADDR] [--nodes N] [--redis URL]";
    let mut parsed = Args { addr: "127.0.0.1:9001".parse()?, nodes: 3, redis: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nodes" => {
                parsed.nodes = args.next().ok_or(USAGE)?.parse().map_err(|e| format!("--nodes: {e}"))?;
                if parsed.nodes == 0 {
                    return Err("--nodes: at least 1".into());
                }
            }
            "--redis" => parsed.redis = Some(args.next().ok_or(USAGE)?),
            _ if arg.starts_with('-') => return Err(format!("{arg}: unknown option; {USAGE}").into()),
            _ => parsed.addr = arg.parse().map_err(|e| format!("{arg}: {e}; {USAGE}"))?,
        }
    }
    Ok(parsed)
}

/// A `redis-server` child on a free port, without persistence; killed when dropped.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (Debian: apt-get install redis-server, or pass --redis URL)"))?;
        let server = Self { port, child };
        // Up to 10 s for it to accept connections.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not start listening within 10 s".into())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
