//! The scheduler (SPEC §4): when cleanups run. A state machine with no clock,
//! timer or I/O, in the sans-IO style of quinn-proto and str0m: a driver feeds
//! it [`Input`]s with the time they happened, and carries out the
//! [`Output`]s it asks for (start a run, arm or cancel its one timer, take the
//! cross-context lock, check the storage estimate).
//!
//! The rules:
//! - A request is debounced: it is due `debounce_ms` after the latest request,
//!   but never later than `max_wait_ms` after the first one not yet served.
//!   Requests coalesce and the stronger mode wins (full > light).
//! - A run starts only when the timer fires and something is due, so the
//!   driver's event loop always runs between two runs (or two slices).
//! - A request while a run is being started or is running sets the rerun flag;
//!   when the run ends the rerun starts at once, else the periodic timer is
//!   re-armed (`period_ms` from the end of the run; 0 = off).
//! - A run that stops on its slice budget continues at once, in the next slice.
//! - A failed run is retried with exponential back-off (`retry_base_ms`,
//!   doubling, capped at `retry_max_ms`); nothing runs before the back-off
//!   ends, and the first run that succeeds resets it. No failure leaves the
//!   scheduler stuck: while it is idle with work due, its timer is armed.
//! - With `use_lock`, a run first takes the cross-context lock. A context that
//!   is denied it skips (another context is cleaning): a periodic run waits for
//!   the next period, a requested one is retried after `lock_retry_ms` so
//!   that its request is still served.
//! - A light request follows each delete; a full one every `auto_after_writes`
//!   writes; storage pressure (usage over the line, a quota error) makes a full
//!   run due at once. After writes, the storage estimate is checked at most
//!   once per `check_storage_ms`.

use alloc::vec::Vec;

use crate::model::Millis;
use crate::plan::Mode;

/// How the scheduler behaves; the JS `schedule` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// A full run this long after the last one ended; 0 = never.
    pub period_ms: Millis,
    /// How long a request waits for more requests before it runs.
    pub debounce_ms: Millis,
    /// The longest a request waits, however many follow it.
    pub max_wait_ms: Millis,
    /// A full run (after `debounce_ms`) when the scheduler starts.
    pub run_on_start: bool,
    /// A full request after this many writes; 0 = never.
    pub auto_after_writes: u64,
    /// A light request after each delete.
    pub after_delete: bool,
    /// Each run's time budget; a run that uses it up continues in the next
    /// slice. 0 = a run goes to its end.
    pub slice_ms: Millis,
    /// The first retry's delay after a failure; doubles with each failure in a row.
    pub retry_base_ms: Millis,
    /// The longest delay between retries.
    pub retry_max_ms: Millis,
    /// Take the cross-context lock before each run.
    pub use_lock: bool,
    /// After the lock was denied, a requested run tries again this much later.
    pub lock_retry_ms: Millis,
    /// After writes, check the storage estimate at most this often; 0 = never.
    pub check_storage_ms: Millis,
}

/// A day in milliseconds: the default `period_ms`.
pub const DAY_MS: Millis = 24 * 60 * 60 * 1000;

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            period_ms: DAY_MS,
            debounce_ms: 1_000,
            max_wait_ms: 10_000,
            run_on_start: false,
            auto_after_writes: 0,
            after_delete: true,
            slice_ms: 0,
            retry_base_ms: 1_000,
            retry_max_ms: 15 * 60 * 1000,
            use_lock: false,
            lock_retry_ms: 2_000,
            check_storage_ms: 60_000,
        }
    }
}

impl ScheduleConfig {
    /// A scheduler that runs only when asked: no period, no triggers.
    pub fn manual() -> Self {
        ScheduleConfig {
            period_ms: 0,
            after_delete: false,
            check_storage_ms: 0,
            ..ScheduleConfig::default()
        }
    }
}

/// Retries in a row of a run that could not delete some items
/// ([`Input::RunEndedWithErrors`]).
pub const ITEM_RETRIES: u32 = 3;

