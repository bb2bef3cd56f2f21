//! Dragging a file out of the editor into another program on Windows and macOS, with the
//! [`drag`] crate (OLE `DoDragDrop` on Windows, an AppKit dragging session on macOS).
//!
//! The editor does not hold its window, so the drag finds it when it starts: on Windows the
//! window holding the mouse capture (baseview captures the pointer while a button is down over
//! it), else the one under the pointer; on macOS the window under the pointer, else the key or
//! main window, and its content view. `drag` only needs the handle's kind on Windows (OLE tracks
//! the pointer itself) and the view's window on macOS (where the dragging session starts).
//!
//! The two systems run the drag differently:
//!
//! - Windows: `DoDragDrop` is modal: it returns when the button is released and pumps the
//!   thread's messages meanwhile, the editor's paint messages among them. Called from inside
//!   the editor's frame it would run a frame inside the frame (egui-baseview's state is borrowed
//!   then: a panic in the window procedure), so [`start`] only leaves the drag for a thread timer
//!   of the GUI thread, whose callback runs it from the message loop once the frame has ended.
//!   The button's release goes to OLE, not to the editor's window: after the drag the callback
//!   posts the window a `WM_LBUTTONUP` (when the button is up), so that the editor does not go
//!   on believing the button is held.
//! - macOS: the dragging session starts at once (on the main thread, where the editor draws)
//!   and ends later, from AppKit's event loop. AppKit keeps the button's release for the
//!   session too; nothing gives it to the editor's view (untested: a real drag needs a Mac).
//!
//! Either way the outcome comes back through a channel the editor polls, as on Linux
//! (`crate::drag_out`).

use crate::drag_handle::{DragHandle, OutcomeSender, checked_file};
use std::path::{Path, PathBuf};

/// The picture under the pointer while dragging: a 32×32 RGBA PNG of a clip (a blue box with
/// yellow notes).
pub const DRAG_ICON_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x20, 0x08, 0x06, 0x00, 0x00, 0x00, 0x73, 0x7a, 0x7a,
    0xf4, 0x00, 0x00, 0x00, 0x62, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x60, 0x18, 0x05, 0xa3,
    0x00, 0x09, 0x68, 0xd8, 0x44, 0xfd, 0xa7, 0x07, 0xc6, 0x69, 0xb9, 0x5b, 0xde, 0x82, 0x67, 0xf4,
    0xc0, 0x58, 0x1d, 0x31, 0xea, 0x80, 0x41, 0xe5, 0x80, 0x0f, 0x27, 0xa2, 0xfe, 0xe3, 0xc3, 0xc3,
    0xdf, 0x01, 0x43, 0x3e, 0x0d, 0x10, 0x0a, 0xbd, 0xe1, 0xef, 0x00, 0x9a, 0x47, 0x01, 0xa5, 0x89,
    0x74, 0xe8, 0x3b, 0x60, 0xd0, 0xe6, 0x02, 0x62, 0x43, 0x65, 0xf8, 0x3a, 0x80, 0x66, 0x51, 0x40,
    0x28, 0xd1, 0x91, 0x5a, 0x3c, 0x0f, 0x3d, 0x07, 0x8c, 0x36, 0x48, 0x46, 0x86, 0x03, 0x06, 0xbc,
    0x59, 0x3e, 0x0a, 0x46, 0x2c, 0x00, 0x00, 0x56, 0xf1, 0xe2, 0x46, 0xf2, 0x59, 0x68, 0x06, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// How a drag starts.
#[derive(Clone, Debug)]
pub struct DragConfig {
    /// The PNG under the pointer while dragging.
    pub icon: Vec<u8>,
}

impl Default for DragConfig {
    fn default() -> Self {
        Self {
            icon: DRAG_ICON_PNG.to_vec(),
        }
    }
}

/// How a drag ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DragOutcome {
    /// Dropped on a window that took the file.
    Dropped,
    /// Released over no drop target (or one that refused the file), or cancelled with Escape.
    Cancelled,
}

