//! The worker: one dedicated thread per plugin instance that runs the models.
//!
//! Jobs arrive over a crossbeam channel. A newer job cancels every older one (queued jobs are
//! skipped, a running one sees [`JobControl::cancelled`] turn true and its result is discarded).
//! Progress, results and errors go back over a second channel; a panic inside a job is caught and
//! reported as an error, so it never reaches the host.
//!
//! Models are [`Generator`]s: adding one means implementing the trait and listing it in
//! [`shared_generators`]; the first generator that can run a job's kind runs it.

use bandmate::music::{Clip, Key, Mask, TimeSignature};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::ops::RangeInclusive;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a job asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    /// Regenerate the masked cells of `clip`.
    Fill { clip: Clip, mask: Mask },
    /// Append `bars` bars to `clip`.
    Continue { clip: Clip, bars: u32 },
    /// Write accompaniment under the melody of `clip`.
    Harmonize { clip: Clip },
    /// Change the masked cells of `clip` by the settings' strength.
    Vary { clip: Clip, mask: Mask },
    /// A new clip of `bars` bars.
    Generate {
        bars: u32,
        time_signature: TimeSignature,
        tempo: f64,
    },
    /// A clip `amount` (0–1) of the way from `from` to `to`.
    Interpolate { from: Clip, to: Clip, amount: f32 },
    /// The band player's answer: the bar after `context`'s last bar.
    BandBar { context: Clip },
}

/// The kinds of [`Job`], for asking a generator what it can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Fill,
    Continue,
    Harmonize,
    Vary,
    Generate,
    Interpolate,
    BandBar,
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match self {
            Job::Fill { .. } => JobKind::Fill,
            Job::Continue { .. } => JobKind::Continue,
            Job::Harmonize { .. } => JobKind::Harmonize,
            Job::Vary { .. } => JobKind::Vary,
            Job::Generate { .. } => JobKind::Generate,
            Job::Interpolate { .. } => JobKind::Interpolate,
            Job::BandBar { .. } => JobKind::BandBar,
        }
    }
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Fill => "fill",
            JobKind::Continue => "continue",
            JobKind::Harmonize => "harmonize",
            JobKind::Vary => "vary",
            JobKind::Generate => "generate",
            JobKind::Interpolate => "interpolate",
            JobKind::BandBar => "band-player bar",
        }
    }
}

/// Sampling settings, taken from the parameters when the job is made.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSettings {
    /// Network evaluations per sample.
    pub steps: usize,
    pub density: f32,
    pub strength: f32,
    pub temperature: f32,
    /// How closely Fill and Continue follow the bars before the hole, 0 (fresh) to 1 (close to
    /// a copy); 0.5 is the model's calibration (see `models::echo_strength`).
    pub repeat: f32,
    /// Key lock: generated notes stay in this key.
    pub key: Option<Key>,
    /// Generated notes stay in these pitches.
    pub pitch_range: Option<RangeInclusive<u8>>,
    /// The generator to run, by name; empty or unknown: the first that can run the job.
    pub model: String,
    pub seed: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            steps: 25,
            density: 0.5,
            strength: 0.5,
            temperature: 1.0,
            repeat: 0.5,
            key: None,
            pitch_range: None,
            model: String::new(),
            seed: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct JobRequest {
    pub job: Job,
    pub settings: JobSettings,
}

/// Identifies a submitted job in reports.
pub type JobId = u64;

/// What the worker tells the GUI.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerReport {
    Started {
        id: JobId,
        kind: JobKind,
        generator: String,
    },
    /// Fraction done, 0–1.
    Progress {
        id: JobId,
        fraction: f32,
    },
    Done {
        id: JobId,
        clip: Clip,
        elapsed: Duration,
    },
    Failed {
        id: JobId,
        error: String,
    },
    /// Superseded by a newer job (or [`Worker::cancel`]) before it finished.
    Cancelled {
        id: JobId,
    },
}

/// A job's view of its worker: whether it should stop, and where to report progress.
#[derive(Clone)]
pub struct JobControl {
    id: JobId,
    latest: Arc<AtomicU64>,
    reports: Sender<WorkerReport>,
}

impl JobControl {
    /// True once a newer job was submitted or the job was cancelled; check between steps.
    pub fn cancelled(&self) -> bool {
        self.latest.load(Ordering::Acquire) != self.id
    }

