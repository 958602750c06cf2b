//! One line about shader compilation, so a first run that spends ~40 s
//! building pipelines does not look hung. Quiet until building pipelines has
//! taken more than a second in total. On a terminal the line is updated in
//! place while pipelines are built and cleared when work is submitted; in a
//! log it is logged once, when the context goes away. (Drivers that compile
//! lazily, like lavapipe, spend part of the time later, at first use.)

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// Compile time below which nothing is printed.
const QUIET_FOR: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Totals {
    pipelines: usize,
    time: Duration,
    /// The in-place line, while it is on screen.
    shown: Option<indicatif::ProgressBar>,
}

pub(crate) struct CompileProgress {
    totals: Mutex<Totals>,
    terminal: bool,
}

impl CompileProgress {
    pub fn new() -> CompileProgress {
        CompileProgress {
            totals: Mutex::new(Totals::default()),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// After each pipeline build.
    pub fn built(&self, took: Duration) {
        let mut t = self.totals.lock().unwrap();
        t.pipelines += 1;
        t.time += took;
        if self.terminal && t.time > QUIET_FOR {
            let text = line(&t);
            let shown = t.shown.get_or_insert_with(|| {
                indicatif::ProgressBar::new_spinner()
                    .with_style(indicatif::ProgressStyle::with_template("{msg}").expect("a valid template"))
            });
            shown.set_message(text);
            shown.tick();
        }
    }

    /// Work is being submitted: compilation is over for now, clear the line.
    pub fn submitting(&self) {
        let mut t = self.totals.lock().unwrap();
        if let Some(shown) = t.shown.take() {
            shown.finish_and_clear();
        }
    }

    /// The context goes away: a log gets its one summary line.
    pub fn finish(&self) {
        self.submitting();
        let t = self.totals.lock().unwrap();
        if !self.terminal && t.time > QUIET_FOR {
            log::info!("{}", line(&t));
        }
    }
}

fn line(t: &Totals) -> String {
    format!(
        "compiling shaders: {} pipelines, {:.1} s",
        t.pipelines,
        t.time.as_secs_f64()
    )
}
