//! The scheduler's driver in JavaScript: it feeds [`Scheduler`] what happens
//! (requests, timers, lock answers, run ends, writes) and carries out what it
//! asks: one `setTimeout` (unref'd in Node, so that it never keeps a process
//! alive), the Web Locks API across tabs and workers, runs on the event loop,
//! and storage estimates.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::bindings::{aborted, field, AnyStore, Inner, JsHost};
use crate::exec::RunReport;
use crate::model::Millis;
use crate::plan::Mode;
use crate::schedule::{Input, Output, Phase, ScheduleConfig, Scheduler};

/// The longest delay `setTimeout` takes (2^31 − 1 ms); a later time is
/// reached by firing early, which the scheduler tolerates.
const MAX_DELAY_MS: f64 = 2_147_483_647.0;

/// How a finished run went, for `stats()`.
struct LastRun {
    started_at: f64,
    duration_ms: f64,
    mode: Mode,
    outcome: &'static str,
    deleted: u64,
    bytes: u64,
    error: Option<String>,
}

/// An armed `setTimeout`: its handle, and the callback it will call.
type Timer = (JsValue, Closure<dyn FnMut()>);

pub(super) struct Driver {
    sched: RefCell<Scheduler>,
    /// The armed `setTimeout`: its handle and the callback it holds.
    timer: RefCell<Option<Timer>>,
    /// The Web Lock of runs, where the context has Web Locks.
    pub(super) lock_name: Option<String>,
    storage_fraction: f64,
    on_run: Option<Function>,
    /// A `schedule` was given: quota errors may start runs by themselves.
    pub(super) auto: bool,
    /// The rolling audit's shard count (`schedule.auditShards`; 0 = off).
    audit_shards: u32,
    /// Resolving it releases the held Web Lock.
    release: RefCell<Option<Function>>,
    last: RefCell<Option<LastRun>>,
}

impl Driver {
    /// `lock_name` is used where the Web Locks API exists; `storage_fraction`
    /// where `navigator.storage.estimate` does.
    pub(super) fn new(
        mut config: ScheduleConfig,
        lock_name: Option<String>,
        storage_fraction: f64,
        on_run: Option<Function>,
        now: Millis,
        auto: bool,
        audit_shards: u32,
    ) -> Driver {
        let navigator = field(&js_sys::global(), "navigator");
        let locks = field(&navigator, "locks");
        let lock_name = lock_name.filter(|_| field(&locks, "request").is_function());
        config.use_lock = lock_name.is_some();
        let storage = field(&navigator, "storage");
        if storage_fraction <= 0.0 || !field(&storage, "estimate").is_function() {
            config.check_storage_ms = 0;
        }
        Driver {
            sched: RefCell::new(Scheduler::new(config, now)),
            timer: RefCell::new(None),
            lock_name,
            storage_fraction,
            on_run,
            auto,
            audit_shards,
            release: RefCell::new(None),
            last: RefCell::new(None),
        }
    }

    /// Whether the scheduler stopped for good (closed, or its store was).
    pub(super) fn stopped(&self) -> bool {
        self.sched.borrow().phase() == crate::schedule::Phase::Closed
    }

    /// The scheduler's period (0: no periodic runs).
    pub(super) fn period_ms(&self) -> Millis {
        self.sched.borrow().config().period_ms
    }

    /// `stats()`: the scheduler's counters, its next run and the last run.
    pub(super) fn stats(&self, running: bool) -> JsValue {
        let s = self.sched.borrow();
        let st = s.stats();
        let out = Object::new();
        let set = |o: &Object, k: &str, v: JsValue| {
            let _ = Reflect::set(o, &k.into(), &v);
        };
        let phase = s.phase().as_str();
        // A run() called by hand counts as running too.
        let state = if running && phase == "idle" {
            "running"
        } else {
            phase
        };
        set(&out, "state", state.into());
        if let Some(mode) = s.pending() {
            set(&out, "pending", mode.as_str().into());
        }
        if let Some(at) = st.next_at {
            // On the wall clock, as it reads now.
            let wall = js_sys::Date::now() + (at as f64 - sched_now() as f64);
            set(&out, "nextRunAt", wall.into());
        }
        set(&out, "runs", (st.runs as f64).into());
        set(&out, "slices", (st.slices as f64).into());
        set(&out, "failures", (st.failures as f64).into());
        set(&out, "failuresInRow", st.failures_in_row.into());
        set(&out, "skipped", (st.skipped as f64).into());
        if let Some(l) = &*self.last.borrow() {
            let last = Object::new();
            set(&last, "startedAt", l.started_at.into());
            set(&last, "durationMs", l.duration_ms.into());
            set(&last, "mode", l.mode.as_str().into());
            set(&last, "outcome", l.outcome.into());
            set(&last, "deleted", (l.deleted as f64).into());
            set(&last, "bytes", (l.bytes as f64).into());
            if let Some(e) = &l.error {
                set(&last, "error", e.into());
            }
            set(&out, "lastRun", last.into());
        }
        out.into()
    }
}

