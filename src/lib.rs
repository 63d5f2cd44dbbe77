//! cjsm-milter: a protective-marking milter for a CJSM-style secure-email hub.
//!
//! A pure core (`marking`, `policy`) inside a thin shell (`milter`, `store`, `listen`).

pub mod config;
pub mod listen;
pub mod marking;
pub mod store;
pub mod policy;
pub mod pipeline;
pub mod milter;
pub mod check;
pub mod daemon;