    /// Report the fraction done (0–1).
    pub fn progress(&self, fraction: f32) {
        let _ = self.reports.send(WorkerReport::Progress {
            id: self.id,
            fraction: fraction.clamp(0.0, 1.0),
        });
    }
}

/// A model that can run some kinds of jobs.
pub trait Generator: Send + Sync {
    fn name(&self) -> &str;
    fn can_run(&self, kind: JobKind) -> bool;
    /// Run the job; return early (any result) when `control.cancelled()`.
    fn run(&self, request: &JobRequest, control: &JobControl) -> Result<Clip, String>;
}

/// The models an instance can run, in the order they are tried.
pub type GeneratorList = Arc<[Arc<dyn Generator>]>;

/// A thread of the instance whose owner waits a bounded time for it: the worker and the band
/// thread. Dropping the plugin happens on the host's main thread, which must not freeze while a
/// thread finishes a model load or a step that does not check for cancel.
pub(crate) struct OwnedThread {
    handle: Option<JoinHandle<()>>,
    /// Disconnects when the thread ends (its sender lives on the thread).
    ended: Receiver<()>,
}

/// How long an owner waits for its thread to end after telling it to stop (the worker and the
/// band thread in turn: a plugin drop stays under 50 ms).
pub(crate) const STOP_WAIT: Duration = Duration::from_millis(20);

impl OwnedThread {
    pub(crate) fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> std::io::Result<Self> {
        let (alive, ended) = crossbeam_channel::bounded::<()>(0);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _alive = alive;
                run()
            })?;
        Ok(Self {
            handle: Some(handle),
            ended,
        })
    }

    /// Wake the thread if it is parked (see [`std::thread::park_timeout`]).
    pub(crate) fn unpark(&self) {
        if let Some(handle) = &self.handle {
            handle.thread().unpark();
        }
    }

    /// Wait at most `wait` for the thread (already told to stop) to end: joined if it did, else
    /// left to end on its own. True if it ended.
    pub(crate) fn join_within(&mut self, wait: Duration) -> bool {
        let ended = matches!(
            self.ended.recv_timeout(wait),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        if let Some(handle) = self.handle.take()
            && ended
        {
            let _ = handle.join();
        }
        ended
    }
}

/// The handle the plugin keeps; dropping it cancels the job and lets the thread end.
pub struct Worker {
    jobs: Option<Sender<(JobId, JobRequest)>>,
    reports: Receiver<WorkerReport>,
    latest: Arc<AtomicU64>,
    next_id: JobId,
    thread: OwnedThread,
}

impl Worker {
    /// Start the thread. `generators` is usually [`shared_generators`]; it is resolved on the
    /// worker thread, so model loading never blocks the caller.
    pub fn spawn(
        generators: impl FnOnce() -> Arc<[Arc<dyn Generator>]> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (jobs, job_rx) = unbounded::<(JobId, JobRequest)>();
        let (report_tx, reports) = unbounded();
        let latest = Arc::new(AtomicU64::new(0));
        let thread_latest = latest.clone();
        let thread = OwnedThread::spawn("bandmate-worker", move || {
            run_jobs(generators, job_rx, report_tx, thread_latest)
        })?;
        Ok(Self {
            jobs: Some(jobs),
            reports,
            latest,
            next_id: 1,
            thread,
        })
    }

    /// Queue a job; every older job is cancelled.
    pub fn submit(&mut self, request: JobRequest) -> JobId {
        let id = self.next_id;
        self.next_id += 1;
        self.latest.store(id, Ordering::Release);
        if let Some(jobs) = &self.jobs {
            // The thread only ends when `jobs` is dropped, so the send cannot fail here.
            let _ = jobs.send((id, request));
        }
        id
    }

    /// Cancel whatever is queued or running.
    pub fn cancel(&mut self) {
        self.latest.store(self.next_id, Ordering::Release);
        self.next_id += 1;
    }

    /// The next report, if any (non-blocking).
    pub fn try_report(&self) -> Option<WorkerReport> {
        self.reports.try_recv().ok()
    }

    /// The report channel, for blocking or timed waits.
    pub fn reports(&self) -> &Receiver<WorkerReport> {
        &self.reports
    }

