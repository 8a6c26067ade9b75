//! While the TUI owns the terminal, whatever C libraries write to file descriptor 2 (alsa-lib
//! and JACK print there when audio devices are probed, mid-call too) goes to a file instead of
//! over the screen. Restored on drop and by the panic hook, so a panic message still reaches the
//! user's terminal.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// The terminal's original fd 2 while redirected, else -1.
static SAVED: AtomicI32 = AtomicI32::new(-1);

pub struct StderrRedirect(());

impl StderrRedirect {
    pub fn to_file(path: &Path) -> io::Result<StderrRedirect> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        // SAFETY: dup and dup2 only take descriptor numbers; 2 and the file's are open here,
        // and the saved copy stays open until `restore` closes it.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 {
            return Err(io::Error::last_os_error());
        }
        if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
            let error = io::Error::last_os_error();
            unsafe { libc::close(saved) };
            return Err(error);
        }
        SAVED.store(saved, Ordering::SeqCst);
        Ok(StderrRedirect(()))
    }
}

/// Puts the terminal back on fd 2 (idempotent; safe from the panic hook).
pub fn restore() {
    let saved = SAVED.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: `saved` is the descriptor `to_file` duplicated and nobody else closes it.
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
    }
}

impl Drop for StderrRedirect {
    fn drop(&mut self) {
        restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_fd_2_land_in_the_file_until_restored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stderr.log");
        let guard = StderrRedirect::to_file(&path).expect("redirect");
        let text = b"ALSA lib pcm.c: noise\n";
        // SAFETY: writing a valid buffer to fd 2.
        unsafe { libc::write(2, text.as_ptr().cast(), text.len()) };
        drop(guard);
        let logged = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(logged.contains("ALSA lib pcm.c: noise"), "{logged:?}");
        assert_eq!(SAVED.load(Ordering::SeqCst), -1, "terminal restored");
    }
}
