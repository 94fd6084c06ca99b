//! The one panic-boundary mechanism every `extern "C"` export of Tailrace's libraries uses
//! (after rustls-ffi's `ffi_panic_boundary!`): the body runs under `catch_unwind`; a panic
//! becomes the function's fallback return value and is reported, never unwound into C.

use std::any::Any;
use std::sync::RwLock;

/// The value an export returns when its body panicked.
pub trait PanicOrDefault {
    fn value() -> Self;
}

/// Error returns for the integer codes of the two ABIs.
impl PanicOrDefault for i32 {
    fn value() -> Self {
        -1
    }
}

/// `GoInt` results: the plugin base's exports use 1 (LoadConfig...) or -1 (Process*) for errors;
/// functions whose error code is not -1 wrap their body in a closure returning the right one.
impl PanicOrDefault for i64 {
    fn value() -> Self {
        -1
    }
}

impl PanicOrDefault for () {
    fn value() -> Self {}
}

impl<T> PanicOrDefault for *mut T {
    fn value() -> Self {
        std::ptr::null_mut()
    }
}

type PanicHook = fn(export: &str, message: &str);

static PANIC_HOOK: RwLock<Option<PanicHook>> = RwLock::new(None);

/// Lets a library act on caught panics (the plugin base raises an alarm).
pub fn set_panic_hook(hook: PanicHook) {
    *PANIC_HOOK.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Called by [`ffi_panic_boundary!`] when an export's body panicked. Reporting can neither
/// panic nor unwind: a hook that panics is itself caught, and then stderr is all there is.
pub fn report_panic(export: &str, payload: &(dyn Any + Send)) {
    let reported = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let message = panic_message(payload);
        // A poisoned lock still holds a valid hook (a plain fn pointer).
        let hook = *PANIC_HOOK.read().unwrap_or_else(|e| e.into_inner());
        match hook {
            Some(hook) => hook(export, &message),
            None => eprintln_fallback(export, &message),
        }
    }));
    if reported.is_err() {
        eprintln_fallback(export, "(the panic report itself panicked)");
    }
}

fn eprintln_fallback(export: &str, message: &str) {
    // No hook: the library has no logging of its own set up; stderr is all there is.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "tailrace: panic caught at the C boundary in {export}: {message}"
    );
}

/// Wraps the body of an `extern "C"` function: `ffi_panic_boundary!("Name", { ... })`.
/// The body's value is returned; a panic returns [`PanicOrDefault::value`] instead, or the
/// value given before the body (`ffi_panic_boundary!("LoadConfig", 1, { ... })`) for functions
/// whose error code is not the type's usual one.
#[macro_export]
macro_rules! ffi_panic_boundary {
    ($export:expr, $body:block) => {
        $crate::ffi_panic_boundary!(
            $export,
            $crate::ffi_boundary::PanicOrDefault::value(),
            $body
        )
    };
    ($export:expr, $on_panic:expr, $body:block) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(payload) => {
                $crate::ffi_boundary::report_panic($export, &*payload);
                $on_panic
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    fn guarded(panic: bool) -> i32 {
        ffi_panic_boundary!("guarded", {
            if panic {
                panic!("boom");
            }
            7
        })
    }

    fn guarded_with(panic: bool) -> i64 {
        ffi_panic_boundary!("guarded_with", 1, {
            if panic {
                panic!("boom");
            }
            0
        })
    }

    #[test]
    fn a_panicking_report_hook_does_not_unwind() {
        super::set_panic_hook(|_, _| panic!("the hook fails too"));
        assert_eq!(guarded(true), -1);
        super::set_panic_hook(|_, _| {});
    }

    #[test]
    fn panics_become_the_fallback() {
        assert_eq!(guarded(false), 7);
        assert_eq!(guarded(true), -1);
        assert_eq!(guarded_with(false), 0);
        assert_eq!(guarded_with(true), 1);
    }
}
