//! `dragonfly-mle parquet compact DIR`: merge the small files of a `parquet://` output's
//! closed partitions (see `dragonfly_io::sinks::parquet::compact`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use dragonfly_io::sinks::parquet::compact::{self, Settings};

#[derive(clap::Subcommand, Debug)]
pub enum ParquetAction {
    /// Merge small files of partitions no longer written (no file open in them, the newest
    /// older than --min-age-s); brings DIR/_manifest/ in line with the files first.
    Compact {
        /// The output directory (what follows parquet:// in config.lua).
        dir: PathBuf,
        /// Leave partitions whose newest file is younger than this (seconds).
        #[arg(long, default_value_t = 3600)]
        min_age_s: u64,
        /// Merge files into files of about this many MB.
        #[arg(long, default_value_t = 256)]
        target_mb: u64,
        /// Only say what would be merged.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(action: &ParquetAction) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let ParquetAction::Compact {
        dir,
        min_age_s,
        target_mb,
        dry_run,
    } = action;
    let s = Settings {
        min_age: Duration::from_secs(*min_age_s),
        target: target_mb.saturating_mul(1 << 20),
        dry_run: *dry_run,
    };
    match compact::compact(dir, &s) {
        Ok(r) => {
            println!(
                "{}: {} closed partitions; {} {} files into {}{}",
                dir.display(),
                r.partitions,
                if *dry_run { "would merge" } else { "merged" },
                r.files_in,
                r.files_out,
                if *dry_run {
                    String::new()
                } else {
                    format!(" ({} rows)", r.rows)
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dragonfly-mle parquet compact: {e}");
            ExitCode::FAILURE
        }
    }
}
