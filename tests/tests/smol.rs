//! The integration suite (`ferrule_tests::suite`) on smol; how it runs is described in
//! `runtimes/smol.rs`.

use std::time::Duration;

use ferrule_smol::{Acceptance, Channels, CloseCode, Options, Request};
use ferrule_tests::Echo;

#[path = "runtimes/smol.rs"]
mod runtime;

ferrule_tests::runtime_suite!(runtime::SmolRuntime);

/// The suite runs the library on its test clock through ferrule's runtime-generic entry points;
/// this runs `ferrule_smol`'s own `serve`, `serve_channels` and `connect` once each, on smol's
/// clock: an echo through each server, then a clean close.
#[test]
fn adapter_serve_and_connect_echo() {
    let test = async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let callbacks = ferrule_smol::serve(listener, Options::default(), |_: &Request, _: &mut Acceptance| Ok(Echo));
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let channels =
            ferrule_smol::serve_channels(listener, Options::default(), |_, mut ws: Channels<String>| async move {
                while let Some(message) = ws.receiver.recv().await {
                    if ws.sender.send(message).await.is_err() {
                        return;
                    }
                }
            });
        for server in [&callbacks, &channels] {
            let url = format!("ws://{}/", server.local_addr().expect("bound"));
            let mut client =
                ferrule_smol::connect(&url, &Options::default()).await.expect("connected").channels::<String>();
            client.sender.send("hello".to_owned()).await.expect("sent");
            assert_eq!(client.receiver.recv().await.as_deref(), Some("hello"));
            client.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
            let info = client.done.await;
            assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
        }
    };
    let guard = async {
        smol::Timer::after(Duration::from_secs(60)).await;
        panic!("the echoes did not finish within 60 s");
    };
    smol::block_on(smol::future::or(test, guard));
}