impl Drop for Driver {
    /// A Sweeper freed without close(): its timer must not call a dropped closure.
    fn drop(&mut self) {
        if let Some((handle, _callback)) = self.timer.get_mut().take() {
            call_global("clearTimeout", &js_sys::Array::of1(&handle));
        }
    }
}

/// Runs `task` on the event loop. One future type for every task: the
/// spawning code is compiled once.
pub(super) fn spawn(task: impl std::future::Future<Output = ()> + 'static) {
    let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = Box::pin(task);
    wasm_bindgen_futures::spawn_local(task);
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = performance, js_name = now)]
    fn performance_now() -> Result<f64, JsValue>;
}

/// The scheduler's time: milliseconds that only go forward
/// (`performance.now()`). On the wall clock, a clock set back an hour held
/// every due run back an hour. `Date.now()` where there is no `performance`.
pub(super) fn sched_now() -> Millis {
    performance_now().unwrap_or_else(|_| js_sys::Date::now()) as Millis
}

/// Tells the scheduler what happened now, and does what it asks.
pub(super) fn feed(inner: &Rc<Inner>, input: Input) {
    // Timers run on real time, so the scheduler does too: an injected clock
    // (a test's, frozen or jumping) dates entries, not timers.
    let now = sched_now();
    let outputs: Vec<Output> = {
        let mut s = inner.driver.sched.borrow_mut();
        s.handle(now, input);
        std::iter::from_fn(|| s.poll_output()).collect()
    };
    for output in outputs {
        match output {
            Output::ArmTimer(at) => arm(inner, at.saturating_sub(now) as f64),
            Output::CancelTimer => cancel(inner),
            Output::TakeLock => take_lock(inner),
            Output::StartRun { mode, budget_ms } => {
                spawn(scheduled_run(inner.clone(), mode, budget_ms))
            }
            Output::CheckStorage => spawn(check_storage(inner.clone())),
        }
    }
}

pub(super) fn call_global(name: &str, args: &js_sys::Array) -> JsValue {
    let global = js_sys::global();
    match field(&global, name).dyn_into::<Function>() {
        Ok(f) => Reflect::apply(&f, &global, args).unwrap_or(JsValue::UNDEFINED),
        Err(_) => JsValue::UNDEFINED,
    }
}

/// Waits for `p` to settle, calling `give_up` every 50 ms meanwhile: `None`
/// once it says true, else what `p` settled with.
pub(super) async fn settle_or(
    p: &Promise,
    mut give_up: impl FnMut() -> bool,
) -> Option<Result<JsValue, JsValue>> {
    loop {
        let tick = Object::new();
        let timer = Promise::new(&mut |resolve, _| {
            call_global(
                "setTimeout",
                &js_sys::Array::of3(&resolve, &50.into(), &tick),
            );
        });
        // Through race, a `then` that throws becomes a rejection too.
        let first = Promise::race(&js_sys::Array::of2(p, &timer));
        match wasm_bindgen_futures::JsFuture::from(first).await {
            Ok(v) if Object::is(&v, &tick) => {
                if give_up() {
                    return None;
                }
            }
            settled => return Some(settled),
        }
    }
}

fn cancel(inner: &Inner) {
    // Taken out first: clearTimeout (a test's fake timers, say) may call back in.
    let armed = inner.driver.timer.borrow_mut().take();
    if let Some((handle, _callback)) = armed {
        call_global("clearTimeout", &js_sys::Array::of1(&handle));
    }
}

