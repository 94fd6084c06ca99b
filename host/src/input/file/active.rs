//! The files the server looks at every round: those with unread data, a batch waiting for room,
//! a line still being written, or a rotated-away rest to finish. Every other file is idle and
//! costs nothing per round; inotify (or the slow sweep) makes it active again. Kept in a queue
//! so that a round cut short by its time budget resumes with the files it did not reach.

use std::collections::{HashSet, VecDeque};

use crate::input::file::InputId;

/// A tracked file: its input, and its id within the input.
pub type FileKey = (InputId, u64);

#[derive(Default)]
pub struct ActiveSet {
    queue: VecDeque<FileKey>,
    members: HashSet<FileKey>,
}

impl ActiveSet {
    /// Adds `key` (at the end of the round order) unless it is there already.
    pub fn insert(&mut self, key: FileKey) {
        if self.members.insert(key) {
            self.queue.push_back(key);
        }
    }

    pub fn contains(&self, key: &FileKey) -> bool {
        self.members.contains(key)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The next file to visit; it stays a member until [`ActiveSet::requeue`] or
    /// [`ActiveSet::retire`].
    pub fn pop(&mut self) -> Option<FileKey> {
        loop {
            let key = self.queue.pop_front()?;
            if self.members.contains(&key) {
                return Some(key);
            }
        }
    }

    /// A popped file that stays active: visited again after the others.
    pub fn requeue(&mut self, key: FileKey) {
        if self.members.contains(&key) {
            self.queue.push_back(key);
        }
    }

    /// A file that is no longer active (idle, released or unregistered).
    pub fn retire(&mut self, key: FileKey) {
        self.members.remove(&key);
    }

    pub fn iter(&self) -> impl Iterator<Item = &FileKey> {
        self.members.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_in_turn_and_forgets_retired_files() {
        let mut set = ActiveSet::default();
        for k in [(1, 1), (1, 2), (2, 1), (1, 1)] {
            set.insert(k);
        }
        assert_eq!(set.len(), 3);
        let first = set.pop().unwrap();
        assert_eq!(first, (1, 1));
        set.requeue(first);
        let second = set.pop().unwrap();
        set.retire(second);
        set.retire((2, 1));
        // (2, 1) is still queued but retired: skipped.
        assert_eq!(set.pop(), Some((1, 1)));
        assert_eq!(set.pop(), None);
        assert!(set.contains(&(1, 1)));
        set.retire((1, 1));
        assert!(set.is_empty());
        assert_eq!(set.pop(), None);
    }
}
