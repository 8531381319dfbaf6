//! Fan-out across nodes against fan-out on one node: one publisher emits to a room whose
//! members are WebSocket clients in this process, spread over three hubs connected through
//! Redis (or all on one hub), and each client measures each message's latency from the emit.
//!
//! ```text
//! redis-server --port 6399 --save '' --appendonly no &
//! cargo run --release -p ferrule-redis --example redis_fanout -- redis://127.0.0.1:6399/ 300 1000 5
//! ```
//!
//! Arguments: the Redis URL, the number of clients, emits per second, seconds. Prints, for one
//! node and for three: deliveries per second and the latency's p50 and p99, for the clients on
//! the publishing node and for those on the other nodes (whose messages crossed Redis).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrule::hub::{Hub, SlowRecipients, Socket};
use ferrule_redis::{RedisBackplane, RedisConfig};
use ferrule_tokio::{Message, Options, Tokio};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "redis://127.0.0.1:6379/".to_owned());
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(300);
    let rate: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(5);
    println!("{clients} clients, {rate} emits/s for {seconds} s, 100-byte payloads");
    run(&url, 1, clients, rate, seconds).await;
    run(&url, 3, clients, rate, seconds).await;
}

async fn run(url: &str, nodes: usize, clients: usize, rate: u64, seconds: u64) {
    let epoch = Instant::now();
    let prefix = format!("fanout-{}-{nodes}", std::process::id());
    let mut hubs = Vec::new();
    let mut servers = Vec::new();
    let mut backplanes = Vec::new();
    for n in 0..nodes {
        let mut builder = Hub::builder(Tokio)
            .slow_recipients(SlowRecipients::Drop)
            .on_with_ack("join", |socket: &Socket<Tokio>, room: String| Ok(socket.join(&room)));
        if nodes > 1 {
            let backplane = RedisBackplane::new(RedisConfig::new(url, format!("n{n}")).prefix(prefix.clone()))
                .expect("a backplane");
            backplanes.push(backplane.clone());
            builder = builder.backplane(backplane);
        }
        let hub = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a listener");
        servers.push(ferrule_tokio::serve(listener, Options::default(), hub.handler_factory()));
        hubs.push(hub);
    }
    if nodes > 1 {
        while !hubs.iter().all(|h| h.cluster().nodes().len() == nodes - 1) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Latencies in microseconds: clients on the publishing node, and on the others.
    let local = Arc::new(Mutex::new(Vec::new()));
    let remote = Arc::new(Mutex::new(Vec::new()));
    let total = (rate * seconds) as usize;
    let mut readers = Vec::new();
    for i in 0..clients {
        let node = i % nodes;
        let url = format!("ws://{}/", servers[node].local_addr().expect("an address"));
        let upgraded = ferrule_tokio::connect(&url, &Options::default()).await.expect("connected");
        let mut channels = upgraded.channels::<Message>();
        let _open = channels.receiver.recv().await;
        channels.sender.send(Message::from(r#"["join","room",1]"#.to_owned())).await.expect("sent");
        let _ack = channels.receiver.recv().await;
        let sink = if node == 0 { local.clone() } else { remote.clone() };
        readers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(total);
            let mut last = Duration::ZERO;
            while got.len() < total {
                let Some(Message::Text(text)) = channels.receiver.recv().await else { break };
                let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("JSON");
                let sent = value[1][0].as_u64().unwrap_or(0);
                last = epoch.elapsed();
                got.push((last.as_micros() as u64).saturating_sub(sent));
            }
            sink.lock().expect("not poisoned").extend(got);
            last
        }));
    }
    let padding = "x".repeat(80);
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for _ in 0..total {
        interval.tick().await;
        let now = epoch.elapsed().as_micros() as u64;
        hubs[0].to("room").emit("tick", &(now, &padding)).expect("encoded");
    }
    // A client that lost messages (its queue was full: SlowRecipients::Drop) waits for more
    // until the guard; the rate counts up to the last delivery.
    let guard = Instant::now() + Duration::from_secs(5);
    while !readers.iter().all(|r| r.is_finished()) && Instant::now() < guard {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for hub in &hubs {
        for socket in hub.sockets() {
            let _ = socket.disconnect(ferrule_tokio::CloseCode::NORMAL, "");
        }
    }
    let mut last = Duration::ZERO;
    for reader in readers {
        last = last.max(reader.await.unwrap_or_default());
    }
    let elapsed = last.saturating_sub(started - epoch);
    let report = |name: &str, lat: &Mutex<Vec<u64>>| {
        let mut lat = lat.lock().expect("not poisoned");
        if lat.is_empty() {
            return;
        }
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!("  {name}: {} deliveries, p50 {} µs, p99 {} µs", lat.len(), pct(0.50), pct(0.99));
    };
    let delivered = local.lock().expect("not poisoned").len() + remote.lock().expect("not poisoned").len();
    println!(
        "{nodes} node(s): {delivered} of {} deliveries in {:.2} s: {:.0} deliveries/s",
        total * clients,
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
    report("clients on the publishing node", &local);
    report("clients on the other nodes (through Redis)", &remote);
    for (n, hub) in hubs.iter().enumerate() {
        let s = hub.stats();
        println!(
            "  n{n}: published {} frames, read {}, lost {}; recipients' queues full: {} messages dropped",
            s.remote_published, s.remote_in, s.remote_lost, s.dropped
        );
    }
    for backplane in &backplanes {
        let s = backplane.stats();
        println!("  redis: written {}, read {}, dropped {}", s.written, s.read, s.dropped);
    }
}
