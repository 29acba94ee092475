//! Detaching from the terminal (`foreground = no`, `-d`). The fork happens in `main` before
//! the async runtime starts, because forking a process that already has threads leaves the
//! child with only the forking one. The parent stays until the child reports that it is
//! listening (or has failed), so that `retunnel -d` still fails loudly with the right exit
//! code, and a service manager's `Type=forking` sees a ready service when the parent exits.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Which side of the fork this is.
#[derive(Debug)]
pub enum Detached {
    /// The original process: exit with this code (0 once the child is ready).
    Parent(u8),
    /// The detached child: carry on, and call [`Ready::done`] once serving.
    Child(Ready),
}

/// The child's end of the pipe to the waiting parent.
#[derive(Debug)]
pub struct Ready {
    pipe: File,
}

/// Forks; the child starts a new session (no controlling terminal). Call with one thread only.
pub fn detach() -> io::Result<Detached> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            if unsafe { libc::setsid() } == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(Detached::Child(Ready { pipe: write.into() }))
        }
        child => {
            drop(write);
            Ok(Detached::Parent(wait_for_child(read.into(), child)))
        }
    }
}

/// One byte means ready; end of file without it means the child failed (and already printed
/// why on the shared standard error), so the parent exits with the child's code.
fn wait_for_child(mut pipe: File, child: libc::pid_t) -> u8 {
    let mut byte = [0u8; 1];
    if matches!(pipe.read(&mut byte), Ok(1)) {
        return 0;
    }
    let mut status = 0;
    if unsafe { libc::waitpid(child, &mut status, 0) } == child && libc::WIFEXITED(status) {
        return libc::WEXITSTATUS(status) as u8;
    }
    1
}

impl Ready {
    /// Tells the parent to exit with success, then lets go of the terminal: standard input,
    /// output and error become /dev/null (logs go to `output` or syslog from here on).
    pub fn done(mut self) -> io::Result<()> {
        self.pipe.write_all(b"R")?;
        drop(self.pipe);
        let null = File::options().read(true).write(true).open("/dev/null")?;
        for fd in 0..=2 {
            if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
