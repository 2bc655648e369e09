//! `cloud --provider gce`: the GCE lab (`gantry_lab::cloud::gce`: the Compute Engine emulator
//! on loopback, a test host for every running instance), `gantry up` and `gantry down` of a lab
//! cluster file whose `[gce] endpoint_url` is the counting proxy, then the SDK baseline
//! ([`super::gce_baseline`]) through the same proxy.
//!
//! The lab's hosts follow the emulator's state directly, so the lab makes no calls to count.

use super::cluster::{self, CloudBench, SSH_PARALLELISM};
use super::gce_baseline::{self, MACHINE_TYPE, REGION};
use super::{Api, Args, Side, add_figures};
use crate::cloud_proxy::{CountingProxy, Protocol};
use crate::report::{Report, progress};
use gantry_lab::cloud::gce::{GceLab, GceLabError};
use std::path::Path;
use std::time::Duration;

/// How the figures name Compute Engine.
pub const COMPUTE: Api = Api { name: "Compute Engine", key: "api", creates_in_flight: "create_requests_in_flight" };

/// Runs the scenario on the GCE lab.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.instances;
    let bin = crate::binary::gantry()?;
    // The proxy is served by this runtime's workers while the main thread waits for `gantry`.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let work = tempfile::Builder::new().prefix("gantry-bench-cloud-").tempdir()?;
    progress("starting the GCE lab (the Compute Engine emulator and its hosts)");
    let lab = GceLab::start(&work.path().join("lab")).map_err(|e| match e {
        GceLabError::Lab(e) => anyhow::anyhow!("cloud --provider gce needs the lab's test hosts: {e}"),
        e => anyhow::anyhow!("cloud --provider gce cannot start the GCE lab: {e}"),
    })?;
    let proxy = runtime.block_on(CountingProxy::start(lab.endpoint_url(), Protocol::Gce))?;
    report.note(format!(
        "`gantry up` and `gantry down` of 1 master + {} agents on the GCE lab (gantry-lab's Compute Engine emulator \
         on loopback, operations of 200 ms, every instance a test host) with {}, [gce] max_parallel_creates = {}; \
         Compute Engine calls counted by a proxy in front of the emulator; {} runs in one lab, medians reported",
        n - 1,
        cluster::binary_note(&bin),
        args.max_parallel_creates,
        args.runs
    ));
    let bench = Gce { args, lab: &lab, proxy: &proxy, runtime: &runtime };
    let runs = cluster::runs(args, &bin, work.path(), &proxy, &bench)?;
    add_figures(report, &format!("cloud.gce.instances_{n}"), COMPUTE, &runs);
    if let Some(path) = &args.calls_file {
        super::write_calls(path, &runs)?;
        report.note(format!("every Compute Engine call: {}", path.display()));
    }
    report.note(
        "create_s: first instances.insert sent to the first instances.get (or list) that saw the last instance \
         RUNNING (both sides hold a create slot until the instance accepts SSH, as gantry's create does); \
         terminate_s: time during which some instance was between its instances.delete and the last call that \
         named it (an instances.get or its operation's poll); api_ratio: the median over the runs of gantry's \
         (create_s + terminate_s) / the same run's baseline's; the baseline polls on gantry's schedule (50 ms \
         doubling to 2 s)",
    );
    Ok(())
}

/// The GCE lab behind the proxy.
struct Gce<'a> {
    args: &'a Args,
    lab: &'a GceLab,
    proxy: &'a CountingProxy,
    runtime: &'a tokio::runtime::Runtime,
}

impl CloudBench for Gce<'_> {
    fn cluster(&self, _index: usize) -> anyhow::Result<(String, Vec<(String, String)>)> {
        let (lab, n) = (self.lab, self.args.instances);
        let text = format!(
            "version = 1\n[cluster]\nname = \"bench-{prefix}\"\nprovider = \"gce\"\n\n\
             [ssh]\nuser = \"root\"\nconnect_timeout = \"3s\"\n\n\
             [gce]\nproject = \"{project}\"\nregion = \"{REGION}\"\nendpoint_url = \"{endpoint}\"\n\
             network_cidr = \"{cidr}\"\nconnect_via = \"private\"\n\
             ssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\nmax_parallel_creates = {max_parallel_creates}\n\n\
             [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\nmachine_type = \"{MACHINE_TYPE}\"\n\n\
             [[pool]]\nname = \"workers\"\ncount = {workers}\nmachine_type = \"{MACHINE_TYPE}\"\n",
            prefix = lab.prefix(),
            project = lab.project(),
            endpoint = self.proxy.url(),
            cidr = lab.cidr(),
            max_parallel_creates = self.args.max_parallel_creates,
            workers = n - 1,
        );
        let mut env = lab.env();
        env.retain(|(key, _)| key != "GANTRY_GCE_ENDPOINT_URL");
        Ok((text, env))
    }

    fn leftovers(&self, timeout: Duration) -> Option<String> {
        match self.lab.wait_for(timeout, |hosts| hosts.is_empty().then_some(())) {
            Some(()) => None,
            None => Some(format!("{:?}", self.lab.instances().iter().map(|i| &i.name).collect::<Vec<_>>())),
        }
    }

    fn baseline(&self, index: usize, dir: &Path) -> anyhow::Result<Side> {
        let settings = gce_baseline::Settings {
            name: format!("baseline-{index}"),
            instances: self.args.instances,
            max_parallel_creates: self.args.max_parallel_creates,
            max_parallel_destroys: SSH_PARALLELISM,
        };
        self.runtime.block_on(gce_baseline::run(self.lab, self.proxy, dir, &settings))
    }
}
