//! Folded stacks ("root;caller;leaf count" per line), the common ground between pprof
//! profiles, perf output and inferno: every profile knee takes is turned into this, and the
//! flamegraphs and top-function tables are made from it.

pub use crate::model::observed::FunctionShare;

use crate::pprof_proto::Profile;
use std::collections::{BTreeMap, HashSet};

/// Stacks, root first, to their sample counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Folded {
    pub stacks: BTreeMap<String, u64>,
}

impl Folded {
    /// Folds a pprof profile by its sample count ("samples" value if present, else the first).
    pub fn from_pprof(profile: &Profile) -> Folded {
        Folded::from_pprof_value(profile, "samples", 1)
    }

    /// Folds a pprof profile by the value named `value` (else its first), divided by
    /// `divisor` (Go's block profile: "delay" in nanoseconds, 1000 for microseconds).
    pub fn from_pprof_value(profile: &Profile, value: &str, divisor: i64) -> Folded {
        let value_index = profile
            .sample_type
            .iter()
            .position(|t| profile.string(t.r#type) == value)
            .unwrap_or(0);
        let functions: std::collections::HashMap<u64, &str> = profile
            .function
            .iter()
            .map(|f| (f.id, profile.string(f.name)))
            .collect();
        let locations: std::collections::HashMap<u64, Vec<String>> = profile
            .location
            .iter()
            .map(|location| {
                // Lines are innermost first; a folded stack wants callers first.
                let mut names: Vec<String> = location
                    .line
                    .iter()
                    .rev()
                    .map(|line| clean_name(functions.get(&line.function_id).unwrap_or(&"")))
                    .filter(|name| !name.is_empty())
                    .collect();
                if names.is_empty() {
                    names.push(format!("{:#x}", location.address));
                }
                (location.id, names)
            })
            .collect();
        let mut folded = Folded::default();
        for sample in &profile.sample {
            let count = sample.value.get(value_index).copied().unwrap_or(0) / divisor.max(1);
            if count <= 0 {
                continue;
            }
            // location_id[0] is the leaf.
            let frames: Vec<&str> = sample
                .location_id
                .iter()
                .rev()
                .flat_map(|id| locations.get(id).into_iter().flatten())
                .map(String::as_str)
                .collect();
            if frames.is_empty() {
                continue;
            }
            *folded.stacks.entry(frames.join(";")).or_default() += count as u64;
        }
        folded
    }

    /// Parses folded text (as inferno's collapsers write it); malformed lines are skipped.
    pub fn parse(text: &str) -> Folded {
        let mut folded = Folded::default();
        for line in text.lines() {
            let Some((stack, count)) = line.trim().rsplit_once(' ') else {
                continue;
            };
            if let Ok(count) = count.parse::<u64>() {
                *folded.stacks.entry(stack.to_string()).or_default() += count;
            }
        }
        folded
    }

    pub fn to_text(&self) -> String {
        self.stacks
            .iter()
            .map(|(stack, count)| format!("{stack} {count}\n"))
            .collect()
    }

    /// Adds `other`'s stacks to these (profiles of several processes summed).
    pub fn add(&mut self, other: Folded) {
        for (stack, count) in other.stacks {
            *self.stacks.entry(stack).or_default() += count;
        }
    }

    pub fn total(&self) -> u64 {
        self.stacks.values().sum()
    }

    /// The `n` functions with the most samples as the leaf (self time).
    pub fn top_self(&self, n: usize) -> Vec<FunctionShare> {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for (stack, count) in &self.stacks {
            let leaf = stack.rsplit(';').next().unwrap_or(stack);
            *counts.entry(leaf).or_default() += count;
        }
        self.ranked(counts, n)
    }

    /// The `n` functions with the most samples anywhere on the stack (inclusive time);
    /// a recursive function counts once per sample. Functions on every stack (thread entry
    /// points, the runtime's loop) say nothing and are left out.
    pub fn top_inclusive(&self, n: usize) -> Vec<FunctionShare> {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for (stack, count) in &self.stacks {
            let unique: HashSet<&str> = stack.split(';').collect();
            for function in unique {
                *counts.entry(function).or_default() += count;
            }
        }
        let total = self.total();
        counts.retain(|_, samples| *samples < total);
        self.ranked(counts, n)
    }

    fn ranked(&self, counts: BTreeMap<&str, u64>, n: usize) -> Vec<FunctionShare> {
        let total = self.total().max(1) as f64;
        let mut rows: Vec<FunctionShare> = counts
            .into_iter()
            .map(|(function, samples)| FunctionShare {
                function: function.to_string(),
                samples,
                percent: (samples as f64 * 1000.0 / total).round() / 10.0,
            })
            .collect();
        rows.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.function.cmp(&b.function)));
        rows.truncate(n);
        rows
    }
}