fn arm(inner: &Rc<Inner>, delay: f64) {
    cancel(inner);
    // The timer holds the sweeper weakly: a sweeper dropped without close()
    // leaves a timer that does nothing when it fires.
    let weak: Weak<Inner> = Rc::downgrade(inner);
    let callback = Closure::<dyn FnMut()>::new(move || {
        if let Some(inner) = weak.upgrade() {
            // The timer has fired: forget it, then tell the scheduler.
            drop(inner.driver.timer.borrow_mut().take());
            feed(&inner, Input::Timer);
        }
    });
    let handle = call_global(
        "setTimeout",
        &js_sys::Array::of2(callback.as_ref(), &delay.min(MAX_DELAY_MS).into()),
    );
    // Node: a timer waiting only for the next period does not keep the
    // process alive; one for a run that was asked for does, until it runs.
    let asked = inner.driver.sched.borrow().pending().is_some();
    if !asked {
        if let Ok(unref) = field(&handle, "unref").dyn_into::<Function>() {
            let _ = unref.call0(&handle);
        }
    }
    *inner.driver.timer.borrow_mut() = Some((handle, callback));
}

/// `navigator.locks.request(name, { ifAvailable: true }, callback)`: the
/// callback gets `null` when another context holds the lock; else it holds
/// the lock until the promise it returns settles, which the run's end does.
fn take_lock(inner: &Rc<Inner>) {
    let Some(name) = inner.driver.lock_name.clone() else {
        return feed(inner, Input::LockTaken);
    };
    let locks = field(&field(&js_sys::global(), "navigator"), "locks");
    let request = field(&locks, "request");
    let options = Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &true.into());
    let weak = Rc::downgrade(inner);
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let Some(inner) = weak.upgrade() else {
            return JsValue::UNDEFINED;
        };
        if lock.is_null() || lock.is_undefined() {
            feed(&inner, Input::LockDenied);
            return JsValue::UNDEFINED;
        }
        let held = Promise::new(&mut |resolve, _| {
            *inner.driver.release.borrow_mut() = Some(resolve);
        });
        feed(&inner, Input::LockTaken);
        // Closed meanwhile: no run comes to release the lock, so let it go now.
        if inner.driver.sched.borrow().phase() != Phase::Running {
            release_lock(&inner);
        }
        held.into()
    });
    let asked = Reflect::apply(
        &request.unchecked_into::<Function>(),
        &locks,
        &js_sys::Array::of3(&name.into(), &options, &callback),
    );
    match asked.map(|p| p.dyn_into::<Promise>()) {
        // The lock's promise settles when it is released; a rejection (an
        // opaque origin, say) is not the run's failure.
        Ok(Ok(p)) => {
            let weak = Rc::downgrade(inner);
            spawn(async move {
                if wasm_bindgen_futures::JsFuture::from(p).await.is_err() {
                    // If the callback never ran, go on without the lock.
                    if let Some(inner) = weak.upgrade() {
                        feed(&inner, Input::LockTaken);
                    }
                }
            });
        }
        // Web Locks refused the call: exclusivity stays within this instance.
        _ => feed(inner, Input::LockTaken),
    }
}

/// Holds the Web Lock of a run called by hand until dropped.
pub(super) struct HandLock(Option<Function>);

impl HandLock {
    /// Whether this is the store's own Web Lock, held (see `run_leased`).
    pub(super) fn store_own(&self, inner: &Inner) -> bool {
        self.0.is_some() && own_lock(inner)
    }
}

/// Whether the Sweeper's runs take its store's own Web Lock (a store of one
/// origin, where the context has Web Locks).
fn own_lock(inner: &Inner) -> bool {
    match inner.sweeper.store() {
        AnyStore::Kv(s) => {
            s.web_lock().is_some() && inner.driver.lock_name.as_deref() == s.web_lock()
        }
        _ => false,
    }
}

impl Drop for HandLock {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }
}