/// Something that happened, at the `now` passed with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A caller asked for a run.
    Request(Mode),
    /// The timer armed by [`Output::ArmTimer`] fired (early or late is fine).
    Timer,
    /// The answer to [`Output::TakeLock`].
    LockTaken,
    /// The lock is held by another context: this run is skipped (a requested
    /// one is retried after `lock_retry_ms`).
    LockDenied,
    /// The run started could not begin: the store's run lease is held by
    /// another context (at the edge, where the lease stands for the lock).
    /// Treated as [`Input::LockDenied`]: skipped, and retried later.
    Leased,
    /// The run started by [`Output::StartRun`] ended; `done` is false when it
    /// stopped on its budget and has more to do.
    RunEnded {
        /// Whether the run finished; false when its budget ran out first.
        done: bool,
    },
    /// The run failed (an error, a throw): it will be retried.
    RunFailed,
    /// The run went to its end but could not delete some items: counted
    /// failed, and retried [`ITEM_RETRIES`] times in a row; past that, its
    /// items wait for the period like any a run leaves (a lasting refusal
    /// made no full run every `retry_max_ms` for ever).
    RunEndedWithErrors,
    /// A full run called by hand (not started here) ran to its end without
    /// errors: the period counts from it too, and a periodic run started
    /// meanwhile, waiting behind it, is left undone.
    FullRunByHand,
    /// This many entries were written.
    Wrote(u64),
    /// An entry was deleted.
    Deleted,
    /// The store is (nearly) full: the storage estimate is over the line, or a
    /// write failed with a quota error.
    Pressure,
    /// Stop: cancel the timer, start nothing more.
    Close,
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Start a run; answer with `RunEnded`, `RunEndedWithErrors` or `RunFailed`.
    StartRun {
        /// The mode to run in.
        mode: Mode,
        /// The slice's time budget (`slice_ms`); `None`: run to the end.
        budget_ms: Option<Millis>,
    },
    /// (Re-)arm the one timer to fire at `at`, replacing any armed before.
    ArmTimer(Millis),
    /// Cancel the timer.
    CancelTimer,
    /// Try to take the cross-context lock without waiting; answer with
    /// `LockTaken` (hold it until the run ends) or `LockDenied`.
    TakeLock,
    /// Check the storage estimate; answer `Pressure` if it is over the line.
    CheckStorage,
}

/// Where the scheduler is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No run; maybe one is due later (see [`Stats::next_at`]).
    Idle,
    /// Waiting for the lock's answer.
    Locking,
    /// A run (or one slice of it) is going.
    Running,
    /// Closed: nothing more starts.
    Closed,
}

impl Phase {
    /// The phase's name in `stats()` (`"idle"`, `"running"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Locking => "locking",
            Phase::Running => "running",
            Phase::Closed => "closed",
        }
    }
}

/// Counters for `stats()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Runs that went to their end.
    pub runs: u64,
    /// Runs started, slices included.
    pub slices: u64,
    /// Runs that failed or ended with items they could not delete.
    pub failures: u64,
    /// Such failures since a run or slice last ended without errors; they
    /// set the retry back-off.
    pub failures_in_row: u32,
    /// Runs skipped because another context held the lock.
    pub skipped: u64,
    /// When the timer will fire next, if it is armed.
    pub next_at: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    mode: Mode,
    /// The first request not yet served: `max_wait_ms` counts from it.
    first_at: Millis,
    /// Due by the debounce rule: reset by each request, capped by `max_wait_ms`.
    debounced: Option<Millis>,
    /// Due at a fixed time: a continuation, a rerun, a retry, pressure.
    fixed: Option<Millis>,
}

impl Pending {
    fn due_at(&self) -> Millis {
        match (self.debounced, self.fixed) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(0),
        }
    }
}

/// The scheduler's state. Feed it with [`Scheduler::handle`], then drain
/// [`Scheduler::poll_output`].
#[derive(Clone, Debug)]
pub struct Scheduler {
    cfg: ScheduleConfig,
    phase: Phase,
    /// The mode of the run being started or running.
    mode: Mode,
    /// Whether that run is the periodic one (a denied periodic run just waits
    /// for the next period).
    periodic: bool,
    pending: Option<Pending>,
    rerun: Option<Mode>,
    period_at: Option<Millis>,
    /// No run starts before this (back-off after failures).
    hold_until: Millis,
    writes: u64,
    storage_checked_at: Option<Millis>,
    timer: Option<Millis>,
    stats: Stats,
    /// Outputs not yet polled, oldest first (a handful at most).
    out: Vec<Output>,
    /// The periodic run started has nothing left to do: a full run by hand
    /// went to its end while it waited (see [`Scheduler::covered`]).
    covered: bool,
}

