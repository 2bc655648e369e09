//! The AWS lab: moto's EC2 emulator on loopback, watched so that every instance that runs gets
//! a test host at its private address.
//!
//! [`AwsLab::start`] finds `moto_server` (see [`find_moto_server`]), starts it on a free
//! loopback port, creates a lab with no hosts (its bridge only) and starts a watcher thread. The
//! watcher polls DescribeInstances in every region it was given about five times a second; an
//! instance that becomes `running` with a private address inside the lab network
//! ([`AwsLab::cidr`]) gets a host at that address, named by its `Name` tag (or its id), with
//! its key pair's public key authorised for root and its user data run once, as root, as
//! cloud-init would (see [`crate::testhosts::Host::run_detached`]; the output is
//! [`InstanceHost::user_data_log`]); a stopped
//! instance's host is stopped, a started one's started again, a terminated one's removed.
//! Instances elsewhere are ignored (logged once). Nothing dials the public addresses moto
//! makes up.
//!
//! A cluster file for the lab therefore puts its VPC on the lab network (`vpc_cidr` =
//! `GANTRY_LAB_CIDR`) and connects over private addresses. Dropping the [`AwsLab`] stops the
//! watcher, removes every host and the bridge, and kills moto.

mod moto;
mod reconcile;
mod watcher;

pub use moto::{MOTO_ENV, MOTO_VERSION, find_moto_server};

use crate::testhosts::{Host, Ipv4Cidr, Lab, LabError};
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use watcher::Shared;

/// The fake access key id the lab's clients use (moto accepts any).
pub const ACCESS_KEY_ID: &str = "AKIAGANTRYLAB0000000";
/// The fake secret access key the lab's clients use.
pub const SECRET_ACCESS_KEY: &str = "gantry-lab-secret";
/// The region used when neither the options nor `AWS_REGION` name one.
pub const DEFAULT_REGION: &str = "eu-west-1";

/// What went wrong starting the AWS lab.
#[derive(Debug, thiserror::Error)]
pub enum AwsLabError {
    /// The test-host lab failed ([`LabError::Unsupported`] when this machine cannot run it).
    #[error(transparent)]
    Lab(#[from] LabError),
    /// moto's server is not installed where the lab looks.
    #[error(
        "moto's server is not installed: {0}. Install it with `scripts/test` (as root), or \
         `python3 -m venv target/lab-venv && target/lab-venv/bin/pip install 'moto[server]=={version}'` \
         in the workspace, or set {env} to a moto_server executable",
        version = MOTO_VERSION,
        env = MOTO_ENV
    )]
    MotoMissing(String),
    /// moto's server did not start.
    #[error("moto's server did not start: {0}")]
    Moto(String),
    /// The first EC2 call to moto failed.
    #[error("EC2 on moto ({region}) does not answer: {message}")]
    Ec2 {
        /// The region asked.
        region: String,
        /// The SDK's error, with its sources.
        message: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the lab was doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl AwsLabError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AwsLabError {
        let context = context.into();
        move |source| AwsLabError::Io { context, source }
    }
}

/// How an [`AwsLab`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLabOptions {
    /// The regions whose instances get hosts; the first is the one [`AwsLab::env`] exports.
    /// Default: `AWS_REGION`, else [`DEFAULT_REGION`].
    pub regions: Vec<String>,
    /// How often the watcher polls DescribeInstances. Default: 200 ms.
    pub poll_interval: Duration,
    /// The lab network's third octet (`10.77.<subnet>.0/24`); default a free one.
    pub subnet: Option<u8>,
}

impl Default for AwsLabOptions {
    fn default() -> Self {
        let region = std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty());
        AwsLabOptions {
            regions: vec![region.unwrap_or_else(|| DEFAULT_REGION.to_string())],
            poll_interval: Duration::from_millis(200),
            subnet: None,
        }
    }
}

/// An instance that has a host.
#[derive(Debug, Clone)]
pub struct InstanceHost {
    /// The instance's region.
    pub region: String,
    /// The instance id.
    pub instance_id: String,
    /// Its host, at the instance's private address.
    pub host: Host,
    /// Whether the host runs (false while the instance is stopped).
    pub running: bool,
    /// The output file (on this machine) of the instance's user data, when it had some.
    pub user_data_log: Option<PathBuf>,
}

/// moto's EC2 on loopback, with a test host for every running instance. See the module docs.
#[derive(Debug)]
pub struct AwsLab {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    watcher: Option<JoinHandle<()>>,
    moto: Option<moto::Moto>,
    endpoint: String,
    regions: Vec<String>,
    cidr: Ipv4Cidr,
    prefix: String,
    known_hosts: PathBuf,
    dir: PathBuf,
}

impl AwsLab {
    /// Starts an AWS lab with the default options; `dir` receives moto's log (`moto.log`) and
    /// the environment to export (`env`, the lines of [`AwsLab::env`]). Needs root. Blocks until
    /// moto answers DescribeInstances (a few seconds); from async code call it on a blocking
    /// thread.
    pub fn start(dir: &Path) -> Result<AwsLab, AwsLabError> {
        AwsLab::start_with(dir, AwsLabOptions::default())
    }

