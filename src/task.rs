//! A background job that runs on its own thread every so often until stopped: the alert sender, the batch
//! folder watcher and the mapping folder watcher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Periodic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Periodic {
    /// Runs `round` now and then every `interval` after the last round ended.
    pub fn spawn(name: &str, interval: Duration, mut round: impl FnMut() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    round();
                    // Waits in short steps, so that `stop` does not wait out a long interval.
                    let mut waited = Duration::ZERO;
                    while waited < interval && !flag.load(Ordering::Relaxed) {
                        let step = (interval - waited).min(Duration::from_millis(50));
                        std::thread::sleep(step);
                        waited += step;
                    }
                }
            })
            .expect("a thread can be started");
        Periodic { stop, thread: Some(thread) }
    }

    /// Ends the task after the round in hand.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
