//! The Autobahn TestSuite client testee: asks the fuzzing server how many cases there are, runs
//! each one by echoing every message back, then asks it to write the reports. With PARALLEL
//! above 1, that many cases run at once (each on its own connection; the fuzzing server keeps
//! them apart by case number), which shortens a run that mostly waits on the cases' timers.
//! The testee itself is shared by every adapter (`api/examples/shared/autobahn_client.rs`).
//!
//! ```text
//! cargo run --release -p ferrule-async-std --example async_std_echo_client [URL [PARALLEL]]   # default ws://127.0.0.1:9001, 1
//! ```

#[path = "../../api/examples/shared/autobahn_client.rs"]
mod autobahn_client;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    async_std::task::block_on(autobahn_client::run(|url, options| async move {
        ferrule_async_std::connect(&url, &options).await
    }))
}
