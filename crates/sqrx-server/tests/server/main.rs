//! Black-box tests of the server: each starts the real binary on a free loopback port over a
//! fresh data directory and talks HTTP and WebSocket to it. Sandboxes left by a test (even a
//! failing one) are destroyed by [`harness::DataDir`]'s drop.

mod auth;
mod cgi;
mod concurrency;
mod console;
mod examples;
mod harness;
mod js;
mod layers;
mod lifecycle;
mod netbed;
mod network;
mod proxy;
mod pty;
mod s3;
mod sandboxes;
mod secrets;
mod security;
mod services;
mod sessions;
mod tenants;
mod validation;
mod ws;
