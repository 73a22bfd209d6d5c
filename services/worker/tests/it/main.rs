//! The worker against real Redis and PostgreSQL (`make test` starts both):
//! one test binary, so it links once.

mod common;
mod crashes;
mod delivery;
mod outage;
mod poison;
mod trimming;
