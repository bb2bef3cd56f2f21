//! The non-audio side of an instance, as the editor drives it: edits the persisted session,
//! hands new clips to the audio thread and runs jobs on the instance's worker.
//!
//! The one writer of the session's clip: editor edits ([`Controller::edit_clip`]), recordings
//! ([`Controller::record`]), job results ([`Controller::poll`]) and imports
//! ([`Controller::set_clip`]) all land here, and with the host's state loads each bumps the
//! clip's generation ([`crate::state::SessionStore`]). A job remembers the generation of the
//! clip it was made from; its result replaces the clip only if nothing changed it meanwhile,
//! else it is offered as a version ([`JobReport::Offered`]). An editor edit made on an older
//! clip is merged into the newer one ([`merge_clips`]), so a note recorded or loaded in between
//! is kept.

use crate::audition::AuditionSender;
use crate::band::{BandControls, role_bit};
use crate::clip_feed::ClipSender;
use crate::models::shared_generators;
use crate::params::BandmateParams;
use crate::state::{BandSettings, EditorView, Session};
use crate::worker::{GeneratorList, Job, JobId, JobRequest, JobSettings, Worker, WorkerReport};
use bandmate::music::{Clip, Mask, Note};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// Where the worker gets its models (the shared ones, or a test's).
type Generators = Arc<dyn Fn() -> GeneratorList + Send + Sync>;

pub struct Controller {
    params: Arc<BandmateParams>,
    sender: Mutex<ClipSender>,
    /// Started on the first job, so that creating an instance stays cheap.
    worker: Mutex<Option<Worker>>,
    generators: Generators,
    /// The clip generation each running job was made from.
    job_bases: Mutex<HashMap<JobId, u64>>,
    /// Shared with the band thread and the audio thread (lock-free).
    band_controls: Arc<BandControls>,
    /// Keyboard clicks to the audio thread (set by the plugin).
    audition: Mutex<Option<AuditionSender>>,
}

/// What [`Controller::poll`] tells the editor.
#[derive(Clone, Debug, PartialEq)]
pub enum JobReport {
    /// Started, progress, failed or cancelled, as the worker said.
    Worker(WorkerReport),
    /// The result is now the session's clip (`clip`, as validated), at `generation`.
    Applied {
        id: JobId,
        clip: Clip,
        generation: u64,
        elapsed: Duration,
    },
    /// The result of a job made from an older clip (the clip changed while it ran: an edit, a
    /// recording, a state load): not written over the newer clip, offered as a version.
    Offered {
        id: JobId,
        clip: Clip,
        elapsed: Duration,
    },
}

/// How an editor edit landed ([`Controller::edit_clip`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EditOutcome {
    /// The session clip's generation now.
    pub generation: u64,
    /// The session's clip is exactly the edited clip (no merge with a newer clip, no repair);
    /// otherwise the editor should take the session's clip.
    pub exact: bool,
}

