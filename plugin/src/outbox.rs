//! Events to the host, on the audio thread: a host queue that refuses a note-off would leave a
//! note sounding forever, so refused note-offs are kept (one flag per key, fixed arrays) and sent
//! again at the first sample of the next block. Until then a note-on of that key is held back (the
//! host still has it sounding). Counts what was refused.

use crate::voice::{KEYS, NoteMessage, key_of};
use nice_plug::midi::{Channel, Key, NoteEvent, VoiceID};

/// What the host refused (they only ever grow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Note-offs the host refused (each is retried until it goes through).
    pub refused_offs: u64,
    /// Refused note-offs that went through on a later block.
    pub retried_offs: u64,
    /// Note-ons the host refused (lost: nothing sounds, nothing to end).
    pub refused_ons: u64,
    /// Note-ons not sent because their key's note-off was still waiting.
    pub held_ons: u64,
}

pub struct Outbox {
    waiting: Box<[bool; KEYS]>,
    /// Keys with a waiting note-off, the first `waiting_len` entries.
    waiting_keys: Box<[u16; KEYS]>,
    waiting_len: usize,
    stats: OutboxStats,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            waiting: Box::new([false; KEYS]),
            waiting_keys: Box::new([0; KEYS]),
            waiting_len: 0,
            stats: OutboxStats::default(),
        }
    }
}

/// The host's event for `m` (MIDI velocity scaled to 0–1).
pub(crate) fn note_event<S>(m: &NoteMessage) -> NoteEvent<S> {
    let (channel, key) = (Channel::Number(m.channel), Key::Number(m.pitch));
    if m.on {
        NoteEvent::NoteOn {
            timing: m.timing,
            voice_id: VoiceID::Wildcard,
            channel,
            key,
            velocity: m.velocity as f32 / 127.0,
        }
    } else {
        NoteEvent::NoteOff {
            timing: m.timing,
            voice_id: VoiceID::Wildcard,
            channel,
            key,
            velocity: 0.0,
        }
    }
}

/// The key (channel · 128 + pitch) of a note event, and whether it is a note-on.
fn key_of_event<S>(event: &NoteEvent<S>) -> Option<(usize, bool)> {
    let (channel, key, on) = match event {
        NoteEvent::NoteOn { channel, key, .. } => (channel, key, true),
        NoteEvent::NoteOff { channel, key, .. } => (channel, key, false),
        _ => return None,
    };
    match (channel.number(), key.number()) {
        (Some(c), Some(p)) if c < 16 && p < 128 => Some((key_of(c, p) as usize, on)),
        _ => None,
    }
}

impl Outbox {
    pub fn stats(&self) -> OutboxStats {
        self.stats
    }

    /// Note-offs still waiting for room in the host's queue.
    pub fn waiting(&self) -> usize {
        self.waiting_len
    }

    /// Send the note-offs the host refused before, at sample 0; call first in every block.
    /// `send` returns whether the host took the event.
    pub fn retry<S>(&mut self, mut send: impl FnMut(NoteEvent<S>) -> bool) {
        let mut kept = 0;
        for i in 0..self.waiting_len {
            let key = self.waiting_keys[i];
            if send(note_event(&NoteMessage::of_key(0, false, key, 0))) {
                self.waiting[key as usize] = false;
                self.stats.retried_offs += 1;
            } else {
                self.waiting_keys[kept] = key;
                kept += 1;
            }
        }
        self.waiting_len = kept;
    }

    /// Send one event through `send`, keeping a refused note-off for [`Outbox::retry`].
    pub fn send<S>(&mut self, event: NoteEvent<S>, mut send: impl FnMut(NoteEvent<S>) -> bool) {
        match key_of_event(&event) {
            None => {
                let _ = send(event);
            }
            Some((key, true)) => {
                if self.waiting[key] {
                    self.stats.held_ons += 1;
                } else if !send(event) {
                    self.stats.refused_ons += 1;
                }
            }
            Some((key, false)) => {
                if !send(event) {
                    self.stats.refused_offs += 1;
                    if !self.waiting[key] {
                        self.waiting[key] = true;
                        self.waiting_keys[self.waiting_len] = key as u16;
                        self.waiting_len += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(on: bool, pitch: u8) -> NoteEvent<()> {
        let (channel, key) = (Channel::Number(2), Key::Number(pitch));
        if on {
            NoteEvent::NoteOn {
                timing: 5,
                voice_id: VoiceID::Wildcard,
                channel,
                key,
                velocity: 0.8,
            }
        } else {
            NoteEvent::NoteOff {
                timing: 9,
                voice_id: VoiceID::Wildcard,
                channel,
                key,
                velocity: 0.0,
            }
        }
    }

    /// A host queue with room for `room` events; what it took.
    struct Host {
        room: usize,
        took: Vec<(bool, u8, u32)>,
    }

    impl Host {
        fn send(&mut self, event: NoteEvent<()>) -> bool {
            if self.took.len() == self.room {
                return false;
            }
            let (on, pitch) = match event {
                NoteEvent::NoteOn { key, .. } => (true, key.number().unwrap()),
                NoteEvent::NoteOff { key, .. } => (false, key.number().unwrap()),
                _ => unreachable!(),
            };
            self.took.push((on, pitch, event.timing()));
            true
        }
    }

    #[test]
    fn a_refused_note_off_is_sent_at_the_next_block_and_holds_back_its_key() {
        let mut outbox = Outbox::default();
        let mut host = Host {
            room: 1,
            took: Vec::with_capacity(8),
        };
        // A full queue: the note-on goes through, its note-off does not (before, it was lost and
        // the note sounded forever).
        let block = [
            note(true, 60),
            note(false, 60),
            note(false, 61),
            note(true, 62),
        ];
        nice_assert_no_alloc::assert_no_alloc(|| {
            outbox.retry(|e| host.send(e));
            for event in block {
                outbox.send(event, |e| host.send(e));
            }
        });
        assert_eq!(host.took, vec![(true, 60, 5)]);
        assert_eq!(outbox.waiting(), 2);
        // The next block: the offs go first at sample 0; a note-on of a key whose off still
        // waits is held back.
        let mut host = Host {
            room: 1,
            took: Vec::new(),
        };
        outbox.retry(|e| host.send(e));
        outbox.send(note(true, 61), |e| host.send(e));
        assert_eq!(host.took, vec![(false, 60, 0)]);
        let mut host = Host {
            room: 8,
            took: Vec::new(),
        };
        outbox.retry(|e| host.send(e));
        outbox.send(note(true, 61), |e| host.send(e));
        assert_eq!(host.took, vec![(false, 61, 0), (true, 61, 5)]);
        assert_eq!(outbox.waiting(), 0);
        assert_eq!(
            outbox.stats(),
            OutboxStats {
                refused_offs: 2,
                retried_offs: 2,
                refused_ons: 1,
                held_ons: 1,
            }
        );
    }
}
