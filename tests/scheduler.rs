//! The scheduler (SPEC §4): each transition on its own, then a day of random
//! events per seed, checked step by step against a small reference model that
//! keeps a log of unserved requests instead of the scheduler's folded state.

use kvsweep::schedule::{Input, Output, Phase, ScheduleConfig, Scheduler, DAY_MS, ITEM_RETRIES};
use kvsweep::{Millis, Mode};

fn drain(s: &mut Scheduler) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn cfg() -> ScheduleConfig {
    ScheduleConfig {
        period_ms: 0,
        debounce_ms: 100,
        max_wait_ms: 1_000,
        after_delete: true,
        check_storage_ms: 0,
        ..ScheduleConfig::default()
    }
}

/// A scheduler of `cfg()` with a period, made at `now`.
fn periodic(period_ms: Millis, now: Millis) -> Scheduler {
    Scheduler::new(ScheduleConfig { period_ms, ..cfg() }, now)
}

fn start(mode: Mode) -> Output {
    Output::StartRun {
        mode,
        budget_ms: None,
    }
}

#[test]
fn idle_without_period_arms_nothing() {
    let mut s = Scheduler::new(cfg(), 0);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.phase(), Phase::Idle);
    assert_eq!(s.stats().next_at, None);
}

#[test]
fn period_is_armed_at_start_and_after_each_run() {
    let mut s = periodic(5_000, 1_000);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(6_000)]);
    // Early timer: nothing starts, the timer is armed again.
    s.handle(5_000, Input::Timer);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(6_000)]);
    s.handle(6_000, Input::Timer);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
    assert_eq!(s.phase(), Phase::Running);
    s.handle(6_500, Input::RunEnded { done: true });
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(11_500)]);
    assert_eq!(s.stats().runs, 1);
}

#[test]
fn a_full_run_by_hand_puts_the_periodic_run_off_but_not_while_a_background_run_goes() {
    let mut s = periodic(5_000, 1_000);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(6_000)]);
    s.handle(3_000, Input::FullRunByHand);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(8_000)]);
    assert_eq!(s.stats().runs, 0, "not a run of the scheduler's");
    s.handle(8_000, Input::Timer);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
    // Its own run carried a request: a hand run's end changes nothing.
    s.handle(8_050, Input::Request(Mode::Light));
    s.handle(8_100, Input::FullRunByHand);
    assert!(
        !s.covered(),
        "the request came after the hand run may have read the store"
    );
    s.handle(8_500, Input::RunEnded { done: true });
    assert_eq!(
        drain(&mut s),
        vec![Output::ArmTimer(8_500)],
        "the request's rerun, at once"
    );
    assert_eq!(s.stats().runs, 1);
    // Without a period, nothing is armed.
    let mut none = Scheduler::new(cfg(), 1_000);
    none.handle(2_000, Input::FullRunByHand);
    assert_eq!(drain(&mut none), vec![]);
}

#[test]
fn a_periodic_run_started_while_a_full_run_by_hand_went_is_left_undone_after_it() {
    let mut s = periodic(5_000, 1_000);
    drain(&mut s);
    s.handle(6_000, Input::Timer);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
    // The driver holds it back until the hand run ends.
    s.handle(7_000, Input::FullRunByHand);
    assert!(s.covered(), "nothing left for it to do");
    s.handle(7_000, Input::RunEnded { done: true });
    assert_eq!(
        drain(&mut s),
        vec![Output::ArmTimer(12_000)],
        "the period counts from the hand run"
    );
    assert_eq!(s.stats().runs, 0, "left undone, not counted");
    assert!(!s.covered());
    // Whilst it waits for the lock too.
    let mut s = Scheduler::new(
        ScheduleConfig {
            period_ms: 5_000,
            use_lock: true,
            ..cfg()
        },
        1_000,
    );
    drain(&mut s);
    s.handle(6_000, Input::Timer);
    assert_eq!(drain(&mut s), vec![Output::TakeLock]);
    s.handle(6_500, Input::FullRunByHand);
    s.handle(6_600, Input::LockTaken);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
    assert!(s.covered());
    // A run that carried a request is not covered.
    let mut s = Scheduler::new(cfg(), 0);
    s.handle(0, Input::Request(Mode::Full));
    s.handle(100, Input::Timer);
    assert_eq!(
        drain(&mut s),
        vec![Output::ArmTimer(100), start(Mode::Full)]
    );
    s.handle(200, Input::FullRunByHand);
    assert!(!s.covered(), "a request's run is not the periodic one");
    // Nor one after a failure: a new start forgets it.
    let mut s = periodic(5_000, 1_000);
    drain(&mut s);
    s.handle(6_000, Input::Timer);
    s.handle(6_100, Input::FullRunByHand);
    s.handle(6_200, Input::RunFailed);
    s.handle(20_000, Input::Timer);
    assert!(!s.covered());
}

