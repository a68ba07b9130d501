//! The demo upstream's clients, shared with the end-to-end tests (the server is `main.rs`).

pub mod clients;
