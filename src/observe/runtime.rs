//! Which runtime a process runs: what its own stacks must be read with. perf reads native
//! code (Rust, C, C++) and shows only the interpreter for Python (`_PyEval_EvalFrameDefault`),
//! JIT-compiled frames for the JVM and V8's internals for Node.js; each of those has its own
//! profiler (py-spy, Java Flight Recorder, the inspector), chosen from what this finds.
//!
//! Told from the executable's name, the libraries it maps (`libpython3.*`, `libjvm.so`,
//! `libnode.so`) and, for Go, the ELF section every Go binary carries (`.go.buildinfo`).

use crate::model::run::Runtime;

/// The runtime of `pid`, from /proc.
pub fn of(pid: u32) -> Runtime {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let name = exe
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    from_parts(&name, &maps).unwrap_or_else(|| {
        if exe.as_deref().is_some_and(is_go_binary) {
            Runtime::Go
        } else {
            Runtime::Native
        }
    })
}

/// The runtime an executable's name and its mapped libraries say, when they say one.
pub fn from_parts(exe_name: &str, maps: &str) -> Option<Runtime> {
    let name = exe_name.trim_end_matches(" (deleted)");
    if name.starts_with("python") || name.starts_with("pypy") || maps.contains("/libpython3") {
        return Some(Runtime::Python);
    }
    if name == "java" || maps.contains("/libjvm.so") {
        return Some(Runtime::Jvm);
    }
    if name == "node" || name == "nodejs" || maps.contains("/libnode.so") {
        return Some(Runtime::Node);
    }
    None
}

/// Every Go binary carries its build information in a section of its own.
fn is_go_binary(path: &std::path::Path) -> bool {
    use object::{Object, ObjectSection};
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    object::File::parse(&*data).is_ok_and(|file| {
        file.sections()
            .any(|s| s.name().is_ok_and(|n| n == ".go.buildinfo"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_told_by_name_and_libraries() {
        assert_eq!(from_parts("python3.11", ""), Some(Runtime::Python));
        assert_eq!(
            from_parts("uwsgi", "7f.. r-xp /usr/lib/libpython3.11.so.1.0\n"),
            Some(Runtime::Python)
        );
        assert_eq!(
            from_parts("java", "/usr/lib/jvm/java-17/lib/server/libjvm.so"),
            Some(Runtime::Jvm)
        );
        assert_eq!(from_parts("node", ""), Some(Runtime::Node));
        assert_eq!(from_parts("nginx", "/usr/lib/libc.so.6"), None);
        // This test binary is native Rust.
        assert_eq!(of(std::process::id()), Runtime::Native);
    }
}