#[test]
fn light_runs_more_often_than_the_period_do_not_put_the_full_run_off() {
    let mut s = periodic(1_000, 0);
    drain(&mut s);
    let mut full_at = None;
    // A delete every 150 ms, each asking for a light run.
    for t in (0..3_000).step_by(50) {
        if t % 150 == 0 {
            s.handle(t, Input::Deleted);
        }
        s.handle(t, Input::Timer);
        for out in drain(&mut s) {
            if let Output::StartRun { mode, .. } = out {
                if mode == Mode::Full && full_at.is_none() {
                    full_at = Some(t);
                }
                s.handle(t + 10, Input::RunEnded { done: true });
            }
        }
    }
    assert_eq!(
        full_at,
        Some(1_000),
        "the full run is due one period after the start"
    );
}

#[test]
fn requests_debounce_coalesce_and_the_stronger_mode_wins() {
    let mut s = Scheduler::new(cfg(), 0);
    s.handle(0, Input::Request(Mode::Light));
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(100)]);
    s.handle(50, Input::Request(Mode::Full));
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(150)]);
    s.handle(120, Input::Request(Mode::Light));
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(220)]);
    s.handle(220, Input::Timer);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
}

#[test]
fn max_wait_caps_the_debounce() {
    let mut s = Scheduler::new(cfg(), 0);
    for t in (0..2_000).step_by(50) {
        s.handle(t, Input::Request(Mode::Light));
        drain(&mut s);
        if s.phase() != Phase::Idle {
            break;
        }
        if s.stats().next_at.is_some_and(|at| at <= t + 50) {
            let at = s.stats().next_at.unwrap();
            assert_eq!(at, 1_000, "due at most max_wait after the first request");
            s.handle(at, Input::Timer);
            assert_eq!(drain(&mut s), vec![start(Mode::Light)]);
            return;
        }
    }
    panic!("requests every 50 ms never ran");
}

#[test]
fn a_request_during_a_run_reruns_at_once_after_it() {
    let mut s = periodic(10_000, 0);
    s.handle(0, Input::Request(Mode::Light));
    s.handle(100, Input::Timer);
    drain(&mut s);
    s.handle(150, Input::Request(Mode::Light));
    s.handle(160, Input::Request(Mode::Full));
    assert_eq!(s.pending(), Some(Mode::Full));
    assert_eq!(drain(&mut s), vec![]);
    s.handle(300, Input::RunEnded { done: true });
    // The rerun is due now; the timer makes the driver's event loop run first.
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(300)]);
    s.handle(300, Input::Timer);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
}

#[test]
fn a_run_out_of_budget_continues_in_the_next_slice() {
    let mut s = Scheduler::new(
        ScheduleConfig {
            slice_ms: 40,
            ..cfg()
        },
        0,
    );
    s.handle(0, Input::Request(Mode::Full));
    s.handle(100, Input::Timer);
    let slice = Output::StartRun {
        mode: Mode::Full,
        budget_ms: Some(40),
    };
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(100), slice]);
    s.handle(140, Input::RunEnded { done: false });
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(140)]);
    s.handle(141, Input::Timer);
    assert_eq!(drain(&mut s), vec![slice]);
    s.handle(170, Input::RunEnded { done: true });
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.stats().runs, 1);
    assert_eq!(s.stats().slices, 2);
}

