//! What the plugin's three voices (the clip [`Player`](crate::player::Player), the
//! [`BandVoice`](crate::band::BandVoice) and the [`AuditionVoice`](crate::audition::AuditionVoice))
//! share on the audio thread: the table of the notes they have sounding ([`SoundingNotes`]), and
//! the transport timeline that tells a block carrying on from the previous one from a jump
//! ([`Timeline`], with [`sample_at`] for the sample of a beat).
//!
//! Everything is allocated in `new`; afterwards nothing allocates, locks or logs.

/// Keys a voice can sound: 16 channels × 128 pitches; a key is channel · 128 + pitch.
pub const KEYS: usize = 16 * 128;

/// Slack in samples when turning a beat into a sample index: CLAP reports beats in steps of
/// 2^-31, up to 1e-4 samples at 96 kHz and 30 BPM, so positions this close to a sample count as
/// on it.
pub const SAMPLE_EPSILON: f64 = 1e-3;

const NO_SLOT: u16 = u16::MAX;

/// The key of a note (channel clamped to 0–15, pitch to 0–127).
pub fn key_of(channel: u8, pitch: u8) -> u16 {
    channel.min(15) as u16 * 128 + pitch.min(127) as u16
}

/// The first sample at or after `beat` (never before `first_sample`, at most `last_sample`) in
/// a stretch of a block whose sample `first_sample` sits at `origin_beat`.
pub fn sample_at(
    beat: f64,
    origin_beat: f64,
    beats_per_sample: f64,
    first_sample: u32,
    last_sample: u32,
) -> u32 {
    let offset = ((beat - origin_beat) / beats_per_sample - SAMPLE_EPSILON).ceil();
    let sample = first_sample as f64 + offset.max(0.0);
    (sample as u32).min(last_sample)
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry<T> {
    key: u16,
    note: T,
}

/// The notes a voice has sounding: at most `N` at once, one per key, each with what the voice
/// needs to end it (`T`: its note-off beat, the samples it has left, ...). Starting and ending
/// notes writes their note-ons and note-offs into the voice's [`EventBuffer`].
///
/// Finding a key is O(1) (a slot per key); [`end`](Self::end) moves the newest entry into the
/// ended one's place, the scans ([`end_due`](Self::end_due), [`release_all`](Self::release_all),
/// [`end_oldest`](Self::end_oldest)) are O(`len`) and keep the order of the entries they keep.
/// When the table is full, [`start`](Self::start) refuses the note (no note-on goes out); a voice
/// that prefers to end its oldest note calls [`end_oldest`](Self::end_oldest) first. Keys beyond
/// [`KEYS`] are refused too. Nothing here panics.
pub struct SoundingNotes<T, const N: usize> {
    entries: Box<[Entry<T>]>,
    len: usize,
    /// For each key, its index in `entries`, or [`NO_SLOT`].
    slot_of_key: Box<[u16; KEYS]>,
}

impl<T: Copy + Default, const N: usize> Default for SoundingNotes<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default, const N: usize> SoundingNotes<T, N> {
    /// Allocates the table; call off the audio thread.
    pub fn new() -> Self {
        const { assert!(N <= KEYS, "a table holds one note per key at most") };
        Self {
            entries: vec![Entry::default(); N].into_boxed_slice(),
            len: 0,
            slot_of_key: Box::new([NO_SLOT; KEYS]),
        }
    }

    /// Notes sounding now.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len >= N
    }

    fn slot(&self, key: u16) -> Option<usize> {
        match self.slot_of_key.get(key as usize) {
            Some(&slot) if slot != NO_SLOT => Some(slot as usize),
            _ => None,
        }
    }

    /// The note sounding on `key`, if any.
    pub fn get(&self, key: u16) -> Option<T> {
        self.slot(key).map(|i| self.entries[i].note)
    }

    pub fn get_mut(&mut self, key: u16) -> Option<&mut T> {
        self.slot(key).map(|i| &mut self.entries[i].note)
    }

    /// A note-on of `key` at `timing`. A note still sounding on that key ends first (its note-off
    /// at the same `timing`). Returns `false`, sending nothing more, if the table is full or the
    /// key is not one of the [`KEYS`].
    pub fn start<const E: usize>(
        &mut self,
        key: u16,
        velocity: u8,
        timing: u32,
        note: T,
        events: &mut EventBuffer<E>,
    ) -> bool {
        if key as usize >= KEYS {
            return false;
        }
        self.end(key, timing, events);
        if self.is_full() {
            return false;
        }
        events.push_on(timing, key, velocity);
        self.slot_of_key[key as usize] = self.len as u16;
        self.entries[self.len] = Entry { key, note };
        self.len += 1;
        true
    }

    /// Ends the note sounding on `key` (a note-off at `timing`) and returns it; `None` if that
    /// key is silent.
    pub fn end<const E: usize>(
        &mut self,
        key: u16,
        timing: u32,
        events: &mut EventBuffer<E>,
    ) -> Option<T> {
        let index = self.slot(key)?;
        let note = self.entries[index].note;
        self.slot_of_key[key as usize] = NO_SLOT;
        let last = self.len - 1;
        if index != last {
            let moved = self.entries[last];
            self.entries[index] = moved;
            self.slot_of_key[moved.key as usize] = index as u16;
        }
        self.len = last;
        events.push_off(timing, key);
        Some(note)
    }

    /// Ends the first entry (the oldest, unless [`end`](Self::end) moved a newer one into its
    /// place) with a note-off at `timing`; returns its key, or `None` if nothing sounds.
    pub fn end_oldest<const E: usize>(
        &mut self,
        timing: u32,
        events: &mut EventBuffer<E>,
    ) -> Option<u16> {
        let key = self.entries[..self.len].first()?.key;
        self.retain(events, |index, _| (index == 0).then_some(timing));
        Some(key)
    }

    /// Asks `due` about every sounding note, in order: `Some(timing)` ends it with a note-off at
    /// `timing`, `None` keeps it (with whatever `due` changed in it).
    pub fn end_due<const E: usize>(
        &mut self,
        events: &mut EventBuffer<E>,
        mut due: impl FnMut(&mut T) -> Option<u32>,
    ) {
        self.retain(events, |_, note| due(note));
    }

    /// Note-offs at `timing` for every sounding note (newest first); returns how many ended.
    pub fn release_all<const E: usize>(
        &mut self,
        timing: u32,
        events: &mut EventBuffer<E>,
    ) -> usize {
        let ended = self.len;
        while self.len > 0 {
            self.len -= 1;
            let key = self.entries[self.len].key;
            self.slot_of_key[key as usize] = NO_SLOT;
            events.push_off(timing, key);
        }
        ended
    }

    /// Keeps the entries for which `end` says `None`, in order; the others get their note-off at
    /// the timing it gives.
    fn retain<const E: usize>(
        &mut self,
        events: &mut EventBuffer<E>,
        mut end: impl FnMut(usize, &mut T) -> Option<u32>,
    ) {
        let mut kept = 0;
        for i in 0..self.len {
            let mut entry = self.entries[i];
            match end(i, &mut entry.note) {
                Some(timing) => {
                    self.slot_of_key[entry.key as usize] = NO_SLOT;
                    events.push_off(timing, entry.key);
                }
                None => {
                    self.entries[kept] = entry;
                    if kept != i {
                        self.slot_of_key[entry.key as usize] = kept as u16;
                    }
                    kept += 1;
                }
            }
        }
        self.len = kept;
    }
}

