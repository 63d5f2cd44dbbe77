//! cjsm-milter: a protective-marking milter for a CJSM-style secure-email hub.
//!
//! The core is pure and does no I/O; it imports nothing of the shell:
//! - `config`: the settings, typed on load (data below everything);
//! - `address`: envelope addresses and domains; `clock`: the time;
//! - `marking`: what a message is marked;
//! - `policy`: the rules, one module per stage of the SMTP transaction;
//! - `collector`: the message kept within bounds;
//! - `transaction`: one SMTP transaction, the type the milter and `check` both drive.
//!
//! The shell around it: `engine` (the rules in force, compiled once, with the store and the
//! encryption; reloadable), `lookups` (the store's answers as the rules read them), `milter`
//! and `check` (drive the transaction), `routing` (the MTA's socketmap), `store` and
//! `directory` (the directory), `smime` (encryption), `metrics` and `audit` (recording),
//! `listen` and `daemon` (running it all).

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
pub mod privilege;
pub mod routing;
pub mod smime;
pub mod store;
pub mod transaction;
pub mod web;
