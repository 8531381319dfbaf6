//! The integration suite (`ferrule_tests::suite`) on async-std; how it runs is described in
//! `runtimes/async_std.rs`.

#[path = "runtimes/async_std.rs"]
mod runtime;

ferrule_tests::runtime_suite!(runtime::AsyncStdRuntime);
