//! `cloud --provider aws`: the AWS lab (`gantry_lab::cloud::aws`: moto on loopback, a test host
//! for every running instance), `gantry up` and `gantry down` of a lab cluster file through the
//! counting proxy, then the SDK baseline ([`super::aws_baseline`]) through the same proxy.
//!
//! The lab's own watcher polls moto directly, so its calls are not counted.

use super::cluster::{self, CloudBench, SSH_PARALLELISM};
use super::{Args, EC2, Side, add_figures, aws_baseline};
use crate::cloud_proxy::{CountingProxy, Protocol};
use crate::report::{Report, progress};
use gantry_lab::cloud::aws::{AwsLab, AwsLabError};
use std::path::Path;
use std::time::Duration;

/// Runs the scenario on the AWS lab.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.instances;
    let bin = crate::binary::gantry()?;
    // The proxy is served by this runtime's workers while the main thread waits for `gantry`.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let work = tempfile::Builder::new().prefix("gantry-bench-cloud-").tempdir()?;
    progress("starting the AWS lab (moto and its watcher)");
    let lab = AwsLab::start(&work.path().join("lab")).map_err(|e| match e {
        AwsLabError::Lab(e) => anyhow::anyhow!("cloud --provider aws needs the lab's test hosts: {e}"),
        e => anyhow::anyhow!("cloud --provider aws cannot start the AWS lab: {e}"),
    })?;
    let proxy = runtime.block_on(CountingProxy::start(lab.endpoint_url(), Protocol::Ec2))?;
    report.note(format!(
        "`gantry up` and `gantry down` of 1 master + {} agents on the AWS lab (moto {} on loopback, every instance a \
         test host) with {}, [aws] max_parallel_creates = {}; EC2 calls counted by a proxy in front of moto; {} runs \
         in one lab, medians reported",
        n - 1,
        gantry_lab::cloud::aws::MOTO_VERSION,
        cluster::binary_note(&bin),
        args.max_parallel_creates,
        args.runs
    ));
    let bench = Aws { args, lab: &lab, proxy: &proxy, runtime: &runtime };
    let runs = cluster::runs(args, &bin, work.path(), &proxy, &bench)?;
    add_figures(report, &format!("cloud.aws.instances_{n}"), EC2, &runs);
    if let Some(path) = &args.calls_file {
        super::write_calls(path, &runs)?;
        report.note(format!("every EC2 call: {}", path.display()));
    }
    report.note(
        "create_s: first RunInstances sent to the last DescribeInstances that saw the last instance running \
         (both sides hold a create slot until the instance accepts SSH, as gantry's create does); terminate_s: \
         time during which some instance was between its TerminateInstances and the DescribeInstances that saw \
         it terminated (gantry stops services over SSH between terminates); ec2_ratio: the median over the runs of \
         gantry's (create_s + terminate_s) / the same run's baseline's (the ratio on the ec2_s line compares the \
         medians instead); the baseline polls on gantry's schedule (100 ms doubling to 2 s)",
    );
    Ok(())
}

/// The AWS lab behind the proxy.
struct Aws<'a> {
    args: &'a Args,
    lab: &'a AwsLab,
    proxy: &'a CountingProxy,
    runtime: &'a tokio::runtime::Runtime,
}

impl CloudBench for Aws<'_> {
    fn cluster(&self, _index: usize) -> anyhow::Result<(String, Vec<(String, String)>)> {
        let (lab, n) = (self.lab, self.args.instances);
        let image = "{ owner = \"amazon\", name = \"al2023-ami-2023.*-x86_64\" }";
        let text = format!(
            "version = 1\n[cluster]\nname = \"bench-{prefix}\"\nprovider = \"aws\"\n\n\
             [ssh]\nuser = \"root\"\nconnect_timeout = \"3s\"\n\n\
             [aws]\nregion = \"{region}\"\nvpc_cidr = \"{cidr}\"\nconnect_via = \"private\"\n\
             ssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\nmax_parallel_creates = {max_parallel_creates}\n\n\
             [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\ninstance_type = \"{master_type}\"\n\
             image = {image}\n\n\
             [[pool]]\nname = \"workers\"\ncount = {workers}\ninstance_type = \"{worker_type}\"\nimage = {image}\n",
            prefix = lab.prefix(),
            region = lab.region(),
            cidr = lab.cidr(),
            max_parallel_creates = self.args.max_parallel_creates,
            master_type = aws_baseline::MASTER_TYPE,
            worker_type = aws_baseline::WORKER_TYPE,
            workers = n - 1,
        );
        let mut env = lab.env();
        for (key, value) in &mut env {
            if key == "AWS_ENDPOINT_URL" {
                *value = self.proxy.url().to_string();
            }
        }
        env.push(("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()));
        Ok((text, env))
    }

    fn leftovers(&self, timeout: Duration) -> Option<String> {
        match self.lab.wait_for(timeout, |hosts| hosts.is_empty().then_some(())) {
            Some(()) => None,
            None => Some(format!("{:?}", self.lab.instances())),
        }
    }

    fn baseline(&self, index: usize, dir: &Path) -> anyhow::Result<Side> {
        let settings = aws_baseline::Settings {
            name: format!("bench-{}-{index}", self.lab.prefix()),
            instances: self.args.instances,
            max_parallel_creates: self.args.max_parallel_creates,
            max_parallel_destroys: SSH_PARALLELISM,
        };
        self.runtime.block_on(aws_baseline::run(self.lab, self.proxy, dir, &settings))
    }
}
