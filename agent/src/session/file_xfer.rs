//! File transfer (client → guest) into the user's download folder
//! (`../shared/reference/agent-and-vdiport.md` §8, §10.3).
//!
//! The client starts a transfer with `FILE_XFER_START` (an id and a GKeyFile naming the file and
//! its size), the agent creates the file and answers `CAN_SEND_DATA`, the client streams
//! `FILE_XFER_DATA` and the agent answers `SUCCESS` once the declared size has arrived.
//!
//! The client (and so the host) is not trusted with the guest's file system:
//!
//! - The name must be one plain file name ([`check_name`]): no `/`, not `.`/`..`, no control
//!   characters, at most 255 bytes (CVE-2026-57966 was a path traversal through this name).
//! - The file is created with `openat(dirfd, name, O_CREAT|O_EXCL|O_NOFOLLOW)` in the save
//!   directory opened once per transfer, so neither a symlink in the way nor a rename of a path
//!   component can redirect the write; on a clash it tries `name (1).ext` … `name (63).ext`.
//! - Nothing is preallocated: the file grows as data arrives, so a lie about the size cannot fill
//!   the disk beyond what is actually sent, and more data than declared ends the transfer.
//! - The declared size is checked against the free space (`fstatvfs` on the directory) minus what
//!   the transfers already running still expect.
//! - At most [`MAX_ACTIVE`] transfers at a time (CVE-2020-25650); an id in use is refused
//!   (CVE-2020-25651); a failed, cancelled or abandoned transfer leaves no partial file.
//!
//! The save directory is the user's choice (`XDG_DOWNLOAD_DIR`); if it is a symlink configured by
//! the user it is followed (many users link `~/Downloads` to another disk). Only its last
//! component is created when missing (mode 0700); `mkdir` never follows a symlink.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::protocol::{xfer, Message};

/// At most this many transfers at once (the limit spice-vdagentd applies, CVE-2020-25650).
pub const MAX_ACTIVE: usize = 128;
/// On a name clash, `name (1).ext` … `name (MAX_DUPLICATES).ext` are tried.
pub const MAX_DUPLICATES: u32 = 63;
/// The longest file name accepted, in bytes (`NAME_MAX` on Linux).
pub const MAX_NAME_BYTES: usize = 255;
/// The key file group that holds the transfer's keys.
pub const KEYFILE_GROUP: &str = "vdagent-file-xfer";

/// `VD_AGENT_FILE_XFER_STATUS_ERROR` detail: the error domain byte for GIO errors.
pub const ERROR_TYPE_GLIB_IO: u8 = 0;

/// `GIOErrorEnum` codes sent as ERROR detail (values from glib's `gioenums.h`).
pub mod gio {
    /// Generic failure.
    pub const FAILED: u32 = 0;
    /// No such file or directory.
    pub const NOT_FOUND: u32 = 1;
    /// The file already exists.
    pub const EXISTS: u32 = 2;
    /// It is a directory.
    pub const IS_DIRECTORY: u32 = 3;
    /// Not a directory.
    pub const NOT_DIRECTORY: u32 = 4;
    /// The file name is too long.
    pub const FILENAME_TOO_LONG: u32 = 9;
    /// The file name is invalid.
    pub const INVALID_FILENAME: u32 = 10;
    /// Too many symbolic links (a symlink where none is followed).
    pub const TOO_MANY_LINKS: u32 = 11;
    /// No space left.
    pub const NO_SPACE: u32 = 12;
    /// Invalid argument.
    pub const INVALID_ARGUMENT: u32 = 13;
    /// Permission denied.
    pub const PERMISSION_DENIED: u32 = 14;
    /// Read-only file system.
    pub const READ_ONLY: u32 = 21;
    /// Too many open files (also: too many transfers).
    pub const TOO_MANY_OPEN_FILES: u32 = 31;
    /// The input data was invalid.
    pub const INVALID_DATA: u32 = 35;
}

