//! Thin entry point: everything lives in the library so tests can run the tool in-process.
//! The exit code is decided here, in one place.

fn main() {
    let code = match knee::run(std::env::args_os()) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("knee: error: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code);
}
