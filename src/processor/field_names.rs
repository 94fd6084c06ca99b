//! Field names given in a config (`Keys`, `SourceKey`), as `Bytes` that cost nothing to clone
//! or drop.
//!
//! A parser puts the same dozen names on every log. As `Bytes` made from a `String`, each
//! clone and drop is an atomic count on one cache line that every processor and flusher thread
//! touches: the profile of a 12-field regex showed those counts among its top costs. A static
//! `Bytes` is copied instead. The names are interned, so a config reloaded again and again
//! keeps one copy of each distinct name: memory grows with the names users write, never with
//! the data. Names taken from the data (JSON keys) must not come here.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use bytes::Bytes;

/// The interned, static `Bytes` of a field name from a config.
pub fn field_name(name: &str) -> Bytes {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let interned: &'static str = match names.get(name) {
        Some(interned) => interned,
        None => {
            let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
            names.insert(leaked);
            leaked
        }
    };
    Bytes::from_static(interned.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_distinct_name() {
        let a = field_name("request_time");
        let b = field_name(&String::from("request_time"));
        assert_eq!(a, b);
        assert_eq!(a.as_ptr(), b.as_ptr(), "interned: the same bytes");
        assert_ne!(field_name("status").as_ptr(), a.as_ptr());
        assert_eq!(&field_name("")[..], b"");
    }
}