impl DragOutcome {
    /// A line for the editor's status.
    pub fn message(&self, file: &Path) -> String {
        let name = crate::drag_handle::file_name(file);
        match self {
            DragOutcome::Dropped => format!("dropped {name}"),
            DragOutcome::Cancelled => {
                "released over no drop target (or cancelled): nothing dropped".into()
            }
        }
    }
}

/// A running drag: poll it for the outcome.
pub type DragOut = DragHandle<DragOutcome>;

/// Start dragging `file` (it must exist) from where the pointer is, with the button that is
/// down now. Call it on the editor's (GUI) thread.
pub fn start(file: &Path, config: DragConfig) -> Result<DragOut, String> {
    let (handle, sender) = DragHandle::new(checked_file(file)?);
    platform::begin(handle.file().to_path_buf(), config.icon, sender)?;
    Ok(handle)
}

/// The outcome `drag` reports.
fn outcome(result: drag::DragResult) -> DragOutcome {
    match result {
        drag::DragResult::Dropped => DragOutcome::Dropped,
        drag::DragResult::Cancel => DragOutcome::Cancelled,
    }
}

/// Run `drag::start_drag` for `file` from `window`; the outcome (or the failure) goes to
/// `sender`. A panic inside `drag` comes back as a failure too: this runs in a system callback
/// on Windows and in the editor's frame on macOS, where it must not unwind.
fn run_drag(
    window: raw_window_handle::RawWindowHandle,
    file: PathBuf,
    icon: Vec<u8>,
    sender: OutcomeSender<DragOutcome>,
) {
    let answer = sender.clone();
    let run = std::panic::AssertUnwindSafe(move || {
        drag::start_drag(
            &Window(window),
            drag::DragItem::Files(vec![file]),
            drag::Image::Raw(icon),
            move |result, _pointer| {
                let _ = answer.send(Ok(outcome(result)));
            },
            drag::Options::default(),
        )
    });
    let failure = match std::panic::catch_unwind(run) {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("drag failed: {e}"),
        Err(_) => "drag failed: the drag panicked".into(),
    };
    let _ = sender.send(Err(failure));
}

/// The editor's window, as `drag` takes it.
struct Window(raw_window_handle::RawWindowHandle);

impl raw_window_handle::HasWindowHandle for Window {
    fn window_handle(
        &self,
    ) -> Result<raw_window_handle::WindowHandle<'_>, raw_window_handle::HandleError> {
        // SAFETY: the window was found alive on this thread just before the drag, which runs
        // on this thread and ends (Windows) or starts (macOS) before it returns.
        Ok(unsafe { raw_window_handle::WindowHandle::borrow_raw(self.0) })
    }
}

