//! The editor's handle on a running drag-out, the same on every OS: the dragged file and the
//! channel its outcome comes back on (from the drag thread on Linux, `crate::drag_out`; from
//! the system's drag callback on Windows and macOS, `crate::drag_out_native`).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

/// Where a drag's outcome (`O`, the platform's) or its failure goes.
pub type OutcomeSender<O> = Sender<Result<O, String>>;

/// A running drag: poll it for the outcome.
pub struct DragHandle<O> {
    file: PathBuf,
    done: Receiver<Result<O, String>>,
    finished: bool,
}

impl<O> DragHandle<O> {
    /// A handle on a drag of `file` (absolute, existing: [`checked_file`]) and the sender its
    /// outcome goes to.
    pub fn new(file: PathBuf) -> (Self, OutcomeSender<O>) {
        let (sender, done) = std::sync::mpsc::channel();
        let handle = Self {
            file,
            done,
            finished: false,
        };
        (handle, sender)
    }

    /// The dragged file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The outcome once the drag has ended (once; then `None`). A drag that ended without
    /// sending one is a failure.
    pub fn poll(&mut self) -> Option<Result<O, String>> {
        if self.finished {
            return None;
        }
        let result = match self.done.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => {
                Err("drag failed: the drag ended without an answer".into())
            }
        };
        self.finished = true;
        Some(result)
    }
}

/// How the status line names a dragged file: its file name (else the whole path).
pub fn file_name(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// `file` made absolute; an error unless it is an existing file.
pub fn checked_file(file: &Path) -> Result<PathBuf, String> {
    let file = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if !file.is_file() {
        return Err(format!("{} does not exist", file.display()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_gives_the_outcome_once_and_a_silent_end_is_a_failure() {
        let (mut handle, sender) = DragHandle::<u8>::new(PathBuf::from("/tmp/x.mid"));
        assert_eq!(handle.poll(), None, "nothing sent yet");
        sender.send(Ok(7)).unwrap();
        assert_eq!(handle.poll(), Some(Ok(7)));
        assert_eq!(handle.poll(), None, "the outcome comes once");
        let (mut silent, sender) = DragHandle::<u8>::new(PathBuf::from("/tmp/y.mid"));
        drop(sender);
        assert!(matches!(silent.poll(), Some(Err(e)) if e.contains("without an answer")));
        assert_eq!(silent.file(), Path::new("/tmp/y.mid"));
        assert_eq!(file_name(silent.file()), "y.mid");
    }

    #[test]
    fn only_existing_files_are_dragged() {
        let missing = std::env::temp_dir().join("bandmate-no-such-file.mid");
        assert!(
            checked_file(&missing)
                .unwrap_err()
                .contains("does not exist")
        );
        let dir = std::env::temp_dir();
        assert!(checked_file(&dir).is_err(), "a folder is not a file");
    }
}