/// Where a voice's previous block left off on the host timeline, to tell a block that carries on
/// from it from a jump (a seek, or a loop the voice was not told about).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeline {
    last: Option<LastBlock>,
}

#[derive(Clone, Copy, Debug)]
struct LastBlock {
    /// The beat scanned up to.
    scanned_to: f64,
    /// The beat the next block should start at.
    expected: f64,
    /// How far the next block's start may be from `expected` and still go on.
    drift: f64,
}

/// Where a block starts scanning, from [`Timeline::start`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockStart {
    /// Exclusive lower bound of the beats the block plays.
    pub from: f64,
    /// The block does not carry on from the previous one: whatever sounds belongs to another
    /// place in the song.
    pub jumped: bool,
}

impl Timeline {
    /// Where a block whose first sample sits at `beat` starts scanning: where the previous block
    /// stopped if this one carries on from it, else one sample before `beat`. It carries on when
    /// it starts no further from where the previous block said the next would than the larger of
    /// that block's `drift` and `slack`; `jumped` when there was a previous block and it does not.
    pub fn start(&self, beat: f64, beats_per_sample: f64, slack: f64) -> BlockStart {
        let fresh = beat - beats_per_sample;
        match self.last {
            Some(last) => {
                let tolerance = if slack > last.drift {
                    slack
                } else {
                    last.drift
                };
                if (beat - last.expected).abs() <= tolerance {
                    BlockStart {
                        from: last.scanned_to,
                        jumped: false,
                    }
                } else {
                    BlockStart {
                        from: fresh,
                        jumped: true,
                    }
                }
            }
            None => BlockStart {
                from: fresh,
                jumped: false,
            },
        }
    }

