//! A `redis-server` of a test's own, on a free port (no persistence, its own directory), killed
//! and its directory removed when dropped, on any runtime: shared by the Redis backplane's tests
//! (`redis/tests/`) and the chat demo's two-node browser test (`tests/interop_browser.rs`).
//!
//! Without `redis-server` on the PATH, [`Redis::start`] says so and gives `None` (the test then
//! passes without running), unless `FERRULE_REQUIRE_REDIS=1` (CI), which makes its absence a
//! failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::suite::{TestRuntime, sleep, within};

/// Set to `1` to make a missing `redis-server` (or `redis-cli`) a failure; CI does.
pub const REQUIRE_VAR: &str = "FERRULE_REQUIRE_REDIS";
/// How long a started server may take to answer: a guard for a busy machine, nothing more.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `program` (`redis-server`, `redis-cli`) runs here. Without it, `false` (the test is
/// skipped, saying so loudly) unless `FERRULE_REQUIRE_REDIS=1`, which makes it a failure.
pub fn found(program: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
            "{REQUIRE_VAR}=1 but {program} is not on the PATH (Debian: apt-get install redis-server)"
        );
        eprintln!(
            "\n********************************************************************\n\
             ** SKIPPING: {program} not found (Debian: apt-get install redis-server;\n\
             ** CI requires it with {REQUIRE_VAR}=1). Nothing was checked through Redis.\n\
             ********************************************************************\n"
        );
    }
    found
}

/// A port nobody listens on at the moment.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// A `redis-server` of this test's own.
pub struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its working directory, removed on drop.
    pub dir: PathBuf,
    /// Arguments added to its command line.
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port; `None` (the test is skipped) without `redis-server`, unless
    /// `FERRULE_REQUIRE_REDIS=1`.
    pub async fn start<T: TestRuntime>() -> Option<Self> {
        if !found("redis-server") {
            return None;
        }
        Some(Self::start_with::<T>(Vec::new()).await)
    }

    /// Starts one on a free port, with `args` added to its command line.
    pub async fn start_with<T: TestRuntime>(args: Vec<String>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("ferrule-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for redis-server");
        let mut redis = Self { port, dir, args, child: None };
        redis.run::<T>().await;
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port, and waits until it answers `PING`.
    pub async fn run<T: TestRuntime>(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server started");
        self.child = Some(child);
        let port = self.port;
        within::<T, _>(START_TIMEOUT, "redis-server answering", async move {
            while !answers_ping(port) {
                sleep::<T>(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Stops the server (SIGKILL: no goodbye to its clients) and waits for it to end.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("redis-server stopped");
            child.wait().expect("redis-server ended");
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a Redis on `port` answers `PING` (in RESP's inline form). Blocking, on loopback: a
/// refused connection fails at once, and the read is bounded.
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
