//! GPU detection, offers, assignment and task env against a fake NVML (tests/fake_nvml), built
//! here with gcc: without gcc the tests skip with a reason, or fail where every test must run
//! (GANTRY_TESTS_REQUIRE_ALL).

#[path = "../../../tests/support/skip.rs"]
mod skip;

use gantry_agent::gpu::{self, GpuAllocator, GpuError, NVML_LIBRARY_ENV};
use gantry_agent::resources;
use gantry_api::Resources;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in the child process of [`an_agent_offers_the_detected_gpus`].
const CHILD_ENV: &str = "GANTRY_GPU_TEST_CHILD";

/// A fake NVML built into its own temp dir (one per test: the fake's state is per library).
struct FakeNvml {
    _dir: tempfile::TempDir,
    library: PathBuf,
}

/// Builds the fake with `defines` (`-D` arguments), or `None` (skipped) without gcc.
fn fake_nvml(defines: &[&str]) -> Option<FakeNvml> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_nvml/fake_nvml.c");
    let dir = tempfile::tempdir().expect("tempdir");
    let library = dir.path().join("libnvidia-ml.so.1");
    let output = match Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&library)
        .arg(&source)
        .args(defines.iter().map(|define| format!("-D{define}")))
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            skip::skipped(&format!("cannot run gcc to build the fake NVML ({error}); install gcc"));
            return None;
        }
    };
    assert!(output.status.success(), "gcc failed on {}: {}", source.display(), String::from_utf8_lossy(&output.stderr));
    Some(FakeNvml { _dir: dir, library })
}

fn uuids(gpus: &[gpu::Gpu]) -> Vec<&str> {
    gpus.iter().map(|gpu| gpu.uuid.as_str()).collect()
}

#[test]
fn no_library_or_no_driver_means_no_gpus() {
    assert!(gpu::detect_from(Some(Path::new("/nonexistent/libnvidia-ml.so.1"))).is_empty());
    // The library is there but the kernel driver is not (NVML_ERROR_DRIVER_NOT_LOADED).
    let Some(fake) = fake_nvml(&["FAKE_NVML_DEFAULT_GPUS=\"2\"", "FAKE_NVML_DEFAULT_INIT_ERROR=9"]) else { return };
    assert!(gpu::detect_from(Some(&fake.library)).is_empty());
}

#[test]
fn detects_two_fake_gpus() {
    let Some(fake) = fake_nvml(&["FAKE_NVML_DEFAULT_GPUS=\"2\""]) else { return };
    let gpus = gpu::detect_from(Some(&fake.library));
    assert_eq!(gpus.len(), 2, "{gpus:?}");
    for (index, gpu) in gpus.iter().enumerate() {
        assert_eq!(gpu.index, index as u32);
        assert_eq!(gpu.uuid, format!("GPU-fa4e0000-0000-4000-8000-{index:012}"));
        assert_eq!(gpu.name, "NVIDIA Fake GPU");
        assert_eq!(gpu.memory_mib, (16 + index as u64) * 1024);
        assert_eq!(gpu.minor, index as u32);
        assert_eq!(gpu.node_name(), format!("nvidia{index}"));
    }
}

#[test]
fn detects_the_names_the_fake_is_given() {
    let Some(fake) = fake_nvml(&["FAKE_NVML_DEFAULT_GPUS=\"NVIDIA A100-SXM4-40GB,NVIDIA H100 80GB HBM3\""]) else {
        return;
    };
    let names: Vec<String> = gpu::detect_from(Some(&fake.library)).into_iter().map(|gpu| gpu.name).collect();
    assert_eq!(names, ["NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3"]);
}

/// Runs itself again in a child process whose environment names the fake NVML, so the agent's
/// own path (`GANTRY_NVML_LIBRARY`, `FAKE_NVML_GPUS`, `resources::offered`) is what is tested,
/// without changing this process's environment under other tests.
#[test]
fn an_agent_offers_the_detected_gpus() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let work_dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(gpu::detect().len(), 2);
        assert_eq!(resources::offered(None, work_dir.path()).expect("offered").gpus, 2);
        let given = Resources::parse("cpus=1;mem=512").expect("valid");
        assert_eq!(resources::offered(Some(&given), work_dir.path()).expect("offered").gpus, 2);
        let pinned = Resources::parse("cpus=1;gpus=1").expect("valid");
        assert_eq!(resources::offered(Some(&pinned), work_dir.path()).expect("offered").gpus, 1);
        return;
    }
    let Some(fake) = fake_nvml(&[]) else { return };
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "an_agent_offers_the_detected_gpus", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env(NVML_LIBRARY_ENV, &fake.library)
        .env("FAKE_NVML_GPUS", "2")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_task_with_one_of_two_gpus_sees_exactly_that_one() {
    let Some(fake) = fake_nvml(&["FAKE_NVML_DEFAULT_GPUS=\"2\""]) else { return };
    let detected = gpu::detect_from(Some(&fake.library));
    let mut allocator = GpuAllocator::new(detected.clone());
    let first = allocator.assign("web.1", 1).expect("one of two");
    let second = allocator.assign("train.1", 1).expect("the other");
    assert_ne!(uuids(&first), uuids(&second));
    assert_eq!(uuids(&first).into_iter().chain(uuids(&second)).collect::<Vec<_>>(), uuids(&detected));

    let env: BTreeMap<String, String> = gpu::task_env(&first).into_iter().collect();
    assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], detected[0].uuid);
    assert_eq!(env["CUDA_VISIBLE_DEVICES"], detected[0].uuid);
    assert!(!env.values().any(|value| value.contains(&detected[1].uuid)));

    let refused = allocator.assign("batch.1", 1).expect_err("none free");
    assert!(matches!(refused, GpuError::NotEnough { free: 0, total: 2, .. }));
    assert!(refused.to_string().contains("asks for 1 GPU(s) but 0 of this agent's 2 are free"), "{refused}");

    // Device nodes: links to /dev/null stand in for /dev/nvidia<minor> (no root, no driver).
    let dev = tempfile::tempdir().expect("tempdir");
    for name in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"] {
        std::os::unix::fs::symlink("/dev/null", dev.path().join(name)).expect("link");
    }
    let nodes = gpu::device_nodes_in(dev.path(), &second).expect("nodes");
    let names: Vec<_> = nodes.iter().filter_map(|node| node.path.file_name()).collect();
    assert_eq!(names, ["nvidia1", "nvidiactl", "nvidia-uvm"]);
    assert!(nodes.iter().all(|node| node.cgroup_rule() == "c 1:3 rwm"));
}
