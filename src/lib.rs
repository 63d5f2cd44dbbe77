//! cjsm-milter: a protective-marking milter for a CJSM-style secure-email hub.
//!
//! A pure core (`marking`, `policy`) inside a thin shell (`milter`, `store`, `listen`).

pub mod address;
pub mod audit;
pub mod check;
pub mod config;
pub mod daemon;
pub mod directory;
pub mod engine;
pub mod listen;
pub mod marking;
pub mod metrics;
pub mod milter;
pub mod pipeline;
pub mod policy;
pub mod routing;
pub mod smime;
pub mod store;
pub mod trust;
