//! `api`: latency of single-object writes (scaling an app) at a fixed request rate against a
//! real master process whose redb store fsyncs every commit (redb's default durability,
//! `Durability::Immediate`; the master does not change it), on this machine's disk.
//!
//! The generator is open-loop: request i is sent at `start + i / rate` whatever happened to the
//! earlier ones, and its latency runs from that scheduled time, so a stall shows in every request
//! it delays (no coordinated omission). The baseline is a raw 4 KiB write + fdatasync in the same
//! directory: the floor of any durable write there.

use crate::cluster::LocalCluster;
use crate::report::{Figure, Report, Target, progress};
use crate::stats::Samples;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Options of `api`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Requests per second.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// How long to send, after a 1 s warm-up at the same rate.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Apps the writes go round-robin to.
    #[arg(long, default_value_t = 10)]
    pub apps: usize,
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let bin = crate::binary::gantry()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(measure(args, report, &bin))
}

async fn measure(args: &Args, report: &mut Report, bin: &std::path::Path) -> anyhow::Result<()> {
    let cluster = LocalCluster::start_master(bin, &Default::default()).await?;
    report.note(format!(
        "scale writes to {} apps at {} req/s for {:?} (open loop) on a master without agents; data dir {}",
        args.apps,
        args.rate,
        args.duration,
        cluster.data_dir.display()
    ));
    for i in 0..args.apps {
        let definition =
            serde_json::from_value(serde_json::json!({ "id": format!("api-{i}"), "cmd": "sleep 1", "instances": 0 }))?;
        cluster.client.create_app(&definition).await?;
    }
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let warmup = args.rate as usize;
    let total = warmup + (args.duration.as_secs_f64() * f64::from(args.rate)) as usize;
    progress(&format!("{total} writes"));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = start + period * u32::try_from(i)?;
        tokio::time::sleep_until(scheduled).await;
        let app = format!("api-{}", i % args.apps);
        let url = format!("{}/api/v1/apps/{app}/scale", cluster.master_url);
        let instances = (i / args.apps) % 2;
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let ok = client
                .post(&url)
                .json(&serde_json::json!({ "instances": instances }))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (scheduled.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0usize;
    for (i, handle) in handles.into_iter().enumerate() {
        let (latency, ok) = handle.await?;
        if !ok {
            errors += 1;
        }
        if i >= warmup {
            latencies.push(latency);
        }
    }
    let samples = Samples::from_durations(&latencies);
    let fsync = fsync_baseline(&cluster.data_dir, 200)?;
    report.add(Figure::new("api.write_p50_ms", samples.median(), "ms").baseline(fsync.median()));
    report.add(
        Figure::new("api.write_p99_ms", samples.percentile(99.0), "ms")
            .target(Target::at_most(5.0))
            .baseline(fsync.percentile(99.0)),
    );
    report.add(Figure::new("api.write_max_ms", samples.max(), "ms"));
    report.add(Figure::new("api.errors", errors as f64, "requests"));
    report.add(Figure::new("api.fsync_p50_ms", fsync.median(), "ms"));
    Ok(())
}

/// Latencies of `n` raw 4 KiB write + fdatasync in `dir`.
fn fsync_baseline(dir: &std::path::Path, n: usize) -> anyhow::Result<Samples> {
    let path = dir.join("bench-fsync");
    let mut file = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(started.elapsed());
    }
    let _ = std::fs::remove_file(path);
    Ok(Samples::from_durations(&times))
}
