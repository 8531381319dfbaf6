//! Copies the README's Rust code blocks into `$OUT_DIR/readme.md`, which `src/lib.rs` compiles as
//! doc tests. Rustdoc would take the README whole, but it also compiles indented code blocks as
//! Rust, and the README's shell commands are indented blocks.

use std::path::PathBuf;

fn main() {
    let readme = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo")).join("../README.md");
    println!("cargo::rerun-if-changed={}", readme.display());
    let text = std::fs::read_to_string(&readme).expect("the workspace's README.md");
    // Every other line becomes an empty line, and one more goes first: rustdoc numbers an included
    // text's lines from the one before it, so its reports then give the README's line numbers.
    let mut blocks = String::from("\n");
    let mut in_rust = false;
    for line in text.lines() {
        let fence = line.starts_with("```");
        if in_rust || (fence && line.starts_with("```rust")) {
            blocks.push_str(line);
            in_rust = !(in_rust && fence);
        }
        blocks.push('\n');
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("readme.md");
    std::fs::write(out, blocks).expect("wrote readme.md");
}
