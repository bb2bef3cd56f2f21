//! Dragging a file out of the editor into another program on X11 (Linux): an XDND source.
//!
//! The editor's window belongs to baseview, which holds the pointer (the implicit grab of a
//! pressed button) while the user drags. So the drag runs beside it, on a thread of its own with
//! its own X connection, and never grabs anything: every [`DragConfig::poll`] it asks the server
//! where the pointer is and whether the button is still down, finds the XDND-aware window under
//! it (descending from the root, checking `XdndAware` on each window, `XdndProxy` honoured) and
//! talks XDND to that window with client messages:
//!
//! - `XdndEnter` (version min(5, the target's), the types `text/uri-list`,
//!   `text/plain;charset=utf-8`, `text/plain`) when the pointer enters a target, `XdndLeave`
//!   when it leaves one;
//! - `XdndPosition` (action `XdndActionCopy`) when the pointer moves, one at a time: the next
//!   only after the target's `XdndStatus` answered the last;
//! - on release over a target that accepts, `XdndDrop`; the file's `file://` URI is the
//!   `XdndSelection`, owned by a small unmapped window of the drag's own, served on request
//!   (`SelectionRequest` → the requestor's property → `SelectionNotify`); then the drag waits
//!   for `XdndFinished` (at most [`DragConfig::finish_timeout`]). On release over no target (or
//!   one that did not accept) the target gets `XdndLeave` and nothing is dropped.
//!
//! The window the drag starts over (the editor, or the host's window holding it) is never a
//! target. The GUI thread only starts the drag and polls its [`DragOut`] for the outcome; X
//! errors come back as messages for the editor's status line.

use crate::drag_handle::{DragHandle, checked_file};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use x11rb::connection::Connection;
use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConnectionExt as _, CreateWindowAux, EventMask, KeyButMask,
    PropMode, SELECTION_NOTIFY_EVENT, SelectionNotifyEvent, SelectionRequestEvent, Window,
    WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// The newest XDND version (the drag speaks it or the target's older one).
pub const XDND_VERSION: u32 = 5;

x11rb::atom_manager! {
    Atoms: AtomsCookie {
        XdndAware,
        XdndProxy,
        XdndEnter,
        XdndPosition,
        XdndStatus,
        XdndLeave,
        XdndDrop,
        XdndFinished,
        XdndSelection,
        XdndTypeList,
        XdndActionCopy,
        TARGETS,
        UTF8_STRING,
        TEXT_URI_LIST: b"text/uri-list",
        TEXT_PLAIN_UTF8: b"text/plain;charset=utf-8",
        TEXT_PLAIN: b"text/plain",
        BANDMATE_TIME: b"_BANDMATE_DRAG_TIME",
    }
}

/// How a drag runs.
#[derive(Clone, Debug)]
pub struct DragConfig {
    /// The X display (`None`: `$DISPLAY`).
    pub display: Option<String>,
    /// A window that is never a target (`None`: the XDND-aware window under the pointer when
    /// the drag starts, that is the editor's).
    pub skip_window: Option<u32>,
    /// How often the pointer is asked for.
    pub poll: Duration,
    /// How long to wait for the target's `XdndFinished` after the drop.
    pub finish_timeout: Duration,
}

impl Default for DragConfig {
    fn default() -> Self {
        Self {
            display: None,
            skip_window: None,
            poll: Duration::from_millis(10),
            finish_timeout: Duration::from_secs(5),
        }
    }
}

/// How a drag ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DragOutcome {
    /// Dropped on `target`, which confirmed with `XdndFinished`: `taken` if it took the file
    /// (before version 5 a target cannot say otherwise), `fetched` if it asked for the file.
    Dropped {
        target: u32,
        taken: bool,
        fetched: bool,
    },
    /// Dropped, but the target did not confirm in time.
    Unconfirmed { target: u32, fetched: bool },
    /// Released over a target that did not accept the file (it got `XdndLeave`).
    Refused { target: u32 },
    /// Released over no drop target (or the button was up before the drag began).
    NoTarget,
    /// Cancelled from the editor (closed while dragging).
    Cancelled,
}

