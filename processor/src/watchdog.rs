//! A watchdog over librdkafka's blocking transactional calls.
//!
//! `send_offsets_to_transaction` can block forever, past its own timeout, when the group
//! coordinator's broker dies: librdkafka's coordinator request waits for a broker state change
//! that may never come (confluentinc/librdkafka#5456 and #5511, open). The failover test
//! caught the processor in that call for minutes, the rest of the pipeline idle. The call
//! cannot be cancelled, and another thread cannot use the producer while it runs, so the
//! watchdog ends the process instead: exactly what a kill -9 does, which the processor is
//! built for. The supervisor (compose's `restart: unless-stopped`, systemd, Kubernetes)
//! starts it again; `init_transactions` under the same transactional id aborts what was open,
//! and the input resumes from the committed offsets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exit status of a processor the watchdog ended (EX_TEMPFAIL: start it again).
pub const STALLED_EXIT_CODE: i32 = 75;

/// What the watchdog does about a call blocked past its limit: the call's name, how long.
pub type OnStall = Box<dyn Fn(&'static str, Duration) + Send>;

pub struct Watchdog {
    /// Milliseconds from `epoch` at which the watched call began, plus one; 0 when idle.
    since: Arc<AtomicU64>,
    call: Arc<Mutex<&'static str>>,
    epoch: Instant,
}

impl Watchdog {
    /// Watches calls from a thread of its own, checking every `tick`; `on_stall` runs once
    /// for a call blocked longer than `limit`.
    pub fn start(limit: Duration, tick: Duration, on_stall: OnStall) -> Self {
        let since = Arc::new(AtomicU64::new(0));
        let call = Arc::new(Mutex::new(""));
        let epoch = Instant::now();
        let (watched, name) = (since.clone(), call.clone());
        std::thread::Builder::new()
            .name("txn-watchdog".into())
            .spawn(move || {
                let mut reported = 0;
                loop {
                    std::thread::sleep(tick);
                    let began = watched.load(Ordering::Acquire);
                    if began == 0 || began == reported {
                        continue;
                    }
                    let blocked = epoch
                        .elapsed()
                        .saturating_sub(Duration::from_millis(began - 1));
                    if blocked > limit {
                        reported = began;
                        on_stall(*name.lock().unwrap_or_else(|e| e.into_inner()), blocked);
                    }
                }
            })
            .expect("spawning the watchdog thread");
        Self { since, call, epoch }
    }

    /// The production watchdog: logs the stall and ends the process with
    /// [`STALLED_EXIT_CODE`].
    pub fn exiting(limit: Duration) -> Self {
        Self::start(
            limit,
            Duration::from_secs(1),
            Box::new(|call, blocked| {
                tracing::error!(
                    call,
                    blocked_seconds = blocked.as_secs(),
                    exit_code = STALLED_EXIT_CODE,
                    "a Kafka transaction call has not returned past its timeout (librdkafka#5456): \
                     exiting, so that a restart fences this transaction and resumes from the \
                     committed offsets"
                );
                std::process::exit(STALLED_EXIT_CODE);
            }),
        )
    }

    /// Runs `f`, a call that should return within its own timeout, under watch.
    pub fn watch<T>(&self, call: &'static str, f: impl FnOnce() -> T) -> T {
        *self.call.lock().unwrap_or_else(|e| e.into_inner()) = call;
        let began = self.epoch.elapsed().as_millis() as u64 + 1;
        self.since.store(began, Ordering::Release);
        let result = f();
        self.since.store(0, Ordering::Release);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_call_blocked_past_the_limit_is_reported_once_and_a_quick_one_never() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let dog = Watchdog::start(
            Duration::from_millis(200),
            Duration::from_millis(20),
            Box::new(move |call, blocked| {
                tx.lock().unwrap().send((call, blocked)).unwrap();
            }),
        );
        for _ in 0..5 {
            dog.watch("quick", || std::thread::sleep(Duration::from_millis(50)));
        }
        assert!(
            rx.try_recv().is_err(),
            "a call within its limit was reported"
        );
        dog.watch("send_offsets_to_transaction", || {
            std::thread::sleep(Duration::from_millis(600))
        });
        let (call, blocked) = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(call, "send_offsets_to_transaction");
        assert!(blocked > Duration::from_millis(200), "{blocked:?}");
        // Once per blocked call, however long it stays blocked.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }
}