    /// The block scanned up to `scanned_to`; the next carries on from it if it starts one sample
    /// later, give or take `drift` beats.
    pub fn finish(&mut self, scanned_to: f64, beats_per_sample: f64, drift: f64) {
        self.last = Some(LastBlock {
            scanned_to,
            expected: scanned_to + beats_per_sample,
            drift,
        });
    }

    /// Forget the previous block (stopped, reset): the next block starts afresh, not as a jump.
    pub fn forget(&mut self) {
        self.last = None;
    }
}

/// A note-on or note-off at a sample offset inside the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoteMessage {
    pub timing: u32,
    /// `false` for note-off (sorts first at the same timing), `true` for note-on.
    pub on: bool,
    pub channel: u8,
    pub pitch: u8,
    /// MIDI velocity 1–127 for note-ons, 0 for note-offs.
    pub velocity: u8,
}

/// A block's outgoing note events in a fixed-capacity buffer (allocated once, off the audio
/// thread); events beyond the capacity are dropped.
pub struct EventBuffer<const N: usize> {
    events: Box<[NoteMessage; N]>,
    len: usize,
}

impl NoteMessage {
    /// A note-off at sample 0 of channel 0, pitch 0: what fills unused buffer entries.
    pub const EMPTY: NoteMessage = NoteMessage::of_key(0, false, 0, 0);

    /// The message for `key` (channel · 128 + pitch).
    pub const fn of_key(timing: u32, on: bool, key: u16, velocity: u8) -> Self {
        Self {
            timing,
            on,
            channel: (key / 128) as u8,
            pitch: (key % 128) as u8,
            velocity,
        }
    }
}

impl<const N: usize> Default for EventBuffer<N> {
    fn default() -> Self {
        Self {
            events: Box::new([NoteMessage::EMPTY; N]),
            len: 0,
        }
    }
}