#[test]
fn failures_back_off_exponentially_up_to_the_cap_then_recover() {
    let mut s = Scheduler::new(
        ScheduleConfig {
            retry_base_ms: 1_000,
            retry_max_ms: 5_000,
            ..cfg()
        },
        0,
    );
    s.handle(0, Input::Request(Mode::Light));
    s.handle(100, Input::Timer);
    drain(&mut s);
    let mut t = 100;
    let mut delays = vec![];
    for _ in 0..5 {
        s.handle(t, Input::RunFailed);
        let out = drain(&mut s);
        let Some(Output::ArmTimer(at)) = out.first().copied() else {
            panic!("no retry armed after a failure: {out:?}");
        };
        delays.push(at - t);
        // A timer firing early starts nothing.
        s.handle(at - 1, Input::Timer);
        assert!(!drain(&mut s)
            .iter()
            .any(|o| matches!(o, Output::StartRun { .. })));
        t = at;
        s.handle(t, Input::Timer);
        assert_eq!(drain(&mut s), vec![start(Mode::Light)]);
    }
    assert_eq!(delays, vec![1_000, 2_000, 4_000, 5_000, 5_000]);
    assert_eq!(s.stats().failures_in_row, 5);
    s.handle(t + 10, Input::RunEnded { done: true });
    assert_eq!(s.stats().failures_in_row, 0);
    assert_eq!(s.stats().failures, 5);
    assert_eq!(s.phase(), Phase::Idle);
}

#[test]
fn a_run_that_could_not_delete_some_items_is_retried_a_few_times_then_waits_for_the_period() {
    let mut s = Scheduler::new(
        ScheduleConfig {
            retry_base_ms: 1_000,
            retry_max_ms: 5_000,
            period_ms: 60_000,
            ..cfg()
        },
        0,
    );
    drain(&mut s);
    s.handle(0, Input::Request(Mode::Full));
    s.handle(100, Input::Timer);
    drain(&mut s);
    let mut t = 100;
    for retry in 0..ITEM_RETRIES {
        s.handle(t, Input::RunEndedWithErrors);
        let out = drain(&mut s);
        assert_eq!(
            out,
            vec![Output::ArmTimer(t + (1_000 << retry))],
            "retry {retry}"
        );
        t += 1_000 << retry;
        s.handle(t, Input::Timer);
        assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
    }
    // Failed once more: counted failed, and left for the period.
    s.handle(t, Input::RunEndedWithErrors);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(t + 60_000)]);
    let st = s.stats();
    assert_eq!((st.runs, st.failures, st.failures_in_row), (0, 4, 4));
    assert_eq!(s.phase(), Phase::Idle);
    // The period's run fails again: no retry.
    s.handle(t + 60_000, Input::Timer);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
    s.handle(t + 60_100, Input::RunEndedWithErrors);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(t + 120_100)]);
    assert_eq!(s.stats().failures_in_row, 5);
    // One that deletes everything ends the row.
    s.handle(t + 120_100, Input::Timer);
    drain(&mut s);
    s.handle(t + 120_200, Input::RunEnded { done: true });
    assert_eq!((s.stats().runs, s.stats().failures_in_row), (1, 0));
}

#[test]
fn the_lock_is_taken_before_each_run_and_a_denied_request_is_retried() {
    let mut s = Scheduler::new(
        ScheduleConfig {
            use_lock: true,
            lock_retry_ms: 2_000,
            period_ms: 60_000,
            ..cfg()
        },
        0,
    );
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(60_000)]);
    s.handle(0, Input::Request(Mode::Light));
    s.handle(100, Input::Timer);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(100), Output::TakeLock]);
    assert_eq!(s.phase(), Phase::Locking);
    s.handle(110, Input::LockDenied);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(2_110)]);
    assert_eq!(s.stats().skipped, 1);
    s.handle(2_110, Input::Timer);
    assert_eq!(drain(&mut s), vec![Output::TakeLock]);
    s.handle(2_111, Input::LockTaken);
    assert_eq!(drain(&mut s), vec![start(Mode::Light)]);
    // A late second answer changes nothing.
    s.handle(2_112, Input::LockDenied);
    assert_eq!(s.phase(), Phase::Running);
}

#[test]
fn a_run_that_finds_the_lease_held_is_skipped_and_retried_not_rerun_at_once() {
    let mut s = Scheduler::new(
        ScheduleConfig {
            lock_retry_ms: 2_000,
            ..cfg()
        },
        0,
    );
    drain(&mut s);
    s.handle(0, Input::Request(Mode::Full));
    s.handle(100, Input::Timer);
    assert_eq!(
        drain(&mut s),
        vec![Output::ArmTimer(100), start(Mode::Full)]
    );
    s.handle(120, Input::Leased);
    assert_eq!(s.phase(), Phase::Idle);
    assert_eq!(s.stats().skipped, 1);
    assert_eq!(s.stats().runs, 0);
    // Not at once (that would spin on the lease): after the lock's retry delay.
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(2_120)]);
    s.handle(2_120, Input::Timer);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
    // Outside a run it means nothing.
    s.handle(2_130, Input::RunEnded { done: true });
    s.handle(2_140, Input::Leased);
    assert_eq!(s.stats().skipped, 1);
}