impl DragOutcome {
    /// A line for the editor's status.
    pub fn message(&self, file: &Path) -> String {
        let name = crate::drag_handle::file_name(file);
        match self {
            DragOutcome::Dropped { taken: true, .. } => format!("dropped {name}"),
            DragOutcome::Dropped { taken: false, .. } => {
                format!("the drop target did not take {name}")
            }
            DragOutcome::Unconfirmed { .. } => format!(
                "dropped {name}, but the target did not confirm (the file is {})",
                file.display()
            ),
            DragOutcome::Refused { .. } => {
                format!("the window under the pointer does not take {name}: nothing dropped")
            }
            DragOutcome::NoTarget => "released over no drop target: nothing dropped".into(),
            DragOutcome::Cancelled => "drag cancelled".into(),
        }
    }
}

/// A running drag: poll it for the outcome. Dropping it cancels the drag (without waiting).
pub struct DragOut {
    handle: DragHandle<DragOutcome>,
    cancel: Arc<AtomicBool>,
}

/// Start dragging `file` (it must exist) from where the pointer is: the drag follows the
/// pointer until the button that is down now is released.
pub fn start(file: &Path, config: DragConfig) -> Result<DragOut, String> {
    let file = checked_file(file)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let (handle, sender) = DragHandle::new(file.clone());
    let thread_cancel = cancel.clone();
    std::thread::Builder::new()
        .name("bandmate-drag-out".into())
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| drag(&file, &config, &thread_cancel));
            let result = match std::panic::catch_unwind(run) {
                Ok(result) => result.map_err(|e| format!("drag failed: {}", e.0)),
                Err(_) => Err("drag failed: the drag thread panicked".into()),
            };
            let _ = sender.send(result);
        })
        .map_err(|e| format!("cannot start the drag: {e}"))?;
    Ok(DragOut { handle, cancel })
}

impl DragOut {
    /// The dragged file.
    pub fn file(&self) -> &Path {
        self.handle.file()
    }

    /// The outcome once the drag has ended (once; then `None`).
    pub fn poll(&mut self) -> Option<Result<DragOutcome, String>> {
        self.handle.poll()
    }