/// Why a transfer was refused or failed. [`XferError::status`] maps it to the reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XferError {
    /// File transfer is disabled (e.g. the active session is a greeter).
    #[error("file transfer is disabled")]
    Disabled,
    /// The START key file is unusable.
    #[error("bad FILE_XFER_START key file: {0}")]
    KeyFile(&'static str),
    /// The id names a transfer that is still running.
    #[error("transfer id {0} is already in use")]
    IdInUse(u32),
    /// [`MAX_ACTIVE`] transfers are running.
    #[error("too many transfers ({MAX_ACTIVE} active)")]
    TooMany,
    /// The name is not one plain file name.
    #[error("refused file name {name:?}: {why}")]
    BadName {
        /// The name as sent (lossy, for the log).
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("file name of {0} bytes is too long")]
    NameTooLong(usize),
    /// The declared size exceeds the free space (after what running transfers still expect).
    #[error("{size} bytes declared, {free} bytes free")]
    NoSpace {
        /// Declared size.
        size: u64,
        /// Free bytes left for this transfer.
        free: u64,
    },
    /// Every name up to `name (63).ext` exists.
    #[error("{0:?} and its {MAX_DUPLICATES} numbered variants all exist")]
    AllNamesTaken(String),
    /// More data arrived than the declared size.
    #[error("{got} bytes received for a file of {size}")]
    Overrun {
        /// Declared size.
        size: u64,
        /// Bytes received including the refused message.
        got: u64,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl XferError {
    fn io(op: &'static str) -> impl FnOnce(io::Error) -> XferError {
        move |source| XferError::Io { op, source }
    }

    /// The one mapping from an error to the FILE_XFER_STATUS the client sees. Results above
    /// SUCCESS and every detail only go to clients with FILE_XFER_DETAILED_ERRORS.
    pub fn status(&self, id: u32, detailed: bool) -> Message {
        let plain = |result| Message::FileXferStatus {
            id,
            result,
            detail: Vec::new(),
        };
        if !detailed {
            return plain(xfer::ERROR);
        }
        let code = match self {
            XferError::Disabled => return plain(xfer::DISABLED),
            XferError::NoSpace { free, .. } => {
                return Message::FileXferStatus {
                    id,
                    result: xfer::NOT_ENOUGH_SPACE,
                    detail: free.to_le_bytes().to_vec(),
                }
            }
            XferError::KeyFile(_) => gio::INVALID_ARGUMENT,
            XferError::IdInUse(_) => gio::FAILED,
            XferError::TooMany => gio::TOO_MANY_OPEN_FILES,
            XferError::BadName { .. } => gio::INVALID_FILENAME,
            XferError::NameTooLong(_) => gio::FILENAME_TOO_LONG,
            XferError::AllNamesTaken(_) => gio::EXISTS,
            XferError::Overrun { .. } => gio::INVALID_DATA,
            XferError::Io { source, .. } => gio_code(source),
        };
        let mut detail = Vec::with_capacity(5);
        detail.push(ERROR_TYPE_GLIB_IO);
        detail.extend_from_slice(&code.to_le_bytes());
        Message::FileXferStatus {
            id,
            result: xfer::ERROR,
            detail,
        }
    }
}

/// errno → `GIOErrorEnum`, for the errors creating and writing a file can give.
fn gio_code(e: &io::Error) -> u32 {
    match e.raw_os_error() {
        Some(libc::ENOENT) => gio::NOT_FOUND,
        Some(libc::EEXIST) => gio::EXISTS,
        Some(libc::EISDIR) => gio::IS_DIRECTORY,
        Some(libc::ENOTDIR) => gio::NOT_DIRECTORY,
        Some(libc::ENAMETOOLONG) => gio::FILENAME_TOO_LONG,
        Some(libc::ELOOP) => gio::TOO_MANY_LINKS,
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => gio::NO_SPACE,
        Some(libc::EINVAL) => gio::INVALID_ARGUMENT,
        Some(libc::EACCES) | Some(libc::EPERM) => gio::PERMISSION_DENIED,
        Some(libc::EROFS) => gio::READ_ONLY,
        Some(libc::EMFILE) | Some(libc::ENFILE) => gio::TOO_MANY_OPEN_FILES,
        _ => gio::FAILED,
    }
}

/// What a START key file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartInfo {
    /// The file name as sent (unescaped, not yet checked).
    pub name: String,
    /// The declared size.
    pub size: u64,
}

/// Parses the START key file: group `[vdagent-file-xfer]`, keys `name` and `size` (other keys
/// and groups ignored, the last of a repeated key wins as in GKeyFile). Accepts CRLF, `#`
/// comments, blank lines and whitespace around `=`; unescapes `\s \n \t \r \\` in values.
pub fn parse_keyfile(text: &str) -> Result<StartInfo, XferError> {
    let mut in_group = false;
    let mut name = None;
    let mut size = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let group = rest
                .trim_end()
                .strip_suffix(']')
                .ok_or(XferError::KeyFile("unterminated group header"))?;
            in_group = group == KEYFILE_GROUP;
            continue;
        }
        let (key, value) = trimmed
            .split_once('=')
            .ok_or(XferError::KeyFile("line is neither group, key nor comment"))?;
        if !in_group {
            continue;
        }
        let value = value.trim_start_matches([' ', '\t']);
        match key.trim_end() {
            "name" => name = Some(unescape(value)?),
            "size" => {
                size = Some(
                    value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| XferError::KeyFile("size is not a u64"))?,
                )
            }
            _ => {}
        }
    }
    Ok(StartInfo {
        name: name.ok_or(XferError::KeyFile("no name"))?,
        size: size.ok_or(XferError::KeyFile("no size"))?,
    })
}

/// GKeyFile string unescaping.
fn unescape(v: &str) -> Result<String, XferError> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('s') => ' ',
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('\\') => '\\',
            _ => return Err(XferError::KeyFile("bad escape in name")),
        });
    }
    Ok(out)
}

