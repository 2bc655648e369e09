//! `api`: latency of single-object writes (scaling an app) at a fixed request rate against a
//! real master process whose redb store fsyncs every commit (redb's default durability,
//! `Durability::Immediate`; the master does not change it), on this machine's disk.
//!
//! The generator is open-loop: request i is sent at `start + i / rate` whatever happened to the
//! earlier ones, and its latency runs from that scheduled time, so a stall shows in every request
//! it delays (no coordinated omission). The baseline is a raw 4 KiB write + fdatasync in the same
//! directory: the floor of any durable write there. The writes go over TLS with the admin token
//! on kept-alive connections, as a long-lived client's do.
//!
//! Then, apart from the writes, the cost of a fresh TLS connection, as a one-shot client such as
//! `gantry app list` pays it: one at a time, a new client (no session to resume) connects, does
//! the TLS 1.3 handshake and one authenticated read (`GET /api/v1/apps/<id>`). The baseline is
//! the same read on a kept-alive connection, so the difference is the connection's cost.

use crate::cluster::LocalCluster;
use crate::process;
use crate::report::{Figure, Report, Target, progress};
use crate::stats::Samples;
use gantry_api::Client;
use reqwest::Method;
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
    /// Fresh TLS connections (each with one read) for the handshake figures; 0 skips them.
    #[arg(long, default_value_t = 300)]
    pub handshakes: usize,
    /// Masters: with 3 or 5, every write is committed by a quorum of them (Raft over mutual
    /// TLS) before it is answered; the writes go to the leader.
    #[arg(long, default_value_t = 1)]
    pub masters: usize,
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let bin = crate::binary::gantry()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(measure(args, report, &bin))
}

async fn measure(args: &Args, report: &mut Report, bin: &std::path::Path) -> anyhow::Result<()> {
    let options = crate::cluster::MasterOptions { masters: args.masters, ..Default::default() };
    let cluster = LocalCluster::start_master(bin, &options).await?;
    report.note(format!(
        "scale writes to {} apps at {} req/s for {:?} (open loop) on {} master(s) without agents; data dir {}",
        args.apps,
        args.rate,
        args.duration,
        args.masters.max(1),
        cluster.data_dir.display()
    ));
    for i in 0..args.apps {
        let definition =
            serde_json::from_value(serde_json::json!({ "id": format!("api-{i}"), "cmd": "sleep 1", "instances": 0 }))?;
        cluster.client.create_app(&definition).await?;
    }
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let warmup = args.rate as usize;
    let total = warmup + (args.duration.as_secs_f64() * f64::from(args.rate)) as usize;
    progress(&format!("{total} writes"));
    let masters: Vec<u32> = std::iter::once(&cluster.master).chain(&cluster.others).filter_map(|m| m.pid()).collect();
    let masters_cpu = || masters.iter().filter_map(|pid| process::cpu_time(*pid)).sum::<Duration>();
    let (cpu_before, host_before) = (masters_cpu(), process::host_cpu_ticks());
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = start + period * u32::try_from(i)?;
        tokio::time::sleep_until(scheduled).await;
        let request = cluster
            .client
            .request(Method::POST, &format!("/api/v1/apps/api-{}/scale", i % args.apps))
            .json(&serde_json::json!({ "instances": (i / args.apps) % 2 }));
        handles.push(tokio::spawn(async move {
            let ok = request.send().await.is_ok_and(|r| r.status().is_success());
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
    let cpu_per_write = masters_cpu().saturating_sub(cpu_before).as_secs_f64() * 1000.0 / total.max(1) as f64;
    let busy = host_before.zip(process::host_cpu_ticks()).map(|(before, after)| process::busy_pct(before, after));
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
    // What the latencies stand on: the masters' CPU per write, all of them together (with
    // several, the leader's and every follower's), and how busy this machine was meanwhile. The
    // masters and the request generator share its cores: near 100 %, requests queue for CPU.
    report.add(Figure::new("api.masters_cpu_ms_per_write", cpu_per_write, "ms"));
    if let Some(busy) = busy {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        report.add(Figure::new("api.host_cpu_busy_pct", busy, "%"));
        report.note(format!("this machine has {cores} cores; the masters and the request generator share them"));
    }
    if args.handshakes > 0 {
        handshakes(&cluster, args.handshakes, report).await?;
    }
    Ok(())
}

/// The handshake figures: `n` reads each on a fresh TLS connection, against `n` on a kept-alive one.
async fn handshakes(cluster: &LocalCluster, n: usize, report: &mut Report) -> anyhow::Result<()> {
    progress(&format!("{n} fresh TLS connections"));
    let path = "/api/v1/apps/api-0";
    let read = |client: &Client| {
        let request = client.request(Method::GET, path);
        async move {
            let started = Instant::now();
            let response = request.send().await?.error_for_status()?;
            response.bytes().await?;
            anyhow::Ok(started.elapsed())
        }
    };
    let mut fresh = Vec::with_capacity(n);
    for _ in 0..n {
        // A new client has no connection and no TLS session to resume.
        let client = Client::with_credentials(&cluster.master_url, &cluster.credentials)?;
        fresh.push(read(&client).await?);
    }
    let kept = Client::with_credentials(&cluster.master_url, &cluster.credentials)?;
    read(&kept).await?;
    let mut warm = Vec::with_capacity(n);
    for _ in 0..n {
        warm.push(read(&kept).await?);
    }
    let (fresh, warm) = (Samples::from_durations(&fresh), Samples::from_durations(&warm));
    report.add(Figure::new("api.handshake_p50_ms", fresh.median(), "ms").baseline(warm.median()));
    report.add(Figure::new("api.handshake_p99_ms", fresh.percentile(99.0), "ms").baseline(warm.percentile(99.0)));
    report.add(Figure::new("api.handshake_cost_p50_ms", fresh.median() - warm.median(), "ms"));
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