#[test]
fn a_denied_periodic_run_waits_for_the_next_period() {
    let mut s = Scheduler::new(
        ScheduleConfig {
            use_lock: true,
            period_ms: 60_000,
            ..cfg()
        },
        0,
    );
    drain(&mut s);
    s.handle(60_000, Input::Timer);
    assert_eq!(drain(&mut s), vec![Output::TakeLock]);
    s.handle(60_005, Input::LockDenied);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(120_005)]);
}

#[test]
fn deletes_writes_and_pressure_request_runs() {
    let mut s = Scheduler::new(
        ScheduleConfig {
            auto_after_writes: 10,
            check_storage_ms: 60_000,
            ..cfg()
        },
        0,
    );
    s.handle(0, Input::Deleted);
    assert_eq!(s.pending(), Some(Mode::Light));
    s.handle(10, Input::Wrote(4));
    assert_eq!(
        drain(&mut s),
        vec![Output::ArmTimer(100), Output::CheckStorage]
    );
    s.handle(20, Input::Wrote(4));
    assert_eq!(s.pending(), Some(Mode::Light));
    // At most one storage check a minute.
    assert_eq!(drain(&mut s), vec![]);
    s.handle(30, Input::Wrote(2));
    assert_eq!(s.pending(), Some(Mode::Full));
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(130)]);
    s.handle(40, Input::Pressure);
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(40)]);
    s.handle(60_010, Input::Wrote(1));
    assert_eq!(drain(&mut s), vec![Output::CheckStorage]);
}

#[test]
fn without_after_delete_a_delete_requests_nothing() {
    let mut s = Scheduler::new(ScheduleConfig::manual(), 0);
    s.handle(0, Input::Deleted);
    s.handle(0, Input::Wrote(1_000));
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.pending(), None);
}

#[test]
fn run_on_start_runs_full_after_the_debounce() {
    let mut s = Scheduler::new(
        ScheduleConfig {
            run_on_start: true,
            ..cfg()
        },
        500,
    );
    assert_eq!(drain(&mut s), vec![Output::ArmTimer(600)]);
    s.handle(600, Input::Timer);
    assert_eq!(drain(&mut s), vec![start(Mode::Full)]);
}

#[test]
fn close_cancels_the_timer_and_starts_nothing_more() {
    let mut s = periodic(1_000, 0);
    s.handle(0, Input::Request(Mode::Full));
    drain(&mut s);
    s.handle(50, Input::Close);
    assert_eq!(drain(&mut s), vec![Output::CancelTimer]);
    s.handle(100, Input::Timer);
    s.handle(100, Input::Request(Mode::Full));
    s.handle(100, Input::Pressure);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.phase(), Phase::Closed);
}

#[test]
fn close_during_a_run_counts_its_end() {
    let mut s = Scheduler::new(cfg(), 0);
    s.handle(0, Input::Request(Mode::Full));
    s.handle(100, Input::Timer);
    drain(&mut s);
    s.handle(120, Input::Close);
    s.handle(150, Input::RunEnded { done: true });
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.stats().runs, 1);
}

// ---------------------------------------------------------------------------
// The reference model: a log of the requests not yet served, from which the
// next due time is recomputed each time.

#[derive(Clone, Copy, Debug)]
struct Item {
    at: Millis,
    mode: Mode,
    /// `None`: debounced; else due at this time.
    fixed: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum MState {
    Idle,
    Locking,
    Running,
    Closed,
}

struct Model {
    cfg: ScheduleConfig,
    log: Vec<Item>,
    reruns: Vec<Mode>,
    rerun_asked: Option<Mode>,
    state: MState,
    mode: Mode,
    periodic: bool,
    period_at: Option<Millis>,
    hold: Millis,
    in_row: u32,
    writes: u64,
    checked: Option<Millis>,
}

impl Model {
    fn new(cfg: ScheduleConfig, now: Millis) -> Model {
        let mut m = Model {
            cfg,
            log: vec![],
            reruns: vec![],
            rerun_asked: None,
            state: MState::Idle,
            mode: Mode::Light,
            periodic: false,
            period_at: (cfg.period_ms > 0).then_some(now + cfg.period_ms),
            hold: 0,
            in_row: 0,
            writes: 0,
            checked: None,
        };
        if cfg.run_on_start {
            m.ask(now, Mode::Full, None);
        }
        m
    }

