use super::*;
use std::fs;

const GOOD: &str = r#"version = 1

[cluster]
name = "dev"
provider = "local"

[runtime]
masters = 1
heartbeat_interval = "1s"
agent_unreachable_timeout = "3s"

[[pool]]
name = "workers"
count = 3
resources = "cpus=2;mem=2048"
attributes = { zone = "z{index}" }

[[pool]]
name = "gpu"
count = 1
"#;

fn parse(text: &str) -> Result<ClusterFile, ClusterFileError> {
    ClusterFile::parse(Path::new("c.toml"), text)
}

/// Parses `text`, expecting an error; returns (line, column, key, display).
fn fault(text: &str) -> (usize, usize, String, String) {
    let err = parse(text).expect_err("the file is invalid");
    let (line, column) = err.position().expect("a position");
    (line, column, err.key().expect("a key").to_string(), err.to_string())
}

#[test]
fn good_file_parses_with_defaults() {
    let file = parse(GOOD).expect("valid");
    assert_eq!(file.name(), "dev");
    assert_eq!(file.provider(), ProviderKind::Local);
    assert_eq!(file.masters(), 1);
    assert_eq!(file.pools.len(), 2);
    assert_eq!(*file.pools[1].count.get_ref(), 1);
    assert_eq!(*file.pools[1].role.get_ref(), Role::Agent);
    assert_eq!(file.ssh.user, "root");
    assert_eq!(file.ssh.known_hosts, KnownHosts::Strict);
    assert_eq!(file.local().port_base, 31000);
}

#[test]
fn unknown_key_points_at_the_key() {
    let (line, column, key, text) = fault(&GOOD.replace("masters = 1", "master = 1"));
    assert_eq!((line, column, key.as_str()), (8, 1, "runtime.master"), "{text}");
    assert!(text.starts_with("c.toml:8:1: runtime.master: unknown field `master`"), "{text}");
    assert!(text.contains("(hint: remove the key or fix its spelling"), "{text}");
}

#[test]
fn unknown_section_is_rejected() {
    let (line, column, key, text) = fault(&format!("{GOOD}\n[gcp]\nregion = \"x\"\n"));
    assert_eq!((line, column, key.as_str()), (22, 2, "gcp"), "{text}");
}

#[test]
fn wrong_type_points_at_the_value() {
    let (line, column, key, text) = fault(&GOOD.replace("masters = 1", "masters = \"one\""));
    assert_eq!((line, column, key.as_str()), (8, 11, "runtime.masters"), "{text}");
    assert!(text.contains("invalid type"), "{text}");
    assert!(text.contains("hint: use 1, or 3 or 5"), "{text}");
}

#[test]
fn negative_count_is_a_type_error_on_its_line() {
    let (line, column, key, text) = fault(&GOOD.replace("count = 1", "count = -1"));
    assert_eq!((line, column, key.as_str()), (20, 9, "pool[1].count"), "{text}");
    assert!(text.contains("hint: a whole number, 0 or more"), "{text}");
}

#[test]
fn version_two_is_rejected_with_a_hint() {
    let (line, column, key, text) = fault(&GOOD.replace("version = 1", "version = 2"));
    assert_eq!((line, column, key.as_str()), (1, 11, "version"), "{text}");
    assert!(text.contains("schema version 2 is not supported"), "{text}");
}

#[test]
fn missing_version_is_rejected() {
    let err = parse(&GOOD.replace("version = 1", "")).expect_err("no version");
    assert_eq!(err.key(), Some("version"), "{err}");
    assert!(err.to_string().contains("missing field `version`"), "{err}");
    assert!(err.to_string().contains("hint: add `version = …`"), "{err}");
}

