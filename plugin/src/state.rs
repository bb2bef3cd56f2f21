//! The session persisted in the host project: the clip and the mask, versioned.
//!
//! Saved as `{"version": 1, "clip": {..}, "mask": {..} | null, "view": {width, height, zoom},
//! "band": {plays, lookahead_steps}, "loop_bars": [first, count] | null}` (`view`, `band` and
//! `loop_bars` are optional when reading). Version 0 was a bare clip and is
//! migrated. Anything unreadable (corrupt text, another plugin's state, a newer version) loads as
//! the default session with a warning for the GUI and log; a readable clip with hostile values
//! goes through the same validation as every clip ([`Clip::sanitize`]) and loads repaired, with
//! the repairs in the warning.

use bandmate::music::{Clip, Mask, TrackRole};
use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::PluginState;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LockResult, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The key of the persisted field (see `#[persist]` in [`crate::params`]).
pub const SESSION_KEY: &str = "session";
/// The version this build writes.
pub const SESSION_VERSION: u64 = 1;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Session {
    pub clip: Clip,
    /// The cells the next job regenerates; `None` means the job's own default.
    pub mask: Option<Mask>,
    /// The editor window's size and zoom, kept with the project.
    pub view: EditorView,
    /// What the band player plays and its lookahead.
    pub band: BandSettings,
    /// The bars that loop (first, 0-based; count); `None`: the whole clip.
    pub loop_bars: Option<(u32, u32)>,
    /// Why the saved session could not be used, if it could not. Not saved.
    pub load_warning: Option<String>,
}

/// The editor window's logical size and its zoom factor (on top of the host's DPI scaling).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EditorView {
    pub width: f32,
    pub height: f32,
    pub zoom: f32,
}

impl Default for EditorView {
    fn default() -> Self {
        Self {
            width: 1100.0,
            height: 720.0,
            zoom: 1.0,
        }
    }
}

impl EditorView {
    /// Sizes and zoom inside sane limits (a damaged or foreign value must not open a
    /// zero-sized or screen-filling window).
    pub fn clamped(self) -> Self {
        let ok = |v: f32, lo: f32, hi: f32, default: f32| {
            if v.is_finite() {
                v.clamp(lo, hi)
            } else {
                default
            }
        };
        let d = Self::default();
        Self {
            width: ok(self.width, 480.0, 4000.0, d.width),
            height: ok(self.height, 320.0, 3000.0, d.height),
            zoom: ok(self.zoom, 0.5, 3.0, d.zoom),
        }
    }
}

/// The band player's choices, kept with the project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandSettings {
    /// The roles the model plays (the musician plays the others).
    pub plays: Vec<TrackRole>,
    /// 16ths before the next downbeat at which the played bar goes to the model (1–8).
    pub lookahead_steps: u32,
}

impl Default for BandSettings {
    fn default() -> Self {
        Self {
            plays: vec![TrackRole::Accompaniment],
            lookahead_steps: 1,
        }
    }
}

impl BandSettings {
    /// Lookahead inside 1–8 and each role once (damaged or foreign values must not reach the
    /// band thread).
    pub fn clamped(mut self) -> Self {
        self.lookahead_steps = self.lookahead_steps.clamp(1, 8);
        let mut seen = Vec::new();
        self.plays.retain(|r| {
            let new = !seen.contains(r);
            seen.push(*r);
            new
        });
        self
    }
}

#[derive(Serialize, Deserialize)]
struct SessionV1 {
    version: u64,
    clip: Clip,
    #[serde(default)]
    mask: Option<Mask>,
    #[serde(default)]
    view: Option<EditorView>,
    /// Read leniently: damaged band settings fall back to the defaults, keeping the clip.
    #[serde(default)]
    band: Option<Value>,
    /// Read leniently too: a damaged or out-of-clip range loops the whole clip.
    #[serde(default)]
    loop_bars: Option<Value>,
}

impl Session {
    pub fn new(clip: Clip) -> Self {
        Self {
            clip,
            mask: None,
            view: EditorView::default(),
            band: BandSettings::default(),
            loop_bars: None,
            load_warning: None,
        }
    }

