//! The provider's EC2 calls against moto (a real EC2 emulator, on loopback): the cluster's
//! network is made, found again without duplicates, listed, deleted in dependency order; the
//! sweep finds an expired cluster; bad input gives its documented message. Instances need test
//! hosts behind them, so launching is tested end to end on the lab (tests/aws_e2e.rs).
//!
//! Needs moto's server (`scripts/test` installs it into target/lab-venv); without it the tests
//! skip with a reason, or fail where every test must run (GANTRY_TESTS_REQUIRE_ALL).

use gantry_provider_aws::AwsProvider;
use gantry_provider_aws::ec2::Ec2;
use gantry_provision::cluster_file::ClusterFile;
use gantry_provision::provider::{ErrorKind, Provider};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GANTRY_LAB_MOTO") {
        return Some(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/lab-venv/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("moto_server")).find(|p| p.exists())
}

fn start() -> Option<Moto> {
    let Some(server) = moto_server() else {
        let reason = "moto_server not found (scripts/test installs it into target/lab-venv)";
        assert!(std::env::var_os("GANTRY_TESTS_REQUIRE_ALL").is_none(), "every test must run here: {reason}");
        eprintln!("SKIPPED: {reason}");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    fake_credentials();
    Some(moto)
}

/// Fake credentials for moto, through the standard chain (the environment).
fn fake_credentials() {
    // Set once; every test in this binary uses the same values, so concurrent writes agree.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: called before any test of this binary reads these variables concurrently with a
        // write of a different value; all writers write the same values.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "gantry-test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "gantry-test-secret");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

fn cluster_file(dir: &Path, name: &str, endpoint: &str, extra: &str) -> ClusterFile {
    let text = format!(
        "version = 1\n[cluster]\nname = \"{name}\"\nprovider = \"aws\"\n{extra}\n[aws]\nregion = \"eu-west-1\"\n\
         endpoint_url = \"{endpoint}\"\nvpc_cidr = \"10.88.0.0/24\"\nconnect_via = \"private\"\n\
         ssh_cidrs = [\"10.88.0.0/24\"]\napi_cidrs = [\"10.88.0.0/24\"]\n\n[[pool]]\nname = \"workers\"\ncount = 2\n\
         image = {{ owner = \"amazon\", name = \"al2023-ami-2023.*-x86_64\" }}\n"
    );
    let path = dir.join("cluster.toml");
    std::fs::write(&path, &text).expect("write the cluster file");
    ClusterFile::parse(&path, &text).expect("a valid cluster file")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

#[test]
fn the_network_is_made_once_listed_and_deleted_in_dependency_order() {
    let Some(moto) = start() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = cluster_file(dir.path(), "net", &moto.url, "");
    runtime().block_on(async {
        let provider = AwsProvider::new(&file, dir.path()).expect("aws settings");
        let before = provider.cluster_resources().await.expect("resources");
        let kinds: Vec<&str> = before.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["vpc", "subnet", "subnet", "subnet", "internet-gateway", "route-table", "security-group", "key-pair"]
        );
        assert!(before.iter().all(|r| r.id.is_none()), "nothing exists yet: {before:?}");

        provider.prepare().await.expect("prepare");
        let made = provider.cluster_resources().await.expect("resources");
        assert!(made.iter().all(|r| r.id.is_some()), "everything exists: {made:?}");

        // A second provider (a second `up`) finds everything by tag and makes nothing new.
        let again = AwsProvider::new(&file, dir.path()).expect("aws settings");
        again.prepare().await.expect("prepare again");
        assert_eq!(again.cluster_resources().await.expect("resources"), made);
        let ec2 = Ec2::connect("eu-west-1", Some(&moto.url)).await.expect("client");
        let vpcs = ec2
            .client
            .describe_vpcs()
            .filters(gantry_provider_aws::tags::filter(gantry_provider_aws::tags::CLUSTER, "net"))
            .send()
            .await
            .expect("describe vpcs");
        assert_eq!(vpcs.vpcs().len(), 1, "one VPC, not two");
        let journal =
            std::fs::read_to_string(dir.path().join(gantry_provision::cloud::Registry::file("aws"))).expect("journal");
        assert!(journal.contains("security-group") && journal.contains("vpc-"), "{journal}");

        provider.teardown().await.expect("teardown");
        let after = provider.cluster_resources().await.expect("resources");
        assert!(after.iter().all(|r| r.id.is_none()), "everything is deleted: {after:?}");
        provider.teardown().await.expect("a second teardown finds nothing to do");
    });
}

#[test]
fn an_expired_cluster_is_swept_and_a_live_one_is_kept() {
    let Some(moto) = start() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let old = tempfile::tempdir().expect("temp dir");
    let live = cluster_file(dir.path(), "live", &moto.url, "ttl = \"4h\"");
    let expired = cluster_file(old.path(), "expired", &moto.url, "ttl = \"1h\"");
    // The expired cluster was created two hours ago (its journal says so).
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::write(
        old.path().join(gantry_provision::cloud::Registry::file("aws")),
        format!("{{\"created_at\": \"{}\"}}", humantime::format_rfc3339_seconds(two_hours_ago)),
    )
    .expect("backdate");
    runtime().block_on(async {
        AwsProvider::new(&live, dir.path()).expect("settings").prepare().await.expect("prepare live");
        AwsProvider::new(&expired, old.path()).expect("settings").prepare().await.expect("prepare expired");
        let ec2 = Ec2::connect("eu-west-1", Some(&moto.url)).await.expect("client");
        let known = |cluster: &str| cluster == "live" || cluster == "expired";
        let found = gantry_provider_aws::sweep::find(&ec2, std::time::SystemTime::now(), &known).await.expect("find");
        let verdicts: Vec<(&str, Option<gantry_provider_aws::sweep::Reason>)> =
            found.iter().map(|f| (f.cluster.as_str(), f.reason)).collect();
        assert!(verdicts.contains(&("expired", Some(gantry_provider_aws::sweep::Reason::Expired))), "{verdicts:?}");
        assert!(verdicts.contains(&("live", None)), "{verdicts:?}");
        gantry_provider_aws::sweep::delete(&ec2, "expired").await.expect("sweep");
        let found = gantry_provider_aws::sweep::find(&ec2, std::time::SystemTime::now(), &known).await.expect("find");
        assert!(found.iter().all(|f| f.cluster != "expired"), "nothing of the expired cluster is left: {found:?}");
        assert!(found.iter().any(|f| f.cluster == "live"));
    });
}

#[test]
fn bad_input_gives_its_documented_message() {
    let Some(moto) = start() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    runtime().block_on(async {
        // An unknown region.
        let text = std::fs::read_to_string({
            cluster_file(dir.path(), "bad", &moto.url, "");
            dir.path().join("cluster.toml")
        })
        .expect("read");
        let path = dir.path().join("cluster.toml");
        let nowhere = ClusterFile::parse(&path, &text.replace("eu-west-1", "xx-nowhere-1")).expect("valid file");
        let error = AwsProvider::new(&nowhere, dir.path()).expect("settings").prepare().await.expect_err("no region");
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(error.to_string().contains("unknown region `xx-nowhere-1`"), "{error}");
        assert!(error.to_string().contains("eu-west-1"), "the message lists the known regions: {error}");

        // An unknown AMI: the create fails before launching anything.
        let unknown = ClusterFile::parse(
            &path,
            &text.replace(
                "image = { owner = \"amazon\", name = \"al2023-ami-2023.*-x86_64\" }",
                "image = \"ami-00000000000000000\"",
            ),
        )
        .expect("valid file");
        let provider = AwsProvider::new(&unknown, dir.path()).expect("settings");
        let spec = gantry_provision::provider::HostSpec {
            cluster: "bad".to_string(),
            name: "workers-0".to_string(),
            role: gantry_provision::cluster_file::Role::Agent,
            pool: "workers".to_string(),
            resources: None,
            attributes: Default::default(),
        };
        let error = provider.create_host(&spec).await.expect_err("no such image");
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(error.to_string().contains("ami-00000000000000000 does not exist in eu-west-1"), "{error}");
        assert!(provider.list_hosts().await.expect("list").is_empty(), "nothing was launched");
        provider.teardown().await.expect("teardown");
    });
}

/// With no credentials anywhere in the chain, the message names the chain and what to do. Runs
/// the SDK in a child process with an empty environment (credentials are process-wide).
#[test]
fn missing_credentials_name_the_chain() {
    if std::env::var_os("GANTRY_AWS_CREDENTIALS_CHILD").is_some() {
        let result = runtime().block_on(Ec2::connect("eu-west-1", Some("http://127.0.0.1:9")));
        let error = result.expect_err("no credentials");
        assert_eq!(error.kind(), ErrorKind::Auth);
        println!("MESSAGE: {error}");
        return;
    }
    let home = tempfile::tempdir().expect("temp home");
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "missing_credentials_name_the_chain", "--nocapture"])
        .env_clear()
        .env("GANTRY_AWS_CREDENTIALS_CHILD", "1")
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("no AWS credentials"), "{stdout}");
    assert!(stdout.contains("AWS_ACCESS_KEY_ID") && stdout.contains("IMDS"), "the chain is named: {stdout}");
}

