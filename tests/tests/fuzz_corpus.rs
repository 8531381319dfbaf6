//! Replays the committed seed corpora of the cargo-fuzz targets (`fuzz/corpus/<target>/`)
//! through the same target bodies, so every `cargo test` re-checks them.

use std::path::PathBuf;

use ferrule_tests::fuzz_targets;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        body(&data);
        count += 1;
    }
    assert!(count > 0, "the {target} corpus is empty");
}

#[test]
fn fuzz_corpus_frame_decoder() {
    replay("frame_decoder", fuzz_targets::frame_decoder);
}

#[test]
fn fuzz_corpus_handshake_request() {
    replay("handshake_request", fuzz_targets::handshake_request);
}

#[test]
fn fuzz_corpus_handshake_response() {
    replay("handshake_response", fuzz_targets::handshake_response);
}

#[test]
fn fuzz_corpus_connection_ops() {
    replay("connection_ops", fuzz_targets::connection_ops);
}

#[test]
fn fuzz_corpus_deflate_connection() {
    replay("deflate_connection", fuzz_targets::deflate_connection);
}

#[test]
fn fuzz_corpus_hub_wire() {
    replay("hub_wire", fuzz_targets::hub_wire);
}

#[test]
fn fuzz_corpus_http_request() {
    replay("http_request", fuzz_targets::http_request);
}
