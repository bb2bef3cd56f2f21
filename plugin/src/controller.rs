//! The non-audio side of an instance, as the editor drives it: edits the persisted session,
//! hands new clips to the audio thread and runs jobs on the instance's worker.

use crate::audition::AuditionSender;
use crate::band::{BandControls, role_bit};
use crate::clip_feed::ClipSender;
use crate::params::BandmateParams;
use crate::state::{BandSettings, EditorView, Session};
use crate::worker::{Job, JobId, JobRequest, JobSettings, Worker, WorkerReport, shared_generators};
use bandmate::music::{Clip, Mask};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLockReadGuard};

pub struct Controller {
    params: Arc<BandmateParams>,
    sender: Mutex<ClipSender>,
    /// Started on the first job, so that creating an instance stays cheap.
    worker: Mutex<Option<Worker>>,
    /// Shared with the band thread and the audio thread (lock-free).
    band_controls: Arc<BandControls>,
    /// Keyboard clicks to the audio thread (set by the plugin).
    audition: Mutex<Option<AuditionSender>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Controller {
    pub fn new(params: Arc<BandmateParams>, sender: ClipSender) -> Self {
        Self {
            params,
            sender: Mutex::new(sender),
            worker: Mutex::new(None),
            band_controls: Arc::new(BandControls::default()),
            audition: Mutex::new(None),
        }
    }

    /// Where [`Controller::audition`] sends its notes.
    pub fn connect_audition(&self, sender: AuditionSender) {
        *lock(&self.audition) = Some(sender);
    }

    /// Play `pitch` through the host for a moment (a click on the keyboard). `false` if there
    /// is no audio side or too many clicks are waiting.
    pub fn audition(&self, pitch: u8, velocity: u8) -> bool {
        lock(&self.audition)
            .as_mut()
            .is_some_and(|s| s.play(pitch, velocity))
    }

    /// The band player's controls, read by the band thread and the audio thread.
    pub fn band_controls(&self) -> &Arc<BandControls> {
        &self.band_controls
    }

    /// What the band player plays and its lookahead, as saved with the project.
    pub fn band_settings(&self) -> BandSettings {
        self.session().band.clone()
    }

    /// Change what the band player plays and its lookahead: saved with the project and used
    /// from the next bar on.
    pub fn set_band_settings(&self, settings: BandSettings) {
        self.session_mut().band = settings.clamped();
        self.apply_band_settings();
    }

    /// Hand the session's band settings to the band and audio threads (after a state load).
    pub fn apply_band_settings(&self) {
        let band = self.band_settings();
        let plays = band.plays.iter().fold(0, |m, &r| m | role_bit(r));
        self.band_controls.plays.store(plays, Ordering::Relaxed);
        self.band_controls
            .lookahead_steps
            .store(band.lookahead_steps, Ordering::Relaxed);
    }

    pub fn params(&self) -> &Arc<BandmateParams> {
        &self.params
    }

    /// The persisted session (clip, mask, load warning).
    pub fn session(&self) -> RwLockReadGuard<'_, Session> {
        self.params
            .session
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replace the clip: it is saved with the project and plays from the next block on. Every
    /// clip passes here (editor edits, recordings, job results) and goes through the same
    /// validation as a loaded one ([`Clip::sanitize`]); the repairs made are returned.
    pub fn set_clip(&self, mut clip: Clip) -> Vec<String> {
        let repairs = clip.sanitize();
        for repair in &repairs {
            nice_plug::nice_warn!("clip repaired: {repair}");
        }
        let mut session = self.session_mut();
        session.clip = clip;
        if session
            .loop_bars
            .is_some_and(|(first, count)| first.saturating_add(count) > session.clip.bars)
        {
            session.loop_bars = None;
        }
        lock(&self.sender).send(&session.playback_clip());
        repairs
    }

    /// Loop only bars `first..first + count` (0-based) while the host plays, or the whole clip
    /// (`None`, or a range outside the clip): saved with the project, heard from the next block.
    pub fn set_loop(&self, loop_bars: Option<(u32, u32)>) {
        let mut session = self.session_mut();
        session.loop_bars = loop_bars.filter(|&(first, count)| {
            count > 0 && first.saturating_add(count) <= session.clip.bars
        });
        lock(&self.sender).send(&session.playback_clip());
    }

    /// A saved session was just loaded (the host's state, at any time, also while playing): its
    /// clip plays from the next block on and its band settings apply. Older clips still waiting
    /// for the audio thread are dropped.
    pub fn session_loaded(&self) {
        self.apply_band_settings();
        let session = self.session();
        let mut sender = lock(&self.sender);
        sender.discard_pending();
        sender.send(&session.playback_clip());
    }

    /// Forget clips still waiting for the audio thread (the session is about to be reloaded).
    pub(crate) fn discard_pending(&self) {
        lock(&self.sender).discard_pending();
    }

    /// The sampling settings as the parameters stand (the editor's widgets write them there).
    pub fn settings(&self) -> JobSettings {
        let p = &self.params;
        JobSettings {
            steps: p.steps.value().max(1) as usize,
            density: p.density.value(),
            strength: p.strength.value(),
            temperature: p.temperature.value(),
            repeat: p.repeat.value(),
            key: p.key(),
            pitch_range: p.pitch_range(),
            model: p.model_name(),
            seed: p.seed.value().max(0) as u64,
        }
    }

    /// Start `job` on this instance's worker, cancelling any older one.
    pub fn submit(&self, job: Job) -> Result<JobId, String> {
        self.submit_with(job, self.settings())
    }

    /// [`Controller::submit`] with the editor's own sampling settings.
    pub fn submit_with(&self, job: Job, settings: JobSettings) -> Result<JobId, String> {
        let request = JobRequest { job, settings };
        let mut worker = lock(&self.worker);
        if worker.is_none() {
            let spawned = Worker::spawn(shared_generators)
                .map_err(|e| format!("could not start the worker thread: {e}"))?;
            *worker = Some(spawned);
        }
        Ok(worker
            .as_mut()
            .map(|w| w.submit(request))
            .unwrap_or_default())
    }

    /// Stop the running job (its result is discarded).
    pub fn cancel(&self) {
        if let Some(worker) = lock(&self.worker).as_mut() {
            worker.cancel();
        }
    }

    /// Save the editor's mask with the project.
    pub fn set_mask(&self, mask: Option<Mask>) {
        self.session_mut().mask = mask;
    }

    /// Save the editor window's size and zoom with the project.
    pub fn set_view(&self, view: EditorView) {
        self.session_mut().view = view.clamped();
    }

    fn session_mut(&self) -> std::sync::RwLockWriteGuard<'_, Session> {
        self.params
            .session
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports since the last call; a finished job's clip becomes the session's clip. Also
    /// retries a clip that found the ring to the audio thread full. Call it from the GUI loop.
    pub fn poll(&self) -> Vec<WorkerReport> {
        lock(&self.sender).flush();
        let reports: Vec<_> = {
            let worker = lock(&self.worker);
            let Some(worker) = worker.as_ref() else {
                return Vec::new();
            };
            std::iter::from_fn(|| worker.try_report()).collect()
        };
        for report in &reports {
            if let WorkerReport::Done { clip, .. } = report {
                self.set_clip(clip.clone());
            }
        }
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip_feed::clip_feed;
    use crate::player::{Player, PlayerClip};
    use bandmate::music::{Mask, example_clip};
    use std::time::{Duration, Instant};

    #[test]
    fn a_new_clip_is_saved_and_reaches_the_player() {
        let (sender, mut receiver) = clip_feed();
        let controller = Controller::new(Arc::new(BandmateParams::default()), sender);
        let clip = example_clip();
        controller.set_clip(clip.clone());
        assert_eq!(controller.session().clip, clip);
        let mut player = Player::new();
        assert_eq!(receiver.receive(&mut player), 1);
        assert_eq!(player.clip().notes().len(), clip.notes.len());
        // Looping bars 2–3: the player gets those two bars; a longer range is refused.
        controller.set_loop(Some((1, 2)));
        receiver.receive(&mut player);
        assert_eq!(player.clip().length_beats(), 8.0);
        assert_eq!(
            player.clip().notes().len(),
            PlayerClip::from_clip(&clip.window(1, 2)).notes().len()
        );
        assert_eq!(controller.session().loop_bars, Some((1, 2)));
        controller.set_loop(Some((3, clip.bars)));
        receiver.receive(&mut player);
        assert_eq!(controller.session().loop_bars, None);
        assert_eq!(player.clip().notes().len(), clip.notes.len());
    }

    #[test]
    fn a_fill_runs_the_roll_model_on_the_worker_and_becomes_the_clip() {
        let (sender, mut receiver) = clip_feed();
        let controller = Controller::new(Arc::new(BandmateParams::default()), sender);
        assert!(
            controller.poll().is_empty(),
            "no worker before the first job"
        );
        let clip = example_clip();
        controller.set_clip(clip.clone());
        let mask = Mask::bars(&clip, 1..=1);
        let id = controller
            .submit(Job::Fill {
                clip: clip.clone(),
                mask: mask.clone(),
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut reports = Vec::new();
        let result = loop {
            reports.extend(controller.poll());
            match reports.last() {
                Some(WorkerReport::Done { id: done, clip, .. }) if *done == id => {
                    break clip.clone();
                }
                Some(WorkerReport::Failed { error, .. }) => panic!("the fill failed: {error}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "no answer: {reports:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            matches!(&reports[0], WorkerReport::Started { generator, .. } if generator == "roll diffusion")
        );
        // Notes starting outside bar 2 are kept exactly; the result is the session's clip and
        // went to the audio thread.
        let outside = |c: &Clip| -> Vec<_> {
            c.notes
                .iter()
                .filter(|n| !(16..32).contains(&n.start))
                .copied()
                .collect::<Vec<_>>()
        };
        let (mut kept, mut before) = (outside(&result), outside(&clip));
        kept.sort();
        before.sort();
        assert_eq!(kept, before);
        assert_eq!(controller.session().clip, result);
        let mut player = Player::new();
        assert!(receiver.receive(&mut player) >= 1);
        assert_eq!(player.clip().notes().len(), result.notes.len());
    }
}
