//! Load generator for the compressed echo benchmark: permessage-deflate (RFC 7692) echo servers
//! side by side.
//!
//! Every connection offers `permessage-deflate; client_no_context_takeover;
//! client_max_window_bits` and must get permessage-deflate back (the run fails otherwise). Because
//! the client keeps no context, one JSON-like text message compressed once is a valid frame every
//! time, so the generator sends pre-built masked frames and spends its CPU on I/O, not on
//! compressing: the server still inflates every message and compresses every echo with its own
//! settings. During the warm-up every echo is inflated (with the server's context when it keeps
//! one) and compared with the message sent; during the measured window only frame headers are
//! read.
//!
//! ```text
//! deflate-loadgen --port P [-c CONNS] [-s BYTES] [-d DEPTH] [-t SECS] [-w WARMUP] [--server-pid PID]
//! deflate-loadgen --port P --idle -c CONNS [--server-pid PID]   # memory per connection only
//! ```
//!
//! Prints one line of `key=value`: msgs_per_s, srv_ns_per_msg (server CPU, user+system, over the
//! measured window), rss_per_conn (server RSS after every connection exchanged one message, less
//! RSS before connecting, divided by the connections), gen_cpu_pct, and the agreed extension.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use base64::Engine;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OFFER: &str = "permessage-deflate; client_no_context_takeover; client_max_window_bits";
/// The offer of a client that keeps its context, as browsers do: a message compressed without
/// history is still a valid next message of a stream that keeps one.
const OFFER_WITH_CONTEXT: &str = "permessage-deflate; client_max_window_bits";
const SYNC_TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

struct Args {
    port: u16,
    conns: usize,
    size: usize,
    depth: usize,
    secs: f64,
    warmup: f64,
    idle: bool,
    client_context: bool,
    server_pid: Option<u32>,
}

fn usage() -> ! {
    eprintln!(
        "usage: deflate-loadgen --port P [-c CONNS] [-s BYTES] [-d DEPTH] [-t SECS] [-w WARMUP] [--idle] [--client-context] [--server-pid PID]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a =
        Args { port: 0, conns: 1, size: 1024, depth: 1, secs: 5.0, warmup: 1.0, idle: false, client_context: false, server_pid: None };
    let mut it = std::env::args().skip(1);
    fn val<T: std::str::FromStr>(it: &mut impl Iterator<Item = String>) -> T {
        it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-p" | "--port" => a.port = val(&mut it),
            "-c" | "--conns" => a.conns = val(&mut it),
            "-s" | "--size" => a.size = val(&mut it),
            "-d" | "--depth" => a.depth = val(&mut it),
            "-t" | "--secs" => a.secs = val(&mut it),
            "-w" | "--warmup" => a.warmup = val(&mut it),
            "--idle" => a.idle = true,
            "--client-context" => a.client_context = true,
            "--server-pid" => a.server_pid = Some(val(&mut it)),
            _ => usage(),
        }
    }
    if a.port == 0 || a.conns == 0 || a.depth == 0 || a.size == 0 || a.secs <= 0.0 {
        usage()
    }
    a
}

/// A JSON-like text message of `len` bytes (the same shape as ferrule-core's deflate benchmark).
fn json(len: usize) -> Vec<u8> {
    let mut s = String::with_capacity(len + 64);
    let mut i = 0u64;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"score\":{},\"tags\":[\"a{}\",\"b\"],\"ok\":{}}},",
            i % 97,
            i * 31 % 1000,
            i % 7,
            i % 2 == 0
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

/// The permessage-deflate parameters a server agreed to, from its `Sec-WebSocket-Extensions`.
#[derive(Debug, Clone, Default)]
struct Agreed {
    header: String,
    server_no_context_takeover: bool,
    client_max_window_bits: Option<u8>,
}

fn parse_agreed(head: &str) -> Result<Agreed, String> {
    let line = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, v)| v.trim().to_owned())
        .ok_or("the server agreed to no extension: compression was not negotiated")?;
    let mut params = line.split(';').map(str::trim);
    if params.next() != Some("permessage-deflate") {
        return Err(format!("the server agreed to {line:?}, not permessage-deflate"));
    }
    let mut agreed = Agreed { header: line.clone(), ..Agreed::default() };
    for p in params {
        let (name, value) = p.split_once('=').map_or((p, None), |(n, v)| (n.trim(), Some(v.trim().trim_matches('"'))));
        match name {
            "server_no_context_takeover" => agreed.server_no_context_takeover = true,
            "client_max_window_bits" => {
                agreed.client_max_window_bits = value.and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
    Ok(agreed)
}

/// Connects and upgrades, offering permessage-deflate; returns the stream, any bytes read past the
/// response head, and what was agreed.
fn connect(addr: SocketAddr, offer: &str) -> io::Result<(StdTcpStream, Vec<u8>, Agreed)> {
    let mut s = StdTcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let key = base64::engine::general_purpose::STANDARD.encode(rand_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(format!("{key}{GUID}").as_bytes()));
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {offer}\r\n\r\n"
    );
    s.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the upgrade"));
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
            if !head.starts_with("HTTP/1.1 101") {
                return Err(bad(format!("not upgraded: {}", head.lines().next().unwrap_or(""))));
            }
            if !head.to_ascii_lowercase().contains(&accept.to_ascii_lowercase()) {
                return Err(bad("wrong Sec-WebSocket-Accept".into()));
            }
            let agreed = parse_agreed(&head).map_err(bad)?;
            s.set_read_timeout(None)?;
            return Ok((s, buf[end..].to_vec(), agreed));
        }
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        let t = Instant::now().elapsed().as_nanos().to_le_bytes();
        b.copy_from_slice(&t);
    }
    b
}

