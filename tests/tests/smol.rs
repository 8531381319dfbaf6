//! The integration suite (`ferrule_tests::suite`) on smol; how it runs is described in
//! `runtimes/smol.rs`.

#[path = "runtimes/smol.rs"]
mod runtime;

ferrule_tests::runtime_suite!(runtime::SmolRuntime);