#[test]
fn zero_two_and_four_masters_are_rejected_three_and_five_accepted() {
    let (line, column, key, text) = fault(&GOOD.replace("masters = 1", "masters = 0"));
    assert_eq!((line, column, key.as_str()), (8, 11, "runtime.masters"), "{text}");
    assert!(text.contains("at least one master"), "{text}");
    let (line, column, _, text) = fault(&GOOD.replace("masters = 1", "masters = 2"));
    assert_eq!((line, column), (8, 11), "{text}");
    assert!(text.contains("2 masters cannot be run"), "{text}");
    let (_, _, _, text) = fault(&GOOD.replace("masters = 1", "masters = 4"));
    assert!(text.contains("4 masters cannot be run"), "{text}");
    for n in [3, 5] {
        let text = GOOD.replace("masters = 1", &format!("masters = {n}"));
        let file = ClusterFile::parse(Path::new("c.toml"), &text).expect("a quorum of masters is valid");
        assert_eq!(file.masters(), n);
    }
}

#[test]
fn duplicate_pool_names_point_at_the_second() {
    let (line, column, key, text) = fault(&GOOD.replace("name = \"gpu\"", "name = \"workers\""));
    assert_eq!((line, column, key.as_str()), (19, 8, "pool[1].name"), "{text}");
    assert!(text.contains("duplicate pool name `workers` (also pool[0])"), "{text}");
}

#[test]
fn pool_named_master_is_reserved() {
    let (line, _, key, _) = fault(&GOOD.replace("name = \"gpu\"", "name = \"master\""));
    assert_eq!((line, key.as_str()), (19, "pool[1].name"));
}

#[test]
fn bad_resources_string_points_at_it() {
    let (line, column, key, text) = fault(&GOOD.replace("cpus=2;mem=2048", "cpus=two"));
    assert_eq!((line, column, key.as_str()), (15, 13, "pool[0].resources"), "{text}");
    assert!(text.contains("`cpus` must be a non-negative number"), "{text}");
}

#[test]
fn bad_provider_and_unavailable_provider() {
    let (line, column, key, text) = fault(&GOOD.replace("provider = \"local\"", "provider = \"digitalocean\""));
    assert_eq!((line, column, key.as_str()), (5, 12, "cluster.provider"), "{text}");
    assert!(text.contains("unknown variant `digitalocean`"), "{text}");
    let (line, column, key, text) = fault(&GOOD.replace("provider = \"local\"", "provider = \"gce\""));
    assert_eq!((line, column, key.as_str()), (5, 12, "gce"), "{text}");
    assert!(text.contains("provider `gce` needs its [gce] section"), "{text}");
}

#[test]
fn bad_cluster_name() {
    let (line, column, key, text) = fault(&GOOD.replace("name = \"dev\"", "name = \"Dev_1\""));
    assert_eq!((line, column, key.as_str()), (4, 8, "cluster.name"), "{text}");
}

#[test]
fn bad_duration_and_order_of_durations() {
    let (line, column, key, text) = fault(&GOOD.replace("\"1s\"", "\"soon\""));
    assert_eq!((line, column, key.as_str()), (9, 22, "runtime.heartbeat_interval"), "{text}");
    assert!(text.contains("invalid duration `soon`"), "{text}");
    let (line, _, key, _) = fault(&GOOD.replace("\"3s\"", "\"1s\""));
    assert_eq!((line, key.as_str()), (10, "runtime.agent_unreachable_timeout"));
}

#[test]
fn master_pools_must_add_up_to_runtime_masters() {
    let text = GOOD.replace("name = \"gpu\"\ncount = 1", "name = \"control\"\ncount = 3\nrole = \"master\"");
    let (line, column, key, msg) = fault(&text);
    assert_eq!((line, column, key.as_str()), (21, 8, "pool[1].role"), "{msg}");
    assert!(msg.contains("master pools hold 3 hosts but runtime.masters is 1"), "{msg}");
    parse(&text.replace("count = 3\nrole = \"master\"", "count = 1\nrole = \"master\"")).expect("counts add up");
}

