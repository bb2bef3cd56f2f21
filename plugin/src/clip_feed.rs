//! New clips to the audio thread, old ones back: two rtrb ring buffers.
//!
//! The sender (GUI or worker side) lays a clip out for playback and pushes it; the audio thread
//! swaps it into the player and pushes the old buffer back, so that nothing is freed on the audio
//! thread. Nothing is lost when a ring is full: the sender keeps the newest clip until there is
//! room (an older unsent clip is superseded by a newer one), and the audio thread leaves a clip in
//! the ring until the return ring has room for the buffer it replaces.

use crate::player::{Player, PlayerClip};
use bandmate::music::Clip;
use rtrb::{Consumer, Producer, RingBuffer};

/// Clips that can be on their way at once, in each direction.
pub const CLIPS_IN_FLIGHT: usize = 4;

/// A connected sender and receiver.
pub fn clip_feed() -> (ClipSender, ClipReceiver) {
    let (to_audio, from_sender) = RingBuffer::new(CLIPS_IN_FLIGHT);
    let (to_sender, returned) = RingBuffer::new(CLIPS_IN_FLIGHT);
    (
        ClipSender {
            to_audio,
            returned,
            spare: None,
            pending: None,
        },
        ClipReceiver {
            incoming: from_sender,
            to_drop: to_sender,
        },
    )
}

/// The non-audio end.
pub struct ClipSender {
    to_audio: Producer<Box<PlayerClip>>,
    returned: Consumer<Box<PlayerClip>>,
    /// A returned buffer kept for reuse.
    spare: Option<Box<PlayerClip>>,
    /// The newest clip that did not fit into the ring yet.
    pending: Option<Box<PlayerClip>>,
}

impl ClipSender {
    /// Send `clip` to the audio thread. `true` if it is in the ring now, `false` if it waits for
    /// room (call [`ClipSender::flush`] later; a newer `send` replaces it).
    pub fn send(&mut self, clip: &Clip) -> bool {
        self.collect_returned();
        let mut buffer = self
            .pending
            .take()
            .or_else(|| self.spare.take())
            .unwrap_or_default();
        buffer.load(clip);
        self.pending = Some(buffer);
        self.flush()
    }

    /// Free returned buffers and retry a waiting clip; `true` when nothing waits any more.
    pub fn flush(&mut self) -> bool {
        self.collect_returned();
        if let Some(buffer) = self.pending.take() {
            match self.to_audio.push(buffer) {
                Ok(()) => {}
                Err(rtrb::PushError::Full(buffer)) => self.pending = Some(buffer),
            }
        }
        self.pending.is_none()
    }

    /// Drop a clip still waiting for room (it is older than what is about to load).
    pub fn discard_pending(&mut self) {
        self.pending = None;
    }

    /// Whether a clip is waiting for room in the ring.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn collect_returned(&mut self) {
        while let Ok(buffer) = self.returned.pop() {
            if self.spare.is_none() {
                self.spare = Some(buffer);
            }
            // Any further buffer drops here, off the audio thread.
        }
    }
}

/// The audio-thread end: lock-free, allocation-free.
pub struct ClipReceiver {
    incoming: Consumer<Box<PlayerClip>>,
    to_drop: Producer<Box<PlayerClip>>,
}

impl ClipReceiver {
    /// Swap every waiting clip into `player` (the newest wins); returns how many were taken.
    pub fn receive(&mut self, player: &mut Player) -> usize {
        let mut taken = 0;
        while !self.to_drop.is_full() {
            let Ok(clip) = self.incoming.pop() else { break };
            let old = player.swap_clip(clip);
            if self.to_drop.push(old).is_err() {
                // Unreachable: the ring had room and only this thread pushes into it.
                break;
            }
            taken += 1;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandmate::music::Note;

    fn clip_with(notes: usize) -> Clip {
        let mut clip = Clip::new(4);
        clip.notes = (0..notes as u32)
            .map(|i| Note::new(i, 60, 1, 100, 0))
            .collect();
        clip
    }

    #[test]
    fn the_newest_clip_arrives_even_when_the_rings_are_full() {
        let (mut sender, mut receiver) = clip_feed();
        let mut player = Player::new();
        // The audio thread is away: the ring fills, then the newest clip waits.
        for n in 1..=CLIPS_IN_FLIGHT + 3 {
            let in_ring = sender.send(&clip_with(n));
            assert_eq!(in_ring, n <= CLIPS_IN_FLIGHT, "clip {n}");
        }
        assert!(sender.has_pending());
        // The audio thread takes what the ring holds; the returned buffers fill the return ring.
        let taken = nice_assert_no_alloc::assert_no_alloc(|| receiver.receive(&mut player));
        assert_eq!(taken, CLIPS_IN_FLIGHT);
        assert_eq!(player.clip().notes().len(), CLIPS_IN_FLIGHT);
        // The return ring is full until the sender collects it; then the waiting clip goes out.
        assert!(sender.flush());
        assert_eq!(receiver.receive(&mut player), 1);
        assert_eq!(player.clip().notes().len(), CLIPS_IN_FLIGHT + 3);
        assert!(!sender.has_pending());
    }

    #[test]
    fn a_full_return_ring_keeps_new_clips_waiting_instead_of_dropping_them() {
        let (mut sender, mut receiver) = clip_feed();
        let mut player = Player::new();
        // Clips pushed without the sender collecting returned buffers: the return ring fills.
        for n in 1..=CLIPS_IN_FLIGHT {
            sender
                .to_audio
                .push(Box::new(PlayerClip::from_clip(&clip_with(n))))
                .unwrap();
            assert_eq!(receiver.receive(&mut player), 1);
        }
        sender
            .to_audio
            .push(Box::new(PlayerClip::from_clip(&clip_with(9))))
            .unwrap();
        assert_eq!(receiver.receive(&mut player), 0);
        assert_eq!(player.clip().notes().len(), CLIPS_IN_FLIGHT);
        sender.flush();
        assert_eq!(receiver.receive(&mut player), 1);
        assert_eq!(player.clip().notes().len(), 9);
    }
}