    /// Wait at most `timeout` for the outcome (tests; the editor polls).
    pub fn wait(&mut self, timeout: Duration) -> Option<Result<DragOutcome, String>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(result) = self.poll() {
                return Some(result);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// End the drag (the target, if any, gets `XdndLeave`).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Drop for DragOut {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// `file://` and the path, its bytes outside the unreserved set percent-encoded.
pub fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// An X error, said in words.
#[derive(Debug)]
struct XError(String);

/// `From` each x11rb error for [`XError`]: what failed, then the error.
macro_rules! x_error_from {
    ($($error:ty => $what:literal),* $(,)?) => {
        $(impl From<$error> for XError {
            fn from(e: $error) -> Self {
                XError(format!("{}: {e}", $what))
            }
        })*
    };
}

x_error_from! {
    ConnectError => "cannot connect to the X server",
    ConnectionError => "X connection",
    ReplyError => "X request failed",
    ReplyOrIdError => "X request failed",
}

/// Whether `e` says the window went away (a target closing mid-drag, not a failure).
fn window_gone(e: &ReplyError) -> bool {
    matches!(e, ReplyError::X11Error(x) if x.error_kind == x11rb::protocol::ErrorKind::Window)
}

/// A drop target under the pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Target {
    /// The XDND-aware window (named in the messages).
    window: Window,
    /// Where the messages go (its `XdndProxy`, else itself).
    send_to: Window,
    /// The version both speak.
    version: u32,
}

/// What the targets have said so far.
#[derive(Default)]
struct Replies {
    /// The last `XdndStatus`: its window and whether it accepts.
    status: Option<(Window, bool)>,
    /// `XdndFinished`: its window and whether it took the drop.
    finished: Option<(Window, bool)>,
}

struct Source {
    conn: RustConnection,
    root: Window,
    window: Window,
    atoms: Atoms,
    uri_list: Vec<u8>,
    path_text: Vec<u8>,
    /// A server time and when it was read: timestamps go on from it.
    clock: (u32, Instant),
    /// Someone asked for the file.
    fetched: bool,
    replies: Replies,
}

fn drag(file: &Path, config: &DragConfig, cancel: &AtomicBool) -> Result<DragOutcome, XError> {
    let mut source = Source::new(file, config)?;
    let outcome = source.run(config, cancel);
    // Best effort: the selection goes with the window; the connection closes anyway.
    let _ = source.conn.destroy_window(source.window);
    let _ = source.conn.flush();
    outcome
}

impl Source {
    fn new(file: &Path, config: &DragConfig) -> Result<Self, XError> {
        let (conn, screen) = x11rb::connect(config.display.as_deref())?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .ok_or_else(|| XError(format!("the X server has no screen {screen}")))?
            .root;
        let atoms = Atoms::new(&conn)?.reply()?;
        let window = conn.generate_id()?;
        conn.create_window(
            0,
            window,
            root,
            -10,
            -10,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )?
        .check()?;
        let types = [atoms.TEXT_URI_LIST, atoms.TEXT_PLAIN_UTF8, atoms.TEXT_PLAIN];
        conn.change_property32(
            PropMode::REPLACE,
            window,
            atoms.XdndTypeList,
            AtomEnum::ATOM,
            &types,
        )?;
        let mut path_text = file.as_os_str().as_bytes().to_vec();
        path_text.push(b'\n');
        let mut source = Source {
            conn,
            root,
            window,
            atoms,
            uri_list: format!("{}\r\n", file_uri(file)).into_bytes(),
            path_text,
            clock: (0, Instant::now()),
            fetched: false,
            replies: Replies::default(),
        };
        source.clock = (source.server_time()?, Instant::now());
        source
            .conn
            .set_selection_owner(window, atoms.XdndSelection, source.clock.0)?;
        let owner = source
            .conn
            .get_selection_owner(atoms.XdndSelection)?
            .reply()?;
        if owner.owner != window {
            return Err(XError("could not own the XdndSelection".into()));
        }
        Ok(source)
    }