#[test]
fn local_port_ranges_must_fit() {
    let text = format!("{GOOD}\n[local]\nport_base = 65000\nports_per_agent = 500\n");
    let (line, _, key, msg) = fault(&text);
    assert_eq!((line, key.as_str()), (22, "local.ports_per_agent"), "{msg}");
}

#[test]
fn workload_files_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("apps")).expect("mkdir");
    fs::write(dir.path().join("apps/ok.toml"), "id = \"ok\"\ncmd = \"true\"\n").expect("write");
    fs::write(dir.path().join("apps/bad.toml"), "id = \"bad\"\ncmd = \"true\"\ninstanses = 2\n").expect("write");
    let load = |extra: &str| {
        let path = dir.path().join("cluster.toml");
        fs::write(&path, format!("{GOOD}\n{extra}")).expect("write");
        ClusterFile::load(&path)
    };
    let file = load("[[workload]]\napp = \"apps/ok.toml\"\n").expect("valid");
    assert_eq!(file.app_files(), vec![dir.path().join("apps/ok.toml")]);

    let err = load("[[workload]]\napp = \"apps/missing.toml\"\n").expect_err("missing");
    assert_eq!((err.position(), err.key()), (Some((23, 7)), Some("workload[0].app")), "{err}");
    assert!(
        matches!(&err, ClusterFileError::Workload { source, .. } if matches!(**source, gantry_api::workload::WorkloadError::Io { .. }))
    );

    let err = load("[[workload]]\napp = \"apps/bad.toml\"\n").expect_err("bad");
    assert_eq!(err.position(), Some((23, 7)), "{err}");
    assert!(err.to_string().contains("apps/bad.toml:3:1: unknown field `instanses`"), "{err}");

    let err = load("[[workload]]\njob = \"jobs/backup.toml\"\n").expect_err("job");
    assert_eq!((err.position(), err.key()), (Some((23, 7)), Some("workload[0].job")), "{err}");
    assert!(err.to_string().contains("jobs/backup.toml"), "{err}");
    fs::create_dir(dir.path().join("jobs")).expect("mkdir");
    fs::write(dir.path().join("jobs/backup.toml"), "id = \"backup\"\n[run]\ncmd = \"true\"\n").expect("write");
    let file = load("[[workload]]\njob = \"jobs/backup.toml\"\n").expect("a valid job workload");
    assert_eq!(file.job_files(), vec![dir.path().join("jobs/backup.toml")]);

    let err = load("[[workload]]\n").expect_err("empty");
    assert_eq!(err.key(), Some("workload[0]"), "{err}");
}

#[test]
fn missing_cluster_file_is_an_io_error() {
    let err = ClusterFile::load(Path::new("/nonexistent/cluster.toml")).expect_err("missing");
    assert!(matches!(err, ClusterFileError::Io { .. }));
    assert!(err.to_string().starts_with("/nonexistent/cluster.toml: "), "{err}");
}

/// Every cluster file shipped in `configs/` parses and validates (workload files included).
#[test]
fn every_example_cluster_file_parses() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut parsed = Vec::new();
    for entry in fs::read_dir(&configs).expect("configs/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let file = ClusterFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
            parsed.push(file.name().to_string());
        }
    }
    for name in ["local", "local-ha", "rack1", "prod-eu", "lab"] {
        assert!(parsed.contains(&name.to_string()), "{parsed:?}");
    }
}

#[test]
fn unknown_key_in_a_later_pool_names_its_index() {
    let (line, column, key, text) = fault(&GOOD.replace("count = 1", "count = 1\ncolour = \"red\""));
    assert_eq!((line, column, key.as_str()), (21, 1, "pool[1].colour"), "{text}");
}

#[test]
fn toml_syntax_error_points_at_the_fault() {
    let (line, column, key, text) = fault(&GOOD.replace("masters = 1", "masters = "));
    assert_eq!((line, column, key.as_str()), (8, 11, "runtime.masters"), "{text}");
    assert!(text.starts_with("c.toml:8:11: runtime.masters: "), "{text}");
}