#[cfg(windows)]
mod platform {
    use super::{DragOutcome, run_drag};
    use crate::drag_handle::OutcomeSender;
    use std::cell::RefCell;
    use std::num::NonZeroIsize;
    use std::path::PathBuf;
    use windows_sys::Win32::Foundation::{HWND, POINT};
    use windows_sys::Win32::Graphics::Gdi::ScreenToClient;
    use windows_sys::Win32::UI::Input::KeyboardAndMouse::{
        GetAsyncKeyState, GetCapture, VK_LBUTTON,
    };
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        GetCursorPos, KillTimer, PostMessageW, SetTimer, WM_LBUTTONUP, WindowFromPoint,
    };

    /// A drag waiting for its timer.
    struct Pending {
        window: HWND,
        file: PathBuf,
        icon: Vec<u8>,
        sender: OutcomeSender<DragOutcome>,
    }

    thread_local! {
        /// The drag the GUI thread's timer starts (at most one at a time).
        static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
    }

    /// Find the editor's window and leave the drag for a timer of this thread.
    pub fn begin(
        file: PathBuf,
        icon: Vec<u8>,
        sender: OutcomeSender<DragOutcome>,
    ) -> Result<(), String> {
        let window = editor_window().ok_or("drag failed: no window under the pointer")?;
        let busy = PENDING.with_borrow(|pending| pending.is_some());
        if busy {
            return Err("drag failed: another drag is starting".into());
        }
        PENDING.set(Some(Pending {
            window,
            file,
            icon,
            sender,
        }));
        // SAFETY: a thread timer (no window) whose callback is `run_pending`; the shortest
        // delay (10 ms): the next round of the thread's message loop.
        let timer = unsafe { SetTimer(std::ptr::null_mut(), 0, 0, Some(run_pending)) };
        if timer == 0 {
            PENDING.set(None);
            return Err(format!(
                "drag failed: cannot set a timer: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// The window holding the mouse capture on this thread (baseview's while a button is down
    /// over it), else the one under the pointer.
    fn editor_window() -> Option<HWND> {
        // SAFETY: plain Win32 queries on this thread.
        unsafe {
            let captured = GetCapture();
            if !captured.is_null() {
                return Some(captured);
            }
            let mut at = POINT { x: 0, y: 0 };
            if GetCursorPos(&mut at) == 0 {
                return None;
            }
            let under = WindowFromPoint(at);
            (!under.is_null()).then_some(under)
        }
    }

    /// The timer: run the pending drag (modal: until the button is released).
    unsafe extern "system" fn run_pending(_: HWND, _: u32, timer: usize, _: u32) {
        // SAFETY: the timer `begin` set on this thread (it fires once).
        unsafe { KillTimer(std::ptr::null_mut(), timer) };
        let Some(pending) = PENDING.take() else {
            return;
        };
        let Some(handle) = NonZeroIsize::new(pending.window as isize) else {
            return;
        };
        let window = raw_window_handle::Win32WindowHandle::new(handle);
        run_drag(window.into(), pending.file, pending.icon, pending.sender);
        release_button(pending.window);
    }

    /// Give the editor's window the left button's release that OLE took, when the button is up.
    fn release_button(window: HWND) {
        // SAFETY: plain Win32 calls; posting to a window that has gone away fails harmlessly.
        unsafe {
            // The high bit: the button is down now (Escape ended the drag).
            if GetAsyncKeyState(i32::from(VK_LBUTTON)) < 0 {
                return;
            }
            let mut at = POINT { x: 0, y: 0 };
            if GetCursorPos(&mut at) == 0 || ScreenToClient(window, &mut at) == 0 {
                return;
            }
            // MAKELPARAM(x, y): client coordinates as two 16-bit words.
            let lparam = ((at.y as u16 as u32) << 16 | at.x as u16 as u32) as isize;
            PostMessageW(window, WM_LBUTTONUP, 0, lparam);
        }
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use super::{DragOutcome, run_drag};
    use crate::drag_handle::OutcomeSender;
    use objc2::MainThreadMarker;
    use objc2::rc::Retained;
    use objc2_app_kit::{NSApplication, NSEvent, NSView, NSWindow};
    use std::path::PathBuf;
    use std::ptr::NonNull;

    /// Start the dragging session from the window under the pointer (it ends later, from
    /// AppKit's event loop).
    pub fn begin(
        file: PathBuf,
        icon: Vec<u8>,
        sender: OutcomeSender<DragOutcome>,
    ) -> Result<(), String> {
        let mtm = MainThreadMarker::new().ok_or("drag failed: not on the main thread")?;
        let view = editor_view(mtm).ok_or("drag failed: no window under the pointer")?;
        let window = raw_window_handle::AppKitWindowHandle::new(NonNull::from(&*view).cast());
        run_drag(window.into(), file, icon, sender);
        Ok(())
    }

    /// The content view of this application's window under the pointer, else of the key or
    /// the main window.
    fn editor_view(mtm: MainThreadMarker) -> Option<Retained<NSView>> {
        let app = NSApplication::sharedApplication(mtm);
        let number = NSWindow::windowNumberAtPoint_belowWindowWithWindowNumber(
            NSEvent::mouseLocation(),
            0,
            mtm,
        );
        let window = app
            .windowWithWindowNumber(number)
            .or_else(|| app.keyWindow())
            .or_else(|| app.mainWindow())?;
        window.contentView()
    }
}
