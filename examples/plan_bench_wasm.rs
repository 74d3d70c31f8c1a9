//! The planner benchmark in WebAssembly: the same store as
//! `benches/plan_bench.rs`, planned in wasm under Node. Built and run by
//! `scripts/bench.sh`, which prints the ratio wasm/native.
#![cfg(target_arch = "wasm32")]

#[path = "../benches/common/synth.rs"]
mod synth;

use js_sys::{Array, Function, Object, Reflect};
use kvsweep::{plan, Mode};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

fn now(clock: &Function) -> f64 {
    clock
        .call0(&JsValue::UNDEFINED)
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0)
}

fn memory_bytes() -> f64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

/// Builds the store of `entries` entries and plans it `runs` times; `clock`
/// is `performance.now`. Returns the times (ms) and the memory growth.
#[wasm_bindgen(js_name = benchPlan)]
pub fn bench_plan(entries: usize, runs: usize, clock: &Function) -> JsValue {
    let namespaces = 1_000.min(entries.max(1));
    let t0 = now(clock);
    let inv = synth::bench_inventory(entries, namespaces, synth::NOW, 42);
    let policy = synth::bench_policy(namespaces);
    let built_ms = now(clock) - t0;
    let memory_before = memory_bytes();
    let times = Array::new();
    let mut actions = 0;
    for _ in 0..runs.max(1) {
        let t = now(clock);
        let p = plan(&inv, &policy, synth::NOW, Mode::Full);
        times.push(&JsValue::from_f64(now(clock) - t));
        actions = p.actions.len();
    }
    let out = Object::new();
    set(&out, "entries", inv.entries.len() as f64);
    set(&out, "builtMs", built_ms);
    set(&out, "timesMs", times);
    set(&out, "actions", actions as f64);
    set(&out, "memoryGrowthBytes", memory_bytes() - memory_before);
    set(&out, "memoryBytes", memory_bytes());
    out.into()
}