/// Takes the Web Lock for a run called by hand (or a clear), waiting for it:
/// runs are one at a time across tabs and workers whoever starts them.
/// Without Web Locks (Node, a memory store) it holds nothing. An abort of
/// `signal` or `close()` ends the wait (holding nothing).
pub(super) async fn hand_lock(inner: &Inner, signal: &JsValue) -> HandLock {
    let Some(name) = inner.driver.lock_name.clone() else {
        return HandLock(None);
    };
    let global = js_sys::global();
    let locks = field(&field(&global, "navigator"), "locks");
    let Ok(request) = field(&locks, "request").dyn_into::<Function>() else {
        return HandLock(None);
    };
    // Its signal withdraws the request when the wait must end.
    let controller = field(&global, "AbortController")
        .dyn_into::<Function>()
        .ok()
        .and_then(|c| Reflect::construct(&c, &js_sys::Array::new()).ok())
        .unwrap_or(JsValue::UNDEFINED);
    let options = Object::new();
    let _ = Reflect::set(&options, &"signal".into(), &field(&controller, "signal"));
    // Resolves with the function that releases the lock, once it is held;
    // with undefined if the request failed or was withdrawn.
    let granted = Promise::new(&mut |granted, _| {
        let on_grant = granted.clone();
        let callback = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
            Promise::new(&mut |release, _| {
                let _ = on_grant.call1(&JsValue::UNDEFINED, &release);
            })
            .into()
        });
        let args = js_sys::Array::of3(&name.clone().into(), &options, &callback);
        match Reflect::apply(&request, &locks, &args) {
            Ok(asked) => {
                let granted = granted.clone();
                spawn(async move {
                    if let Ok(p) = asked.dyn_into::<Promise>() {
                        if wasm_bindgen_futures::JsFuture::from(p).await.is_err() {
                            let _ = granted.call1(&JsValue::UNDEFINED, &JsValue::UNDEFINED);
                        }
                    }
                });
            }
            Err(_) => {
                let _ = granted.call1(&JsValue::UNDEFINED, &JsValue::UNDEFINED);
            }
        }
    });
    // Never gives up: an abort withdraws the request, which then settles.
    let mut withdrawn = false;
    let settled = settle_or(&granted, || {
        if !withdrawn && (aborted(signal) || inner.stopping()) {
            withdrawn = true;
            if let Ok(abort) = field(&controller, "abort").dyn_into::<Function>() {
                let _ = abort.call0(&controller);
            }
        }
        false
    })
    .await;
    let release = settled.and_then(Result::ok).unwrap_or(JsValue::UNDEFINED);
    HandLock(release.dyn_into::<Function>().ok())
}

fn release_lock(inner: &Inner) {
    if let Some(resolve) = inner.driver.release.borrow_mut().take() {
        let _ = resolve.call0(&JsValue::UNDEFINED);
    }
}

/// `onRun(event)`: what it throws is its own affair, never the scheduler's.
fn notify(inner: &Inner, kind: &str, mode: Mode, at: f64, extra: Option<(&str, JsValue)>) {
    let Some(cb) = &inner.driver.on_run else {
        return;
    };
    let event = Object::new();
    let _ = Reflect::set(&event, &"type".into(), &kind.into());
    let _ = Reflect::set(&event, &"mode".into(), &mode.as_str().into());
    let _ = Reflect::set(&event, &"at".into(), &at.into());
    if let Some((k, v)) = extra {
        let _ = Reflect::set(&event, &k.into(), &v);
    }
    if let Ok(p) = cb.call1(&JsValue::UNDEFINED, &event) {
        if let Ok(p) = p.dyn_into::<Promise>() {
            // Through race, a `then` that throws becomes a rejection.
            let p = Promise::race(&js_sys::Array::of1(&p));
            // A rejected promise must not end a Node process as unhandled.
            spawn(async move {
                let _ = wasm_bindgen_futures::JsFuture::from(p).await;
            });
        }
    }
}

