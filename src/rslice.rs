//! The borrowed strings and byte slices that cross the two ABIs: the plugin base's Go-compatible
//! `GoString`/`GoSlice` (cgo's layouts, so that a core written for iLogtail's `libPluginBase.so`
//! can load ours and our host can load theirs) and the adaptor's `(const char*, int)` pairs.
//! This is the one place that turns them into Rust references, and it checks them: a null
//! pointer with a non-zero length, a negative length or invalid UTF-8 is an error, never
//! undefined behaviour.

use std::fmt;
use std::os::raw::{c_char, c_int, c_longlong, c_void};

/// `long long`, Go's `int` on 64-bit platforms.
pub type GoInt = c_longlong;
/// `long long`.
pub type GoInt64 = c_longlong;

/// A borrowed string: `p` points to `n` bytes, not NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoString {
    pub p: *const c_char,
    pub n: isize,
}

/// A borrowed slice: `data` points to `len` bytes (`cap` is ignored).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoSlice {
    pub data: *mut c_void,
    pub len: GoInt,
    pub cap: GoInt,
}

/// One key/value of a plugin metric (`GetGoMetrics`), both NUL-terminated, malloc'd.
#[repr(C)]
#[allow(non_snake_case)]
pub struct KeyValue {
    pub key: *mut c_char,
    pub value: *mut c_char,
}

/// One plugin metric: `count` key/values, every pointer malloc'd.
#[repr(C)]
#[allow(non_snake_case)]
pub struct PluginMetric {
    pub keyValues: *mut *mut KeyValue,
    pub count: c_int,
}

/// What `GetGoMetrics` returns, in the layout of iLogtail's plugin base: `count` metrics,
/// every pointer malloc'd; the caller frees each piece.
#[repr(C)]
#[allow(non_snake_case)]
pub struct PluginMetrics {
    pub metrics: *mut *mut PluginMetric,
    pub count: c_int,
}

/// Why an argument could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    Null { arg: &'static str },
    NegativeLength { arg: &'static str, len: i64 },
    NotUtf8 { arg: &'static str },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Null { arg } => {
                write!(f, "argument {arg}: null pointer with a non-zero length")
            }
            ArgError::NegativeLength { arg, len } => {
                write!(f, "argument {arg}: negative length {len}")
            }
            ArgError::NotUtf8 { arg } => write!(f, "argument {arg}: not valid UTF-8"),
        }
    }
}

impl std::error::Error for ArgError {}

/// A checked view of `len` bytes at `ptr`.
///
/// # Safety
/// `ptr` must point to `len` readable bytes that stay valid and unchanged for `'a`, when it is
/// not null and `len` is positive.
pub unsafe fn bytes_from_raw<'a>(
    arg: &'static str,
    ptr: *const u8,
    len: i64,
) -> Result<&'a [u8], ArgError> {
    if len < 0 {
        return Err(ArgError::NegativeLength { arg, len });
    }
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(ArgError::Null { arg });
    }
    let len = usize::try_from(len).map_err(|_| ArgError::NegativeLength { arg, len })?;
    // SAFETY: non-null, length checked non-negative; validity for `len` bytes and lifetime are
    // the caller's promise (the ABI's: the buffer lives for the duration of the call).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

impl GoString {
    /// The string's bytes.
    ///
    /// # Safety
    /// `self.p` must point to `self.n` readable bytes that stay valid for `'a` (true for the
    /// arguments of an ABI call, for the duration of the call).
    pub unsafe fn as_bytes<'a>(&self, arg: &'static str) -> Result<&'a [u8], ArgError> {
        // SAFETY: forwarded from this function's own contract.
        unsafe { bytes_from_raw(arg, self.p.cast(), self.n as i64) }
    }

    /// The string, checked to be UTF-8.
    ///
    /// # Safety
    /// As for [`GoString::as_bytes`].
    pub unsafe fn as_str<'a>(&self, arg: &'static str) -> Result<&'a str, ArgError> {
        // SAFETY: forwarded from this function's own contract.
        let bytes = unsafe { self.as_bytes(arg)? };
        std::str::from_utf8(bytes).map_err(|_| ArgError::NotUtf8 { arg })
    }

    /// A GoString borrowing `s` (for tests and for calling other bases).
    pub fn from_str_ref(s: &str) -> GoString {
        GoString {
            p: s.as_ptr().cast(),
            n: s.len() as isize,
        }
    }
}

impl GoSlice {
    /// The slice's bytes.
    ///
    /// # Safety
    /// `self.data` must point to `self.len` readable bytes that stay valid for `'a`.
    pub unsafe fn as_bytes<'a>(&self, arg: &'static str) -> Result<&'a [u8], ArgError> {
        // SAFETY: forwarded from this function's own contract.
        unsafe { bytes_from_raw(arg, self.data as *const u8, self.len) }
    }

    /// A GoSlice borrowing `b`.
    pub fn from_bytes(b: &[u8]) -> GoSlice {
        GoSlice {
            data: b.as_ptr() as *mut c_void,
            len: b.len() as i64,
            cap: b.len() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pointers_lengths_and_utf8() {
        let ok = GoString::from_str_ref("name");
        // SAFETY: every GoString here points to live data or is deliberately invalid in a way
        // the checks must catch before any read.
        unsafe {
            assert_eq!(ok.as_str("name").unwrap(), "name");
            let null = GoString {
                p: std::ptr::null(),
                n: 3,
            };
            assert_eq!(null.as_str("name"), Err(ArgError::Null { arg: "name" }));
            let empty_null = GoString {
                p: std::ptr::null(),
                n: 0,
            };
            assert_eq!(empty_null.as_str("name").unwrap(), "");
            let negative = GoString { p: ok.p, n: -1 };
            assert!(matches!(
                negative.as_str("name"),
                Err(ArgError::NegativeLength { .. })
            ));
            let bad = [0xffu8, 0xfe];
            let bad = GoString {
                p: bad.as_ptr().cast(),
                n: 2,
            };
            assert_eq!(bad.as_str("name"), Err(ArgError::NotUtf8 { arg: "name" }));
            let slice = GoSlice {
                data: std::ptr::null_mut(),
                len: 4,
                cap: 4,
            };
            assert!(slice.as_bytes("buf").is_err());
        }
    }
}