/// A file naming an existing VPC and subnet: gantry makes only its security group and key pair
/// there, and `down` (teardown) deletes those and leaves the VPC and subnet it did not make.
#[test]
fn an_existing_vpc_is_used_and_left_in_place() {
    let Some(moto) = start() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    runtime().block_on(async {
        let ec2 = Ec2::connect("eu-west-1", Some(&moto.url)).await.expect("client");
        let vpc = ec2.client.create_vpc().cidr_block("10.99.0.0/16").send().await.expect("create vpc");
        let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
        let subnet = ec2
            .client
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.99.1.0/24")
            .availability_zone("eu-west-1b")
            .send()
            .await
            .expect("create subnet");
        let subnet_id = subnet.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string();
        let text = format!(
            "version = 1\n[cluster]\nname = \"byo\"\nprovider = \"aws\"\n[aws]\nregion = \"eu-west-1\"\n\
             endpoint_url = \"{}\"\nvpc_id = \"{vpc_id}\"\nsubnet_ids = [\"{subnet_id}\"]\nconnect_via = \"private\"\n\
             ssh_cidrs = [\"10.99.0.0/16\"]\napi_cidrs = [\"10.99.0.0/16\"]\n",
            moto.url
        );
        let path = dir.path().join("cluster.toml");
        let file = ClusterFile::parse(&path, &text).expect("valid file");
        let provider = AwsProvider::new(&file, dir.path()).expect("settings");
        provider.prepare().await.expect("prepare");
        let resources = provider.cluster_resources().await.expect("resources");
        let kinds: Vec<(&str, bool, bool)> =
            resources.iter().map(|r| (r.kind.as_str(), r.owned, r.id.is_some())).collect();
        assert_eq!(kinds, [("vpc", false, true), ("security-group", true, true), ("key-pair", true, true)]);
        let groups = ec2
            .client
            .describe_security_groups()
            .filters(gantry_provider_aws::tags::filter(gantry_provider_aws::tags::CLUSTER, "byo"))
            .send()
            .await
            .expect("groups");
        assert_eq!(groups.security_groups().first().and_then(|g| g.vpc_id()), Some(vpc_id.as_str()));
        let vpcs = ec2.client.describe_vpcs().send().await.expect("vpcs");
        assert!(
            vpcs.vpcs().iter().all(|v| v.cidr_block() != Some(gantry_provision::cluster_file::aws_defaults::VPC_CIDR)),
            "no VPC of gantry's own was made"
        );

        provider.teardown().await.expect("teardown");
        let left = provider.cluster_resources().await.expect("resources");
        assert!(left.iter().filter(|r| r.owned).all(|r| r.id.is_none()), "gantry's own are gone: {left:?}");
        let vpc_left = ec2.client.describe_vpcs().vpc_ids(&vpc_id).send().await.expect("the VPC is still there");
        assert_eq!(vpc_left.vpcs().len(), 1);
        let subnet_left = ec2.client.describe_subnets().subnet_ids(&subnet_id).send().await.expect("the subnet too");
        assert_eq!(subnet_left.subnets().len(), 1);
    });
}