const ONPREM: &str = r#"version = 1
[cluster]
name = "rack"
provider = "onprem"
[[onprem.host]]
address = "10.0.0.1"
role = "master"
[[onprem.host]]
address = "10.0.0.2"
"#;

#[test]
fn onprem_hosts_are_named_and_checked() {
    let file = parse(ONPREM).expect("valid");
    let desired = crate::planner::Desired::from_cluster_file(&file);
    let names: Vec<&str> = desired.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["master-0", "host-10-0-0-2"]);
    assert_eq!(desired.hosts[1].settings["ssh"], "root@10.0.0.2:22");
    assert_eq!(file.ssh.parallelism.get_ref(), &50, "default fan-out well above Terraform's 10");

    let (line, column, key, text) = fault(&format!("{ONPREM}[[pool]]\nname = \"w\"\n"));
    assert_eq!((line, column, key.as_str()), (11, 8, "pool[0].name"), "{text}");
    assert!(text.contains("[[onprem.host]]"), "{text}");
    let (_, _, key, text) = fault(&ONPREM.replace("role = \"master\"", ""));
    assert_eq!(key, "onprem.host", "{text}");
    assert!(text.contains("0 hosts have role = \"master\""), "{text}");
    let (line, _, key, _) = fault(&ONPREM.replace("address = \"10.0.0.2\"", "address = \"10.0.0.1\""));
    assert_eq!((line, key.as_str()), (9, "onprem.host[1].address"));
    let (_, _, key, text) = fault(&format!("{ONPREM}[[onprem.host]]\naddress = \"h3\"\nname = \"host-10-0-0-2\"\n"));
    assert_eq!(key, "onprem.host[2]", "{text}");
    assert!(text.contains("taken by onprem.host[1]"), "{text}");
    let (_, _, key, _) = fault(&format!("{ONPREM}name = \"Bad_Name\"\n"));
    assert_eq!(key, "onprem.host[1].name");
    let (_, _, key, _) = fault(&ONPREM.replace("role = \"master\"", "role = \"master\"\nname = \"boss\""));
    assert_eq!(key, "onprem.host[0].name");
    let (_, _, key, _) = fault(&ONPREM.replace(
        "[[onprem.host]]\naddress = \"10.0.0.1\"",
        "[onprem]\ninstall_dir = \"/\"\n[[onprem.host]]\naddress = \"10.0.0.1\"",
    ));
    assert_eq!(key, "onprem.install_dir");
    let (_, _, key, text) = fault(&format!("{ONPREM}resources = \"cpus=lots\"\n"));
    assert_eq!(key, "onprem.host[1].resources", "{text}");
    let (_, _, key, _) = fault(&format!("{ONPREM}colour = \"red\"\n"));
    assert_eq!(key, "onprem.host[1].colour");
    let (_, _, key, text) = fault(&GOOD.replace("[[pool]]\nname = \"gpu\"", "[onprem]\n[[pool]]\nname = \"gpu\""));
    assert_eq!(key, "onprem", "{text}");
    let (_, _, key, text) = fault("version = 1\n[cluster]\nname = \"r\"\nprovider = \"onprem\"\n");
    assert_eq!(key, "cluster.provider", "{text}");
    let (_, _, key, _) = fault(&format!("{ONPREM}[ssh.bastion]\naddress = \"\"\n"));
    assert_eq!(key, "ssh.bastion.address");
}

const AWS: &str = r#"version = 1

[cluster]
name = "cloud"
provider = "aws"
ttl = "4h"

[aws]
region = "eu-west-1"
vpc_cidr = "10.0.0.0/16"
ssh_cidrs = ["203.0.113.7/32"]
api_cidrs = ["203.0.113.0/24"]

[[pool]]
name = "workers"
count = 2
instance_type = "m6i.large"
image = { owner = "136693071363", name = "debian-12-amd64-*" }
root_volume_gb = 40
"#;

