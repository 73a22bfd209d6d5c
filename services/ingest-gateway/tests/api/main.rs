//! The gateway through its front door: real HTTP over TCP, real Redis, real
//! PostgreSQL. One binary, so it links once.

mod corpus;
mod faults;
mod helpers;
mod ingest;
mod linger;
mod otlp;
mod otlp_corpus;
mod security;