    /// Submit `request` and wait for its end, up to `timeout` for each report: the name of the
    /// generator that ran it (empty when none started) and its clip or error. Blocks the caller:
    /// for tests and tools that run one job at a time, never for the editor.
    pub fn run_to_end(&mut self, request: JobRequest, timeout: Duration) -> RunOutcome {
        let id = self.submit(request);
        let mut generator = String::new();
        let result = loop {
            match self.reports.recv_timeout(timeout) {
                Err(e) => break Err(format!("no report from the worker: {e}")),
                Ok(WorkerReport::Started {
                    generator: name, ..
                }) => generator = name,
                Ok(WorkerReport::Done { id: done, clip, .. }) if done == id => break Ok(clip),
                Ok(WorkerReport::Failed { id: failed, error }) if failed == id => break Err(error),
                Ok(WorkerReport::Cancelled { id: cancelled }) if cancelled == id => {
                    break Err("cancelled".into());
                }
                Ok(_) => {}
            }
        };
        RunOutcome { generator, result }
    }
}

/// How a job [`Worker::run_to_end`] waited for ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The generator that ran it (empty when none started).
    pub generator: String,
    pub result: Result<Clip, String>,
}

impl Drop for Worker {
    /// Cancels the job and waits at most [`STOP_WAIT`] for the thread: an idle thread or a job
    /// that checks for cancel ends in that time and is joined; one that does not (a model load)
    /// is left to end on its own (its result goes nowhere).
    fn drop(&mut self) {
        self.cancel();
        self.jobs = None;
        self.thread.join_within(STOP_WAIT);
    }
}