    fn ask(&mut self, now: Millis, mode: Mode, fixed: Option<Millis>) {
        match self.state {
            MState::Idle => self.log.push(Item {
                at: now,
                mode,
                fixed,
            }),
            MState::Locking | MState::Running => self.reruns.push(mode),
            MState::Closed => {}
        }
    }

    fn due(&self) -> Option<Millis> {
        if self.state != MState::Idle {
            return None;
        }
        let first = self.log.iter().map(|i| i.at).min();
        let last_debounced = self
            .log
            .iter()
            .filter(|i| i.fixed.is_none())
            .map(|i| i.at)
            .max();
        let debounced = last_debounced
            .map(|last| (last + self.cfg.debounce_ms).min(first.unwrap() + self.cfg.max_wait_ms));
        let fixed = self.log.iter().filter_map(|i| i.fixed).min();
        [debounced, fixed, self.period_at]
            .into_iter()
            .flatten()
            .min()
            .map(|d| d.max(self.hold))
    }

    fn with_reruns(&mut self) -> (Mode, bool) {
        let had = !self.reruns.is_empty();
        self.rerun_asked = self.reruns.iter().copied().max();
        let mode = self.reruns.drain(..).fold(self.mode, Mode::max);
        (mode, had)
    }

    /// The outputs other than timer arming that `input` must produce.
    fn step(&mut self, now: Millis, input: Input) -> Vec<Output> {
        let mut out = vec![];
        if self.state == MState::Closed {
            return out;
        }
        match input {
            Input::Request(mode) => self.ask(now, mode, None),
            Input::Timer if self.due().is_some_and(|d| d <= now) => {
                let period_due = self.period_at.is_some_and(|p| p <= now);
                self.mode = if period_due {
                    Mode::Full
                } else {
                    self.log.iter().map(|i| i.mode).max().unwrap()
                };
                self.periodic = self.log.is_empty();
                self.log.clear();
                if period_due {
                    self.period_at = None;
                }
                if self.cfg.use_lock {
                    self.state = MState::Locking;
                    out.push(Output::TakeLock);
                } else {
                    self.state = MState::Running;
                    out.push(self.start());
                }
            }
            Input::LockTaken if self.state == MState::Locking => {
                self.state = MState::Running;
                out.push(self.start());
            }
            Input::LockDenied if self.state == MState::Locking => {
                self.state = MState::Idle;
                if self.period_at.is_none() && self.cfg.period_ms > 0 {
                    self.period_at = Some(now + self.cfg.period_ms);
                }
                let (mode, had) = self.with_reruns();
                if !self.periodic || had {
                    self.ask(now, mode, Some(now + self.cfg.lock_retry_ms));
                }
            }
            Input::RunEnded { done } if self.state == MState::Running => {
                self.state = MState::Idle;
                self.in_row = 0;
                self.hold = 0;
                let (mode, had) = self.with_reruns();
                if !done {
                    self.ask(now, mode, Some(now));
                } else {
                    if self.mode == Mode::Full || self.period_at.is_none() {
                        self.period_at =
                            (self.cfg.period_ms > 0).then_some(now + self.cfg.period_ms);
                    }
                    // The rerun is what was asked during the run, not the run's own mode.
                    if had {
                        let _ = mode;
                        let rerun = self.rerun_asked.unwrap();
                        self.ask(now, rerun, Some(now));
                    }
                }
            }
            Input::RunFailed if self.state == MState::Running => {
                self.state = MState::Idle;
                self.in_row += 1;
                let mut delay = self.cfg.retry_base_ms.max(1);
                for _ in 1..self.in_row {
                    delay = delay.saturating_mul(2);
                }
                self.hold = now + delay.min(self.cfg.retry_max_ms.max(1));
                let (mode, _) = self.with_reruns();
                self.ask(now, mode, Some(now));
            }
            Input::Wrote(n) => {
                self.writes += n;
                if self.cfg.auto_after_writes > 0 && self.writes >= self.cfg.auto_after_writes {
                    self.writes = 0;
                    self.ask(now, Mode::Full, None);
                }
                if self.cfg.check_storage_ms > 0
                    && self
                        .checked
                        .is_none_or(|c| now - c >= self.cfg.check_storage_ms)
                {
                    self.checked = Some(now);
                    out.push(Output::CheckStorage);
                }
            }
            Input::Deleted if self.cfg.after_delete => self.ask(now, Mode::Light, None),
            Input::Pressure => self.ask(now, Mode::Full, Some(now)),
            Input::Close => {
                self.state = MState::Closed;
                self.log.clear();
                self.reruns.clear();
                self.period_at = None;
            }
            _ => {}
        }
        out
    }

