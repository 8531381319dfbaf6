//! The integration suite (`ferrule_tests::suite`) on async-std; how it runs is described in
//! `runtimes/async_std.rs`.

use std::time::Duration;

use ferrule_async_std::{Acceptance, Channels, CloseCode, Options, Request};
use ferrule_tests::Echo;

#[path = "runtimes/async_std.rs"]
mod runtime;

ferrule_tests::runtime_suite!(runtime::AsyncStdRuntime);

/// The suite runs the library on its test clock through ferrule's runtime-generic entry points;
/// this runs `ferrule_async_std`'s own `serve`, `serve_channels` and `connect` once each, on
/// async-std's clock: an echo through each server, then a clean close.
#[test]
fn adapter_serve_and_connect_echo() {
    let test = async {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let callbacks =
            ferrule_async_std::serve(listener, Options::default(), |_: &Request, _: &mut Acceptance| Ok(Echo));
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let channels =
            ferrule_async_std::serve_channels(listener, Options::default(), |_, mut ws: Channels<String>| async move {
                while let Some(message) = ws.receiver.recv().await {
                    if ws.sender.send(message).await.is_err() {
                        return;
                    }
                }
            });
        for server in [&callbacks, &channels] {
            let url = format!("ws://{}/", server.local_addr().expect("bound"));
            let mut client =
                ferrule_async_std::connect(&url, &Options::default()).await.expect("connected").channels::<String>();
            client.sender.send("hello".to_owned()).await.expect("sent");
            assert_eq!(client.receiver.recv().await.as_deref(), Some("hello"));
            client.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
            let info = client.done.await;
            assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
        }
    };
    async_std::task::block_on(async_std::future::timeout(Duration::from_secs(60), test))
        .expect("the echoes finished within 60 s");
}
