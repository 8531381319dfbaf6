//! The cluster tests (`ferrule_tests::cluster`): hubs connected by the in-memory backplane, on
//! every runtime; how each runtime runs is described in `runtimes/`.

#[path = "runtimes/async_std.rs"]
mod async_std_runtime;
#[path = "runtimes/smol.rs"]
mod smol_runtime;
#[path = "runtimes/tokio.rs"]
mod tokio_runtime;

mod on_tokio {
    ferrule_tests::cluster_suite!(crate::tokio_runtime::TokioRuntime);
}

mod on_smol {
    ferrule_tests::cluster_suite!(crate::smol_runtime::SmolRuntime);
}

mod on_async_std {
    ferrule_tests::cluster_suite!(crate::async_std_runtime::AsyncStdRuntime);
}
