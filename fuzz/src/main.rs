//! The fuzz targets as one program:
//! - `rtchunk-fuzz seeds DIR` writes every target's seeds to `DIR/<target>/` (AFL++'s starting corpus);
//! - `rtchunk-fuzz TARGET FILE...` decodes each file with the target (to reproduce a crash or replay a corpus);
//! - built with the `afl` feature (`cargo afl build --features afl`), `rtchunk-fuzz TARGET` is that target's
//!   AFL++ harness, reading its inputs from AFL++.

use rtchunk_fuzz::{TARGETS, Target, target};
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: rtchunk-fuzz seeds DIR | rtchunk-fuzz TARGET [FILE...]";

fn write_seeds(dir: &Path) -> Result<(), String> {
    for target in &TARGETS {
        let folder = dir.join(target.name);
        std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        for (i, seed) in (target.seeds)().iter().enumerate() {
            let file = folder.join(format!("seed-{i}"));
            std::fs::write(&file, seed).map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    Ok(())
}

fn replay(target: &Target, files: &[String]) -> Result<(), String> {
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        (target.decode)(&bytes);
        println!("{file}: decoded or refused, no panic");
    }
    Ok(())
}

#[cfg(feature = "afl")]
fn harness(target: &Target) -> Result<(), String> {
    afl::fuzz!(|bytes: &[u8]| (target.decode)(bytes));
    Ok(())
}

#[cfg(not(feature = "afl"))]
fn harness(target: &Target) -> Result<(), String> {
    Err(format!(
        "{}: the AFL++ harness needs the afl feature (scripts/fuzz-afl.sh builds it); give files to replay",
        target.name
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [command, dir] if command == "seeds" => write_seeds(Path::new(dir)),
        [name, files @ ..] => match target(name) {
            Some(target) if files.is_empty() => harness(target),
            Some(target) => replay(target, files),
            None => Err(format!(
                "no target {name:?}; targets: {}",
                TARGETS.map(|t| t.name).join(", ")
            )),
        },
        [] => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rtchunk-fuzz: {error}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}
