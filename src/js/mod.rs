//! The JavaScript surface (SPEC §8): the options JS passes, parsed and
//! checked from a plain value tree so that native tests and the fuzzer reach
//! them, and, on wasm32, the bindings that convert JS values and drive a
//! [`Sweeper`](crate::Sweeper) over a backend from `crate::store`.

pub mod options;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod convert;
#[cfg(target_arch = "wasm32")]
mod driver;
#[cfg(target_arch = "wasm32")]
mod tojs;

#[cfg(target_arch = "wasm32")]
pub use bindings::*;