/// Checks that `name` is one plain file name to create in the save directory: not empty, not
/// `.` or `..`, no `/` (so no absolute path and no subdirectory), no NUL or other control
/// character (a newline in a download's name only confuses shells and file managers), at most
/// [`MAX_NAME_BYTES`]. A backslash is an ordinary character on Linux and is kept.
pub fn check_name(name: &str) -> Result<(), XferError> {
    let bad = |why| {
        Err(XferError::BadName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("a directory reference");
    }
    if name.contains('/') {
        return bad("contains '/'");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(XferError::NameTooLong(name.len()));
    }
    Ok(())
}

/// The `n`th alternative for `name`: `stem (n).ext`, with the extension after the last `.`
/// unless that dot starts the name; the stem is shortened (at a character boundary) when the
/// result would exceed [`MAX_NAME_BYTES`].
pub fn numbered_name(name: &str, n: u32) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let suffix = format!(" ({n}){ext}");
    let mut keep = MAX_NAME_BYTES.saturating_sub(suffix.len()).min(stem.len());
    while !stem.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &stem[..keep])
}

/// Free bytes for an unprivileged user on the file system of `dir` (`fstatvfs`).
fn statvfs_free(dir: &OwnedFd) -> io::Result<u64> {
    // SAFETY: statvfs is plain data; all-zero is a valid value that fstatvfs overwrites.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open descriptor owned for the call's duration; `st` is writable.
    if unsafe { libc::fstatvfs(dir.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// (st_dev, st_ino) of `name` in `dir`, without following a symlink.
fn file_id(dir: &OwnedFd, name: &CString) -> io::Result<(u64, u64)> {
    // SAFETY: stat is plain data; fstatat overwrites it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open, `name` is NUL-terminated, `st` is writable.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Creates `name` in `dir` exclusively, never through a symlink. `Ok(None)`: it exists.
fn create_at(dir: &OwnedFd, name: &CString) -> io::Result<Option<OwnedFd>> {
    // SAFETY: `dir` is open, `name` is NUL-terminated; the flags create a new file only.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        // EEXIST: a file, directory or symlink (even dangling) has the name.
        return if e.raw_os_error() == Some(libc::EEXIST) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// One running transfer.
struct Active {
    dir: OwnedFd,
    /// The name actually created (after clash numbering).
    name: CString,
    file: File,
    /// (dev, ino) of the created file, to unlink only that file.
    ino: (u64, u64),
    size: u64,
    written: u64,
}

impl Active {
    /// Closes and removes the partial file, unless the name now points at something else.
    fn discard(self) {
        let Active {
            dir,
            name,
            file,
            ino,
            ..
        } = self;
        drop(file);
        match file_id(&dir, &name) {
            Ok(now) if now == ino => {
                // SAFETY: `dir` is open and `name` NUL-terminated; unlinkat removes one entry.
                if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
                    tracing::warn!(name = ?name, err = %io::Error::last_os_error(), "file transfer: cannot remove partial file");
                }
            }
            Ok(_) => {
                tracing::warn!(name = ?name, "file transfer: partial file was replaced; left alone")
            }
            Err(e) => {
                tracing::debug!(name = ?name, err = %e, "file transfer: partial file already gone")
            }
        }
    }
}

/// Counters, one per outcome (read by tests and the status log).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct XferStats {
    /// Transfers that got CAN_SEND_DATA.
    pub started: u64,
    /// Transfers that completed (SUCCESS).
    pub completed: u64,
    /// STARTs refused (any reason).
    pub refused: u64,
    /// Transfers that failed after starting (write error, overrun).
    pub failed: u64,
    /// Transfers cancelled by the client or by its disconnection.
    pub cancelled: u64,
    /// DATA or STATUS messages for an id not in progress (ignored).
    pub unknown_id: u64,
}

/// The session agent's file transfers.
pub struct FileXfers {
    dir: PathBuf,
    active: HashMap<u32, Active>,
    disabled: bool,
    stats: XferStats,
    free_space: fn(&OwnedFd) -> io::Result<u64>,
}

impl FileXfers {
    /// Transfers saved into `dir`.
    pub fn new(dir: PathBuf) -> FileXfers {
        FileXfers {
            dir,
            active: HashMap::new(),
            disabled: false,
            stats: XferStats::default(),
            free_space: statvfs_free,
        }
    }

    /// The user's download folder: `XDG_DOWNLOAD_DIR` from `$XDG_CONFIG_HOME/user-dirs.dirs`
    /// (default `~/.config`), else `$HOME/Downloads`.
    pub fn download_dir() -> PathBuf {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".config"));
        std::fs::read_to_string(config.join("user-dirs.dirs"))
            .ok()
            .and_then(|text| parse_user_dirs(&text, "XDG_DOWNLOAD_DIR", &home))
            .unwrap_or_else(|| home.join("Downloads"))
    }

    /// The save directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Outcome counters.
    pub fn stats(&self) -> &XferStats {
        &self.stats
    }

    /// Transfers in progress.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Refuse (`disabled`) or accept new transfers; running ones go on.
    pub fn set_disabled(&mut self, disabled: bool) {
        self.disabled = disabled;
    }

    /// Handles FILE_XFER_START, FILE_XFER_DATA and FILE_XFER_STATUS from the client; returns
    /// the FILE_XFER_STATUS replies. `detailed_errors`: the client has
    /// `FILE_XFER_DETAILED_ERRORS`. Other messages are ignored.
    pub fn handle(&mut self, msg: &Message, detailed_errors: bool) -> Vec<Message> {
        match msg {
            Message::FileXferStart { id, keyfile } => {
                let reply = match self.start(*id, keyfile) {
                    Ok(()) => {
                        self.stats.started += 1;
                        Message::FileXferStatus {
                            id: *id,
                            result: xfer::CAN_SEND_DATA,
                            detail: Vec::new(),
                        }
                    }
                    Err(e) => {
                        self.stats.refused += 1;
                        if log_now(self.stats.refused) {
                            tracing::warn!(id, err = %e, refused = self.stats.refused, "file transfer refused");
                        }
                        e.status(*id, detailed_errors)
                    }
                };
                vec![reply]
            }
            Message::FileXferData { id, data } => self
                .data(*id, data)
                .map(|result| match result {
                    Ok(()) => Message::FileXferStatus {
                        id: *id,
                        result: xfer::SUCCESS,
                        detail: Vec::new(),
                    },
                    Err(e) => e.status(*id, detailed_errors),
                })
                .into_iter()
                .collect(),
            Message::FileXferStatus { id, result, .. } => {
                if *result == xfer::CAN_SEND_DATA {
                    // Only the agent sends this; nothing to do.
                    tracing::debug!(id, "CAN_SEND_DATA from the client ignored");
                } else if let Some(t) = self.active.remove(id) {
                    // CANCELLED (or an ERROR) from the client ends the transfer.
                    tracing::info!(
                        id,
                        result,
                        written = t.written,
                        "file transfer ended by the client"
                    );
                    self.stats.cancelled += 1;
                    t.discard();
                } else {
                    self.stats.unknown_id += 1;
                    tracing::debug!(id, result, "file transfer status for an unknown id");
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Cancels every transfer: closes and removes the partial files.
    pub fn client_disconnected(&mut self) {
        for (id, t) in self.active.drain() {
            tracing::info!(
                id,
                written = t.written,
                "file transfer cancelled: client gone"
            );
            self.stats.cancelled += 1;
            t.discard();
        }
    }

    fn start(&mut self, id: u32, keyfile: &str) -> Result<(), XferError> {
        if self.disabled {
            return Err(XferError::Disabled);
        }
        if self.active.contains_key(&id) {
            return Err(XferError::IdInUse(id));
        }
        if self.active.len() >= MAX_ACTIVE {
            return Err(XferError::TooMany);
        }
        let info = parse_keyfile(keyfile)?;
        check_name(&info.name)?;

        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => tracing::info!(dir = %self.dir.display(), "created the download directory"),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(XferError::io("create the download directory")(e)),
        }
        let dir: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&self.dir)
            .map_err(XferError::io("open the download directory"))?
            .into();

        let expected: u64 = self
            .active
            .values()
            .map(|t| t.size.saturating_sub(t.written))
            .fold(0, u64::saturating_add);
        let free = (self.free_space)(&dir)
            .map_err(XferError::io("fstatvfs the download directory"))?
            .saturating_sub(expected);
        if info.size > free {
            return Err(XferError::NoSpace {
                size: info.size,
                free,
            });
        }

        let mut created = None;
        for n in 0..=MAX_DUPLICATES {
            let candidate = if n == 0 {
                info.name.clone()
            } else {
                numbered_name(&info.name, n)
            };
            // check_name refused NUL, and numbering adds none.
            let cname = CString::new(candidate.as_bytes())
                .map_err(|_| XferError::KeyFile("NUL in name"))?;
            if let Some(fd) = create_at(&dir, &cname).map_err(XferError::io("create the file"))? {
                created = Some((cname, fd));
                break;
            }
        }
        let (name, fd) = created.ok_or_else(|| XferError::AllNamesTaken(info.name.clone()))?;
        let file = File::from(fd);
        let fid = match file.metadata() {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) => {
                // Cannot tell the file apart later: remove it by name now (we just created it).
                // SAFETY: `dir` is open and `name` NUL-terminated.
                unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
                return Err(XferError::io("fstat the new file")(e));
            }
        };
        tracing::info!(
            id,
            size = info.size,
            file = %self.dir.join(std::ffi::OsStr::from_bytes(name.as_bytes())).display(),
            "file transfer started"
        );
        self.active.insert(
            id,
            Active {
                dir,
                name,
                file,
                ino: fid,
                size: info.size,
                written: 0,
            },
        );
        Ok(())
    }

    /// `None`: nothing to answer (more data expected, or an unknown id).
    fn data(&mut self, id: u32, data: &[u8]) -> Option<Result<(), XferError>> {
        let Some(t) = self.active.get_mut(&id) else {
            self.stats.unknown_id += 1;
            if log_now(self.stats.unknown_id) {
                tracing::warn!(
                    id,
                    ignored = self.stats.unknown_id,
                    "file transfer data for an unknown id (ignored)"
                );
            }
            return None;
        };
        let got = t.written.saturating_add(data.len() as u64);
        let result = if got > t.size {
            Err(XferError::Overrun { size: t.size, got })
        } else {
            t.file.write_all(data).map_err(XferError::io("write"))
        };
        if let Err(e) = result {
            let t = self.active.remove(&id)?;
            tracing::warn!(id, err = %e, "file transfer failed; partial file removed");
            self.stats.failed += 1;
            t.discard();
            return Some(Err(e));
        }
        t.written = got;
        if got < t.size {
            return None;
        }
        let t = self.active.remove(&id)?;
        tracing::info!(id, size = t.size, name = ?t.name, "file transfer complete");
        self.stats.completed += 1;
        Some(Ok(()))
    }
}

impl Drop for FileXfers {
    /// An agent that stops (or restarts) leaves no partial files either.
    fn drop(&mut self) {
        self.client_disconnected();
    }
}

/// Rate limit for logs a client can provoke at will: the first 10 events, then every power of two.
fn log_now(count: u64) -> bool {
    count <= 10 || count.is_power_of_two()
}

/// The value of `key` in a `user-dirs.dirs` text: `KEY="$HOME/sub"` or `KEY="/abs"`, with
/// `\"`, `\\` and `\$` escapes. `None` when absent or malformed.
pub fn parse_user_dirs(text: &str, key: &str, home: &Path) -> Option<PathBuf> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        let v = v.trim();
        let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            continue;
        };
        let mut s = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                s.extend(chars.next());
            } else {
                s.push(c);
            }
        }
        let path = if let Some(rest) = s.strip_prefix("$HOME") {
            match rest.strip_prefix('/') {
                Some(rel) => home.join(rel),
                None if rest.is_empty() => home.to_path_buf(),
                None => continue,
            }
        } else if s.starts_with('/') {
            PathBuf::from(s)
        } else {
            continue;
        };
        found = Some(path);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "spice-agent-xfer-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn start(id: u32, name: &str, size: u64) -> Message {
        let esc = name.replace('\\', "\\\\").replace('\n', "\\n");
        Message::FileXferStart {
            id,
            keyfile: format!("[vdagent-file-xfer]\nname={esc}\nsize={size}\n"),
        }
    }
    fn data(id: u32, bytes: &[u8]) -> Message {
        Message::FileXferData {
            id,
            data: bytes.to_vec(),
        }
    }
    fn status(id: u32, result: u32) -> Message {
        Message::FileXferStatus {
            id,
            result,
            detail: Vec::new(),
        }
    }
    fn gio_err(id: u32, code: u32) -> Message {
        let mut detail = vec![0u8];
        detail.extend_from_slice(&code.to_le_bytes());
        Message::FileXferStatus {
            id,
            result: xfer::ERROR,
            detail,
        }
    }
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn whole_transfer_in_pieces() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        assert_eq!(
            x.handle(&start(1, "a.txt", 10), true),
            vec![status(1, xfer::CAN_SEND_DATA)]
        );
        assert!(x.handle(&data(1, b"0123"), true).is_empty());
        assert!(x.handle(&data(1, b""), true).is_empty());
        assert!(x.handle(&data(1, b"456"), true).is_empty());
        assert_eq!(
            x.handle(&data(1, b"789"), true),
            vec![status(1, xfer::SUCCESS)]
        );
        assert_eq!(std::fs::read(tmp.0.join("a.txt")).unwrap(), b"0123456789");
        let mode = std::fs::metadata(tmp.0.join("a.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o022, 0, "not group/other writable");
        assert_eq!(x.active(), 0);
        assert_eq!((x.stats().started, x.stats().completed), (1, 1));
        // The id is free again; more data for it is ignored.
        assert!(x.handle(&data(1, b"x"), true).is_empty());
        assert_eq!(x.stats().unknown_id, 1);
        assert_eq!(std::fs::read(tmp.0.join("a.txt")).unwrap(), b"0123456789");
    }

    #[test]
    fn empty_file_completes_on_empty_data() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        assert_eq!(
            x.handle(&start(7, "empty", 0), false),
            vec![status(7, xfer::CAN_SEND_DATA)]
        );
        assert_eq!(
            x.handle(&data(7, b""), false),
            vec![status(7, xfer::SUCCESS)]
        );
        assert_eq!(std::fs::read(tmp.0.join("empty")).unwrap(), b"");
    }

    #[test]
    fn name_clash_gets_numbered() {
        let tmp = TempDir::new();
        std::fs::write(tmp.0.join("a.txt"), b"old").unwrap();
        std::fs::write(tmp.0.join(".bashrc"), b"old").unwrap();
        std::fs::create_dir(tmp.0.join("noext")).unwrap();
        let mut x = FileXfers::new(tmp.0.clone());
        for (id, n) in [(1, "a.txt"), (2, "a.txt"), (3, ".bashrc"), (4, "noext")] {
            assert_eq!(
                x.handle(&start(id, n, 1), false),
                vec![status(id, xfer::CAN_SEND_DATA)]
            );
            assert_eq!(
                x.handle(&data(id, b"n"), false),
                vec![status(id, xfer::SUCCESS)]
            );
        }
        assert_eq!(
            names(&tmp.0),
            [
                ".bashrc",
                ".bashrc (1)",
                "a (1).txt",
                "a (2).txt",
                "a.txt",
                "noext",
                "noext (1)"
            ]
        );
        assert_eq!(std::fs::read(tmp.0.join("a.txt")).unwrap(), b"old");
    }

    #[test]
    fn numbered_names() {
        assert_eq!(numbered_name("a.tar.gz", 3), "a.tar (3).gz");
        assert_eq!(numbered_name(".x", 1), ".x (1)");
        assert_eq!(numbered_name("x.", 1), "x (1).");
        let long = "é".repeat(126) + ".b"; // 254 bytes: the suffix forces a cut inside "é"
        let n = numbered_name(&long, 63);
        assert!(n.len() <= MAX_NAME_BYTES, "{}", n.len());
        assert!(n.ends_with(" (63).b"));
    }

    #[test]
    fn all_numbered_names_taken() {
        let tmp = TempDir::new();
        std::fs::write(tmp.0.join("f"), b"").unwrap();
        for n in 1..=MAX_DUPLICATES {
            std::fs::write(tmp.0.join(numbered_name("f", n)), b"").unwrap();
        }
        let mut x = FileXfers::new(tmp.0.clone());
        assert_eq!(
            x.handle(&start(1, "f", 1), true),
            vec![gio_err(1, gio::EXISTS)]
        );
        assert_eq!(
            x.handle(&start(1, "f", 1), false),
            vec![status(1, xfer::ERROR)]
        );
    }

    #[test]
    fn bad_names_refused() {
        let tmp = TempDir::new();
        let inner = tmp.0.join("dl");
        let mut x = FileXfers::new(inner.clone());
        for (id, n) in [
            (1, "../x"),
            (2, "/etc/x"),
            (3, "a/b"),
            (4, ".."),
            (5, "."),
            (6, ""),
            (7, "a\nb"),
            (8, "x/"),
        ] {
            assert_eq!(
                x.handle(&start(id, n, 1), true),
                vec![gio_err(id, gio::INVALID_FILENAME)],
                "{n:?}"
            );
            assert_eq!(
                x.handle(&start(id, n, 1), false),
                vec![status(id, xfer::ERROR)],
                "{n:?}"
            );
        }
        let long = "x".repeat(256);
        assert_eq!(
            x.handle(&start(9, &long, 1), true),
            vec![gio_err(9, gio::FILENAME_TOO_LONG)]
        );
        // Nothing was created anywhere: not even the download directory.
        assert_eq!(names(&tmp.0), Vec::<String>::new());
        assert_eq!(x.stats().refused, 17);
        // A backslash is a plain character; 255 bytes is fine.
        let ok = "x".repeat(255);
        for (id, n) in [(10, "a\\b"), (11, ok.as_str())] {
            assert_eq!(
                x.handle(&start(id, n, 0), true),
                vec![status(id, xfer::CAN_SEND_DATA)]
            );
            assert_eq!(
                x.handle(&data(id, b""), true),
                vec![status(id, xfer::SUCCESS)]
            );
        }
        assert_eq!(names(&inner), vec!["a\\b".to_owned(), ok]);
    }

    #[test]
    fn symlink_in_the_way_is_not_followed() {
        let tmp = TempDir::new();
        let dl = tmp.0.join("dl");
        std::fs::create_dir(&dl).unwrap();
        let outside = tmp.0.join("outside");
        std::fs::write(&outside, b"precious").unwrap();
        std::os::unix::fs::symlink(&outside, dl.join("a.txt")).unwrap();
        std::os::unix::fs::symlink(tmp.0.join("nowhere"), dl.join("b.txt")).unwrap();
        let mut x = FileXfers::new(dl.clone());
        for (id, n) in [(1, "a.txt"), (2, "b.txt")] {
            assert_eq!(
                x.handle(&start(id, n, 3), true),
                vec![status(id, xfer::CAN_SEND_DATA)]
            );
            assert_eq!(
                x.handle(&data(id, b"new"), true),
                vec![status(id, xfer::SUCCESS)]
            );
        }
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        assert!(
            !tmp.0.join("nowhere").exists(),
            "dangling link not followed"
        );
        assert_eq!(std::fs::read(dl.join("a (1).txt")).unwrap(), b"new");
        assert_eq!(std::fs::read(dl.join("b (1).txt")).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(dl.join("a.txt"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn directory_created_0700_only_last_component() {
        let tmp = TempDir::new();
        let dl = tmp.0.join("Downloads");
        let mut x = FileXfers::new(dl.clone());
        assert_eq!(
            x.handle(&start(1, "f", 1), false),
            vec![status(1, xfer::CAN_SEND_DATA)]
        );
        let mode = std::fs::metadata(&dl).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A missing parent is not created.
        let mut y = FileXfers::new(tmp.0.join("no/such"));
        assert_eq!(
            y.handle(&start(1, "f", 1), true),
            vec![gio_err(1, gio::NOT_FOUND)]
        );
        assert!(!tmp.0.join("no").exists());
    }

    fn free_100(_: &OwnedFd) -> io::Result<u64> {
        Ok(100)
    }

    #[test]
    fn not_enough_space() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        x.free_space = free_100;
        assert_eq!(
            x.handle(&start(1, "big", 101), true),
            vec![Message::FileXferStatus {
                id: 1,
                result: xfer::NOT_ENOUGH_SPACE,
                detail: 100u64.to_le_bytes().to_vec()
            }]
        );
        assert_eq!(
            x.handle(&start(1, "big", 101), false),
            vec![status(1, xfer::ERROR)]
        );
        // What running transfers still expect counts against the free space.
        assert_eq!(
            x.handle(&start(2, "a", 60), true),
            vec![status(2, xfer::CAN_SEND_DATA)]
        );
        assert!(x.handle(&data(2, &[0; 20]), true).is_empty());
        assert_eq!(
            x.handle(&start(3, "b", 61), true),
            vec![Message::FileXferStatus {
                id: 3,
                result: xfer::NOT_ENOUGH_SPACE,
                detail: 60u64.to_le_bytes().to_vec()
            }]
        );
        assert_eq!(names(&tmp.0), ["a"]);
    }

    #[test]
    fn real_statvfs_refuses_absurd_size() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        let r = x.handle(&start(1, "huge", u64::MAX), true);
        assert!(
            matches!(&r[..], [Message::FileXferStatus { result: xfer::NOT_ENOUGH_SPACE, detail, .. }] if detail.len() == 8)
        );
        assert!(names(&tmp.0).is_empty());
    }

    #[test]
    fn size_lie_errors_and_removes_the_file() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        x.handle(&start(1, "a", 4), true);
        assert!(x.handle(&data(1, b"012"), true).is_empty());
        assert_eq!(
            x.handle(&data(1, b"34"), true),
            vec![gio_err(1, gio::INVALID_DATA)]
        );
        assert!(names(&tmp.0).is_empty());
        assert_eq!(x.stats().failed, 1);
        // Later data for the id is ignored.
        assert!(x.handle(&data(1, b"3"), true).is_empty());
        assert!(names(&tmp.0).is_empty());
        x.handle(&start(2, "b", 1), false);
        assert_eq!(
            x.handle(&data(2, b"12"), false),
            vec![status(2, xfer::ERROR)]
        );
        assert!(names(&tmp.0).is_empty());
    }

    #[test]
    fn cancel_removes_the_partial_file() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        x.handle(&start(1, "a", 4), true);
        x.handle(&data(1, b"01"), true);
        assert!(x.handle(&status(1, xfer::CANCELLED), true).is_empty());
        assert!(names(&tmp.0).is_empty());
        assert_eq!((x.active(), x.stats().cancelled), (0, 1));
        // A cancel for an unknown id is harmless.
        assert!(x.handle(&status(9, xfer::CANCELLED), true).is_empty());
    }

    #[test]
    fn replaced_partial_file_is_not_removed() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        x.handle(&start(1, "a", 4), true);
        std::fs::remove_file(tmp.0.join("a")).unwrap();
        std::fs::write(tmp.0.join("a"), b"user's").unwrap();
        x.handle(&status(1, xfer::CANCELLED), true);
        assert_eq!(std::fs::read(tmp.0.join("a")).unwrap(), b"user's");
    }

    #[test]
    fn limits_on_active_transfers_and_ids() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        assert_eq!(
            x.handle(&start(1, "f", 1), true),
            vec![status(1, xfer::CAN_SEND_DATA)]
        );
        assert_eq!(
            x.handle(&start(1, "g", 1), true),
            vec![gio_err(1, gio::FAILED)]
        );
        assert_eq!(
            x.handle(&start(1, "g", 1), false),
            vec![status(1, xfer::ERROR)]
        );
        for id in 2..=MAX_ACTIVE as u32 {
            assert_eq!(
                x.handle(&start(id, &format!("f{id}"), 1), true),
                vec![status(id, xfer::CAN_SEND_DATA)]
            );
        }
        assert_eq!(x.active(), MAX_ACTIVE);
        let id = MAX_ACTIVE as u32 + 1;
        assert_eq!(
            x.handle(&start(id, "f", 1), true),
            vec![gio_err(id, gio::TOO_MANY_OPEN_FILES)]
        );
        assert_eq!(
            x.handle(&start(id, "f", 1), false),
            vec![status(id, xfer::ERROR)]
        );
        assert_eq!(names(&tmp.0).len(), MAX_ACTIVE);
        // One finishes: room for another.
        assert_eq!(
            x.handle(&data(5, b"x"), true),
            vec![status(5, xfer::SUCCESS)]
        );
        assert_eq!(
            x.handle(&start(id, "f", 1), true),
            vec![status(id, xfer::CAN_SEND_DATA)]
        );
        // The client goes away: every partial file is removed, the finished one stays.
        x.client_disconnected();
        assert_eq!(x.active(), 0);
        assert_eq!(names(&tmp.0), ["f5"]);
    }

    #[test]
    fn disabled() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        x.handle(&start(1, "running", 2), true);
        x.set_disabled(true);
        assert_eq!(
            x.handle(&start(2, "a", 1), true),
            vec![status(2, xfer::DISABLED)]
        );
        assert_eq!(
            x.handle(&start(2, "a", 1), false),
            vec![status(2, xfer::ERROR)]
        );
        // A running transfer goes on.
        assert_eq!(
            x.handle(&data(1, b"ok"), true),
            vec![status(1, xfer::SUCCESS)]
        );
        x.set_disabled(false);
        assert_eq!(
            x.handle(&start(2, "a", 1), true),
            vec![status(2, xfer::CAN_SEND_DATA)]
        );
    }

    #[test]
    fn client_disconnected_removes_partial_files() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        x.handle(&start(1, "a", 4), true);
        x.handle(&start(2, "b", 4), true);
        x.handle(&data(2, b"12"), true);
        assert_eq!(names(&tmp.0), ["a", "b"]);
        x.client_disconnected();
        assert!(names(&tmp.0).is_empty());
        assert_eq!(x.stats().cancelled, 2);
        assert!(x.handle(&data(2, b"34"), true).is_empty());
        assert!(names(&tmp.0).is_empty());
    }

    #[test]
    fn drop_removes_partial_files() {
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        x.handle(&start(1, "a", 4), true);
        x.handle(&start(2, "done", 1), true);
        x.handle(&data(2, b"1"), true);
        drop(x);
        assert_eq!(names(&tmp.0), ["done"]);
    }

    #[test]
    fn keyfile_parsing() {
        let kf = "# comment\r\n\r\n[other]\r\nname=wrong\r\n[vdagent-file-xfer]\r\n  name =  my\\sfile\\\\x.txt\r\nsize\t= 42 \r\nfile-xfer-nr=1\r\nname[fr]=autre\r\n";
        assert_eq!(
            parse_keyfile(kf).unwrap(),
            StartInfo {
                name: "my file\\x.txt".to_owned(),
                size: 42
            }
        );
        assert!(parse_keyfile("[vdagent-file-xfer]\nsize=1\n").is_err());
        assert!(parse_keyfile("[vdagent-file-xfer]\nname=a\n").is_err());
        assert!(parse_keyfile("[vdagent-file-xfer]\nname=a\nsize=-1\n").is_err());
        assert!(parse_keyfile("[vdagent-file-xfer]\nname=a\nsize=18446744073709551616\n").is_err());
        assert!(parse_keyfile("[vdagent-file-xfer]\nname=a\\q\nsize=1\n").is_err());
        assert!(parse_keyfile("[vdagent-file-xfer\nname=a\nsize=1\n").is_err());
        assert!(parse_keyfile("[other]\nname=a\nsize=1\n").is_err());
        let tmp = TempDir::new();
        let mut x = FileXfers::new(tmp.0.clone());
        let bad = Message::FileXferStart {
            id: 3,
            keyfile: "garbage".into(),
        };
        assert_eq!(
            x.handle(&bad, true),
            vec![gio_err(3, gio::INVALID_ARGUMENT)]
        );
    }

    #[test]
    fn user_dirs() {
        let home = Path::new("/home/u");
        let t = "# XDG\nXDG_DESKTOP_DIR=\"$HOME/Desktop\"\nXDG_DOWNLOAD_DIR=\"$HOME/Télé chargements\"\n";
        assert_eq!(
            parse_user_dirs(t, "XDG_DOWNLOAD_DIR", home),
            Some(home.join("Télé chargements"))
        );
        assert_eq!(
            parse_user_dirs("XDG_DOWNLOAD_DIR=\"/data/dl\"\n", "XDG_DOWNLOAD_DIR", home),
            Some(PathBuf::from("/data/dl"))
        );
        assert_eq!(
            parse_user_dirs(
                "XDG_DOWNLOAD_DIR=\"$HOME/a\\\"b\"",
                "XDG_DOWNLOAD_DIR",
                home
            ),
            Some(home.join("a\"b"))
        );
        assert_eq!(
            parse_user_dirs("XDG_DOWNLOAD_DIR=\"rel\"", "XDG_DOWNLOAD_DIR", home),
            None
        );
        assert_eq!(
            parse_user_dirs("XDG_DOWNLOAD_DIR=$HOME/x", "XDG_DOWNLOAD_DIR", home),
            None
        );
        assert_eq!(parse_user_dirs("", "XDG_DOWNLOAD_DIR", home), None);
    }
}
