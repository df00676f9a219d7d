//! A progress line for the op commands: nothing for a command that ends within
//! [`QUIET_FOR`], then one spinner line on stderr naming the command, its stage and the
//! time so far, cleared when the command ends. Only on a terminal: indicatif draws nothing
//! where stderr is a pipe or a file, so scripts and the tests see exactly the output
//! they always did.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a command runs before its progress line appears.
pub const QUIET_FOR: Duration = Duration::from_secs(2);

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// A command's progress line, drawn by a thread of its own until [`Progress::finish`] or
/// the value is dropped.
pub struct Progress {
    stage: Arc<Mutex<String>>,
    /// Each stage's name and when it began, for [`StageTimes`].
    marks: Vec<(String, Instant)>,
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts timing `command` (in its first stage, `stage`); its line appears if it is
    /// still running after [`QUIET_FOR`].
    pub fn start(command: &str, stage: &str) -> Self {
        let stage = Arc::new(Mutex::new(stage.to_owned()));
        let (done, finished) = mpsc::channel::<()>();
        let shown = Arc::clone(&stage);
        let command = command.to_owned();
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("progress".to_owned())
            .spawn(move || {
                if finished.recv_timeout(QUIET_FOR) != Err(RecvTimeoutError::Timeout) {
                    return;
                }
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    .with_elapsed(started.elapsed());
                let style = ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_prefix(command);
                loop {
                    bar.set_message(shown.lock().unwrap_or_else(PoisonError::into_inner).clone());
                    bar.tick();
                    if finished.recv_timeout(TICK) != Err(RecvTimeoutError::Timeout) {
                        break;
                    }
                }
                bar.finish_and_clear();
            })
            .ok();
        let marks = vec![(shown_first(&stage), started)];
        Self { stage, marks, done: Some(done), thread }
    }

    /// Names the stage the command is in now.
    pub fn stage(&mut self, stage: &str) {
        stage.clone_into(&mut self.stage.lock().unwrap_or_else(PoisonError::into_inner));
        self.marks.push((stage.to_owned(), Instant::now()));
    }

    /// Clears the line (if shown) and waits for it to be gone, so that what the command
    /// prints next starts on a clean line; returns how long each stage took.
    pub fn finish(mut self) -> StageTimes {
        self.stop();
        let end = Instant::now();
        let ends = self.marks.iter().skip(1).map(|(_, at)| *at).chain([end]);
        StageTimes(
            self.marks
                .iter()
                .zip(ends)
                .map(|((name, began), ended)| (name.clone(), ended - *began))
                .collect(),
        )
    }

    fn stop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The first stage's name, as the line shows it.
fn shown_first(stage: &Mutex<String>) -> String {
    stage.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// How long each stage of a command took, in order.
#[derive(Clone, Debug, Default)]
pub struct StageTimes(pub Vec<(String, Duration)>);

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}
