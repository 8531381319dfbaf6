//! A `redis-server` of a test's own, on a free port (no persistence, its own directory), stopped
//! when dropped: shared by the Redis backplane's tests (`redis/tests/cluster.rs`) and the chat
//! demo's two-node browser test (`tests/tests/interop_browser.rs`).
//!
//! Without `redis-server` on the PATH, [`Redis::start`] says so and gives `None` (the test then
//! passes without running), unless `FERRULE_REQUIRE_REDIS=1` (CI), which makes its absence a
//! failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Set to `1` to make a missing `redis-server` a failure (CI does).
pub(crate) const REQUIRE_VAR: &str = "FERRULE_REQUIRE_REDIS";
/// How long a started server may take to answer: a guard for a busy machine, nothing more.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A `redis-server` of this test's own.
pub(crate) struct Redis {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port; `None` (the test is skipped) without `redis-server`, unless
    /// `FERRULE_REQUIRE_REDIS=1`.
    pub(crate) async fn start() -> Option<Self> {
        let found =
            std::process::Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
                "{REQUIRE_VAR}=1 but redis-server is not on the PATH (Debian: apt-get install redis-server)"
            );
            eprintln!(
                "\n********************************************************************\n\
                 ** SKIPPING: redis-server not found (Debian: apt-get install redis-server;\n\
                 ** CI requires it with {REQUIRE_VAR}=1). Nothing was checked through Redis.\n\
                 ********************************************************************\n"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
        let dir = std::env::temp_dir().join(format!("ferrule-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for redis-server");
        let mut redis = Self { port, dir, child: None };
        redis.run().await;
        Some(redis)
    }

    /// Its URL.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port, and waits until it answers.
    pub(crate) async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server started");
        self.child = Some(child);
        let port = self.port;
        let answering = async move {
            loop {
                if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut reply = [0u8; 7];
                    if stream.write_all(b"PING\r\n").await.is_ok()
                        && stream.read_exact(&mut reply).await.is_ok()
                        && &reply == b"+PONG\r\n"
                    {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(START_TIMEOUT, answering)
            .await
            .unwrap_or_else(|_| panic!("redis-server did not answer within {START_TIMEOUT:?}"));
    }

    /// Stops the server (SIGKILL: no goodbye to its clients) and waits for it to end.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("redis-server stopped");
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