    /// The server's time now (a property change on our window reports it).
    fn server_time(&mut self) -> Result<u32, XError> {
        self.conn.change_property8(
            PropMode::APPEND,
            self.window,
            self.atoms.BANDMATE_TIME,
            AtomEnum::STRING,
            &[],
        )?;
        self.conn.flush()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.conn.poll_for_event()? {
                Some(Event::PropertyNotify(e)) if e.window == self.window => return Ok(e.time),
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        Err(XError("the X server did not report its time".into()))
    }

    /// Our timestamps: the server time read at the start plus the time since.
    fn time(&self) -> u32 {
        let elapsed = self.clock.1.elapsed().as_millis() as u32;
        self.clock.0.wrapping_add(elapsed)
    }

    /// The first 32-bit value of `window`'s `property` (of type `kind`), if it has one.
    fn property32(&self, window: Window, property: Atom, kind: AtomEnum) -> Option<u32> {
        let reply = self
            .conn
            .get_property(false, window, property, kind, 0, 1)
            .ok()?
            .reply()
            .ok()?;
        reply.value32()?.next()
    }

    /// The XDND version `window` speaks, if it is aware.
    fn aware(&self, window: Window) -> Option<u32> {
        self.property32(window, self.atoms.XdndAware, AtomEnum::ATOM)
    }

    /// `window`'s XDND proxy, if it names one that confirms it.
    fn proxy(&self, window: Window) -> Option<Window> {
        let read = |w| self.property32(w, self.atoms.XdndProxy, AtomEnum::WINDOW);
        let proxy = read(window)?;
        (read(proxy) == Some(proxy)).then_some(proxy)
    }

    /// The drop target under the pointer: the first XDND-aware window on the way down from
    /// the root (`skip` is none). A window that vanishes on the way is no target.
    fn target_under_pointer(&self, skip: Option<Window>) -> Option<Target> {
        let mut window = self.root;
        for _ in 0..64 {
            let child = self.conn.query_pointer(window).ok()?.reply().ok()?.child;
            if child == x11rb::NONE {
                return None;
            }
            window = child;
            let (send_to, version) = match self.proxy(window) {
                Some(proxy) => (proxy, self.aware(proxy)),
                None => (window, self.aware(window)),
            };
            if let Some(version) = version {
                if Some(window) == skip || version == 0 {
                    return None;
                }
                return Some(Target {
                    window,
                    send_to,
                    version: version.min(XDND_VERSION),
                });
            }
        }
        None
    }

    /// Send an XDND message to `target`; `false` if its window has gone.
    fn send(&self, target: &Target, kind: Atom, data: [u32; 4]) -> Result<bool, XError> {
        let [a, b, c, d] = data;
        let event = ClientMessageEvent::new(32, target.window, kind, [self.window, a, b, c, d]);
        match self
            .conn
            .send_event(false, target.send_to, EventMask::NO_EVENT, event)?
            .check()
        {
            Ok(()) => Ok(true),
            Err(e) if window_gone(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn enter(&self, target: &Target) -> Result<bool, XError> {
        let a = &self.atoms;
        self.send(
            target,
            a.XdndEnter,
            [
                target.version << 24,
                a.TEXT_URI_LIST,
                a.TEXT_PLAIN_UTF8,
                a.TEXT_PLAIN,
            ],
        )
    }

    fn position(&self, target: &Target, (x, y): (i16, i16)) -> Result<bool, XError> {
        let at = (u32::from(x as u16) << 16) | u32::from(y as u16);
        let action = self.atoms.XdndActionCopy;
        self.send(
            target,
            self.atoms.XdndPosition,
            [0, at, self.time(), action],
        )
    }

    fn leave(&self, target: &Target) -> Result<bool, XError> {
        self.send(target, self.atoms.XdndLeave, [0; 4])
    }

    /// Take in what has arrived: targets' answers, requests for the file.
    fn pump(&mut self) -> Result<(), XError> {
        while let Some(event) = self.conn.poll_for_event()? {
            match event {
                Event::ClientMessage(e) if e.format == 32 => {
                    let data = e.data.as_data32();
                    if e.type_ == self.atoms.XdndStatus {
                        self.replies.status = Some((data[0], data[1] & 1 == 1));
                    } else if e.type_ == self.atoms.XdndFinished {
                        self.replies.finished = Some((data[0], data[1] & 1 == 1));
                    }
                }
                Event::SelectionRequest(request) => self.serve(request)?,
                Event::Error(e) if e.error_kind == x11rb::protocol::ErrorKind::Window => {}
                Event::Error(e) => {
                    return Err(XError(format!("X error {:?}", e.error_kind)));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Answer a request for the selection: the URI list, the path as text, or the targets.
    fn serve(&mut self, request: SelectionRequestEvent) -> Result<(), XError> {
        let a = self.atoms;
        // Obsolete requestors name no property: the target's name is the property.
        let property = match request.property {
            x11rb::NONE => request.target,
            p => p,
        };
        let texts = [
            a.TEXT_PLAIN_UTF8,
            a.UTF8_STRING,
            a.TEXT_PLAIN,
            AtomEnum::STRING.into(),
        ];
        let written = if request.selection != a.XdndSelection {
            None
        } else if request.target == a.TARGETS {
            let targets = [
                a.TARGETS,
                a.TEXT_URI_LIST,
                a.TEXT_PLAIN_UTF8,
                a.UTF8_STRING,
                a.TEXT_PLAIN,
                AtomEnum::STRING.into(),
            ];
            Some(self.conn.change_property32(
                PropMode::REPLACE,
                request.requestor,
                property,
                AtomEnum::ATOM,
                &targets,
            )?)
        } else if request.target == a.TEXT_URI_LIST || texts.contains(&request.target) {
            self.fetched = true;
            let data = match request.target == a.TEXT_URI_LIST {
                true => &self.uri_list,
                false => &self.path_text,
            };
            Some(self.conn.change_property8(
                PropMode::REPLACE,
                request.requestor,
                property,
                request.target,
                data,
            )?)
        } else {
            None
        };
        let answered = match written.map(|cookie| cookie.check()) {
            Some(Ok(())) => property,
            // The requestor has gone: no one to answer.
            Some(Err(e)) if window_gone(&e) => return Ok(()),
            Some(Err(e)) => return Err(e.into()),
            None => x11rb::NONE,
        };
        let notify = SelectionNotifyEvent {
            response_type: SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: request.time,
            requestor: request.requestor,
            selection: request.selection,
            target: request.target,
            property: answered,
        };
        match self
            .conn
            .send_event(false, request.requestor, EventMask::NO_EVENT, notify)?
            .check()
        {
            Err(e) if !window_gone(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Wait (at most until `deadline`) for `target`'s answer to the last position; its accept.
    fn await_status(&mut self, target: &Target, deadline: Instant) -> Result<Option<bool>, XError> {
        loop {
            self.pump()?;
            if let Some((window, accepts)) = self.replies.status.take()
                && window == target.window
            {
                return Ok(Some(accepts));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn run(&mut self, config: &DragConfig, cancel: &AtomicBool) -> Result<DragOutcome, XError> {
        let buttons = KeyButMask::BUTTON1 | KeyButMask::BUTTON2 | KeyButMask::BUTTON3;
        let held = self.conn.query_pointer(self.root)?.reply()?.mask & buttons;
        if u16::from(held) == 0 {
            return Ok(DragOutcome::NoTarget);
        }
        let skip = config
            .skip_window
            .or_else(|| self.target_under_pointer(None).map(|t| t.window));
        let mut current: Option<Target> = None;
        let mut accepts = false;
        // A position sent and not answered yet (the next waits for the answer).
        let mut awaiting = false;
        let mut sent: Option<(i16, i16)> = None;
        let at = loop {
            if cancel.load(Ordering::Relaxed) {
                if let Some(target) = current {
                    self.leave(&target)?;
                }
                return Ok(DragOutcome::Cancelled);
            }
            self.pump()?;
            if let Some((window, yes)) = self.replies.status.take()
                && current.is_some_and(|t| t.window == window)
            {
                accepts = yes;
                awaiting = false;
            }
            let pointer = self.conn.query_pointer(self.root)?.reply()?;
            let at = (pointer.root_x, pointer.root_y);
            let under = self.target_under_pointer(skip);
            if under.map(|t| t.window) != current.map(|t| t.window) {
                if let Some(old) = current.take() {
                    self.leave(&old)?;
                }
                (accepts, awaiting, sent) = (false, false, None);
                if let Some(new) = under
                    && self.enter(&new)?
                {
                    current = Some(new);
                }
            }
            if let Some(target) = current
                && !awaiting
                && sent != Some(at)
            {
                if self.position(&target, at)? {
                    (awaiting, sent) = (true, Some(at));
                } else {
                    current = None;
                }
            }
            if u16::from(pointer.mask & held) == 0 {
                break at;
            }
            std::thread::sleep(config.poll);
        };
        let Some(target) = current else {
            return Ok(DragOutcome::NoTarget);
        };
        // The target's answer to where the button went up decides.
        let deadline = Instant::now() + Duration::from_secs(1);
        if awaiting {
            match self.await_status(&target, deadline)? {
                Some(yes) => accepts = yes,
                None => accepts = false,
            }
        }
        if sent != Some(at) && accepts {
            accepts =
                self.position(&target, at)? && self.await_status(&target, deadline)? == Some(true);
        }
        if !accepts {
            self.leave(&target)?;
            return Ok(DragOutcome::Refused {
                target: target.window,
            });
        }
        self.replies.finished = None;
        let time = self.time();
        if !self.send(&target, self.atoms.XdndDrop, [0, time, 0, 0])? {
            return Ok(DragOutcome::NoTarget);
        }
        let deadline = Instant::now() + config.finish_timeout;
        while Instant::now() < deadline {
            self.pump()?;
            if let Some((window, taken)) = self.replies.finished
                && window == target.window
            {
                return Ok(DragOutcome::Dropped {
                    target: target.window,
                    taken: taken || target.version < 5,
                    fetched: self.fetched,
                });
            }
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(DragOutcome::Unconfirmed {
            target: target.window,
            fetched: self.fetched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandmate::music::example_clip;
    use std::io::BufRead;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;
    use x11rb::protocol::xproto::{BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT, MOTION_NOTIFY_EVENT};
    use x11rb::protocol::xtest::ConnectionExt as _;

    #[test]
    fn drag_uris_encode_what_is_not_plain() {
        assert_eq!(
            file_uri(Path::new("/tmp/bandmate-drag/a b%é.mid")),
            "file:///tmp/bandmate-drag/a%20b%25%C3%A9.mid"
        );
    }

    /// An Xvfb of the test's own on a display it chose itself (killed when dropped).
    struct Xvfb {
        child: Child,
        display: String,
    }

    impl Xvfb {
        fn start() -> Option<Xvfb> {
            let spawned = Command::new("Xvfb")
                .args(["-displayfd", "1", "-screen", "0", "800x600x24"])
                .args(["-nolisten", "tcp"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => panic!("cannot start Xvfb: {e}"),
            };
            // Xvfb writes its display number once it is ready.
            let stdout = child.stdout.take().expect("piped");
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = std::io::BufReader::new(stdout).read_line(&mut line);
                let _ = sender.send(line);
            });
            let mut xvfb = Xvfb {
                child,
                display: String::new(),
            };
            let line = receiver
                .recv_timeout(Duration::from_secs(10))
                .expect("Xvfb did not say its display");
            let number: u32 = line.trim().parse().expect("a display number");
            xvfb.display = format!(":{number}");
            Some(xvfb)
        }
    }

    impl Drop for Xvfb {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// What a test drop target saw.
    #[derive(Debug, Default)]
    struct Seen {
        messages: Vec<&'static str>,
        version: Option<u32>,
        types: Vec<Atom>,
        conversions: u32,
        uri_list: Option<String>,
    }

    /// A mapped XDND-aware window (version 5) at `(x, y)`, 200 × 200, on a connection of its
    /// own: it accepts every position, and on a drop reads the URI list and says finished.
    struct DropTarget {
        window: Window,
        seen: Arc<Mutex<Seen>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl DropTarget {
        fn new(display: &str, x: i16, y: i16) -> DropTarget {
            let (conn, screen) = x11rb::connect(Some(display)).unwrap();
            let root = conn.setup().roots[screen].root;
            let atoms = Atoms::new(&conn).unwrap().reply().unwrap();
            let data = conn
                .intern_atom(false, b"BANDMATE_TEST_DROP")
                .unwrap()
                .reply()
                .unwrap()
                .atom;
            let window = conn.generate_id().unwrap();
            conn.create_window(
                0,
                window,
                root,
                x,
                y,
                200,
                200,
                0,
                WindowClass::INPUT_OUTPUT,
                0,
                &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
            )
            .unwrap();
            conn.change_property32(
                PropMode::REPLACE,
                window,
                atoms.XdndAware,
                AtomEnum::ATOM,
                &[5],
            )
            .unwrap();
            conn.map_window(window).unwrap();
            conn.get_input_focus().unwrap().reply().unwrap();
            let seen = Arc::new(Mutex::new(Seen::default()));
            let stop = Arc::new(AtomicBool::new(false));
            let (thread_seen, thread_stop) = (seen.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                let send = |to: Window, kind: Atom, d: [u32; 4]| {
                    let event =
                        ClientMessageEvent::new(32, to, kind, [window, d[0], d[1], d[2], d[3]]);
                    conn.send_event(false, to, EventMask::NO_EVENT, event)
                        .unwrap();
                    conn.flush().unwrap();
                };
                while !thread_stop.load(Ordering::Relaxed) {
                    let Some(event) = conn.poll_for_event().unwrap() else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let Event::ClientMessage(e) = event else {
                        continue;
                    };
                    let d = e.data.as_data32();
                    let mut seen = thread_seen.lock().unwrap();
                    if e.type_ == atoms.XdndEnter {
                        seen.messages.push("enter");
                        seen.version = Some(d[1] >> 24);
                        seen.types = d[2..].iter().copied().filter(|&t| t != 0).collect();
                    } else if e.type_ == atoms.XdndPosition {
                        seen.messages.push("position");
                        send(d[0], atoms.XdndStatus, [1, 0, 0, atoms.XdndActionCopy]);
                    } else if e.type_ == atoms.XdndLeave {
                        seen.messages.push("leave");
                    } else if e.type_ == atoms.XdndDrop {
                        seen.messages.push("drop");
                        seen.conversions += 1;
                        conn.convert_selection(
                            window,
                            atoms.XdndSelection,
                            atoms.TEXT_URI_LIST,
                            data,
                            d[2],
                        )
                        .unwrap();
                        conn.flush().unwrap();
                        let deadline = Instant::now() + Duration::from_secs(3);
                        while Instant::now() < deadline {
                            match conn.poll_for_event().unwrap() {
                                Some(Event::SelectionNotify(n)) => {
                                    if n.property == data {
                                        let reply = conn
                                            .get_property(
                                                true,
                                                window,
                                                data,
                                                AtomEnum::ANY,
                                                0,
                                                1 << 16,
                                            )
                                            .unwrap()
                                            .reply()
                                            .unwrap();
                                        seen.uri_list = Some(
                                            String::from_utf8_lossy(&reply.value).into_owned(),
                                        );
                                    }
                                    break;
                                }
                                Some(_) => {}
                                None => std::thread::sleep(Duration::from_millis(1)),
                            }
                        }
                        let taken = u32::from(seen.uri_list.is_some());
                        send(
                            d[0],
                            atoms.XdndFinished,
                            [taken, atoms.XdndActionCopy, 0, 0],
                        );
                    }
                }
            });
            DropTarget {
                window,
                seen,
                stop,
                thread: Some(thread),
            }
        }

        fn take(&self) -> Seen {
            std::mem::take(&mut *self.seen.lock().unwrap())
        }
    }

    impl Drop for DropTarget {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// The pointer, moved and pressed through XTEST.
    struct Pointer {
        conn: RustConnection,
        root: Window,
    }

    impl Pointer {
        fn new(display: &str) -> Pointer {
            let (conn, screen) = x11rb::connect(Some(display)).unwrap();
            let root = conn.setup().roots[screen].root;
            Pointer { conn, root }
        }

        fn fake(&self, kind: u8, detail: u8, (x, y): (i16, i16)) {
            self.conn
                .xtest_fake_input(kind, detail, 0, self.root, x, y, 0)
                .unwrap();
            self.conn.get_input_focus().unwrap().reply().unwrap();
        }

        fn move_to(&self, at: (i16, i16)) {
            self.fake(MOTION_NOTIFY_EVENT, 0, at);
        }

        fn button(&self, down: bool) {
            let kind = if down {
                BUTTON_PRESS_EVENT
            } else {
                BUTTON_RELEASE_EVENT
            };
            self.fake(kind, 1, (0, 0));
        }

        /// Move in steps from `from` to `to`, a poll or two apart.
        fn glide(&self, from: (i16, i16), to: (i16, i16)) {
            for i in 0..=8 {
                let x = from.0 + (to.0 - from.0) * i / 8;
                let y = from.1 + (to.1 - from.1) * i / 8;
                self.move_to((x, y));
                std::thread::sleep(Duration::from_millis(15));
            }
        }
    }

    #[test]
    fn drag_a_clip_onto_an_xdnd_target_under_xvfb() {
        let Some(xvfb) = Xvfb::start() else {
            eprintln!("skipped: needs Xvfb (Debian xvfb)");
            return;
        };
        let display = xvfb.display.clone();
        // The "editor" the drag starts over (aware itself: it must never be a target), and the
        // "DAW" window it drags to.
        let editor = DropTarget::new(&display, 20, 20);
        let daw = DropTarget::new(&display, 400, 100);
        let pointer = Pointer::new(&display);
        let dir = std::env::temp_dir().join(format!("bandmate-drag-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let clip = example_clip();
        let file = dir.join("bandmate-clip.mid");
        bandmate::midi::write_file(&clip, &file).unwrap();
        let config = DragConfig {
            display: Some(display.clone()),
            ..DragConfig::default()
        };
        let (start, over, away) = ((100, 100), (500, 200), (700, 500));

        // Pressed over the editor, dragged onto the target, released there: dropped.
        pointer.move_to(start);
        pointer.button(true);
        let mut drag = start_drag(&file, &config);
        pointer.glide(start, over);
        std::thread::sleep(Duration::from_millis(50));
        pointer.button(false);
        let outcome = drag.wait(Duration::from_secs(10)).expect("the drag ended");
        assert_eq!(
            outcome,
            Ok(DragOutcome::Dropped {
                target: daw.window,
                taken: true,
                fetched: true
            })
        );
        let seen = daw.take();
        assert_eq!(seen.messages.first(), Some(&"enter"), "{seen:?}");
        assert!(seen.messages.contains(&"position"), "{seen:?}");
        assert_eq!(seen.messages.last(), Some(&"drop"), "{seen:?}");
        assert!(!seen.messages.contains(&"leave"), "{seen:?}");
        assert_eq!(seen.version, Some(5));
        let atoms = Atoms::new(&pointer.conn).unwrap().reply().unwrap();
        assert_eq!(seen.types[0], atoms.TEXT_URI_LIST);
        let uri_list = seen.uri_list.expect("the target read the URI list");
        assert!(uri_list.ends_with("\r\n"), "{uri_list:?}");
        let uri = uri_list.trim_end();
        assert_eq!(uri, file_uri(&file));
        let dropped = PathBuf::from(uri.trim_start_matches("file://"));
        assert!(dropped.is_file() && dropped.extension().unwrap() == "mid");
        let back = bandmate::midi::read_file(&dropped).unwrap();
        let key = |c: &bandmate::music::Clip| {
            let mut notes: Vec<_> = c
                .notes
                .iter()
                .map(|n| (n.start, n.pitch, n.length))
                .collect();
            notes.sort();
            notes
        };
        assert_eq!(key(&back), key(&clip));
        assert!(editor.take().messages.is_empty(), "the editor is no target");

        // Dragged over the target and off it again, released over nothing: a clean leave.
        pointer.move_to(start);
        pointer.button(true);
        let mut drag = start_drag(&file, &config);
        pointer.glide(start, over);
        std::thread::sleep(Duration::from_millis(50));
        pointer.glide(over, away);
        std::thread::sleep(Duration::from_millis(50));
        pointer.button(false);
        let outcome = drag.wait(Duration::from_secs(10)).expect("the drag ended");
        assert_eq!(outcome, Ok(DragOutcome::NoTarget));
        let seen = daw.take();
        assert_eq!(seen.messages.first(), Some(&"enter"), "{seen:?}");
        assert_eq!(seen.messages.last(), Some(&"leave"), "{seen:?}");
        assert!(!seen.messages.contains(&"drop"), "{seen:?}");
        assert_eq!((seen.conversions, seen.uri_list), (0, None));
        assert!(editor.take().messages.is_empty());

        // Not pressed at all: nothing happens.
        let mut drag = start_drag(&file, &config);
        let outcome = drag.wait(Duration::from_secs(10)).expect("the drag ended");
        assert_eq!(outcome, Ok(DragOutcome::NoTarget));
        assert!(daw.take().messages.is_empty());
        drop((editor, daw));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn start_drag(file: &Path, config: &DragConfig) -> DragOut {
        let drag = start(file, config.clone()).unwrap();
        // Let it read where it starts.
        std::thread::sleep(Duration::from_millis(50));
        drag
    }

    #[test]
    fn drag_without_an_x_server_is_a_message() {
        let dir = std::env::temp_dir().join(format!("bandmate-drag-nox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clip.mid");
        bandmate::midi::write_file(&example_clip(), &file).unwrap();
        let config = DragConfig {
            display: Some(":9999".into()),
            ..DragConfig::default()
        };
        let outcome = start(&file, config).unwrap().wait(Duration::from_secs(10));
        let message = outcome.expect("an answer").unwrap_err();
        assert!(
            message.starts_with("drag failed: cannot connect"),
            "{message}"
        );
        assert!(start(&dir.join("missing.mid"), DragConfig::default()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
