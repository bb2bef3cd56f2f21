//! The session persisted in the host project: the clip and the mask, versioned.
//!
//! Saved as `{"version": 1, "clip": {..}, "mask": {..} | null, "view": {width, height, zoom},
//! "band": {plays, lookahead_steps}, "loop_bars": [first, count] | null}` (`view`, `band` and
//! `loop_bars` are optional when reading). Version 0 was a bare clip and is
//! migrated. Anything unreadable (corrupt text, another plugin's state, a newer version, a clip
//! that breaks its invariants) loads as the default session with a warning for the GUI and log.

use bandmate::music::{Clip, Mask, TrackRole};
use nice_plug::prelude::PluginState;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

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
            Some((first, count)) if count > 0 && first + count <= self.clip.bars => {
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
        match session.invalid_reason() {
            Some(why) => Self::rejected(format!("saved Bandmate session is invalid: {why}")),
            None => session,
        }
    }

    /// What breaks the clip's invariants, if anything.
    fn invalid_reason(&self) -> Option<String> {
        let clip = &self.clip;
        if clip.tracks.is_empty() {
            return Some("the clip has no tracks".into());
        }
        if !(clip.tempo.is_finite() && clip.tempo > 0.0) {
            return Some(format!("tempo {} is not a positive number", clip.tempo));
        }
        if clip.bars == 0 || clip.bars > 4096 {
            return Some(format!("{} bars (1–4096 allowed)", clip.bars));
        }
        if let Some(n) = clip
            .notes
            .iter()
            .find(|n| n.track as usize >= clip.tracks.len())
        {
            return Some(format!(
                "a note refers to track {} of {}",
                n.track,
                clip.tracks.len()
            ));
        }
        if let Some(n) = clip
            .notes
            .iter()
            .find(|n| n.pitch > 127 || n.length == 0 || n.velocity == 0 || n.velocity > 127)
        {
            return Some(format!("note {n:?} is out of range"));
        }
        if let Some(mask) = &self.mask
            && mask.steps != clip.steps()
        {
            return Some(format!(
                "the mask covers {} steps, the clip {}",
                mask.steps,
                clip.steps()
            ));
        }
        None
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

/// For demos and the screenshot tool: `BANDMATE_OPEN=clip.mid` starts a new instance with that
/// clip instead of an empty one, and `BANDMATE_OPEN_MASK=3-4` with those bars masked. Errors
/// become the session's load warning (shown in the editor). Without the variables, nothing.
pub fn open_from_env(session: &std::sync::RwLock<Session>) {
    let Some(path) = std::env::var_os("BANDMATE_OPEN") else {
        return;
    };
    let mut session = session
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let mut bad_track = Clip::new(1);
        bad_track.notes.push(Note::new(0, 60, 1, 100, 7));
        let bad_track = serde_json::to_string(&Session::new(bad_track)).unwrap();
        let cases = [
            (None, "no Bandmate session"),
            (Some("{\"version\":1,\"clip\":{\"notes\":["), "not JSON"),
            (Some("[1,2,3]"), "not a Bandmate session"),
            (Some("{\"gain\":0.5}"), "not a Bandmate session"),
            (Some("{\"version\":9,\"clip\":{}}"), "newer Bandmate"),
            (Some("{\"version\":1,\"clip\":{\"notes\":7}}"), "damaged"),
            (Some(bad_track.as_str()), "refers to track 7"),
        ];
        for (field, expected) in cases {
            let session = load(field);
            let warning = session.load_warning.clone().unwrap_or_default();
            assert!(warning.contains(expected), "{field:?}: warning {warning:?}");
            assert_eq!(session.clip, Clip::default());
            assert_eq!(session.mask, None);
        }
    }
}
