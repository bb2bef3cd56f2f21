//! A minimal CLAP host around Bandmate's library (clack-host), shared by the host-level tests
//! (`tests/tests/plugin_host.rs`) and the process benchmark (`plugin/benches/process.rs`), which
//! include this file with `#[path]`. Each uses a part of it.
#![allow(dead_code)]

use bandmate::music::{Clip, Note, Track, TrackRole};
use clack_extensions::state::PluginState as StateExtension;
use clack_host::prelude::*;
use std::ffi::CString;
use std::path::Path;

pub const PLUGIN_ID: &[u8] = b"org.bandmate.bandmate";

pub struct Host;
pub struct Shared;

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

impl HostHandlers for Host {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// Load the CLAP library at `path`.
pub fn load_entry(path: &Path) -> PluginEntry {
    // SAFETY: the library is Bandmate's own CLAP build.
    unsafe { PluginEntry::load(path) }
        .unwrap_or_else(|e| panic!("loading {}: {e:?}", path.display()))
}

/// A new Bandmate instance, found through the factory's descriptors, as host `host_name`.
pub fn new_instance(entry: &PluginEntry, host_name: &str) -> PluginInstance<Host> {
    let host = HostInfo::new(host_name, "Bandmate", "https://example.org", "0.1.0").unwrap();
    let factory = entry.get_plugin_factory().expect("a plugin factory");
    let descriptor = factory
        .plugin_descriptors()
        .find(|d| d.id().is_some_and(|id| id.to_bytes() == PLUGIN_ID))
        .expect("Bandmate's descriptor");
    assert_eq!(descriptor.name().unwrap().to_bytes(), b"Bandmate");
    let id = CString::from(descriptor.id().unwrap());
    PluginInstance::<Host>::new(|_| Shared, |_| (), entry, &id, &host).expect("an instance")
}

/// nice-plug's CLAP state: the length (u64, little-endian) and the JSON of a `PluginState`
/// whose `session` field holds a Bandmate session with `clip`.
pub fn state_with_clip(clip: &Clip) -> Vec<u8> {
    let session = serde_json::json!({ "version": 1, "clip": clip, "mask": null });
    state_with_session_field(&session.to_string())
}

/// A state whose `session` field is `field` verbatim (for corrupt or foreign sessions).
pub fn state_with_session_field(field: &str) -> Vec<u8> {
    let json =
        serde_json::json!({ "version": "0.1.0", "params": {}, "fields": { "session": field } })
            .to_string()
            .into_bytes();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json);
    bytes
}

pub fn load_state(instance: &mut PluginInstance<Host>, bytes: &[u8]) -> Result<(), String> {
    let handle = instance.plugin_handle();
    let ext: StateExtension = handle.get_extension().expect("the state extension");
    ext.load(&handle, &mut &bytes[..])
        .map_err(|e| format!("{e}"))
}

pub fn save_state(instance: &mut PluginInstance<Host>) -> Vec<u8> {
    let handle = instance.plugin_handle();
    let ext: StateExtension = handle.get_extension().expect("the state extension");
    let mut out = Vec::new();
    ext.save(&handle, &mut out).expect("saving state");
    out
}

/// 100,000 notes over 16 bars: 128 pitches × 4 channels on 196 steps, 512 notes on each step,
/// overlapping (the host torture test's and the benchmark's dense clip).
pub fn dense_clip_100k() -> Clip {
    let mut clip = Clip::new(16);
    for channel in 1..4 {
        clip.add_track(Track::new(
            format!("T{channel}"),
            TrackRole::Accompaniment,
            channel,
        ));
    }
    for i in 0..100_000u32 {
        let step = (i / 512) % 196;
        clip.notes.push(Note::new(
            step,
            (i % 128) as u8,
            1 + i % 7,
            100,
            (i / 128 % 4) as u16,
        ));
    }
    clip
}
