//! Ending a cold start that cannot go on.

use std::fmt::Display;

/// Logs `error` once, as one line (JSON when the function logs JSON) that
/// names the field and the value, and ends the process with status 1:
/// Lambda reports the failed init, and no Rust debug dump of the error
/// follows the line (as returning it from `main` would print).
pub fn abort(message: &'static str, error: &dyn Display) -> ! {
    tracing::error!(error = %error, "{message}");
    std::process::exit(1)
}

/// [`abort`] for a bad setting: `invalid configuration`.
pub fn invalid_configuration(error: &dyn Display) -> ! {
    abort("invalid configuration", error)
}