/// `payload` compressed as one message without context (RFC 7692 section 7.2.1) with at most
/// `window_bits`, in a masked text frame with RSV1.
fn compressed_frame(payload: &[u8], window_bits: u8) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, window_bits.clamp(9, 15));
    let mut out = Vec::with_capacity(payload.len() + 64);
    c.compress_vec(payload, &mut out, FlushCompress::Sync).expect("compress");
    assert!(out.ends_with(&SYNC_TAIL) && c.total_in() as usize == payload.len());
    out.truncate(out.len() - 4);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | 0x40 | 0x1];
    let len = out.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(out.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    f
}

/// CPU seconds (user + system) of a process, all threads, from /proc.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// One connection's receive state.
struct Conn {
    sock: TcpStream,
    out: VecDeque<u8>,
    in_flight: usize,
    /// Bytes of the current frame's header gathered so far.
    hdr: Vec<u8>,
    left: u64,
    compressed: bool,
    control: bool,
    fin: bool,
    /// The message being received, while verifying.
    msg: Vec<u8>,
    inflater: Decompress,
    received: u64,
}

impl Conn {
    /// Handles received bytes; returns the messages completed. With `verify`, each message is
    /// inflated and compared with `expected`.
    fn consume(&mut self, mut data: &[u8], verify: bool, expected: &[u8], agreed: &Agreed) -> Result<u64, String> {
        let mut done = 0;
        while !data.is_empty() {
            if self.left > 0 {
                let take = self.left.min(data.len() as u64) as usize;
                if verify && !self.control {
                    self.msg.extend_from_slice(&data[..take]);
                }
                self.left -= take as u64;
                data = &data[take..];
                if self.left == 0 && self.end_frame(verify, expected, agreed)? {
                    done += 1;
                }
                continue;
            }
            self.hdr.push(data[0]);
            data = &data[1..];
            if self.hdr.len() < 2 {
                continue;
            }
            let need = 2 + match self.hdr[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if self.hdr[1] & 0x80 != 0 {
                return Err("a masked frame from the server".into());
            }
            if self.hdr.len() < need {
                continue;
            }
            let len = match self.hdr[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])),
                127 => u64::from_be_bytes(self.hdr[2..10].try_into().unwrap()),
                n => u64::from(n),
            };
            let b0 = self.hdr[0];
            self.hdr.clear();
            let opcode = b0 & 0xf;
            self.control = opcode >= 8;
            self.fin = b0 & 0x80 != 0;
            if opcode == 8 {
                return Err("the server closed the connection".into());
            }
            if opcode == 1 || opcode == 2 {
                self.compressed = b0 & 0x40 != 0;
            }
            self.left = len;
            if len == 0 && self.end_frame(verify, expected, agreed)? {
                done += 1;
            }
        }
        Ok(done)
    }

    fn end_frame(&mut self, verify: bool, expected: &[u8], agreed: &Agreed) -> Result<bool, String> {
        if self.control || !self.fin {
            return Ok(false);
        }
        self.received += 1;
        if verify {
            let msg = std::mem::take(&mut self.msg);
            let plain = if self.compressed {
                let mut input = msg;
                input.extend_from_slice(&SYNC_TAIL);
                let mut out = Vec::with_capacity(expected.len() + 64);
                let before = self.inflater.total_in();
                while (self.inflater.total_in() - before) < input.len() as u64 {
                    let at = (self.inflater.total_in() - before) as usize;
                    out.reserve(expected.len() + 64);
                    self.inflater
                        .decompress_vec(&input[at..], &mut out, FlushDecompress::Sync)
                        .map_err(|e| format!("the echo did not inflate: {e}"))?;
                }
                if agreed.server_no_context_takeover {
                    self.inflater = Decompress::new_with_window_bits(false, 15);
                }
                out
            } else {
                msg
            };
            if plain != expected {
                return Err(format!("an echo of {} bytes differs from the {} sent", plain.len(), expected.len()));
            }
        }
        Ok(true)
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            let (a, _) = self.out.as_slices();
            match self.sock.write(a) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn main() {
    let args = parse_args();
    let addr: SocketAddr = ([127, 0, 0, 1], args.port).into();
    let payload = json(args.size);
    let rss_before = args.server_pid.and_then(rss_bytes);
    let mut poll = Poll::new().expect("poll");
    let mut conns = Vec::with_capacity(args.conns);
    let mut agreed = None;
    let mut frame = Vec::new();
    for i in 0..args.conns {
        let offer = if args.client_context { OFFER_WITH_CONTEXT } else { OFFER };
        let (s, leftover, a) = connect(addr, offer).unwrap_or_else(|e| {
            eprintln!("connection {i}: {e}");
            std::process::exit(1)
        });
        if agreed.is_none() {
            frame = compressed_frame(&payload, a.client_max_window_bits.unwrap_or(15));
            agreed = Some(a);
        }
        s.set_nonblocking(true).expect("nonblocking");
        let mut sock = TcpStream::from_std(s);
        poll.registry().register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE).expect("register");
        let mut conn = Conn {
            sock,
            out: VecDeque::new(),
            in_flight: 0,
            hdr: Vec::with_capacity(10),
            left: 0,
            compressed: false,
            control: false,
            fin: false,
            msg: Vec::new(),
            inflater: Decompress::new_with_window_bits(false, 15),
            received: 0,
        };
        let agreed = agreed.as_ref().unwrap();
        if !leftover.is_empty() {
            conn.consume(&leftover, true, &payload, agreed).unwrap_or_else(|e| panic!("{e}"));
        }
        conns.push(conn);
    }
    let agreed = agreed.expect("one connection at least");

    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    // Phase 1: one verified round per connection, then memory; phase 2 (unless --idle): warm-up,
    // verified; phase 3: measured.
    let mut total_done = 0u64;
    let mut target = args.conns as u64;
    for c in &mut conns {
        c.out.extend(&frame);
        c.in_flight = 1;
        c.flush().expect("write");
    }
    let mut phase = 1;
    let mut measure_start = (Instant::now(), None, 0u64, 0.0);
    let gen_cpu = || cpu_secs("self").unwrap_or(0.0);
    let mut rss_per_conn = None;
    loop {
        if phase == 1 && total_done >= target {
            if let (Some(pid), Some(before)) = (args.server_pid, rss_before) {
                std::thread::sleep(Duration::from_millis(500));
                let after = rss_bytes(pid).unwrap_or(before);
                rss_per_conn = Some((after as f64 - before as f64) / args.conns as f64);
            }
            if args.idle {
                break;
            }
            phase = 2;
            for c in &mut conns {
                while c.in_flight < args.depth {
                    c.out.extend(&frame);
                    c.in_flight += 1;
                }
                c.flush().expect("write");
            }
            target = 0;
            measure_start.0 = Instant::now();
        }
        if phase == 2 && measure_start.0.elapsed().as_secs_f64() >= args.warmup {
            phase = 3;
            let pid = args.server_pid.map(|p| p.to_string());
            measure_start =
                (Instant::now(), pid.as_deref().and_then(cpu_secs), conns.iter().map(|c| c.received).sum(), gen_cpu());
        }
        if phase == 3 && measure_start.0.elapsed().as_secs_f64() >= args.secs {
            break;
        }
        if start.elapsed() > Duration::from_secs_f64(args.warmup + args.secs + 120.0) {
            eprintln!("timed out: {total_done} messages echoed");
            std::process::exit(1);
        }
        poll.poll(&mut events, Some(Duration::from_millis(100))).expect("poll");
        for ev in &events {
            let i = ev.token().0;
            let c = &mut conns[i];
            if ev.is_readable() {
                loop {
                    match c.sock.read(&mut buf) {
                        Ok(0) => {
                            eprintln!("connection {i}: the server closed it");
                            std::process::exit(1);
                        }
                        Ok(n) => {
                            let verify = phase < 3;
                            let done = c.consume(&buf[..n], verify, &payload, &agreed).unwrap_or_else(|e| {
                                eprintln!("connection {i}: {e}");
                                std::process::exit(1)
                            });
                            total_done += done;
                            c.in_flight -= done as usize;
                            if phase > 1 {
                                while c.in_flight < args.depth {
                                    c.out.extend(&frame);
                                    c.in_flight += 1;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("connection {i}: {e}");
                            std::process::exit(1);
                        }
                    }
                }
            }
            c.flush().unwrap_or_else(|e| {
                eprintln!("connection {i}: {e}");
                std::process::exit(1)
            });
        }
    }
    let mut line = format!(
        "conns={} size={} depth={} frame_bytes={} agreed=\"{}\"",
        args.conns,
        args.size,
        args.depth,
        frame.len(),
        agreed.header
    );
    if !args.idle {
        let secs = measure_start.0.elapsed().as_secs_f64();
        let msgs = conns.iter().map(|c| c.received).sum::<u64>() - measure_start.2;
        line += &format!(
            " msgs_per_s={:.0} gen_cpu_pct={:.0}",
            msgs as f64 / secs,
            (gen_cpu() - measure_start.3) / secs * 100.0
        );
        if let (Some(pid), Some(before)) = (args.server_pid, measure_start.1) {
            if let Some(after) = cpu_secs(&pid.to_string()) {
                line += &format!(
                    " srv_cpu_pct={:.0} srv_ns_per_msg={:.0}",
                    (after - before) / secs * 100.0,
                    (after - before) * 1e9 / msgs.max(1) as f64
                );
            }
        }
    }
    if let Some(r) = rss_per_conn {
        line += &format!(" rss_per_conn={r:.0}");
    }
    println!("{line}");
}
