//! `rtchunk inspect`: a bundle checked and its recorded outputs replayed.

use crate::cli::DeviceArgs;
use rtchunk_policy::onnx::{OnnxPolicy, check_recorded};
use std::path::PathBuf;

/// The arguments of `rtchunk inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// The bundle directory.
    bundle: PathBuf,
    #[command(flatten)]
    run_on: DeviceArgs,
    /// Print the replay's differences from the recorded outputs as JSON instead of the manifest and a summary.
    #[arg(long)]
    json: bool,
}

/// Runs `rtchunk inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let InspectArgs {
        bundle,
        run_on,
        json,
    } = args;
    let options = run_on.options();
    let device = run_on.device;
    let mut policy = OnnxPolicy::load(&bundle, &options)?;
    if !json {
        println!("{}", serde_json::to_string_pretty(policy.manifest())?);
        println!(
            "{}: ok (manifest, hashes and graphs check out)",
            bundle.display()
        );
        if let Some(summary) = policy.shape_nodes_summary() {
            println!("{summary}");
        }
    }
    if let Some(check) = check_recorded(&mut policy, &bundle)? {
        if json {
            println!("{}", serde_json::to_string(&check)?);
        } else {
            let chunks: String = check
                .chunks
                .iter()
                .map(|c| format!(", {} chunk within {:.2e}", c.mode, c.error))
                .collect();
            println!(
                "recorded outputs replayed on {device}: velocity within {:.2e}, VJP within {:.2e}, guided \
                 step's VJP within {}, RTC inference within {}{chunks} of {} (tolerance {:.0e})",
                check.velocity_error,
                check.vjp_error,
                check
                    .guided_error
                    .map_or("(no guided graph)".into(), |e| format!("{e:.2e}")),
                check
                    .rtc_error
                    .map_or("(not recorded)".into(), |e| format!("{e:.2e}")),
                check.source,
                check.tolerance
            );
        }
        anyhow::ensure!(
            check.passes(),
            "{}: outputs differ from {}'s beyond the tolerance",
            bundle.display(),
            check.source
        );
    }
    Ok(())
}
