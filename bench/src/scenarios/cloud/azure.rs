//! `cloud --provider azure`: the Azure lab (`gantry_lab::cloud::azure`: the Resource Manager
//! emulator on loopback, a test host for every running VM), `gantry up` and `gantry down` of a
//! lab cluster file whose `[azure] endpoint_url` is the counting proxy, then the SDK baseline
//! ([`super::azure_baseline`]) through the same proxy.
//!
//! The lab's hosts follow the emulator's state directly, so the lab makes no calls to count.

use super::azure_baseline::{self, ADMIN_USER, LOCATION, VM_SIZE, ZONES};
use super::cluster::{self, CloudBench, SSH_PARALLELISM};
use super::{Api, Args, Side, add_figures};
use crate::cloud_proxy::{CountingProxy, Protocol};
use crate::report::{Report, progress};
use gantry_lab::cloud::azure::{AzureLab, AzureLabError};
use std::path::Path;
use std::time::Duration;

/// How the figures name Resource Manager.
pub const ARM: Api = Api { name: "Resource Manager", key: "api", creates_in_flight: "create_requests_in_flight" };

/// Runs the scenario on the Azure lab.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.instances;
    let bin = crate::binary::gantry()?;
    // The proxy is served by this runtime's workers while the main thread waits for `gantry`.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let work = tempfile::Builder::new().prefix("gantry-bench-cloud-").tempdir()?;
    progress("starting the Azure lab (the Resource Manager emulator and its hosts)");
    let lab = AzureLab::start(&work.path().join("lab")).map_err(|e| match e {
        AzureLabError::Lab(e) => anyhow::anyhow!("cloud --provider azure needs the lab's test hosts: {e}"),
        e => anyhow::anyhow!("cloud --provider azure cannot start the Azure lab: {e}"),
    })?;
    let proxy = runtime.block_on(CountingProxy::start(lab.endpoint_url(), Protocol::Azure))?;
    report.note(format!(
        "`gantry up` and `gantry down` of 1 master + {} agents on the Azure lab (gantry-lab's Resource Manager \
         emulator on loopback, operations of 200 ms, every VM a test host) with {}, [azure] max_parallel_creates = \
         {}; Resource Manager calls counted by a proxy in front of the emulator (which points the operations' status \
         URLs at itself); {} runs in one lab, medians reported",
        n - 1,
        cluster::binary_note(&bin),
        args.max_parallel_creates,
        args.runs
    ));
    let bench = Azure { args, lab: &lab, proxy: &proxy, runtime: &runtime };
    let runs = cluster::runs(args, &bin, work.path(), &proxy, &bench)?;
    add_figures(report, &format!("cloud.azure.instances_{n}"), ARM, &runs);
    if let Some(path) = &args.calls_file {
        super::write_calls(path, &runs)?;
        report.note(format!("every Resource Manager call: {}", path.display()));
    }
    report.note(
        "create_s: first VM PUT sent to the first VM GET (or list) whose instance view showed the last VM running \
         (both sides hold a create slot until the VM accepts SSH, as gantry's create does; the NIC each VM needs is \
         made in that slot before the VM's PUT); terminate_s: time during which some VM was between its DELETE and the \
         last call that named it (its GET or its operation's poll); api_ratio: the median over the runs of \
         gantry's (create_s + terminate_s) / the same run's baseline's; the baseline polls on gantry's schedule \
         (operations 50 ms doubling to 5 s, the boot 100 ms doubling to 5 s)",
    );
    Ok(())
}

/// The Azure lab behind the proxy.
struct Azure<'a> {
    args: &'a Args,
    lab: &'a AzureLab,
    proxy: &'a CountingProxy,
    runtime: &'a tokio::runtime::Runtime,
}

impl CloudBench for Azure<'_> {
    fn cluster(&self, _index: usize) -> anyhow::Result<(String, Vec<(String, String)>)> {
        let (lab, n) = (self.lab, self.args.instances);
        let zones: Vec<String> = ZONES.iter().map(|z| format!("\"{z}\"")).collect();
        let text = format!(
            "version = 1\n[cluster]\nname = \"bench-{prefix}\"\nprovider = \"azure\"\n\n\
             [ssh]\nuser = \"{ADMIN_USER}\"\nsudo = true\nconnect_timeout = \"3s\"\n\n\
             [azure]\nsubscription_id = \"{subscription}\"\nlocation = \"{LOCATION}\"\nzones = [{zones}]\n\
             endpoint_url = \"{endpoint}\"\nvnet_cidr = \"{cidr}\"\nconnect_via = \"private\"\n\
             ssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\nmax_parallel_creates = {max_parallel_creates}\n\n\
             [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\nvm_size = \"{VM_SIZE}\"\n\n\
             [[pool]]\nname = \"workers\"\ncount = {workers}\nvm_size = \"{VM_SIZE}\"\n",
            prefix = lab.prefix(),
            subscription = lab.subscription_id(),
            zones = zones.join(", "),
            endpoint = self.proxy.url(),
            cidr = lab.cidr(),
            max_parallel_creates = self.args.max_parallel_creates,
            workers = n - 1,
        );
        let mut env = lab.env();
        env.retain(|(key, _)| key != "GANTRY_AZURE_ENDPOINT_URL");
        Ok((text, env))
    }

    fn leftovers(&self, timeout: Duration) -> Option<String> {
        match self.lab.wait_for(timeout, |hosts| hosts.is_empty().then_some(())) {
            Some(()) => None,
            None => Some(format!("{:?}", self.lab.instances().iter().map(|v| &v.name).collect::<Vec<_>>())),
        }
    }

    fn baseline(&self, index: usize, dir: &Path) -> anyhow::Result<Side> {
        let settings = azure_baseline::Settings {
            name: format!("gantry-bench-baseline-{index}"),
            instances: self.args.instances,
            max_parallel_creates: self.args.max_parallel_creates,
            max_parallel_destroys: SSH_PARALLELISM,
        };
        self.runtime.block_on(azure_baseline::run(self.lab, self.proxy, dir, &settings))
    }
}
