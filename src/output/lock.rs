//! Advisory locks on files and directories (std's `File::lock`: `flock` on Unix). The
//! kernel drops a process's locks when it dies, even by `kill -9`, so a lock that can be
//! taken proves its previous holder gone: that is how a writer's staging is told from a
//! crashed one's, and why a lock can never be stale.
//!
//! Lock files are removed by their last exclusive holder. A waiter that then gets the lock
//! on the removed file notices (the path no longer names the file it locked) and retries,
//! so two processes never both believe they hold one path's lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Exclusive (one holder) or shared (any number of holders, no exclusive one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// One holder.
    Exclusive,
    /// Many holders.
    Shared,
}

/// A held lock on a lock file; released when dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
    mode: LockMode,
}

/// What one attempt at a lock found.
enum Attempt {
    Locked(Lock),
    /// Another process holds it.
    Busy,
    /// The file was removed or replaced between opening and locking: try again.
    Replaced,
}

impl Lock {
    /// Waits for the lock on `path` (created when missing). `on_wait` is called once, before
    /// blocking, when another process holds it.
    pub fn acquire(path: &Path, mode: LockMode, on_wait: &mut dyn FnMut()) -> Result<Lock> {
        let mut told = false;
        loop {
            match Self::attempt(path, mode, false)? {
                Attempt::Locked(lock) => return Ok(lock),
                Attempt::Replaced => continue,
                Attempt::Busy if !told => {
                    on_wait();
                    told = true;
                }
                Attempt::Busy => {}
            }
            if let Attempt::Locked(lock) = Self::attempt(path, mode, true)? {
                return Ok(lock);
            }
        }
    }

    /// The lock on `path` (created when missing), or `None` when another process holds it.
    pub fn try_acquire(path: &Path, mode: LockMode) -> Result<Option<Lock>> {
        loop {
            match Self::attempt(path, mode, false)? {
                Attempt::Locked(lock) => return Ok(Some(lock)),
                Attempt::Busy => return Ok(None),
                Attempt::Replaced => {}
            }
        }
    }

    fn attempt(path: &Path, mode: LockMode, block: bool) -> Result<Attempt> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        let locked = match (mode, block) {
            (LockMode::Exclusive, true) => file.lock().map(|()| true),
            (LockMode::Shared, true) => file.lock_shared().map(|()| true),
            (LockMode::Exclusive, false) => try_result(file.try_lock()),
            (LockMode::Shared, false) => try_result(file.try_lock_shared()),
        }
        .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(if !locked {
            Attempt::Busy
        } else if !same_file(&file, path) {
            Attempt::Replaced
        } else {
            Attempt::Locked(Lock {
                file,
                path: path.to_path_buf(),
                mode,
            })
        })
    }

    /// Turns an exclusive lock into a shared one. Not atomic (`flock` releases before it
    /// relocks), so callers re-check what the exclusive lock protected.
    pub fn downgrade(&mut self) -> Result<()> {
        self.file
            .lock_shared()
            .map_err(|e| Error::io(format!("locking {}", self.path.display()), e))?;
        self.mode = LockMode::Shared;
        Ok(())
    }

    /// Releases an exclusive lock and removes its file (left for a shared lock, whose
    /// other holders still use it).
    pub fn release_and_remove(self) {
        if self.mode == LockMode::Exclusive && same_file(&self.file, &self.path) {
            // Best effort: a lock file left behind blocks nobody.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Lock {
    /// Unlocks explicitly instead of relying on the close: `flock` belongs to the open file
    /// description, which a child forked by another thread at that moment (to run `git`,
    /// say) shares until its `exec`, so a plain close could leave the lock held for a
    /// while and make the last process out believe another still works here.
    fn drop(&mut self) {
        // Best effort: the close that follows releases it in any case.
        let _ = self.file.unlock();
    }
}

/// `Ok(true)` when a try-lock got the lock, `Ok(false)` when another process holds it.
fn try_result(r: std::result::Result<(), TryLockError>) -> std::io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Whether `path` still names the open `file` (it was not removed or replaced).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Without inode numbers, lock files are never removed, so the path always names the file.
#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// Locks a directory itself (not a file inside it), without waiting. A process holds this
/// lock on its own staging directory for as long as it writes there; another process that
/// gets it knows the staging is a dead process's and may remove it while holding the lock.
/// `None` when the lock is held, or where directories cannot be opened (not Unix: staging
/// is then never taken for a dead process's).
pub fn lock_dir(dir: &Path) -> Option<File> {
    let file = File::open(dir).ok()?;
    file.try_lock().ok()?;
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        let a = Lock::try_acquire(&p, LockMode::Shared).unwrap().unwrap();
        let b = Lock::try_acquire(&p, LockMode::Shared).unwrap().unwrap();
        assert!(
            Lock::try_acquire(&p, LockMode::Exclusive)
                .unwrap()
                .is_none()
        );
        drop((a, b));
        let x = Lock::try_acquire(&p, LockMode::Exclusive).unwrap().unwrap();
        assert!(Lock::try_acquire(&p, LockMode::Shared).unwrap().is_none());
        x.release_and_remove();
        assert!(!p.exists(), "the last exclusive holder removes the file");
    }

    /// The flaky `.p2pmarket.lock` left behind by a sweep while another thread spawned
    /// `git`: the forked child shared the lock's open file description until its exec.
    #[test]
    fn dropping_a_lock_releases_it_while_a_forked_child_shares_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        let held = Lock::try_acquire(&p, LockMode::Shared).unwrap().unwrap();
        // What a child forked at this moment holds until its exec.
        let child_copy = held.file.try_clone().unwrap();
        drop(held);
        assert!(
            Lock::try_acquire(&p, LockMode::Exclusive)
                .unwrap()
                .is_some(),
            "the lock outlived its holder"
        );
        drop(child_copy);
    }

    #[test]
    fn a_waiter_on_a_removed_lock_file_relocks_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        let held = Lock::try_acquire(&p, LockMode::Exclusive).unwrap().unwrap();
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || {
            let mut waited = false;
            let l = Lock::acquire(&p2, LockMode::Exclusive, &mut || waited = true).unwrap();
            (waited, same_file(&l.file, &p2))
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        held.release_and_remove();
        let (waited, same) = waiter.join().unwrap();
        assert!(waited, "on_wait was called before blocking");
        assert!(same, "the waiter holds the lock of the file the path names");
        assert!(p.exists());
    }

    #[test]
    fn a_locked_directory_is_live_and_an_unlocked_one_stale() {
        let dir = tempfile::tempdir().unwrap();
        let own = lock_dir(dir.path()).expect("directories lock on Unix");
        assert!(lock_dir(dir.path()).is_none());
        drop(own);
        assert!(lock_dir(dir.path()).is_some());
    }
}