    /// Like [`AwsLab::start`], with `options`.
    pub fn start_with(dir: &Path, options: AwsLabOptions) -> Result<AwsLab, AwsLabError> {
        assert!(!options.regions.is_empty(), "an AWS lab watches at least one region");
        let exe = find_moto_server()?;
        std::fs::create_dir_all(dir).map_err(AwsLabError::io(format!("create {}", dir.display())))?;
        let lab = Lab::try_new_in(0, options.subnet)?;
        let moto = moto::Moto::start(&lab, &exe, &dir.join("moto.log"))?;
        let endpoint = format!("http://127.0.0.1:{}", moto.port);
        let (cidr, prefix, known_hosts) = (lab.cidr(), lab.prefix().to_string(), lab.known_hosts_file().to_path_buf());
        let shared = Arc::new(Shared::new(lab));
        let clients: Vec<(String, aws_sdk_ec2::Client)> =
            options.regions.iter().map(|r| (r.clone(), ec2_client(&endpoint, r))).collect();
        let (stop, stopped) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let watcher = {
            let shared = Arc::clone(&shared);
            let interval = options.poll_interval;
            std::thread::Builder::new()
                .name(format!("gantry-lab-aws-{prefix}"))
                .spawn(move || watcher::run(&shared, &clients, cidr, interval, &stopped, &ready_tx))
                .map_err(AwsLabError::io("start the watcher thread"))?
        };
        // From here on an error drops `lab`, which stops the watcher and moto and removes the lab.
        let lab = AwsLab {
            shared,
            stop: Some(stop),
            watcher: Some(watcher),
            moto: Some(moto),
            endpoint,
            regions: options.regions,
            cidr,
            prefix,
            known_hosts,
            dir: dir.to_path_buf(),
        };
        let first = ready.recv().unwrap_or_else(|_| Err(AwsLabError::Moto("the watcher thread ended".into())));
        first?;
        let lines: String = lab.env().iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(dir.join("env"), lines).map_err(AwsLabError::io("write the env file"))?;
        tracing::info!(endpoint = %lab.endpoint, cidr = %lab.cidr, prefix = %lab.prefix, "AWS lab ready.");
        Ok(lab)
    }

    /// What to export for a client of the lab: `AWS_ENDPOINT_URL` (moto), fake
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` (the first region) and
    /// `GANTRY_LAB_CIDR`, the lab network, which a lab cluster file uses as its VPC's network.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
            ("AWS_REGION", self.regions[0].clone()),
            ("GANTRY_LAB_CIDR", self.cidr.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// moto's URL, `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    /// The first region (the one [`AwsLab::env`] exports).
    pub fn region(&self) -> &str {
        &self.regions[0]
    }

    /// Every region watched.
    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    /// The lab network, `10.77.X.0/24`.
    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// The lab's name prefix (see [`crate::testhosts`]).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A known_hosts file with the host key of every instance's host.
    pub fn known_hosts_file(&self) -> &Path {
        &self.known_hosts
    }

    /// The directory given to [`AwsLab::start`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An EC2 client of moto in `region`, with the lab's fake credentials.
    pub fn ec2_client(&self, region: &str) -> aws_sdk_ec2::Client {
        ec2_client(&self.endpoint, region)
    }

    /// The instances that have a host now.
    pub fn instances(&self) -> Vec<InstanceHost> {
        self.shared.instances()
    }

    /// The host of instance `instance_id`, if it has one now.
    pub fn instance(&self, instance_id: &str) -> Option<InstanceHost> {
        self.instances().into_iter().find(|i| i.instance_id == instance_id)
    }

    /// Waits until `check`, given the instances that have a host, answers something, for at
    /// most `timeout`; `None` when it never did. `check` runs now and after every poll of the
    /// watcher (so counting its calls counts polls).
    pub fn wait_for<T>(&self, timeout: Duration, check: impl FnMut(&[InstanceHost]) -> Option<T>) -> Option<T> {
        self.shared.wait_for(Instant::now() + timeout, check)
    }

    /// Waits until instance `instance_id` has a host that runs (`running`) or is stopped
    /// (`!running`), for at most `timeout`.
    pub fn wait_for_instance(&self, instance_id: &str, running: bool, timeout: Duration) -> Option<InstanceHost> {
        self.wait_for(timeout, |all| all.iter().find(|i| i.instance_id == instance_id && i.running == running).cloned())
    }

    /// Waits until instance `instance_id` has no host, for at most `timeout`; whether it has
    /// none.
    pub fn wait_for_removal(&self, instance_id: &str, timeout: Duration) -> bool {
        self.wait_for(timeout, |all| (!all.iter().any(|i| i.instance_id == instance_id)).then_some(())).is_some()
    }

    /// Stops the watcher, removes every host and the bridge, and kills moto (what dropping the
    /// lab does).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for AwsLab {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        if let Some(mut moto) = self.moto.take() {
            moto.stop();
        }
        // The last reference to the lab goes with `self.shared`: its drop removes the hosts.
    }
}

/// An EC2 client of the moto at `endpoint` (an AWS lab's [`AwsLab::endpoint_url`]) in
/// `region`, with the lab's fake credentials; it reads no environment or profile.
pub fn ec2_client(endpoint: &str, region: &str) -> aws_sdk_ec2::Client {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "gantry-lab"))
        .http_client(http)
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

impl super::CloudLab for AwsLab {
    fn env(&self) -> Vec<(String, String)> {
        AwsLab::env(self)
    }

    fn prefix(&self) -> &str {
        AwsLab::prefix(self)
    }
}
