//! Full function paths for the agent's profiles. With line-tables-only debug info (a common
//! release setting, and knee's own), DWARF names a function by its bare name
//! (`critical_section`), so `new`, `handle` and `call` from a hundred modules would merge
//! into one box. The executable's symbol table still has the full mangled path: each frame's
//! function is looked up there by its address in the file (what backtrace reports), and its
//! bare name is replaced by the demangled path (`knee::demo::stages::critical_section`)
//! only when the path ends in that very name — so a frame from a shared library, whose
//! address means nothing in the executable's table, is never renamed.

use object::{Object, ObjectSymbol, SymbolKind};
use std::sync::OnceLock;

/// The executable's function symbols: (start, end, demangled path without its hash).
struct Table {
    symbols: Vec<(u64, u64, String)>,
}

fn table() -> &'static Option<Table> {
    static TABLE: OnceLock<Option<Table>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let data = std::fs::read("/proc/self/exe").ok()?;
        let file = object::File::parse(data.as_slice()).ok()?;
        let mut symbols: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                let path = format!("{:#}", rustc_demangle::demangle(name));
                Some((s.address(), s.address() + s.size(), path))
            })
            .collect();
        symbols.sort_by_key(|s| s.0);
        Some(Table { symbols })
    })
}

/// The full path of the function at `address` (an address in the executable file), when
/// the symbol table has one that ends in `short` (`a::b::short`).
pub fn full_path(address: u64, short: &str) -> Option<&'static str> {
    if short.contains("::") || short.is_empty() {
        return None;
    }
    let table = table().as_ref()?;
    let i = table
        .symbols
        .partition_point(|s| s.0 <= address)
        .checked_sub(1)?;
    let (start, end, path) = &table.symbols[i];
    let suffix = path.strip_suffix(short)?;
    (address >= *start && address < *end && suffix.ends_with("::")).then_some(path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn agent_symbols_probe() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn finds_the_full_path_of_a_function_of_this_executable() {
        let mut found = None;
        // resolve() looks one byte before the address it is given (a return address).
        let inside = (agent_symbols_probe as fn() -> u64 as usize + 1) as *mut std::ffi::c_void;
        backtrace::resolve(inside, |symbol| {
            found = symbol.addr().map(|a| a as u64);
        });
        let address = found.expect("the probe resolves");
        assert_eq!(
            full_path(address, "agent_symbols_probe"),
            Some("knee::agent::symbols::tests::agent_symbols_probe")
        );
        assert_eq!(full_path(address, "some_other_name"), None);
        assert_eq!(full_path(address, "already::a::path"), None);
        assert_eq!(agent_symbols_probe(), 7);
    }
}