/// A run the scheduler started: waits for a run called by hand to finish,
/// runs, records the outcome, releases the lock, tells the scheduler.
async fn scheduled_run(inner: Rc<Inner>, mode: Mode, budget_ms: Option<Millis>) {
    while inner.running.get() && !inner.stopping() {
        gloo_timers::future::TimeoutFuture::new(20).await;
    }
    let started = js_sys::Date::now();
    if inner.stopping() {
        release_lock(&inner);
        return feed(&inner, Input::RunEnded { done: false });
    }
    // The periodic run, and a full run by hand went to its end meanwhile.
    if inner.driver.sched.borrow().covered() {
        release_lock(&inner);
        return feed(&inner, Input::RunEnded { done: true });
    }
    inner.running.set(true);
    inner.background.set(true);
    notify(&inner, "start", mode, started, None);
    let deadline = budget_ms.map(|b| started + b as f64);
    let mut host = JsHost::new(inner.clone(), JsValue::UNDEFINED, None, deadline);
    let result = match inner.now() {
        Ok(now) => {
            // The lock held, not a run going on without it (see take_lock).
            let locked = inner.driver.release.borrow().is_some() && own_lock(&inner);
            let run = inner.run_leased(mode, now, &mut host, None, locked).await;
            // The rolling audit: the next shard of the blobs after each full
            // run that finished; what it finds shows in health().
            let shards = inner.driver.audit_shards;
            if shards > 0 && mode == Mode::Full && run.as_ref().is_ok_and(|r| r.done) {
                let _ = inner.sweeper.audit(shards, now, &mut host).await;
            }
            run.map_err(|e| e.to_string())
        }
        // clock_now's own error, "kvsweep: clock() threw …": its message
        // alone, or the event's error read "kvsweep: Error: kvsweep: …".
        Err(e) => Err(field(&e, "message")
            .as_string()
            .map(|m| m.strip_prefix("kvsweep: ").unwrap_or(&m).to_owned())
            .unwrap_or_else(|| super::convert::thrown(&e))),
    };
    inner.running.set(false);
    inner.background.set(false);
    let duration_ms = (js_sys::Date::now() - started).max(0.0);
    let (input, last, event) = match result {
        Ok(mut report) => {
            report.duration_ms = duration_ms as u64;
            let (deleted, bytes) = totals(&report);
            let out = super::bindings::to_js(&report).unwrap_or(JsValue::UNDEFINED);
            if let (Some(why), true) = (host.stopped, out.is_object()) {
                let _ = js_sys::Reflect::set(&out, &"stopped".into(), &why.into());
            }
            (
                // Another context holds the store's run lease: skipped, and
                // retried after the lock's delay (not at once: that would spin).
                if host.stopped == Some("leased") {
                    Input::Leased
                } else if report.halted {
                    // The store closed under it: the next goes after the
                    // retry's delay, not at once (and not only after the
                    // next period).
                    Input::RunFailed
                } else if report.done && !report.errors.is_empty() {
                    // Items could not be deleted: retried a few times (the
                    // scheduler's ITEM_RETRIES), then left for the period.
                    Input::RunEndedWithErrors
                } else {
                    Input::RunEnded { done: report.done }
                },
                LastRun {
                    started_at: started,
                    duration_ms,
                    mode,
                    outcome: match (report.done, host.stopped) {
                        (true, _) if !report.errors.is_empty() => "failed",
                        (true, _) => "done",
                        (false, Some("leased")) => "skipped",
                        _ => "stopped",
                    },
                    deleted,
                    bytes,
                    // The first item's error (health() counts them all).
                    error: report.errors.first().map(|e| e.message.clone()),
                },
                ("end", ("report", out)),
            )
        }
        Err(message) => {
            let error = super::bindings::js_err(&message);
            (
                Input::RunFailed,
                LastRun {
                    started_at: started,
                    duration_ms,
                    mode,
                    outcome: "failed",
                    deleted: 0,
                    bytes: 0,
                    error: Some(message),
                },
                ("error", ("error", error)),
            )
        }
    };
    *inner.driver.last.borrow_mut() = Some(last);
    let ended = js_sys::Date::now();
    release_lock(&inner);
    // A store closed for good fails every run: retried, it kept failing
    // every retryMaxMs for ever (and kept Node running). Background runs
    // stop once a run fails on it.
    let gone = input == Input::RunFailed && inner.sweeper.store().closed_for_good();
    feed(&inner, input);
    if gone {
        feed(&inner, Input::Close);
    }
    // Told last: stats() in the callback shows the run ended, and a request
    // from it is a new one.
    notify(&inner, event.0, mode, ended, Some((event.1 .0, event.1 .1)));
}

/// What the run deleted itself, as its log line counts it: a slice's
/// report also counts the slices before it.
fn totals(report: &RunReport) -> (u64, u64) {
    let line = crate::sweeper::LoggedRun::of(0, Ok(report));
    (line.deleted, line.bytes)
}

/// `navigator.storage.estimate()`: usage past the configured fraction of the
/// quota asks for a full run.
async fn check_storage(inner: Rc<Inner>) {
    let storage = field(&field(&js_sys::global(), "navigator"), "storage");
    let Ok(estimate) = field(&storage, "estimate").dyn_into::<Function>() else {
        return;
    };
    let Ok(Ok(p)) = estimate.call0(&storage).map(|p| p.dyn_into::<Promise>()) else {
        return;
    };
    let Ok(e) = wasm_bindgen_futures::JsFuture::from(p).await else {
        return;
    };
    let (usage, quota) = (field(&e, "usage").as_f64(), field(&e, "quota").as_f64());
    if let (Some(usage), Some(quota)) = (usage, quota) {
        if quota > 0.0 && usage >= quota * inner.driver.storage_fraction {
            feed(&inner, Input::Pressure);
        }
    }
}