/// `ours` (an edit of `base`) applied onto `theirs` (a newer clip made from `base` elsewhere):
/// the notes `ours` removed from `base` are removed from `theirs`, the notes it added are added;
/// the tempo, meter, length and changes `ours` set win; tracks `ours` added come after those
/// `theirs` added (its notes on them follow). Tracks changed in other ways: `theirs`' stay.
pub fn merge_clips(base: &Clip, ours: &Clip, theirs: &Clip) -> Clip {
    let mut merged = theirs.clone();
    if ours.tempo != base.tempo {
        merged.tempo = ours.tempo;
    }
    if ours.time_signature != base.time_signature {
        merged.time_signature = ours.time_signature;
    }
    if ours.bars != base.bars {
        merged.bars = ours.bars;
    }
    if ours.tempo_changes != base.tempo_changes {
        merged.tempo_changes = ours.tempo_changes.clone();
    }
    if ours.meter_changes != base.meter_changes {
        merged.meter_changes = ours.meter_changes.clone();
    }
    // Tracks ours appended move up by the number theirs appended.
    let old = base.tracks.len();
    let mut shift = 0;
    if ours.tracks != base.tracks {
        if theirs.tracks == base.tracks {
            merged.tracks = ours.tracks.clone();
        } else if ours.tracks.starts_with(&base.tracks) && theirs.tracks.starts_with(&base.tracks) {
            shift = theirs.tracks.len() - old;
            merged.tracks.extend_from_slice(&ours.tracks[old..]);
        }
    }
    let mut delta: HashMap<Note, i64> = HashMap::new();
    for n in &ours.notes {
        *delta.entry(*n).or_default() += 1;
    }
    for n in &base.notes {
        *delta.entry(*n).or_default() -= 1;
    }
    merged.notes.retain(|n| match delta.get_mut(n) {
        Some(d) if *d < 0 => {
            *d += 1;
            false
        }
        _ => true,
    });
    for n in &ours.notes {
        if let Some(d) = delta.get_mut(n)
            && *d > 0
        {
            *d -= 1;
            let mut added = *n;
            if usize::from(added.track) >= old {
                added.track = added.track.saturating_add(shift as u16);
            }
            merged.notes.push(added);
        }
    }
    merged.sort_notes();
    merged
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
            generators: Arc::new(shared_generators),
            job_bases: Mutex::new(HashMap::new()),
            band_controls: Arc::new(BandControls::default()),
            audition: Mutex::new(None),
        }
    }

    /// Jobs run on `generators` instead of the shared models (tests inject models this way).
    pub fn with_generators(
        mut self,
        generators: impl Fn() -> GeneratorList + Send + Sync + 'static,
    ) -> Self {
        self.generators = Arc::new(generators);
        self
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

    /// The generation of the session's clip: bumped by every change (see the module doc).
    pub fn generation(&self) -> u64 {
        self.params.session.generation()
    }

    /// The session's clip and its generation, read together.
    pub fn clip_version(&self) -> (Clip, u64) {
        let session = self.session();
        (session.clip.clone(), self.generation())
    }

    /// The session's clip and its generation if the generation is no longer `generation`.
    pub fn clip_since(&self, generation: u64) -> Option<(Clip, u64)> {
        (self.generation() != generation).then(|| self.clip_version())
    }

    /// Replace the clip, whatever it is now (an import): it is saved with the project and plays
    /// from the next block on. Every clip goes through the same validation as a loaded one
    /// ([`Clip::sanitize`]); the repairs made are returned.
    pub fn set_clip(&self, clip: Clip) -> Vec<String> {
        let mut session = self.session_mut();
        self.commit(&mut session, clip).0
    }

    /// The editor's edit: `clip`, made from the session's clip `base` at generation
    /// `base_generation`. If the clip changed since (a recording, a result, a state load), the
    /// edit is merged into the newer clip ([`merge_clips`]) instead of replacing it.
    pub fn edit_clip(&self, base: &Clip, base_generation: u64, clip: Clip) -> EditOutcome {
        let mut session = self.session_mut();
        if self.generation() == base_generation {
            let wanted = clip.clone();
            let (repairs, generation) = self.commit(&mut session, clip);
            let exact = repairs.is_empty() && session.clip == wanted;
            return EditOutcome { generation, exact };
        }
        let merged = merge_clips(base, &clip, &session.clip);
        let (_, generation) = self.commit(&mut session, merged);
        EditOutcome {
            generation,
            exact: false,
        }
    }

    /// Add notes played while recording, `(start beat, end beat, pitch, velocity)`, to the clip
    /// as it is now (read and written under one lock, so no edit is lost in between): see
    /// [`crate::band::record_into`]. Returns how many were added.
    pub fn record(&self, notes: &[(f64, f64, u8, u8)]) -> usize {
        let mut session = self.session_mut();
        let mut clip = session.clip.clone();
        let added = crate::band::record_into(&mut clip, notes);
        if added > 0 {
            self.commit(&mut session, clip);
        }
        added
    }

    /// Write `clip` (validated) into the locked session, send it to the audio thread and bump
    /// the generation: the one place the session's clip changes (besides a state load).
    fn commit(
        &self,
        session: &mut RwLockWriteGuard<'_, Session>,
        mut clip: Clip,
    ) -> (Vec<String>, u64) {
        let repairs = clip.sanitize();
        for repair in &repairs {
            nice_plug::nice_warn!("clip repaired: {repair}");
        }
        session.clip = clip;
        if session
            .loop_bars
            .is_some_and(|(first, count)| first.saturating_add(count) > session.clip.bars)
        {
            session.loop_bars = None;
        }
        lock(&self.sender).send(&session.playback_clip());
        let generation = self.params.session.bump_generation(session);
        (repairs, generation)
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

    /// Start `job`, made from the session's clip as it is now, on this instance's worker,
    /// cancelling any older one.
    pub fn submit(&self, job: Job) -> Result<JobId, String> {
        self.submit_with(job, self.settings(), self.generation())
    }

    /// [`Controller::submit`] with the editor's own sampling settings, for a job made from the
    /// clip at `base_generation`.
    pub fn submit_with(
        &self,
        job: Job,
        settings: JobSettings,
        base_generation: u64,
    ) -> Result<JobId, String> {
        let request = JobRequest { job, settings };
        let mut worker = lock(&self.worker);
        if worker.is_none() {
            let generators = self.generators.clone();
            let spawned = Worker::spawn(move || generators())
                .map_err(|e| format!("could not start the worker thread: {e}"))?;
            *worker = Some(spawned);
        }
        let Some(worker) = worker.as_mut() else {
            return Err("no worker".into());
        };
        let id = worker.submit(request);
        lock(&self.job_bases).insert(id, base_generation);
        Ok(id)
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

    fn session_mut(&self) -> RwLockWriteGuard<'_, Session> {
        self.params
            .session
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports since the last call. A finished job's clip becomes the session's clip if the
    /// clip is still the one the job was made from ([`JobReport::Applied`]), else it is only
    /// offered ([`JobReport::Offered`]). Also retries a clip that found the ring to the audio
    /// thread full. Call it from the GUI loop.
    pub fn poll(&self) -> Vec<JobReport> {
        lock(&self.sender).flush();
        let reports: Vec<_> = {
            let worker = lock(&self.worker);
            let Some(worker) = worker.as_ref() else {
                return Vec::new();
            };
            std::iter::from_fn(|| worker.try_report()).collect()
        };
        reports
            .into_iter()
            .map(|report| match report {
                WorkerReport::Done { id, clip, elapsed } => {
                    let base = lock(&self.job_bases).remove(&id);
                    let mut session = self.session_mut();
                    if base == Some(self.generation()) {
                        let (_, generation) = self.commit(&mut session, clip);
                        JobReport::Applied {
                            id,
                            clip: session.clip.clone(),
                            generation,
                            elapsed,
                        }
                    } else {
                        JobReport::Offered { id, clip, elapsed }
                    }
                }
                WorkerReport::Failed { id, .. } | WorkerReport::Cancelled { id } => {
                    lock(&self.job_bases).remove(&id);
                    JobReport::Worker(report)
                }
                other => JobReport::Worker(other),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip_feed::clip_feed;
    use crate::player::{Player, PlayerClip};
    use crate::worker::testing;
    use bandmate::music::{Mask, Note, Track, TrackRole, example_clip};
    use nice_plug::params::persist::PersistentField;
    use std::time::{Duration, Instant};

    /// A controller whose jobs run on [`testing::Gated`], its gate, and the audio thread's end.
    fn gated_controller() -> (
        Controller,
        crossbeam_channel::Sender<()>,
        crate::clip_feed::ClipReceiver,
    ) {
        let (sender, receiver) = clip_feed();
        let (gated, open) = testing::gated();
        let controller =
            Controller::new(Arc::new(BandmateParams::default()), sender).with_generators(gated);
        (controller, open, receiver)
    }

    /// Polls until job `id` ends; returns its last report.
    fn until_end(controller: &Controller, id: JobId) -> JobReport {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for report in controller.poll() {
                match &report {
                    JobReport::Applied { id: i, .. } | JobReport::Offered { id: i, .. }
                        if *i == id =>
                    {
                        return report;
                    }
                    JobReport::Worker(
                        WorkerReport::Failed { id: i, .. } | WorkerReport::Cancelled { id: i },
                    ) if *i == id => return report,
                    _ => {}
                }
            }
            assert!(Instant::now() < deadline, "job {id} never ended");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Starts a Vary of the session's clip and waits until it runs.
    fn start_vary(controller: &Controller) -> JobId {
        let clip = controller.session().clip.clone();
        let mask = Mask::all(clip.steps());
        let id = controller.submit(Job::Vary { clip, mask }).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !controller
            .poll()
            .iter()
            .any(|r| matches!(r, JobReport::Worker(WorkerReport::Started { .. })))
        {
            assert!(Instant::now() < deadline, "the job never started");
            std::thread::sleep(Duration::from_millis(2));
        }
        id
    }

    #[test]
    fn every_change_of_the_clip_bumps_its_generation() {
        let (controller, open, _receiver) = gated_controller();
        let mut seen = vec![controller.generation()];
        controller.set_clip(example_clip());
        seen.push(controller.generation());
        assert_eq!(controller.record(&[(0.0, 1.0, 70, 90)]), 1);
        seen.push(controller.generation());
        // Nothing new recorded: no change.
        assert_eq!(controller.record(&[(0.0, 1.0, 70, 90)]), 0);
        assert_eq!(controller.generation(), seen[2]);
        let (clip, generation) = controller.clip_version();
        let mut edited = clip.clone();
        edited.notes.push(Note::new(1, 40, 1, 90, 0));
        assert!(controller.edit_clip(&clip, generation, edited).exact);
        seen.push(controller.generation());
        controller.params.session.set(Session::default());
        seen.push(controller.generation());
        let id = start_vary(&controller);
        open.send(()).unwrap();
        assert!(matches!(
            until_end(&controller, id),
            JobReport::Applied { generation, .. } if generation == controller.generation()
        ));
        seen.push(controller.generation());
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }

    #[test]
    fn a_result_made_before_a_recording_is_offered_and_the_recorded_note_stays() {
        let (controller, open, _receiver) = gated_controller();
        controller.set_clip(example_clip());
        let id = start_vary(&controller);
        // A note is recorded while the model runs; before, the result replaced the clip and
        // the note was gone.
        assert_eq!(controller.record(&[(2.0, 2.5, 99, 100)]), 1);
        let recorded = controller.session().clip.clone();
        open.send(()).unwrap();
        let JobReport::Offered { clip, .. } = until_end(&controller, id) else {
            panic!("the result was written over the recording");
        };
        assert_eq!(controller.session().clip, recorded);
        assert!(recorded.notes.iter().any(|n| n.pitch == 99));
        // The result is there to compare: the clip the job was given, an octave up.
        assert_eq!(clip, example_clip().transposed(12).unwrap());
    }

    #[test]
    fn a_result_made_before_a_state_load_is_offered_and_the_loaded_clip_stays() {
        let (controller, open, _receiver) = gated_controller();
        controller.set_clip(example_clip());
        let id = start_vary(&controller);
        // The host loads another project while the model runs (the editor may be closed).
        let mut loaded = Clip::new(2);
        loaded.notes.push(Note::new(0, 50, 4, 80, 0));
        controller.params.session.set(Session {
            clip: loaded.clone(),
            ..Session::default()
        });
        open.send(()).unwrap();
        assert!(matches!(
            until_end(&controller, id),
            JobReport::Offered { .. }
        ));
        assert_eq!(controller.session().clip, loaded);
        // With nothing in between, the next result is the clip.
        let id = start_vary(&controller);
        open.send(()).unwrap();
        assert!(matches!(
            until_end(&controller, id),
            JobReport::Applied { .. }
        ));
        assert_eq!(controller.session().clip, loaded.transposed(12).unwrap());
    }

    #[test]
    fn an_edit_made_on_an_older_clip_is_merged_into_the_newer_one() {
        let (controller, _open, _receiver) = gated_controller();
        controller.set_clip(example_clip());
        let (base, generation) = controller.clip_version();
        // The editor deletes the first note, adds one and adds a track; meanwhile a note is
        // recorded (onto a new "Recorded" track).
        let mut edited = base.clone();
        let deleted = edited.notes.remove(0);
        edited.notes.push(Note::new(3, 100, 2, 90, 0));
        let own = edited.add_track(Track::new("Mine", TrackRole::Melody, 5));
        edited.notes.push(Note::new(5, 101, 2, 90, own));
        assert_eq!(controller.record(&[(1.0, 1.5, 98, 100)]), 1);
        let outcome = controller.edit_clip(&base, generation, edited);
        assert!(!outcome.exact, "merged, not taken as it was");
        let clip = controller.session().clip.clone();
        assert_eq!(outcome.generation, controller.generation());
        let on = |pitch: u8| clip.notes.iter().find(|n| n.pitch == pitch).copied();
        let recorded = on(98).expect("the recorded note stays");
        assert_eq!(clip.tracks[recorded.track as usize].name, "Recorded");
        assert_eq!(
            on(100).map(|n| n.track),
            Some(0),
            "the edit's note is added"
        );
        let mine = on(101).expect("the note on the editor's new track");
        assert_eq!(clip.tracks[mine.track as usize].name, "Mine");
        assert!(
            !clip.notes.contains(&deleted),
            "the deleted note stays deleted"
        );
        assert_eq!(clip.notes.len(), base.notes.len() + 2);
    }

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
                Some(JobReport::Applied { id: done, clip, .. }) if *done == id => {
                    break clip.clone();
                }
                Some(JobReport::Worker(WorkerReport::Failed { error, .. })) => {
                    panic!("the fill failed: {error}")
                }
                _ => {}
            }
            assert!(Instant::now() < deadline, "no answer: {reports:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            matches!(&reports[0], JobReport::Worker(WorkerReport::Started { generator, .. }) if generator == "roll diffusion")
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