#[test]
fn an_aws_file_parses_with_its_machine_keys() {
    let file = parse(AWS).expect("valid");
    let aws = file.aws().expect("[aws]");
    assert_eq!(aws.region.get_ref(), "eu-west-1");
    assert_eq!(aws.connect_via, ConnectVia::Public);
    assert_eq!(*aws.max_parallel_creates.get_ref(), 10);
    assert_eq!(file.ttl(), Some(Duration::from_secs(4 * 3600)));
    let pool = &file.pools[0];
    assert_eq!(pool.instance_type.as_ref().map(|t| t.get_ref().as_str()), Some("m6i.large"));
    assert_eq!(
        pool.image.as_ref().map(|i| i.get_ref().clone()),
        Some(ImageRef::Search { owner: "136693071363".into(), name: "debian-12-amd64-*".into() })
    );
    let by_id = parse(&AWS.replace(r#"{ owner = "136693071363", name = "debian-12-amd64-*" }"#, "\"ami-0abc\""))
        .expect("an AMI id");
    assert_eq!(by_id.pools[0].image.as_ref().map(|i| i.get_ref().clone()), Some(ImageRef::Id("ami-0abc".into())));
}

#[test]
fn aws_mistakes_point_at_the_value_and_say_the_fix() {
    let (line, column, key, text) = fault(&AWS.replace("ssh_cidrs = [\"203.0.113.7/32\"]", "ssh_cidrs = []"));
    assert_eq!((line, column, key.as_str()), (11, 13, "aws.ssh_cidrs"), "{text}");
    assert!(text.contains("there is no open default"), "{text}");
    let (_, _, key, text) = fault(&AWS.replace("203.0.113.0/24", "203.0.113.5/24"));
    assert_eq!(key, "aws.api_cidrs", "{text}");
    assert!(text.contains("host bits set (did you mean 203.0.113.0/24?)"), "{text}");
    let (line, _, key, text) = fault(&AWS.replace("10.0.0.0/16", "10.0.0.0/8"));
    assert_eq!((line, key.as_str()), (10, "aws.vpc_cidr"), "{text}");
    assert!(text.contains("/16 to /28"), "{text}");
    let (_, _, key, text) = fault(&AWS.replace("vpc_cidr = \"10.0.0.0/16\"", "vpc_id = \"vpc-1\""));
    assert_eq!(key, "aws.vpc_id", "{text}");
    assert!(text.contains("subnet_ids"), "{text}");
    let (_, _, key, text) = fault(&AWS.replace("region = \"eu-west-1\"", "region = \"EU West\""));
    assert_eq!(key, "aws.region", "{text}");
    let (line, _, key, text) = fault(&AWS.replace("root_volume_gb = 40", "root_volume_gb = 2"));
    assert_eq!((line, key.as_str()), (19, "pool[0].root_volume_gb"), "{text}");
    let (_, _, key, text) = fault(&format!("{AWS}\n[ssh.bastion]\naddress = \"bastion.example.com\"\n"));
    assert_eq!(key, "ssh.bastion", "{text}");
    assert!(text.contains("not reach instances through a bastion yet"), "{text}");
    let (_, _, key, text) = fault(&AWS.replace("\n[aws]\n", "\n[aws_]\n"));
    assert!(key == "aws_" || text.contains("aws_"), "{text}");
    let (_, _, key, text) = fault(&AWS.replace("[aws]\nregion = \"eu-west-1\"\nvpc_cidr = \"10.0.0.0/16\"\nssh_cidrs = [\"203.0.113.7/32\"]\napi_cidrs = [\"203.0.113.0/24\"]\n", ""));
    assert_eq!(key, "aws", "{text}");
    assert!(text.contains("needs its [aws] section"), "{text}");
}

#[test]
fn cloud_keys_are_refused_on_providers_that_make_no_machines() {
    let (line, column, key, text) = fault(&GOOD.replace("count = 3\n", "count = 3\ninstance_type = \"t3.micro\"\n"));
    assert_eq!((line, column, key.as_str()), (15, 17, "pool[0].instance_type"), "{text}");
    assert!(text.contains("provider is `local`"), "{text}");
    let (_, _, key, text) = fault(&GOOD.replace("provider = \"local\"", "provider = \"local\"\nttl = \"1h\""));
    assert_eq!(key, "cluster.ttl", "{text}");
    let (_, _, key, text) = fault(&format!("{GOOD}\n[aws]\nregion = \"eu-west-1\"\nssh_cidrs = []\napi_cidrs = []\n"));
    assert_eq!(key, "aws", "{text}");
    assert!(text.contains("provider is `local`"), "{text}");
}

const GCE: &str = r#"version = 1

[cluster]
name = "cloud"
provider = "gce"
ttl = "4h"

[gce]
project = "my-project"
region = "europe-west1"
zones = ["europe-west1-b", "europe-west1-c"]
network_cidr = "10.1.0.0/20"
ssh_cidrs = ["203.0.113.7/32"]
api_cidrs = ["203.0.113.0/24"]
labels = { team = "infra" }

[[pool]]
name = "workers"
count = 2
machine_type = "e2-standard-2"
image = "projects/debian-cloud/global/images/family/debian-12"
disk_gb = 40
spot = true
"#;

const AZURE: &str = r#"version = 1

[cluster]
name = "cloud"
provider = "azure"

[ssh]
user = "gantry"
sudo = true

[azure]
subscription_id = "00000000-1111-2222-3333-444444444444"
location = "westeurope"
zones = ["1", "2"]
vnet_cidr = "10.2.0.0/16"
ssh_cidrs = ["203.0.113.7/32"]
api_cidrs = ["203.0.113.0/24"]
tags = { team = "infra" }

[[pool]]
name = "workers"
count = 2
vm_size = "Standard_D2s_v5"
image = { publisher = "Debian", offer = "debian-12", sku = "12" }
disk_gb = 64
"#;

#[test]
fn gce_and_azure_files_parse_with_their_machine_keys() {
    let file = parse(GCE).expect("valid");
    let gce = file.gce().expect("[gce]");
    assert_eq!(gce.region.get_ref(), "europe-west1");
    assert_eq!(gce.project.as_ref().map(|p| p.get_ref().as_str()), Some("my-project"));
    assert_eq!(gce.labels.get("team").map(String::as_str), Some("infra"));
    let pool = &file.pools[0];
    assert_eq!(pool.machine_type.as_ref().map(|t| t.get_ref().as_str()), Some("e2-standard-2"));
    assert_eq!(pool.disk_gb.as_ref().map(|d| *d.get_ref()), Some(40));

    let file = parse(AZURE).expect("valid");
    let azure = file.azure().expect("[azure]");
    assert_eq!(azure.location.get_ref(), "westeurope");
    let image = file.pools[0].image.as_ref().map(|i| i.get_ref().clone()).expect("image");
    assert_eq!(
        image.marketplace(),
        Some(("Debian".into(), "debian-12".into(), "12".into(), "latest".into())),
        "version defaults to latest"
    );
    let urn = parse(&AZURE.replace(
        r#"{ publisher = "Debian", offer = "debian-12", sku = "12" }"#,
        "\"Canonical:ubuntu-24_04-lts:server:latest\"",
    ))
    .expect("a URN");
    assert_eq!(
        urn.pools[0].image.as_ref().and_then(|i| i.get_ref().marketplace()).map(|m| m.0),
        Some("Canonical".into())
    );
}

#[test]
fn gce_and_azure_mistakes_point_at_the_value_and_say_the_fix() {
    let (line, column, key, text) =
        fault(&GCE.replace("machine_type = \"e2-standard-2\"", "instance_type = \"t3.micro\""));
    assert_eq!((line, column, key.as_str()), (20, 17, "pool[0].instance_type"), "{text}");
    assert!(text.contains("a key of the aws provider; provider `gce` takes machine_type"), "{text}");
    let (_, _, key, text) = fault(&GCE.replace("europe-west1-c", "us-central1-a"));
    assert_eq!(key, "gce.zones", "{text}");
    let (_, _, key, text) = fault(&GCE.replace("network_cidr = \"10.1.0.0/20\"", "network = \"default\""));
    assert_eq!(key, "gce.network", "{text}");
    assert!(text.contains("subnetwork"), "{text}");
    let (_, _, key, text) = fault(&GCE.replace("team = \"infra\"", "Team = \"infra\""));
    assert_eq!(key, "gce.labels", "{text}");
    let (_, _, key, text) =
        fault(&GCE.replace("\"projects/debian-cloud/global/images/family/debian-12\"", "\"ami-0abc\""));
    assert_eq!(key, "pool[0].image", "{text}");
    let (_, _, key, text) = fault(&GCE.replace("api_cidrs = [\"203.0.113.0/24\"]", "api_cidrs = []"));
    assert_eq!(key, "gce.api_cidrs", "{text}");
    assert!(text.contains("there is no open default"), "{text}");
    let (_, _, key, text) = fault(&GCE.replace("project = \"my-project\"", "project = \"My Project\""));
    assert_eq!(key, "gce.project", "{text}");

    let (_, _, key, text) = fault(&AZURE.replace("00000000-1111", "not-a-guid"));
    assert_eq!(key, "azure.subscription_id", "{text}");
    let (_, _, key, text) = fault(&AZURE.replace("[\"1\", \"2\"]", "[\"a\"]"));
    assert_eq!(key, "azure.zones", "{text}");
    let (line, _, key, text) = fault(&AZURE.replace("disk_gb = 64", "disk_gb = 4"));
    assert_eq!((line, key.as_str()), (25, "pool[0].disk_gb"), "{text}");
    assert!(text.contains("e.g. disk_gb = 30"), "{text}");
    let (_, _, key, text) = fault(&AZURE.replace("user = \"gantry\"", "user = \"root\""));
    assert_eq!(key, "ssh.user", "{text}");
    assert!(text.contains("sudo = true"), "{text}");
    let (_, _, key, text) =
        fault(&AZURE.replace(r#"{ publisher = "Debian", offer = "debian-12", sku = "12" }"#, "\"debian\""));
    assert_eq!(key, "pool[0].image", "{text}");
    assert!(text.contains("marketplace"), "{text}");
    let (_, _, key, text) = fault(&AZURE.replace("vm_size", "machine_type"));
    assert_eq!(key, "pool[0].machine_type", "{text}");
    assert!(text.contains("a key of the gce provider"), "{text}");
    let (_, _, key, text) = fault(&format!(
        "{AZURE}\n[gce]\nregion = \"europe-west1\"\nssh_cidrs = [\"10.0.0.0/8\"]\napi_cidrs = [\"10.0.0.0/8\"]\n"
    ));
    assert_eq!(key, "gce", "{text}");
    assert!(text.contains("provider is `azure`"), "{text}");
}

#[test]
fn agent_options_parse_and_are_absent_by_default() {
    let file = parse(GOOD).expect("valid");
    assert_eq!((file.runtime.task_pids.as_ref(), file.runtime.image_cache_gib.as_ref()), (None, None));
    assert!(file.runtime.insecure_registries.is_empty() && !file.runtime.cgroup_favordynmods);

    let options = "agent_unreachable_timeout = \"3s\"\ntask_pids = 0\nimage_cache_gib = 20\n\
                   insecure_registries = [\"registry.lab:5000\", \"10.0.0.9\", \"[fd00::1]:5000\"]\n\
                   cgroup_favordynmods = true";
    let file = parse(&GOOD.replace("agent_unreachable_timeout = \"3s\"", options)).expect("valid");
    let rt = &file.runtime;
    assert_eq!(rt.task_pids.as_ref().map(|n| *n.get_ref()), Some(0), "0 = no limit is allowed");
    assert_eq!(rt.image_cache_gib.as_ref().map(|g| *g.get_ref()), Some(20.0), "an integer is a number of GiB");
    let registries: Vec<&str> = rt.insecure_registries.iter().map(|r| r.get_ref().as_str()).collect();
    assert_eq!(registries, ["registry.lab:5000", "10.0.0.9", "[fd00::1]:5000"]);
    assert!(rt.cgroup_favordynmods);
    let desired = crate::planner::Desired::from_cluster_file(&file);
    assert!(
        desired.hosts[0].settings["runtime"].ends_with(
            ";task_pids=0;image_cache_gib=20;insecure_registries=registry.lab:5000,10.0.0.9,[fd00::1]:5000;cgroup_favordynmods=true"
        ),
        "changing them reconfigures the hosts: {:?}",
        desired.hosts[0].settings
    );
    let unset = crate::planner::Desired::from_cluster_file(&parse(GOOD).expect("valid"));
    assert_eq!(unset.hosts[0].settings["runtime"], "masters=1;heartbeat_interval=1s;agent_unreachable_timeout=3s");
    let file = parse(&GOOD.replace("masters = 1", "masters = 1\nimage_cache_gib = 0.5")).expect("a fraction");
    assert_eq!(file.runtime.image_cache_gib.as_ref().map(|g| *g.get_ref()), Some(0.5));
}

#[test]
fn bad_agent_options_point_at_the_value_and_say_the_fix() {
    let with = |line: &str| GOOD.replace("masters = 1", &format!("masters = 1\n{line}"));
    let (line, column, key, text) = fault(&with("task_pids = -1"));
    assert_eq!((line, column, key.as_str()), (9, 13, "runtime.task_pids"), "{text}");
    assert!(text.contains("hint: a whole number of processes per task, 0 for no limit"), "{text}");
    let (_, _, key, text) = fault(&with("task_pids = \"many\""));
    assert_eq!(key, "runtime.task_pids", "{text}");

    for bad in ["0", "-2", "nan", "inf"] {
        let (line, column, key, text) = fault(&with(&format!("image_cache_gib = {bad}")));
        assert_eq!((line, column, key.as_str()), (9, 19, "runtime.image_cache_gib"), "{bad}: {text}");
        assert!(text.contains("finite number of GiB above 0") && text.contains("image_cache_gib = 20"), "{text}");
    }
    let (_, _, key, text) = fault(&with("image_cache_gib = \"20G\""));
    assert_eq!(key, "runtime.image_cache_gib", "{text}");
    assert!(text.contains("hint: a number of GiB above 0"), "{text}");

    let cases = [
        ("\"http://registry.lab:5000\"", "has a scheme (http://)"),
        ("\"registry.lab:5000/team\"", "has a path"),
        ("\"registry.lab:http\"", "`http` is not a port number"),
        ("\"registry.lab:0\"", "`0` is not a port number"),
        ("\"\"", "`` is not a host name or address"),
        ("\"reg istry\"", "`reg istry` is not a host name or address"),
        ("\"[fd00::1\"", "unclosed `[`"),
    ];
    for (value, message) in cases {
        let (line, column, key, text) = fault(&with(&format!("insecure_registries = [\"ok.lab\", {value}]")));
        assert_eq!((line, column, key.as_str()), (9, 34, "runtime.insecure_registries[1]"), "{value}: {text}");
        assert!(text.contains(message), "{value}: {text}");
        assert!(text.contains("host[:port] with no scheme or path"), "{text}");
    }
    let (_, _, key, text) = fault(&with("insecure_registries = \"registry.lab\""));
    assert_eq!(key, "runtime.insecure_registries", "{text}");
    assert!(text.contains("hint: a list of registries"), "{text}");

    let (_, _, key, text) = fault(&with("cgroup_favordynmods = \"yes\""));
    assert_eq!(key, "runtime.cgroup_favordynmods", "{text}");
    assert!(text.contains("hint: `true` or `false`"), "{text}");
}