    /// What the audio thread plays: the clip, or only its loop bars (from host beat 0 on).
    pub fn playback_clip(&self) -> std::borrow::Cow<'_, Clip> {
        match self.loop_bars {
            Some((first, count)) if count > 0 && first.saturating_add(count) <= self.clip.bars => {
                std::borrow::Cow::Owned(self.clip.window(first, count))
            }
            _ => std::borrow::Cow::Borrowed(&self.clip),
        }
    }

    fn rejected(warning: String) -> Self {
        Self {
            load_warning: Some(warning),
            ..Self::default()
        }
    }

    /// Read a saved session of any version; never fails (see the module doc).
    pub fn from_json_value(value: Value) -> Self {
        let version = value.get("version").and_then(Value::as_u64);
        let session = match version {
            Some(SESSION_VERSION) => match serde_json::from_value::<SessionV1>(value) {
                Ok(v1) => {
                    let bars = v1.clip.bars;
                    Self {
                        clip: v1.clip,
                        mask: v1.mask,
                        view: v1.view.unwrap_or_default().clamped(),
                        band: v1
                            .band
                            .and_then(|v| serde_json::from_value::<BandSettings>(v).ok())
                            .unwrap_or_default()
                            .clamped(),
                        loop_bars: v1
                            .loop_bars
                            .and_then(|v| serde_json::from_value::<(u32, u32)>(v).ok())
                            .filter(|&(first, count)| {
                                count > 0 && first.saturating_add(count) <= bars
                            }),
                        load_warning: None,
                    }
                }
                Err(e) => return Self::rejected(format!("saved Bandmate session is damaged: {e}")),
            },
            Some(v) if v > SESSION_VERSION => {
                return Self::rejected(format!(
                    "saved by a newer Bandmate (session version {v}, this build reads up to {SESSION_VERSION})"
                ));
            }
            _ if value.get("notes").is_some() => match serde_json::from_value::<Clip>(value) {
                Ok(clip) => Self::new(clip),
                Err(e) => return Self::rejected(format!("saved Bandmate clip is damaged: {e}")),
            },
            _ => {
                let why = value
                    .get("warning")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                return Self::rejected(
                    why.unwrap_or_else(|| "saved state is not a Bandmate session".into()),
                );
            }
        };
        session.repaired()
    }

    /// The session inside the limits every clip obeys ([`Clip::sanitize`]): hostile values are
    /// repaired or their notes dropped, a mask that does not fit the clip is dropped, and each
    /// repair is named in the load warning. Nothing else is lost.
    fn repaired(mut self) -> Self {
        let mut repairs = self.clip.sanitize();
        if let Some(mask) = &self.mask
            && mask.steps != self.clip.steps()
        {
            repairs.push(format!(
                "the mask covered {} steps, the clip {}; mask dropped",
                mask.steps,
                self.clip.steps()
            ));
            self.mask = None;
        }
        if self
            .loop_bars
            .is_some_and(|(first, count)| first.saturating_add(count) > self.clip.bars)
        {
            self.loop_bars = None;
        }
        if !repairs.is_empty() {
            self.load_warning = Some(format!(
                "saved Bandmate session repaired: {}",
                repairs.join("; ")
            ));
        }
        self
    }
}

impl Serialize for Session {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            version: u64,
            clip: &'a Clip,
            mask: &'a Option<Mask>,
            view: EditorView,
            band: &'a BandSettings,
            loop_bars: Option<(u32, u32)>,
        }
        Out {
            version: SESSION_VERSION,
            clip: &self.clip,
            mask: &self.mask,
            view: self.view,
            band: &self.band,
            loop_bars: self.loop_bars,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Session {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from_json_value(Value::deserialize(deserializer)?))
    }
}

/// The persisted session, with a hook that runs after every load: a state the host loads at any
/// time (also while the plugin is active, when no `activate` follows) reaches the audio thread
/// through it.
///
/// The clip's generation counts its changes: a load and every clip the controller writes bump
/// it while holding the write lock, so a reader under the read lock sees the clip and its
/// generation together.
#[derive(Default)]
pub struct SessionStore {
    session: RwLock<Session>,
    on_load: OnceLock<Box<dyn Fn() + Send + Sync>>,
    generation: AtomicU64,
}