/// A function name fit for a folded line: no Rust symbol hash, no ';' (the separator).
pub fn clean_name(name: &str) -> String {
    let name = match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    };
    name.replace(';', ",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_functions_count_self_and_inclusive_time() {
        let folded = Folded::parse("main;a;b 6\nmain;a 2\nmain;c;c 2\nother;d 1\nbroken line\n");
        assert_eq!(folded.total(), 11);
        let top_self = folded.top_self(2);
        assert_eq!(top_self[0].function, "b");
        assert_eq!(top_self[0].samples, 6);
        assert_eq!(top_self[0].percent, 54.5);
        assert_eq!(top_self[1].function, "a");
        let inclusive = folded.top_inclusive(10);
        assert_eq!(inclusive[0].function, "main");
        assert_eq!(inclusive[0].samples, 10);
        let on_every_stack = Folded::parse("root;x 3\nroot;y 1\n").top_inclusive(10);
        assert_eq!(on_every_stack[0].function, "x", "{on_every_stack:?}");
        let c = inclusive.iter().find(|r| r.function == "c").unwrap();
        assert_eq!(c.samples, 2, "recursion counts once per sample");
    }

    /// A profile written by hand the way pprof lays it out: location_id[0] is the leaf, and
    /// a location's lines run from the innermost inlined function to its caller.
    #[test]
    fn pprof_folds_callers_first_with_inlined_frames_in_place() {
        use crate::pprof_proto::{Function, Line, Location, Profile, Sample, StringTable};
        let mut strings = StringTable::new();
        let names = ["main", "outer", "inlined_helper", "leaf"];
        let function = names
            .iter()
            .enumerate()
            .map(|(i, n)| Function {
                id: i as u64 + 1,
                name: strings.intern(n),
                ..Default::default()
            })
            .collect();
        let line = |function_id| Line {
            function_id,
            line: 0,
        };
        let location = vec![
            Location {
                id: 1,
                line: vec![line(1)],
                ..Default::default()
            },
            // `inlined_helper` inlined into `outer`: innermost first.
            Location {
                id: 2,
                line: vec![line(3), line(2)],
                ..Default::default()
            },
            Location {
                id: 3,
                line: vec![line(4)],
                ..Default::default()
            },
        ];
        let samples_type = crate::pprof_proto::ValueType {
            r#type: strings.intern("samples"),
            unit: strings.intern("count"),
        };
        let profile = Profile {
            sample_type: vec![samples_type],
            sample: vec![
                Sample {
                    location_id: vec![3, 2, 1],
                    value: vec![5],
                    ..Default::default()
                },
                Sample {
                    location_id: vec![2, 1],
                    value: vec![2],
                    ..Default::default()
                },
            ],
            location,
            function,
            string_table: strings.into_vec(),
            ..Default::default()
        };
        let folded = Folded::from_pprof(&profile);
        assert_eq!(
            folded.to_text(),
            "main;outer;inlined_helper 2\nmain;outer;inlined_helper;leaf 5\n"
        );
        assert_eq!(folded.total(), 7);
    }

    #[test]
    fn names_lose_their_hash_and_separators() {
        assert_eq!(clean_name("knee::x::h0123456789abcdef"), "knee::x");
        assert_eq!(clean_name("f<[u8; 4]>"), "f<[u8, 4]>");
        assert_eq!(clean_name("not::hash"), "not::hash");
    }
}
