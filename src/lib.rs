//! kvsweep: garbage collection, retention and integrity checks for browser and
//! edge key–value stores.
//!
//! The core (`model`, `policy`, `mark`, `plan`) is pure and `no_std` + `alloc`:
//! plain data in, plain data out, with `now` passed in. With the `std` feature
//! come the codec, the store trait and its backends, the executor and the
//! [`Sweeper`]; on `wasm32` also the JavaScript bindings.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

mod sort;
pub mod vecmap;

pub mod mark;
pub mod model;
pub mod plan;
pub mod policy;
pub mod schedule;

pub use model::{BlobInfo, EntryId, EntryMeta, Inventory, InventoryEntry, Millis, TempInfo};
pub use plan::{plan, Action, ActionKind, Mode, Plan, Reason, Summary, Tally};
pub use policy::{GroupRule, Policy, Rules};

#[cfg(feature = "std")]
pub mod codec;
#[cfg(feature = "std")]
pub mod error;
#[cfg(feature = "std")]
pub mod exec;
#[cfg(feature = "std")]
pub(crate) mod mpv;
#[cfg(feature = "std")]
pub mod rebuild;
#[cfg(feature = "std")]
pub mod refcount;
#[cfg(feature = "std")]
pub mod store;
#[cfg(feature = "std")]
pub mod sweeper;
#[cfg(feature = "std")]
pub mod write;

#[cfg(feature = "std")]
pub use store::{memory::MemoryStore, Store};
#[cfg(feature = "std")]
pub use sweeper::{Config, Error, PutOptions, Sweeper};
#[cfg(feature = "std")]
pub mod js;
