//! End-to-end tests of the `homeserver` crate, linked into one test binary.
//!
//! Each module is a former test file. One binary instead of one per file: every test
//! binary here links the whole server plus the published SDK, and linking eight of them
//! cost minutes of CI and gigabytes of disk. `large_files` stays a binary of its own
//! because it measures its own process's peak memory, which other tests running in the
//! same process would disturb.

#[path = "../common/mod.rs"]
mod common;

mod account;
mod admin;
mod cli;
mod compose_e2e;
mod dav;
mod dav_clients;
mod dav_ops;
mod demo_users;
mod drive;
mod exit_bench;
mod export;
mod foundation;
mod import;
mod interop;
mod listing_model;
mod locks;
mod log_pairing;
mod merkle;
mod merkle_sync;
mod metrics;
mod mirror;
mod mirror_cost;
mod mirror_plain;
mod mirror_process;
mod mirror_reference;
mod move_process;
mod moving;
mod nats_cluster;
mod openapi;
mod outages;
mod private_matrix;
mod rate_limits;
mod readiness;
mod recovery;
mod replica;
mod s3;
mod shutdown;
mod split;
mod storage;
mod versions;
