//! The worker against real Redis and PostgreSQL (`make test` starts both):
//! one test binary, so it links once.

// In test helpers an unwrap that fails is a failing test, which is the point.
#![allow(clippy::unwrap_used)]

mod common;
mod crashes;
mod delivery;
mod formats;
mod fresh_copy;
mod outage;
mod poison;
mod startup;
mod trimming;