fn run_jobs(
    generators: impl FnOnce() -> Arc<[Arc<dyn Generator>]>,
    jobs: Receiver<(JobId, JobRequest)>,
    reports: Sender<WorkerReport>,
    latest: Arc<AtomicU64>,
) {
    let mut generators = Some(generators);
    let mut loaded: Option<Arc<[Arc<dyn Generator>]>> = None;
    // Why loading the models panicked, told with every job that then finds no model.
    let mut load_failure: Option<String> = None;
    while let Ok(mut next) = jobs.recv() {
        // Only the newest queued job runs.
        while let Ok(newer) = jobs.try_recv() {
            let _ = reports.send(WorkerReport::Cancelled { id: next.0 });
            next = newer;
        }
        let (id, request) = next;
        let control = JobControl {
            id,
            latest: latest.clone(),
            reports: reports.clone(),
        };
        if control.cancelled() {
            let _ = reports.send(WorkerReport::Cancelled { id });
            continue;
        }
        let available = match (&loaded, generators.take()) {
            (Some(list), _) => list.clone(),
            (None, Some(load)) => match catch_unwind(AssertUnwindSafe(load)) {
                Ok(list) => loaded.insert(list).clone(),
                Err(panic) => {
                    let error = format!("loading the models panicked: {}", panic_message(&*panic));
                    let _ = reports.send(WorkerReport::Failed {
                        id,
                        error: error.clone(),
                    });
                    load_failure = Some(error);
                    loaded = Some(Arc::from(Vec::new()));
                    continue;
                }
            },
            (None, None) => Arc::from(Vec::new()),
        };
        // The first job waited for the models to load: a drop or a newer job may have come.
        if control.cancelled() {
            let _ = reports.send(WorkerReport::Cancelled { id });
            continue;
        }
        let kind = request.job.kind();
        // The chosen model when it can run this kind of job, else the first that can.
        let chosen = available
            .iter()
            .find(|g| g.name() == request.settings.model && g.can_run(kind));
        let Some(generator) = chosen.or_else(|| available.iter().find(|g| g.can_run(kind))) else {
            let error = match &load_failure {
                Some(why) => format!("cannot {}: {why}", kind.name()),
                None => format!("no model in this build can {} yet", kind.name()),
            };
            let _ = reports.send(WorkerReport::Failed { id, error });
            continue;
        };
        let _ = reports.send(WorkerReport::Started {
            id,
            kind,
            generator: generator.name().to_string(),
        });
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| generator.run(&request, &control)));
        let report = match outcome {
            _ if control.cancelled() => WorkerReport::Cancelled { id },
            Ok(Ok(clip)) => WorkerReport::Done {
                id,
                clip,
                elapsed: started.elapsed(),
            },
            Ok(Err(error)) => WorkerReport::Failed { id, error },
            Err(panic) => WorkerReport::Failed {
                id,
                error: format!("{} panicked: {}", generator.name(), panic_message(&*panic)),
            },
        };
        let _ = reports.send(report);
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Models for the tests of the controller, the editor and the plugin.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Transposes a Fill or Vary job's clip up an octave once the test lets it through its gate
    /// (a send per job; a closed gate lets every job through), checking for cancel while it
    /// waits; panics on Harmonize, as a broken model would.
    pub struct Gated(pub Receiver<()>);

    impl Generator for Gated {
        fn name(&self) -> &str {
            "gated"
        }
        fn can_run(&self, kind: JobKind) -> bool {
            matches!(kind, JobKind::Fill | JobKind::Vary | JobKind::Harmonize)
        }
        fn run(&self, request: &JobRequest, control: &JobControl) -> Result<Clip, String> {
            let (Job::Fill { clip, .. } | Job::Vary { clip, .. } | Job::Harmonize { clip }) =
                &request.job
            else {
                return Err("unexpected job".into());
            };
            if request.job.kind() == JobKind::Harmonize {
                panic!("harmonizer exploded");
            }
            while !control.cancelled() {
                match self.0.recv_timeout(Duration::from_millis(1)) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    _ => return clip.transposed(12).ok_or_else(|| "out of range".into()),
                }
            }
            Err("cancelled".into())
        }
    }

    /// The generator list of one [`Gated`] model, and its gate.
    pub fn gated() -> (
        impl Fn() -> GeneratorList + Send + Sync + 'static,
        Sender<()>,
    ) {
        let (open, gate) = crossbeam_channel::unbounded();
        let list: GeneratorList = Arc::from(vec![Arc::new(Gated(gate)) as _]);
        (move || list.clone(), open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandmate::music::Note;
    use std::sync::atomic::AtomicUsize;

    /// Test double with observable behaviour: transposes the clip up an octave in `steps` steps,
    /// checking for cancellation between them, or panics on `Harmonize`.
    struct Transposer {
        steps: usize,
        step_time: Duration,
        runs: AtomicUsize,
    }

    impl Generator for Transposer {
        fn name(&self) -> &str {
            "transposer"
        }
        fn can_run(&self, kind: JobKind) -> bool {
            matches!(kind, JobKind::Vary | JobKind::Harmonize)
        }
        fn run(&self, request: &JobRequest, control: &JobControl) -> Result<Clip, String> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let (Job::Vary { clip, .. } | Job::Harmonize { clip }) = &request.job else {
                return Err("unexpected job".into());
            };
            if request.job.kind() == JobKind::Harmonize {
                panic!("harmonizer exploded");
            }
            for i in 0..self.steps {
                if control.cancelled() {
                    return Err("cancelled".into());
                }
                std::thread::sleep(self.step_time);
                control.progress((i + 1) as f32 / self.steps as f32);
            }
            clip.transposed(12).ok_or_else(|| "out of range".into())
        }
    }

    /// A generator named `.0` that runs every job with `.1`, ignoring cancel.
    struct AnyJob<F>(&'static str, F);

    impl<F: Fn(&JobRequest) -> Result<Clip, String> + Send + Sync> Generator for AnyJob<F> {
        fn name(&self) -> &str {
            self.0
        }
        fn can_run(&self, _: JobKind) -> bool {
            true
        }
        fn run(&self, request: &JobRequest, _: &JobControl) -> Result<Clip, String> {
            (self.1)(request)
        }
    }

    fn worker(steps: usize, step_ms: u64) -> (Worker, Arc<Transposer>) {
        let generator = Arc::new(Transposer {
            steps,
            step_time: Duration::from_millis(step_ms),
            runs: AtomicUsize::new(0),
        });
        let list: Arc<[Arc<dyn Generator>]> =
            Arc::from(vec![generator.clone() as Arc<dyn Generator>]);
        (Worker::spawn(move || list).unwrap(), generator)
    }

    fn vary(pitch: u8) -> JobRequest {
        let mut clip = Clip::new(1);
        clip.notes.push(Note::new(0, pitch, 4, 100, 0));
        let mask = Mask::all(clip.steps());
        JobRequest {
            job: Job::Vary { clip, mask },
            settings: JobSettings::default(),
        }
    }

    /// Reports until the job `id` ends.
    fn until_end(worker: &Worker, id: JobId) -> Vec<WorkerReport> {
        let mut out = Vec::new();
        loop {
            let r = worker
                .reports()
                .recv_timeout(Duration::from_secs(10))
                .expect("worker answers");
            let end = matches!(&r, WorkerReport::Done { id: i, .. } | WorkerReport::Failed { id: i, .. } | WorkerReport::Cancelled { id: i } if *i == id);
            out.push(r);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn a_job_reports_progress_and_its_result() {
        let (mut worker, _) = worker(4, 1);
        let id = worker.submit(vary(60));
        let reports = until_end(&worker, id);
        assert!(
            matches!(&reports[0], WorkerReport::Started { kind: JobKind::Vary, generator, .. } if generator == "transposer")
        );
        let progress: Vec<f32> = reports
            .iter()
            .filter_map(|r| match r {
                WorkerReport::Progress { fraction, .. } => Some(*fraction),
                _ => None,
            })
            .collect();
        assert_eq!(progress, vec![0.25, 0.5, 0.75, 1.0]);
        let WorkerReport::Done { clip, .. } = reports.last().unwrap() else {
            panic!("{reports:?}")
        };
        assert_eq!(clip.notes[0].pitch, 72);
    }

    #[test]
    fn a_newer_job_cancels_the_running_and_the_queued_ones() {
        let (mut worker, generator) = worker(200, 5);
        let first = worker.submit(vary(60));
        // Wait until the first job runs, then queue two more: only the last one runs.
        assert!(matches!(
            worker.reports().recv_timeout(Duration::from_secs(10)),
            Ok(WorkerReport::Started { .. })
        ));
        let second = worker.submit(vary(61));
        let third = worker.submit(JobRequest {
            job: Job::Vary {
                clip: Clip::new(1),
                mask: Mask::all(16),
            },
            settings: JobSettings::default(),
        });
        let reports = until_end(&worker, third);
        let ended: Vec<_> = reports
            .iter()
            .filter(|r| {
                !matches!(
                    r,
                    WorkerReport::Progress { .. } | WorkerReport::Started { .. }
                )
            })
            .cloned()
            .collect();
        assert_eq!(ended[0], WorkerReport::Cancelled { id: first });
        assert_eq!(ended[1], WorkerReport::Cancelled { id: second });
        assert!(
            matches!(&ended[2], WorkerReport::Done { id, clip, .. } if *id == third && clip.notes.is_empty())
        );
        assert_eq!(
            generator.runs.load(Ordering::SeqCst),
            2,
            "the second job never ran"
        );
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_worker_goes_on() {
        let (mut worker, _) = worker(1, 0);
        let clip = Clip::new(1);
        let id = worker.submit(JobRequest {
            job: Job::Harmonize { clip },
            settings: JobSettings::default(),
        });
        let reports = until_end(&worker, id);
        assert!(
            matches!(reports.last(), Some(WorkerReport::Failed { error, .. }) if error.contains("transposer panicked: harmonizer exploded")),
            "{reports:?}"
        );
        let id = worker.submit(vary(50));
        assert!(matches!(
            until_end(&worker, id).last(),
            Some(WorkerReport::Done { .. })
        ));
    }

    #[test]
    fn a_job_no_model_can_run_fails_with_its_name() {
        let (mut worker, _) = worker(1, 0);
        let id = worker.submit(JobRequest {
            job: Job::Continue {
                clip: Clip::new(1),
                bars: 2,
            },
            settings: JobSettings::default(),
        });
        assert_eq!(
            until_end(&worker, id),
            vec![WorkerReport::Failed {
                id,
                error: "no model in this build can continue yet".into()
            }]
        );
    }

    #[test]
    fn a_model_load_panic_is_told_with_every_later_job() {
        // Before, the jobs after the first said "no model in this build can vary yet".
        let mut worker =
            Worker::spawn(|| -> Arc<[Arc<dyn Generator>]> { panic!("weights missing") }).unwrap();
        for _ in 0..2 {
            let id = worker.submit(vary(60));
            match until_end(&worker, id).last() {
                Some(WorkerReport::Failed { error, .. }) => {
                    assert!(error.contains("weights missing"), "{error}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn dropping_a_worker_does_not_wait_for_a_job_that_ignores_cancel() {
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        // Blocks until the test opens the gate, never checking for cancel (a model load).
        let stuck = AnyJob("stuck", move |_: &JobRequest| {
            let _ = gate.recv();
            Err("let go".into())
        });
        let list: Arc<[Arc<dyn Generator>]> = Arc::from(vec![Arc::new(stuck) as _]);
        let mut worker = Worker::spawn(move || list).unwrap();
        worker.submit(vary(60));
        assert!(matches!(
            worker.reports().recv(),
            Ok(WorkerReport::Started { .. })
        ));
        // Before, the drop joined the thread: it returned only once the job did, and the host's
        // main thread froze meanwhile. The drop runs on a helper thread so that a regression
        // fails here instead of hanging the test.
        assert_drop_returns_at_once(worker);
        // The job was still waiting: the gate opens only now.
        open.send(()).expect("the job was still running");
    }

    /// Drops `worker` on a helper thread (so that a regression fails instead of hanging the
    /// test) and asserts that the drop returned within 200 ms (it waits [`STOP_WAIT`], 20 ms;
    /// the bound leaves room for a loaded machine).
    fn assert_drop_returns_at_once(worker: Worker) {
        let (dropped, returned) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let started = Instant::now();
            drop(worker);
            let _ = dropped.send(started.elapsed());
        });
        let took = returned
            .recv_timeout(Duration::from_secs(30))
            .expect("the drop returned while the job still ran");
        println!("drop took {took:?}");
        assert!(took < Duration::from_millis(200), "the drop took {took:?}");
    }

    #[test]
    fn dropping_a_worker_does_not_wait_for_the_first_model_load() {
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let (loading, load_started) = crossbeam_channel::bounded(1);
        let mut worker = Worker::spawn(move || -> Arc<[Arc<dyn Generator>]> {
            let _ = loading.send(());
            let _ = gate.recv();
            Arc::from(Vec::new())
        })
        .unwrap();
        let id = worker.submit(vary(60));
        load_started
            .recv_timeout(Duration::from_secs(10))
            .expect("the load started");
        let reports = worker.reports().clone();
        assert_drop_returns_at_once(worker);
        open.send(()).expect("the load was still running");
        // Once loaded, the dropped worker's job is not run.
        assert_eq!(
            reports.recv_timeout(Duration::from_secs(10)),
            Ok(WorkerReport::Cancelled { id })
        );
    }

    #[test]
    fn a_job_that_checks_for_cancel_ends_and_its_thread_is_joined_within_the_drop() {
        let (gated, _open) = testing::gated();
        let mut worker = Worker::spawn(gated).unwrap();
        worker.submit(vary(60));
        assert!(matches!(
            worker.reports().recv_timeout(Duration::from_secs(10)),
            Ok(WorkerReport::Started { .. })
        ));
        worker.cancel();
        worker.jobs = None;
        assert!(
            worker.thread.join_within(Duration::from_secs(10)),
            "the job saw the cancel and the thread ended"
        );
    }

    #[test]
    fn each_instance_has_its_own_thread_and_dropping_stops_it() {
        let (tell, told) = unbounded();
        // Answers with the clip and tells on which thread it ran.
        let thread_teller = AnyJob("thread teller", move |request: &JobRequest| {
            let _ = tell.send(std::thread::current().id());
            let Job::Vary { clip, .. } = &request.job else {
                return Err("unexpected job".into());
            };
            Ok(clip.clone())
        });
        let generator: Arc<dyn Generator> = Arc::new(thread_teller);
        let mut workers: Vec<_> = (0..16)
            .map(|_| {
                let list: Arc<[Arc<dyn Generator>]> = Arc::from(vec![generator.clone()]);
                Worker::spawn(move || list).unwrap()
            })
            .collect();
        for worker in &mut workers {
            let id = worker.submit(vary(60));
            assert!(matches!(
                until_end(worker, id).last(),
                Some(WorkerReport::Done { .. })
            ));
        }
        let threads: std::collections::HashSet<_> = told.try_iter().collect();
        assert_eq!(threads.len(), 16, "one thread per instance");
        assert!(!threads.contains(&std::thread::current().id()));
        // Each thread holds its generator list; after the drop every thread ends and lets go
        // of it (idle threads at once; the 30 s only guard against a hang on a loaded machine,
        // where a thread may not be joined within the drop's short wait).
        assert_eq!(Arc::strong_count(&generator), 17);
        drop(workers);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Arc::strong_count(&generator) > 1 {
            assert!(Instant::now() < deadline, "a worker thread did not end");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
