//! Which session agents may serve the client: only one running in an *active* login session
//! (the user at the screen), as spice-vdagentd decides (reference §10.1), from systemd-logind's
//! state files and the peer's cgroup, without a D-Bus round trip.
//!
//! A peer is checked by the pid and uid the kernel reported for its socket (`SO_PEERCRED`). Its
//! session is the `session-ID.scope` in `/proc/PID/cgroup`; an agent started by the user's
//! systemd instance (the user unit) has none, and then any active session of the same uid
//! counts. `/proc/PID` must still belong to that uid when it is read, so a pid reused by another
//! user's process between connect and check is refused (CVE-2020-25653 was that race).
//! Without logind (no `/run/systemd/sessions`) every local peer is allowed, as spice-vdagentd
//! without session integration does.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the checks read from (`/proc` and `/run/systemd/sessions`; tests point elsewhere).
#[derive(Debug, Clone)]
pub struct SeatPaths {
    /// procfs.
    pub proc: PathBuf,
    /// logind's session files.
    pub sessions: PathBuf,
}

impl Default for SeatPaths {
    fn default() -> Self {
        SeatPaths {
            proc: PathBuf::from("/proc"),
            sessions: PathBuf::from("/run/systemd/sessions"),
        }
    }
}

/// Why a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeatError {
    /// The peer's process is gone or now belongs to someone else.
    #[error("pid {pid} is gone or no longer belongs to uid {uid}")]
    PidChanged {
        /// Pid.
        pid: i32,
        /// Uid.
        uid: u32,
    },
    /// The peer's session is not the active one.
    #[error("session {0} is not active")]
    Inactive(String),
    /// The peer's uid has no active session.
    #[error("uid {0} has no active session")]
    NoActiveSession(u32),
}

/// Reads a logind session file's KEY=VALUE pairs.
fn session_file(dir: &Path, id: &str) -> Option<Vec<(String, String)>> {
    let text = fs::read_to_string(dir.join(id)).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn field<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn is_active_for(f: &[(String, String)], uid: u32) -> bool {
    field(f, "ACTIVE") == Some("1") && field(f, "UID").and_then(|u| u.parse().ok()) == Some(uid)
}

/// The session id in a `/proc/PID/cgroup` text (`.../session-ID.scope`).
pub fn session_of_cgroup(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|l| {
        let path = l.rsplit(':').next()?;
        path.split('/')
            .find_map(|c| c.strip_prefix("session-")?.strip_suffix(".scope"))
            .map(str::to_owned)
    })
}

/// Checks a peer; `Ok(Some(session))` names its session, `Ok(None)`: no logind here, or root.
pub fn check_peer(paths: &SeatPaths, pid: i32, uid: u32) -> Result<Option<String>, SeatError> {
    let proc_dir = paths.proc.join(pid.to_string());
    let cgroup = fs::read_to_string(proc_dir.join("cgroup")).unwrap_or_default();
    // after reading: the pid must still be the same user's
    let owner = fs::metadata(&proc_dir).map(|m| m.uid()).ok();
    if owner != Some(uid) {
        return Err(SeatError::PidChanged { pid, uid });
    }
    if uid == 0 || !paths.sessions.is_dir() {
        return Ok(None);
    }
    if let Some(id) = session_of_cgroup(&cgroup) {
        return match session_file(&paths.sessions, &id) {
            Some(f) if is_active_for(&f, uid) => Ok(Some(id)),
            _ => Err(SeatError::Inactive(id)),
        };
    }
    // a user-manager service: any active session of that uid
    let entries = fs::read_dir(&paths.sessions).map_err(|_| SeatError::NoActiveSession(uid))?;
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if id.ends_with(".ref") {
            continue;
        }
        if session_file(&paths.sessions, &id).is_some_and(|f| is_active_for(&f, uid)) {
            return Ok(Some(id));
        }
    }
    Err(SeatError::NoActiveSession(uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_session_scopes_are_found() {
        assert_eq!(
            session_of_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n").as_deref(),
            Some("3")
        );
        assert_eq!(
            session_of_cgroup(
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.service\n"
            ),
            None
        );
        assert_eq!(
            session_of_cgroup("1:name=systemd:/user.slice/user-0.slice/session-c2.scope\n")
                .as_deref(),
            Some("c2")
        );
    }

    #[test]
    fn only_active_sessions_of_the_peer_pass() {
        let dir = std::env::temp_dir().join(format!("seat-test-{}", std::process::id()));
        let (proc, sessions) = (dir.join("proc"), dir.join("sessions"));
        let me = std::process::id() as i32;
        fs::create_dir_all(proc.join(me.to_string())).unwrap();
        fs::create_dir_all(&sessions).unwrap();
        // As root (CI), the fake /proc/PID is handed to an ordinary uid, so the session rules
        // (which root bypasses) are what is tested; otherwise our own uid is that user.
        // SAFETY: getuid cannot fail.
        let uid = match unsafe { libc::getuid() } {
            0 => {
                std::os::unix::fs::chown(proc.join(me.to_string()), Some(4242), None).unwrap();
                4242
            }
            u => u,
        };
        let paths = SeatPaths {
            proc: proc.clone(),
            sessions: sessions.clone(),
        };
        let cg = |s: &str| fs::write(proc.join(me.to_string()).join("cgroup"), s).unwrap();
        fs::write(
            sessions.join("2"),
            format!("UID={uid}\nACTIVE=1\nTYPE=x11\n"),
        )
        .unwrap();
        fs::write(sessions.join("5"), format!("UID={uid}\nACTIVE=0\n")).unwrap();
        cg("0::/user.slice/session-2.scope\n");
        assert_eq!(check_peer(&paths, me, uid), Ok(Some("2".into())));
        cg("0::/user.slice/session-5.scope\n");
        assert_eq!(
            check_peer(&paths, me, uid),
            Err(SeatError::Inactive("5".into()))
        );
        cg("0::/user.slice/user@1000.service/app.slice\n");
        assert_eq!(check_peer(&paths, me, uid), Ok(Some("2".into())));
        fs::write(sessions.join("2"), format!("UID={uid}\nACTIVE=0\n")).unwrap();
        assert_eq!(
            check_peer(&paths, me, uid),
            Err(SeatError::NoActiveSession(uid))
        );
        // the pid belongs to someone else now
        assert_eq!(
            check_peer(&paths, me, uid.wrapping_add(1)),
            Err(SeatError::PidChanged {
                pid: me,
                uid: uid.wrapping_add(1)
            })
        );
        assert!(check_peer(&paths, 999_999_999, uid).is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
