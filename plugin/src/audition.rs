//! Auditioning from the editor: a click on the piano roll's keyboard sends a note through the
//! host. The GUI pushes requests into an rtrb ring; the audio thread turns each into a note-on
//! at the start of the next block and a note-off [`AUDITION_SECONDS`] later, sample-accurate,
//! whether or not the transport plays. Nothing on the audio side allocates or blocks.

use crate::voice::{EventBuffer, NoteMessage, SoundingNotes, key_of};
use rtrb::{Consumer, Producer, RingBuffer};

/// How long an auditioned note sounds.
pub const AUDITION_SECONDS: f64 = 0.25;
/// Requests the ring holds (clicks faster than the audio thread drains them are dropped).
const RING_CAPACITY: usize = 64;
/// Auditioned notes sounding at once.
const MAX_SOUNDING: usize = 16;
/// Events per block at most: a note-off for every sounding note, and an off and an on for every
/// request taken (requests beyond that wait for the next block).
pub const MAX_AUDITION_EVENTS: usize = 3 * MAX_SOUNDING;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditionRequest {
    pub pitch: u8,
    pub velocity: u8,
}

/// The GUI end.
pub struct AuditionSender {
    producer: Producer<AuditionRequest>,
}

impl AuditionSender {
    /// Queue a note; `false` if the ring is full (the click is dropped, nothing else is lost).
    pub fn play(&mut self, pitch: u8, velocity: u8) -> bool {
        self.producer
            .push(AuditionRequest {
                pitch: pitch.min(127),
                velocity: velocity.clamp(1, 127),
            })
            .is_ok()
    }
}

/// The audio-thread end.
pub struct AuditionVoice {
    requests: Consumer<AuditionRequest>,
    /// The samples from the next block's first sample to each sounding note's note-off.
    sounding: SoundingNotes<u64, MAX_SOUNDING>,
    out: EventBuffer<MAX_AUDITION_EVENTS>,
}

/// A connected sender and voice.
pub fn audition_feed() -> (AuditionSender, AuditionVoice) {
    let (producer, requests) = RingBuffer::new(RING_CAPACITY);
    (
        AuditionSender { producer },
        AuditionVoice {
            requests,
            sounding: SoundingNotes::new(),
            out: EventBuffer::default(),
        },
    )
}

impl AuditionVoice {
    /// The events of a block of `samples` samples at `sample_rate`, sorted by timing (note-offs
    /// first at equal timings). New notes go out on `channel` (0–15).
    pub fn process_block(&mut self, samples: u32, sample_rate: f64, channel: u8) -> &[NoteMessage] {
        self.out.clear();
        let length = ((AUDITION_SECONDS * sample_rate).round() as u64).max(1);
        // Every sounding note may need an off below: keep room for it.
        while self.out.len() + 2 + self.sounding.len() <= MAX_AUDITION_EVENTS {
            let Ok(request) = self.requests.pop() else {
                break;
            };
            let key = key_of(channel, request.pitch);
            // Too many at once: the oldest makes room (a key that still sounds is released and
            // started again in its place, its old note-off forgotten).
            if self.sounding.is_full() && self.sounding.get(key).is_none() {
                self.sounding.end_oldest(0, &mut self.out);
            }
            // Samples from this block's first sample to the note-off.
            self.sounding
                .start(key, request.velocity, 0, length, &mut self.out);
        }
        // Notes that end inside this block; the others count on from the next block's start.
        let samples = samples as u64;
        self.sounding.end_due(&mut self.out, |left| {
            if *left < samples {
                Some(*left as u32)
            } else {
                *left -= samples;
                None
            }
        });
        // Sorting a slice in place does not allocate.
        self.out.sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_sounds_for_a_quarter_second_to_the_sample() {
        let (mut sender, mut voice) = audition_feed();
        assert!(sender.play(60, 100));
        let mut events = Vec::new();
        for block in 0..30u64 {
            for m in voice.process_block(512, 48_000.0, 2) {
                events.push((block * 512 + m.timing as u64, m.on, m.pitch, m.channel));
            }
        }
        assert_eq!(events, vec![(0, true, 60, 2), (12_000, false, 60, 2)]);
    }

    #[test]
    fn a_repeated_key_is_released_first_and_a_full_ring_drops_only_the_extra_clicks() {
        let (mut sender, mut voice) = audition_feed();
        sender.play(64, 90);
        voice.process_block(256, 44_100.0, 0);
        sender.play(64, 70);
        let again: Vec<(u32, bool)> = voice
            .process_block(256, 44_100.0, 0)
            .iter()
            .map(|m| (m.timing, m.on))
            .collect();
        assert_eq!(again, vec![(0, false), (0, true)]);
        // One note-off for the retriggered key, at its new time.
        let mut offs = 0;
        for _ in 0..100 {
            offs += voice
                .process_block(256, 44_100.0, 0)
                .iter()
                .filter(|m| !m.on)
                .count();
        }
        assert_eq!(offs, 1);
        let accepted = (0..RING_CAPACITY + 5)
            .filter(|&i| sender.play(i as u8, 80))
            .count();
        assert_eq!(accepted, RING_CAPACITY);
        let mut ons = 0;
        for _ in 0..10 {
            ons += voice
                .process_block(64, 48_000.0, 0)
                .iter()
                .filter(|m| m.on)
                .count();
        }
        assert_eq!(ons, RING_CAPACITY);
    }
}
