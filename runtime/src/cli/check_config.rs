//! `rtchunk check-config`: a configuration file validated (with its bundle's shape).

use anyhow::Context;
use rtchunk_config::Config;
use rtchunk_runtime::core::policies::adopt_bundle_shape;
use std::path::PathBuf;

/// The arguments of `rtchunk check-config`.
#[derive(clap::Args)]
pub struct CheckConfigArgs {
    /// The TOML file.
    file: PathBuf,
}

/// Runs `rtchunk check-config`.
pub fn run(args: CheckConfigArgs) -> anyhow::Result<()> {
    let CheckConfigArgs { file } = args;
    let mut config = Config::load(&file)?;
    if adopt_bundle_shape(&mut config)?.is_some() {
        config
            .validate()
            .with_context(|| format!("{} with its bundle's shape", file.display()))?;
    }
    let sampler = &config.sampler;
    println!(
        "{}: ok (policy {:?}, H = {}, sampler {} with n = {}, beta = {}, schedule {:?}, execution {}, \
         clock {:?})",
        file.display(),
        config.policy.kind,
        config.policy.horizon,
        sampler.mode.name(),
        sampler.steps,
        sampler.beta,
        sampler.schedule,
        config.scheduler.execution.name(),
        config.clock.kind
    );
    Ok(())
}
