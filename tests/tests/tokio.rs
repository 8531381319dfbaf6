//! The integration suite (`ferrule_tests::suite`) on tokio; how it runs is described in
//! `runtimes/tokio.rs`.

#[path = "runtimes/tokio.rs"]
mod runtime;

ferrule_tests::runtime_suite!(runtime::TokioRuntime);