impl Scheduler {
    /// A scheduler starting at `now`: arms the first period, and a run on
    /// start if configured.
    pub fn new(cfg: ScheduleConfig, now: Millis) -> Self {
        let mut s = Scheduler {
            cfg,
            phase: Phase::Idle,
            mode: Mode::Light,
            periodic: false,
            pending: None,
            rerun: None,
            period_at: None,
            hold_until: 0,
            writes: 0,
            storage_checked_at: None,
            timer: None,
            stats: Stats::default(),
            out: Vec::new(),
            covered: false,
        };
        s.rearm_period(now);
        if cfg.run_on_start {
            s.request(Mode::Full, now);
        }
        s.rearm();
        s
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &ScheduleConfig {
        &self.cfg
    }

    /// Where it is now.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The mode of the run waiting for its time, if any.
    pub fn pending(&self) -> Option<Mode> {
        match self.phase {
            Phase::Idle => self.pending.map(|p| p.mode),
            Phase::Locking | Phase::Running => self.rerun,
            Phase::Closed => None,
        }
    }

    /// Its counters, with the time the timer fires next.
    pub fn stats(&self) -> Stats {
        Stats {
            next_at: self.timer,
            ..self.stats
        }
    }

    /// Whether the run started is the periodic one and a full run by hand
    /// went to its end since it was due: the driver then answers
    /// `RunEnded { done: true }` without running it (not counted as a run).
    pub fn covered(&self) -> bool {
        self.covered
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }

    /// Takes in what happened at `now`.
    pub fn handle(&mut self, now: Millis, input: Input) {
        if self.phase == Phase::Closed {
            // A run that was going when the scheduler closed still counts.
            self.count_end(input);
            return;
        }
        match input {
            Input::Request(mode) => self.request(mode, now),
            Input::Timer => {
                self.timer = None;
                if self.phase == Phase::Idle {
                    self.start_due(now);
                }
            }
            Input::LockTaken if self.phase == Phase::Locking => self.start_run(),
            Input::LockDenied if self.phase == Phase::Locking => self.skip(now),
            Input::Leased if self.phase == Phase::Running => self.skip(now),
            // Ended, or could not delete some items past their retries:
            // those wait for the period like anything a run leaves.
            Input::RunEnded { .. } | Input::RunEndedWithErrors
                if self.phase == Phase::Running
                    && (input != Input::RunEndedWithErrors
                        || self.stats.failures_in_row >= ITEM_RETRIES) =>
            {
                if !core::mem::take(&mut self.covered) {
                    self.count_end(input);
                }
                self.phase = Phase::Idle;
                self.hold_until = 0;
                let rerun = self.rerun.take();
                if input == (Input::RunEnded { done: false }) {
                    self.soon(rerun.map_or(self.mode, |r| r.max(self.mode)), now, now);
                } else {
                    // The period counts from the last full run: a light run
                    // (after deletes) leaves it, or deletes more often than
                    // the period would put the full run off for good.
                    if self.mode == Mode::Full || self.period_at.is_none() {
                        self.rearm_period(now);
                    }
                    if let Some(mode) = rerun {
                        self.soon(mode, now, now);
                    }
                }
            }
            Input::RunFailed | Input::RunEndedWithErrors if self.phase == Phase::Running => {
                self.count_end(input);
                self.phase = Phase::Idle;
                let n = self.stats.failures_in_row.min(40) - 1;
                let delay = self
                    .cfg
                    .retry_base_ms
                    .max(1)
                    .saturating_mul(1 << n.min(32))
                    .min(self.cfg.retry_max_ms.max(1));
                self.hold_until = now.saturating_add(delay);
                let mode = self.rerun.take().map_or(self.mode, |r| r.max(self.mode));
                self.soon(mode, now, now);
            }
            Input::Wrote(n) => {
                self.writes = self.writes.saturating_add(n);
                if self.cfg.auto_after_writes > 0 && self.writes >= self.cfg.auto_after_writes {
                    self.writes = 0;
                    self.request(Mode::Full, now);
                }
                let every = self.cfg.check_storage_ms;
                if every > 0
                    && self
                        .storage_checked_at
                        .is_none_or(|t| now.saturating_sub(t) >= every)
                {
                    self.storage_checked_at = Some(now);
                    self.out.push(Output::CheckStorage);
                }
            }
            Input::FullRunByHand => match self.phase {
                Phase::Idle if self.period_at.is_some() => self.rearm_period(now),
                // Started while the hand run went, and waiting behind it
                // (the driver starts no run until a run by hand ends).
                Phase::Locking | Phase::Running => {
                    self.covered = self.periodic && self.rerun.is_none()
                }
                _ => {}
            },
            Input::Deleted if self.cfg.after_delete => self.request(Mode::Light, now),
            Input::Pressure => self.soon(Mode::Full, now, now),
            Input::Close => {
                self.phase = Phase::Closed;
                self.pending = None;
                self.rerun = None;
                self.period_at = None;
            }
            // Answers that do not fit the phase (a late lock answer, a second
            // end) change nothing.
            _ => {}
        }
        self.rearm();
    }

    fn count_end(&mut self, input: Input) {
        match input {
            Input::RunEnded { done: true } => self.stats.runs += 1,
            Input::RunFailed | Input::RunEndedWithErrors => {
                self.stats.failures += 1;
                self.stats.failures_in_row = self.stats.failures_in_row.saturating_add(1);
            }
            _ => {}
        }
        if matches!(input, Input::RunEnded { .. }) {
            self.stats.failures_in_row = 0;
        }
    }

    /// Another context is cleaning: this run is skipped.
    fn skip(&mut self, now: Millis) {
        self.phase = Phase::Idle;
        self.stats.skipped += 1;
        if self.period_at.is_none() {
            self.rearm_period(now);
        }
        // A request is retried so that it is still served; the
        // periodic run alone waits for its next period.
        let rerun = self.rerun.take();
        if !self.periodic || rerun.is_some() {
            let mode = rerun.map_or(self.mode, |r| r.max(self.mode));
            self.soon(mode, now, now.saturating_add(self.cfg.lock_retry_ms));
        }
    }

    fn rearm_period(&mut self, now: Millis) {
        self.period_at = (self.cfg.period_ms > 0).then(|| now.saturating_add(self.cfg.period_ms));
    }

    /// A request of `mode` at `now`, debounced.
    fn request(&mut self, mode: Mode, now: Millis) {
        if self.phase != Phase::Idle {
            return self.soon(mode, now, now);
        }
        let p = self.pending.get_or_insert(Pending {
            mode,
            first_at: now,
            debounced: None,
            fixed: None,
        });
        p.mode = p.mode.max(mode);
        p.debounced = Some(
            now.saturating_add(self.cfg.debounce_ms)
                .min(p.first_at.saturating_add(self.cfg.max_wait_ms)),
        );
    }

    /// A run of `mode` due at `at`, not debounced; during a run, the rerun.
    fn soon(&mut self, mode: Mode, now: Millis, at: Millis) {
        match self.phase {
            Phase::Idle => {
                let p = self.pending.get_or_insert(Pending {
                    mode,
                    first_at: now,
                    debounced: None,
                    fixed: None,
                });
                p.mode = p.mode.max(mode);
                p.first_at = p.first_at.min(now);
                p.fixed = Some(p.fixed.map_or(at, |f| f.min(at)));
            }
            Phase::Locking | Phase::Running => {
                self.rerun = Some(self.rerun.map_or(mode, |r| r.max(mode)));
            }
            Phase::Closed => {}
        }
    }

    /// When the next run is due, if anything is.
    fn next_due(&self) -> Option<Millis> {
        if self.phase != Phase::Idle {
            return None;
        }
        let due = match (self.pending.map(|p| p.due_at()), self.period_at) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(due.max(self.hold_until))
    }

    fn start_due(&mut self, now: Millis) {
        let Some(due) = self.next_due() else { return };
        if due > now {
            return;
        }
        let period_due = self.period_at.is_some_and(|p| p <= now);
        // Whatever is pending rides along, due or not: the run serves it.
        let carried = self.pending.take();
        self.mode = carried.map_or(Mode::Full, |p| if period_due { Mode::Full } else { p.mode });
        self.periodic = carried.is_none();
        self.covered = false;
        if period_due {
            self.period_at = None;
        }
        if self.cfg.use_lock {
            self.phase = Phase::Locking;
            self.out.push(Output::TakeLock);
        } else {
            self.start_run();
        }
    }

    fn start_run(&mut self) {
        self.phase = Phase::Running;
        self.stats.slices += 1;
        self.out.push(Output::StartRun {
            mode: self.mode,
            budget_ms: (self.cfg.slice_ms > 0).then_some(self.cfg.slice_ms),
        });
    }

    /// Keeps the one timer armed at the next due time, or cancelled.
    fn rearm(&mut self) {
        let want = self.next_due();
        if want != self.timer {
            self.timer = want;
            self.out.push(match want {
                Some(at) => Output::ArmTimer(at),
                None => Output::CancelTimer,
            });
        }
    }
}