impl SessionStore {
    /// The generation of the session's clip (see the type's doc).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A new clip was written through `_held` (the write guard, so that the clip and its
    /// generation change together): its generation.
    pub(crate) fn bump_generation(&self, _held: &RwLockWriteGuard<'_, Session>) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, Session>> {
        self.session.read()
    }

    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, Session>> {
        self.session.write()
    }

    /// Run `hook` after each load (set once, by the plugin).
    pub fn on_load(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_load.set(Box::new(hook));
    }
}

impl<'a> PersistentField<'a, Session> for SessionStore {
    fn set(&self, new_value: Session) {
        {
            let mut session = self.session.write().unwrap_or_else(PoisonError::into_inner);
            *session = new_value;
            self.bump_generation(&session);
        }
        if let Some(hook) = self.on_load.get() {
            hook();
        }
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&Session) -> R,
    {
        f(&self.session.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// For demos and the screenshot tool: `BANDMATE_OPEN=clip.mid` starts a new instance with that
/// clip instead of an empty one, and `BANDMATE_OPEN_MASK=3-4` with those bars masked. Errors
/// become the session's load warning (shown in the editor). Without the variables, nothing.
pub fn open_from_env(session: &SessionStore) {
    let Some(path) = std::env::var_os("BANDMATE_OPEN") else {
        return;
    };
    let mut session = session.write().unwrap_or_else(PoisonError::into_inner);
    match bandmate::midi::read_file(std::path::Path::new(&path)) {
        Ok(clip) => {
            let mask = std::env::var("BANDMATE_OPEN_MASK")
                .ok()
                .and_then(|bars| bandmate::music::parse_bar_range(&bars).ok())
                .map(|bars| Mask::bars(&clip, bars));
            *session = Session {
                mask,
                ..Session::new(clip)
            };
        }
        Err(e) => session.load_warning = Some(format!("BANDMATE_OPEN: {e}")),
    }
}

/// Called by the framework before a state loads: a missing or unparsable session field becomes
/// one that loads as the default session with a warning (instead of keeping whatever the
/// instance held before).
pub fn filter_state(state: &mut PluginState) {
    let warning = match state.fields.get(SESSION_KEY) {
        None => Some("the loaded state has no Bandmate session".to_string()),
        Some(text) => serde_json::from_str::<Value>(text)
            .err()
            .map(|e| format!("saved Bandmate session is not JSON: {e}")),
    };
    if let Some(warning) = warning {
        nice_plug::nice_warn!("{warning}; loading the default session");
        let replacement = serde_json::json!({ "warning": warning });
        state
            .fields
            .insert(SESSION_KEY.into(), replacement.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandmate::music::{Note, example_clip};
    use std::collections::BTreeMap;

    fn state_with(field: Option<&str>) -> PluginState {
        PluginState {
            version: "0.1.0".into(),
            params: BTreeMap::new(),
            fields: field
                .map(|f| BTreeMap::from([(SESSION_KEY.to_string(), f.to_string())]))
                .unwrap_or_default(),
        }
    }

    fn load(field: Option<&str>) -> Session {
        let mut state = state_with(field);
        filter_state(&mut state);
        serde_json::from_str(&state.fields[SESSION_KEY]).expect("a filtered field always parses")
    }

    #[test]
    fn a_session_round_trips_with_its_mask() {
        let clip = example_clip();
        let session = Session {
            mask: Some(Mask::bars(&clip, 1..=1)),
            band: BandSettings {
                plays: vec![TrackRole::Melody],
                lookahead_steps: 3,
            },
            loop_bars: Some((1, 1)),
            ..Session::new(clip)
        };
        let text = serde_json::to_string(&session).unwrap();
        assert!(text.starts_with("{\"version\":1,"));
        assert_eq!(load(Some(&text)), session);
        // A session saved before the band settings existed, and damaged band settings.
        let mut value: Value = serde_json::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("band");
        assert_eq!(load(Some(&value.to_string())).band, BandSettings::default());
        value["band"] = serde_json::json!({"plays": ["melody", "melody"], "lookahead_steps": 99});
        let band = load(Some(&value.to_string())).band;
        assert_eq!(
            (band.plays, band.lookahead_steps),
            (vec![TrackRole::Melody], 8)
        );
        value["band"] = serde_json::json!({"plays": ["kazoo"]});
        let loaded = load(Some(&value.to_string()));
        assert_eq!(
            (&loaded.clip, &loaded.band),
            (&session.clip, &BandSettings::default())
        );
        // A loop beyond the clip, or not a pair: the whole clip loops.
        for bad in [serde_json::json!([3, 9]), serde_json::json!("bars 2-3")] {
            value["loop_bars"] = bad;
            let loaded = load(Some(&value.to_string()));
            assert_eq!((loaded.loop_bars, &loaded.clip), (None, &session.clip));
        }
    }

    #[test]
    fn a_bare_clip_of_version_0_is_migrated() {
        let clip = example_clip();
        let text = serde_json::to_string(&clip).unwrap();
        assert_eq!(load(Some(&text)), Session::new(clip));
    }

    #[test]
    fn corrupt_foreign_newer_or_invalid_state_loads_defaults_with_a_warning() {
        let cases = [
            (None, "no Bandmate session"),
            (Some("{\"version\":1,\"clip\":{\"notes\":["), "not JSON"),
            (Some("[1,2,3]"), "not a Bandmate session"),
            (Some("{\"gain\":0.5}"), "not a Bandmate session"),
            (Some("{\"version\":9,\"clip\":{}}"), "newer Bandmate"),
            (Some("{\"version\":1,\"clip\":{\"notes\":7}}"), "damaged"),
        ];
        for (field, expected) in cases {
            let session = load(field);
            let warning = session.load_warning.clone().unwrap_or_default();
            assert!(warning.contains(expected), "{field:?}: warning {warning:?}");
            assert_eq!(session.clip, Clip::default());
            assert_eq!(session.mask, None);
        }
    }

    #[test]
    fn hostile_clip_values_load_repaired_keeping_every_valid_note() {
        let mut clip = example_clip();
        let valid = clip.notes.clone();
        clip.notes.push(Note::new(0, 60, 1, 100, 7));
        clip.notes.push(Note {
            start: 3,
            pitch: 200,
            length: u32::MAX,
            velocity: 0,
            track: 0,
        });
        let mut value = serde_json::to_value(Session {
            mask: Some(Mask::bars(&clip, 0..=0)),
            ..Session::new(clip)
        })
        .unwrap();
        // Before, denominator 0 passed the checks and divided by zero in `steps_per_bar` when
        // the host activated the plugin.
        value["clip"]["time_signature"]["denominator"] = 0.into();
        value["clip"]["tempo"] = (-5.0).into();
        let session = load(Some(&value.to_string()));
        let warning = session.load_warning.clone().unwrap();
        for expected in [
            "time signature 4/0",
            "tempo -5",
            "track the clip does not have",
            "pitch above 127",
        ] {
            assert!(warning.contains(expected), "{expected:?} in {warning:?}");
        }
        assert_eq!(session.clip.time_signature.denominator, 4);
        assert_eq!(session.clip.tempo, 120.0);
        assert_eq!(session.clip.notes, valid);
        assert_eq!(session.mask.map(|m| m.steps), Some(session.clip.steps()));
    }

    #[test]
    fn a_long_clip_the_importer_accepts_saves_and_reopens_whole() {
        // 5,000 bars: the importer takes up to 10,000, the loader used to refuse more than 4,096
        // and fell back to an empty session.
        let mut clip = Clip::new(5000);
        clip.notes = (0..5000)
            .map(|bar| Note::new(bar * 16, 60, 4, 100, 0))
            .collect();
        let session = Session::new(clip);
        let text = serde_json::to_string(&session).unwrap();
        let loaded = load(Some(&text));
        assert_eq!(loaded.load_warning, None);
        assert_eq!(loaded, session);
    }

    #[test]
    fn a_mask_that_does_not_fit_the_clip_is_dropped_alone() {
        let clip = example_clip();
        let session = Session {
            mask: Some(Mask::empty(clip.steps() + 16)),
            ..Session::new(clip.clone())
        };
        let loaded = load(Some(&serde_json::to_string(&session).unwrap()));
        assert_eq!((loaded.clip, loaded.mask), (clip, None));
        assert!(loaded.load_warning.unwrap().contains("mask dropped"));
    }
}
