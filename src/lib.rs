//! kvsweep: garbage collection, retention and integrity checks for browser and
//! edge key–value stores.
//!
//! The core (`model`, `policy`, `mark`, `plan`) is pure and `no_std` + `alloc`:
//! plain data in, plain data out, with `now` passed in. With the `std` feature
//! come the codec, the store trait and its backends, the executor and the
//! `Sweeper`; on `wasm32` also the JavaScript bindings.
//!
//! A `Sweeper` and its stores are for one thread (their futures are not
//! `Send`, as a browser's are not): on a multi-threaded runtime, run them on
//! one thread (tokio's `LocalSet` and `spawn_local`).
//!
//! # Example
//!
//! A `Sweeper` over the in-memory store: an entry older than the policy's
//! `max_age_ms` is planned for deletion with its reason, and a run deletes it.
//!
//! ```
//! use kvsweep::codec::StoredValue;
//! use kvsweep::exec::RunToEnd;
//! use kvsweep::{EntryId, MemoryStore, Mode, Policy, PutOptions, Reason, Rules, Sweeper};
//!
//! let policy = Policy {
//!     rules: Rules { max_age_ms: Some(60_000), ..Rules::default() },
//!     ..Policy::default()
//! };
//! let sweeper = Sweeper::new(MemoryStore::new(), policy, Default::default());
//! let note = EntryId::new("notes", "a");
//! futures_executor::block_on(async {
//!     let value = StoredValue::Bytes(b"hello".to_vec());
//!     sweeper.put(&note, value, PutOptions::default(), 0).await?;
//!     // Two minutes later it is too old.
//!     let plan = sweeper.plan(Mode::Full, 120_000).await?;
//!     assert_eq!(plan.actions.len(), 1);
//!     assert_eq!(plan.actions[0].reason, Reason::MaxAge);
//!     let report = sweeper.run(Mode::Full, 120_000, &mut RunToEnd).await?;
//!     assert!(report.done);
//!     assert_eq!(report.deleted[&Reason::MaxAge].count, 1);
//!     assert_eq!(sweeper.get(&note, 120_000).await?, None);
//!     Ok::<(), kvsweep::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! The planner alone is a pure function: [`plan()`] of an [`Inventory`], a
//! [`Policy`] and `now` gives a [`Plan`] of [`Action`]s, each with its
//! [`Reason`].
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

mod sort;
#[doc(hidden)] // the crate's own small collections, not API
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
#[doc(hidden)] // the executor's reference counts, not API
pub mod refcount;
#[cfg(feature = "std")]
pub mod store;
#[cfg(feature = "std")]
pub mod sweeper;
#[cfg(feature = "std")]
#[doc(hidden)] // the write protocol's steps, public for this crate's tests only
pub mod write;

#[cfg(feature = "std")]
pub use store::{memory::MemoryStore, Store};
#[cfg(feature = "std")]
pub use sweeper::{Config, Error, PutOptions, Sweeper};
#[cfg(feature = "std")]
#[doc(hidden)] // the JavaScript bindings (the npm package's), not Rust API
pub mod js;
