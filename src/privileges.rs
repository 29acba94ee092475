//! Dropping root after the listeners are bound and the pid file is written (`setuid`,
//! `setgid`): supplementary groups first, then the group, then the user, because each step
//! needs the privilege the next one gives up. Then every thread's ids are read back from
//! /proc, so that retunnel never goes on serving with root left anywhere.

use std::io;

use crate::config::{Group, User};

/// Why the privileges could not be dropped; retunnel stops rather than run as root.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// A set*id call failed.
    #[error("cannot switch to {what}: {source}; {hint}")]
    Call {
        /// `user nobody (uid 65534)` and the like.
        what: String,
        /// What the OS said.
        source: io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// The calls succeeded but the ids read back differ.
    #[error("switched to {what}, but {detail}; refusing to run with root privileges left")]
    Verify {
        /// The target identity.
        what: String,
        /// Which id is still wrong.
        detail: String,
    },
}

/// Switches the whole process to `user` and `group` (the user's primary group when `group` is
/// not given, so that no root group is kept). Does nothing when neither is set.
pub fn drop_to(user: Option<&User>, group: Option<&Group>) -> Result<(), DropError> {
    let gid = group.map(|g| g.gid).or(user.and_then(|u| u.gid));
    let what = describe(user, group, gid);
    let Some(gid) = gid else {
        return Ok(()); // nothing set (the config refuses a uid with no group)
    };
    let uid = user.map(|u| u.uid);
    if already(uid, gid) {
        return Ok(());
    }
    let call = |rc: libc::c_int| {
        if rc == 0 {
            return Ok(());
        }
        let source = io::Error::last_os_error();
        let hint = if source.raw_os_error() == Some(libc::EPERM) {
            "only root can switch users; start retunnel as root, or remove `setuid`/`setgid` and let the service manager pick the user"
        } else {
            "check the user and group"
        };
        Err(DropError::Call {
            what: what.clone(),
            source,
            hint,
        })
    };
    // glibc applies each of these to every thread of the process (the runtime's too).
    call(unsafe { libc::setgroups(1, &gid) })?;
    call(unsafe { libc::setgid(gid) })?;
    if let Some(uid) = uid {
        call(unsafe { libc::setuid(uid) })?;
    }
    verify(uid, gid).map_err(|detail| DropError::Verify { what, detail })
}

fn describe(user: Option<&User>, group: Option<&Group>, gid: Option<u32>) -> String {
    let mut parts = Vec::new();
    if let Some(u) = user {
        parts.push(format!("user {} (uid {})", u.name, u.uid));
    }
    match (group, gid) {
        (Some(g), _) => parts.push(format!("group {} (gid {})", g.name, g.gid)),
        (None, Some(gid)) => parts.push(format!("group gid {gid}")),
        (None, None) => {}
    }
    parts.join(" and ")
}

/// True when the process already runs as exactly these ids with no other group: a non-root
/// user may name itself, as the old config check allowed.
fn already(uid: Option<u32>, gid: u32) -> bool {
    let uid_ok = uid.is_none_or(|u| unsafe { libc::getuid() == u && libc::geteuid() == u });
    let gid_ok = unsafe { libc::getgid() == gid && libc::getegid() == gid };
    uid_ok && gid_ok && unsafe { libc::geteuid() } != 0
}

/// Reads every thread's real, effective, saved and file-system ids back from /proc.
fn verify(uid: Option<u32>, gid: u32) -> Result<(), String> {
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task is unreadable ({e})"))?;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        if let Some(uid) = uid {
            check_ids(&status, "Uid:", uid).map_err(|d| format!("thread {:?}: {d}", task.file_name()))?;
        }
        check_ids(&status, "Gid:", gid).map_err(|d| format!("thread {:?}: {d}", task.file_name()))?;
        let groups = status.lines().find_map(|l| l.strip_prefix("Groups:")).unwrap_or("");
        if groups.split_whitespace().any(|g| g != gid.to_string()) {
            return Err(format!("supplementary groups are still {}", groups.trim()));
        }
    }
    Ok(())
}

/// Checks a `Uid:`/`Gid:` line of /proc/PID/status: all four ids must be `want`.
pub fn check_ids(status: &str, key: &str, want: u32) -> Result<(), String> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .ok_or_else(|| format!("no {key} line"))?;
    let ids: Vec<&str> = line.split_whitespace().collect();
    if ids.len() == 4 && ids.iter().all(|i| *i == want.to_string()) {
        Ok(())
    } else {
        Err(format!(
            "{key} is {} (real, effective, saved, fs), not {want}",
            ids.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_four_ids() {
        let status = "Name:\tx\nUid:\t65534\t65534\t65534\t65534\nGid:\t0\t65534\t65534\t65534\n";
        assert!(check_ids(status, "Uid:", 65534).is_ok());
        assert!(check_ids(status, "Gid:", 65534).unwrap_err().contains("0 65534"));
        assert!(check_ids("", "Uid:", 0).is_err());
    }
}