    fn start(&self) -> Output {
        Output::StartRun {
            mode: self.mode,
            budget_ms: (self.cfg.slice_ms > 0).then_some(self.cfg.slice_ms),
        }
    }
}

/// xorshift64*: a seeded stream of numbers, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn random_config(r: &mut Rng) -> ScheduleConfig {
    let debounce_ms = r.pick(&[0, 50, 1_000, 5_000]);
    ScheduleConfig {
        period_ms: r.pick(&[0, 60 * 60 * 1000, 6 * 60 * 60 * 1000]),
        debounce_ms,
        max_wait_ms: debounce_ms + r.pick(&[0, 500, 30_000]),
        run_on_start: r.below(2) == 0,
        auto_after_writes: r.pick(&[0, 5, 50]),
        after_delete: r.below(2) == 0,
        slice_ms: r.pick(&[0, 0, 200]),
        retry_base_ms: r.pick(&[100, 1_000]),
        retry_max_ms: r.pick(&[1_000, 60_000, 15 * 60 * 1000]),
        use_lock: r.below(2) == 0,
        lock_retry_ms: r.pick(&[0, 2_000]),
        check_storage_ms: r.pick(&[0, 60_000]),
    }
}

/// One day of random events against the scheduler and the model; returns
/// how many inputs were checked.
fn simulate_day(seed: u64) -> u64 {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let cfg = random_config(&mut r);
    let mut t: Millis = r.below(1_000_000);
    let end = t + DAY_MS;
    let mut s = Scheduler::new(cfg, t);
    let mut m = Model::new(cfg, t);
    let mut timer: Option<Millis> = None;
    for o in drain(&mut s) {
        let Output::ArmTimer(at) = o else {
            panic!("seed {seed}: {o:?} at start")
        };
        timer = Some(at);
    }
    assert_eq!(timer, m.due(), "seed {seed}: timer at start");
    // When the driver answers the lock or ends the run, and how.
    let mut answer: Option<(Millis, Input)> = None;
    let mut steps = 0;
    let mut healthy_after = end; // the store fails at random until then
    let mut closed = false;
    let quiet = seed % 2 == 1;

    let feed = |s: &mut Scheduler,
                m: &mut Model,
                timer: &mut Option<Millis>,
                answer: &mut Option<(Millis, Input)>,
                r: &mut Rng,
                now: Millis,
                input: Input,
                healthy: bool| {
        if input == Input::Timer {
            // A timer that fires is spent.
            *timer = None;
        }
        if std::env::var("SCHED_TRACE").is_ok() {
            eprintln!("{now}: {input:?} log={:?} reruns={:?}", m.log, m.reruns);
        }
        s.handle(now, input);
        let want = m.step(now, input);
        let mut got = vec![];
        for o in drain(s) {
            match o {
                Output::ArmTimer(at) => *timer = Some(at),
                Output::CancelTimer => *timer = None,
                other => got.push(other),
            }
        }
        if got != want {
            eprintln!("cfg {:?}", s.config());
        }
        assert_eq!(got, want, "seed {seed}: after {input:?} at {now}");
        assert_eq!(
            s.stats().next_at,
            m.due(),
            "seed {seed}: timer after {input:?} at {now}"
        );
        assert_eq!(*timer, s.stats().next_at, "seed {seed}: driver's timer");
        for o in &got {
            match o {
                Output::TakeLock => {
                    assert!(answer.is_none(), "seed {seed}: lock asked twice");
                    let ans = if r.below(3) == 0 {
                        Input::LockDenied
                    } else {
                        Input::LockTaken
                    };
                    *answer = Some((now + r.pick(&[0, 5, 20, 3_000]), ans));
                }
                Output::StartRun { .. } => {
                    assert!(
                        !matches!(answer, Some((_, Input::RunEnded { .. } | Input::RunFailed))),
                        "seed {seed}: two runs at once"
                    );
                    let ans = match r.below(10) {
                        0..=2 if !healthy => Input::RunFailed,
                        3 => Input::RunEnded { done: false },
                        _ => Input::RunEnded { done: true },
                    };
                    *answer = Some((now + r.below(10_000), ans));
                }
                _ => {}
            }
        }
    };

    loop {
        // The next outside event, unless the timer or an answer comes first.
        let gap = match r.below(if quiet { 5 } else { 4 }) {
            0 => r.below(100),
            1 => r.below(5_000),
            2 | 3 => r.below(600_000),
            // Hours without a request: the periodic run comes due.
            _ => r.below(8 * 60 * 60 * 1000),
        };
        let next = t + gap;
        let healthy = t >= healthy_after;
        let due_answer = answer.filter(|(at, _)| *at <= next);
        let due_timer = timer.filter(|at| *at <= next);
        match (due_answer, due_timer) {
            (Some((at, input)), tm) if tm.is_none_or(|tt| at <= tt) => {
                t = t.max(at);
                answer = None;
                feed(
                    &mut s,
                    &mut m,
                    &mut timer,
                    &mut answer,
                    &mut r,
                    t,
                    input,
                    healthy,
                );
            }
            (_, Some(at)) => {
                // Timers fire on time or a little late.
                t = t.max(at) + r.pick(&[0, 0, 0, 3]);
                feed(
                    &mut s,
                    &mut m,
                    &mut timer,
                    &mut answer,
                    &mut r,
                    t,
                    Input::Timer,
                    healthy,
                );
            }
            _ => {
                t = next;
                if t >= end {
                    break;
                }
                let input = match r.below(12) {
                    0..=3 => Input::Request(if r.below(2) == 0 {
                        Mode::Light
                    } else {
                        Mode::Full
                    }),
                    4 | 5 => Input::Wrote(1 + r.below(10)),
                    6 => Input::Deleted,
                    7 => Input::Pressure,
                    // A spurious timer changes nothing.
                    8 => Input::Timer,
                    9 if !closed && r.below(200) == 0 => {
                        closed = true;
                        Input::Close
                    }
                    _ => Input::Request(Mode::Light),
                };
                feed(
                    &mut s,
                    &mut m,
                    &mut timer,
                    &mut answer,
                    &mut r,
                    t,
                    input,
                    healthy,
                );
            }
        }
        steps += 1;
        if steps == 2_000 {
            // From here on the store heals.
            healthy_after = t;
        }
    }

    // After the day, with no new requests and a healthy store, everything
    // waiting is served and the scheduler comes to rest (or waits for its period).
    healthy_after = 0;
    let _ = healthy_after;
    for _ in 0..10_000 {
        if s.pending().is_none() && answer.is_none() && s.phase() != Phase::Locking {
            break;
        }
        let next_timer = timer.unwrap_or(Millis::MAX);
        let next_answer = answer.map_or(Millis::MAX, |(at, _)| at);
        if next_answer <= next_timer {
            let (at, input) = answer.take().unwrap();
            t = t.max(at);
            feed(
                &mut s,
                &mut m,
                &mut timer,
                &mut answer,
                &mut r,
                t,
                input,
                true,
            );
        } else {
            t = t.max(next_timer);
            feed(
                &mut s,
                &mut m,
                &mut timer,
                &mut answer,
                &mut r,
                t,
                Input::Timer,
                true,
            );
        }
        steps += 1;
    }
    assert_eq!(s.pending(), None, "seed {seed}: requests left unserved");
    if !closed {
        assert!(
            s.phase() == Phase::Idle,
            "seed {seed}: stuck in {:?}",
            s.phase()
        );
        assert_eq!(
            s.stats().next_at.is_some(),
            cfg.period_ms > 0,
            "seed {seed}"
        );
    }
    steps
}

#[test]
fn a_day_of_random_events_matches_the_reference_model() {
    let seeds: u64 = std::env::var("SCHED_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let started = std::time::Instant::now();
    let steps: u64 = (0..seeds).map(simulate_day).sum();
    eprintln!(
        "scheduler: {seeds} simulated days, {steps} inputs checked in {:?}",
        started.elapsed()
    );
    assert!(steps > seeds * 100);
}
