//! cjsm-milter: a protective-marking milter for a CJSM-style secure-email hub.
//!
//! The core is pure and does no I/O: `marking` (what a message is marked), `policy` (the
//! rules, one file per stage), `address` (envelope addresses), `collector` (the message kept
//! within bounds) and `transaction` (one SMTP transaction, driven step by step). Around it the
//! shell: `milter` and `check` drive the transaction, `engine` holds the rules in force with
//! the store and encryption, `lookups` turns the store's answers into the rules' listings,
//! `store` and `directory` keep the directory, `routing` answers the MTA's socketmap, `smime`
//! encrypts, `metrics` and `audit` record, `daemon` runs it all, `config` is the data below
//! everything.

pub mod address;
pub mod audit;
pub mod check;
pub mod clock;
pub mod collector;
pub mod config;
pub mod daemon;
pub mod directory;
pub mod engine;
pub mod listen;
pub mod lookups;
pub mod marking;
pub mod metrics;
pub mod milter;
pub mod policy;
pub mod routing;
pub mod smime;
pub mod store;
pub mod transaction;
