//! What a Rust CLI's users expect to install beside the binary, made from the same clap
//! definitions as the parser so they cannot drift: shell completions (`knee completions
//! bash`) and man pages (`knee man`, one page per subcommand with `--out DIR`).

use super::Cli;
use crate::error::Error;
use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "knee", &mut script);
    script
}

/// knee(1): the top page, with the subcommands listed.
pub fn man_page() -> Result<Vec<u8>, Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the man page")?;
    Ok(page)
}

/// knee.1 and knee-<subcommand>.1 for each subcommand, written into `dir` (made if missing).
pub fn man_pages_to(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("knee") && name.ends_with(".1")
        })
        .collect();
    pages.sort();
    Ok(pages)
}