impl<const N: usize> EventBuffer<N> {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, message: NoteMessage) {
        if self.len < N {
            self.events[self.len] = message;
            self.len += 1;
        }
    }

    /// A note-off for `key` (channel · 128 + pitch).
    pub fn push_off(&mut self, timing: u32, key: u16) {
        self.push(NoteMessage::of_key(timing, false, key, 0));
    }

    /// A note-on for `key` (channel · 128 + pitch).
    pub fn push_on(&mut self, timing: u32, key: u16, velocity: u8) {
        self.push(NoteMessage::of_key(timing, true, key, velocity));
    }

    pub fn as_slice(&self) -> &[NoteMessage] {
        &self.events[..self.len]
    }

    /// The events sorted by timing, note-offs before note-ons at the same sample.
    pub fn sorted(&mut self) -> &[NoteMessage] {
        let events = &mut self.events[..self.len];
        events.sort_unstable();
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Events = EventBuffer<64>;

    fn brief(events: &Events) -> Vec<(u32, bool, u8, u8)> {
        events
            .as_slice()
            .iter()
            .map(|m| (m.timing, m.on, m.channel, m.pitch))
            .collect()
    }

    #[test]
    fn a_key_started_again_while_it_sounds_ends_first_and_sounds_once() {
        let mut table = SoundingNotes::<f64, 8>::new();
        let mut events = Events::default();
        let key = key_of(2, 60);
        assert!(table.start(key, 100, 3, 1.0, &mut events));
        assert!(table.start(key, 90, 7, 2.0, &mut events));
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(key), Some(2.0));
        assert_eq!(
            brief(&events),
            vec![(3, true, 2, 60), (7, false, 2, 60), (7, true, 2, 60)]
        );
        assert_eq!(events.as_slice()[2].velocity, 90);
        assert_eq!(table.end(key, 9, &mut events), Some(2.0));
        assert_eq!(table.end(key, 9, &mut events), None);
        assert!(table.is_empty());
        assert_eq!(events.len(), 4);
    }

    #[test]
    fn release_all_ends_every_note_once_and_the_table_starts_over() {
        let mut table = SoundingNotes::<(), 8>::new();
        let mut events = Events::default();
        for pitch in 60..65 {
            table.start(key_of(0, pitch), 80, 0, (), &mut events);
        }
        events.clear();
        assert_eq!(table.release_all(5, &mut events), 5);
        let mut offs = brief(&events);
        offs.sort();
        assert_eq!(offs, (60..65).map(|p| (5, false, 0, p)).collect::<Vec<_>>());
        assert!(table.is_empty());
        assert_eq!(table.get(key_of(0, 60)), None);
        events.clear();
        assert_eq!(table.release_all(0, &mut events), 0);
        assert!(events.is_empty());
        assert!(table.start(key_of(0, 60), 80, 1, (), &mut events));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_full_table_refuses_new_keys_and_end_oldest_makes_room() {
        let mut table = SoundingNotes::<u8, 3>::new();
        let mut events = Events::default();
        for pitch in [60, 61, 62] {
            assert!(table.start(key_of(0, pitch), 80, 0, pitch, &mut events));
        }
        assert!(table.is_full());
        events.clear();
        // A new key: refused, nothing sent, the table unchanged.
        assert!(!table.start(key_of(0, 63), 80, 1, 63, &mut events));
        assert!(events.is_empty());
        assert_eq!(table.len(), 3);
        // A key that sounds: ended and started again, so it fits.
        assert!(table.start(key_of(0, 61), 80, 1, 61, &mut events));
        assert_eq!(brief(&events), vec![(1, false, 0, 61), (1, true, 0, 61)]);
        // The oldest (60) makes room, then the new key fits.
        events.clear();
        assert_eq!(table.end_oldest(2, &mut events), Some(key_of(0, 60)));
        assert!(table.start(key_of(0, 63), 80, 2, 63, &mut events));
        assert_eq!(brief(&events), vec![(2, false, 0, 60), (2, true, 0, 63)]);
        assert_eq!(table.get(key_of(0, 60)), None);
        for pitch in [61, 62, 63] {
            assert_eq!(table.get(key_of(0, pitch)), Some(pitch));
        }
    }

    #[test]
    fn end_due_ends_what_is_due_and_keeps_the_rest_in_order_with_their_changes() {
        let mut table = SoundingNotes::<u64, 8>::new();
        let mut events = Events::default();
        for (pitch, left) in [(60, 10), (61, 300), (62, 20), (63, 400)] {
            table.start(key_of(1, pitch), 80, 0, left, &mut events);
        }
        events.clear();
        table.end_due(&mut events, |left| {
            if *left < 100 {
                Some(*left as u32)
            } else {
                *left -= 100;
                None
            }
        });
        assert_eq!(brief(&events), vec![(10, false, 1, 60), (20, false, 1, 62)]);
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(key_of(1, 61)), Some(200));
        assert_eq!(table.get(key_of(1, 63)), Some(300));
        // Kept in order: 61 is now the oldest.
        assert_eq!(table.end_oldest(0, &mut events), Some(key_of(1, 61)));
        assert_eq!(table.get(key_of(1, 63)), Some(300));
    }

    #[test]
    fn nothing_panics_at_the_edges() {
        let mut events = EventBuffer::<2>::default();
        let mut empty = SoundingNotes::<f64, 0>::new();
        assert!(empty.is_full());
        assert!(!empty.start(key_of(0, 60), 80, 0, 1.0, &mut events));
        assert_eq!(empty.end_oldest(0, &mut events), None);
        assert_eq!(empty.release_all(0, &mut events), 0);
        empty.end_due(&mut events, |_| Some(0));
        assert!(events.is_empty());

        let mut table = SoundingNotes::<(), KEYS>::new();
        assert!(!table.start(KEYS as u16, 80, 0, (), &mut events));
        assert!(!table.start(u16::MAX, 80, 0, (), &mut events));
        assert_eq!(table.get(u16::MAX), None);
        assert_eq!(table.end(u16::MAX, 0, &mut events), None);
        assert_eq!(key_of(200, 200), key_of(15, 127));
        // Every key at once, though the event buffer holds only two events: the rest are
        // dropped, the table still knows every key.
        for key in 0..KEYS as u16 {
            assert!(table.start(key, 80, 0, (), &mut events));
        }
        assert!(table.is_full());
        assert_eq!(events.len(), 2);
        assert_eq!(table.release_all(0, &mut events), KEYS);
        assert!(table.is_empty());
        let message = NoteMessage {
            timing: 0,
            on: true,
            channel: 0,
            pitch: 0,
            velocity: 80,
        };
        assert_eq!(events.as_slice()[0], message);
    }

    #[test]
    fn a_block_carries_on_within_the_tolerance_and_jumps_beyond_it() {
        let mut timeline = Timeline::default();
        let bps = 0.01;
        // Nothing before: a fresh start one sample back, not a jump.
        let start = timeline.start(4.0, bps, 0.0);
        assert_eq!((start.from, start.jumped), (4.0 - bps, false));
        timeline.finish(4.5, bps, 0.1);
        // Within the drift the previous block allowed.
        let on = timeline.start(4.5 + bps + 0.09, bps, 0.0);
        assert_eq!((on.from, on.jumped), (4.5, false));
        // Beyond it, unless this block's slack is larger.
        assert!(timeline.start(4.5 + bps + 0.2, bps, 0.0).jumped);
        let slack = timeline.start(4.5 + bps + 0.2, bps, 0.25);
        assert_eq!((slack.from, slack.jumped), (4.5, false));
        let back = timeline.start(1.0, bps, 0.0);
        assert_eq!((back.from, back.jumped), (1.0 - bps, true));
        timeline.forget();
        assert!(!timeline.start(1.0, bps, 0.0).jumped);
    }

    #[test]
    fn sample_at_rounds_up_within_the_slack_and_clamps() {
        // Sample 10 sits at beat 1.0 + 10 · 0.01.
        assert_eq!(sample_at(1.1, 1.0, 0.01, 0, 63), 10);
        // A hundredth of a sample late is the next sample; a ten-thousandth is on this one.
        assert_eq!(sample_at(1.1 + 1e-4, 1.0, 0.01, 0, 63), 11);
        assert_eq!(sample_at(1.1 + 1e-6, 1.0, 0.01, 0, 63), 10);
        assert_eq!(sample_at(0.5, 1.0, 0.01, 4, 63), 4);
        assert_eq!(sample_at(9.0, 1.0, 0.01, 4, 63), 63);
    }
}
