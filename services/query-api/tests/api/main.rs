//! The query-api through its front door: real HTTP over TCP, real Redis, real
//! PostgreSQL. One binary, so it links once.

// In test helpers an unwrap that fails is a failing test, which is the point.
#![allow(clippy::unwrap_used)]

mod auth;
mod console;
mod console_browser;
mod dlq;
mod events;
mod export;
mod filters;
mod helpers;
mod histogram;
mod openapi;
mod stats;
mod tail;
