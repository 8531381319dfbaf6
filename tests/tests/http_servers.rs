//! The integration suite's server-side tests (`ferrule_tests::http_server_suite`) with the
//! server behind axum and behind a plain hyper server, over HTTP/1.1; how they serve is
//! described in `runtimes/http_servers.rs`.

#[path = "runtimes/tokio.rs"]
mod runtime;
#[path = "runtimes/http_servers.rs"]
mod servers;

mod axum {
    ferrule_tests::http_server_suite!(crate::servers::AxumRuntime);
}

mod hyper {
    ferrule_tests::http_server_suite!(crate::servers::HyperRuntime);
}
