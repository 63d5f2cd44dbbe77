//! cjsm-milter: a protective-marking milter for a CJSM-style secure-email hub.
//!
//! A pure core (`marking`, `policy`) inside a thin shell (`milter`, `store`, `listen`).

pub mod config;
pub mod listen;
pub mod marking;
