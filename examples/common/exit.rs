//! How the examples end on an error: the message and its causes on stderr, exit code 1
//! (instead of the `Debug` form that returning an error from `main` prints).

use std::error::Error;
use std::process::ExitCode;

/// Exit code 0 for `Ok`; for an error, prints `error: ...` and each `caused by: ...` of its
/// source chain that the message before it does not already quote, then exit code 1.
pub(crate) fn exit_code<E: Into<Box<dyn Error>>>(result: Result<(), E>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    let error = error.into();
    let mut shown = error.to_string();
    eprintln!("error: {shown}");
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !shown.contains(&message) {
            eprintln!("  caused by: {message}");
        }
        shown = message;
        source = cause.source();
    }
    ExitCode::FAILURE
}
