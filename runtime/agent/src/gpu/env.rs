//! The environment that tells a task (and CUDA, and NVIDIA's container tooling) which GPUs it has.

use super::Gpu;

/// `NVIDIA_VISIBLE_DEVICES` and `CUDA_VISIBLE_DEVICES` for a task holding `gpus`; set them on
/// every task, with or without GPUs.
///
/// Both name the devices by uuid, comma-separated. Indices would be wrong in two ways: CUDA
/// numbers devices fastest-first unless `CUDA_DEVICE_ORDER=PCI_BUS_ID` (NVML numbers them in PCI
/// order), and inside a container that sees only its own device nodes the indices start again at
/// 0. A uuid names the same device to NVML, CUDA (`CUDA_VISIBLE_DEVICES` accepts `GPU-…` uuids)
/// and `nvidia-container-cli` wherever the task runs.
///
/// A task without GPUs gets `NVIDIA_VISIBLE_DEVICES=void` (NVIDIA's tooling mounts no device)
/// and an empty `CUDA_VISIBLE_DEVICES` (CUDA enumerates none), so it never sees devices it did not
/// ask for, whatever the agent's own environment holds.
pub fn task_env(gpus: &[Gpu]) -> Vec<(String, String)> {
    let uuids = gpus.iter().map(|gpu| gpu.uuid.as_str()).collect::<Vec<_>>().join(",");
    let nvidia = if gpus.is_empty() { "void".to_string() } else { uuids.clone() };
    vec![("NVIDIA_VISIBLE_DEVICES".to_string(), nvidia), ("CUDA_VISIBLE_DEVICES".to_string(), uuids)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32) -> Gpu {
        Gpu { index, uuid: format!("GPU-{index}"), name: "Test".into(), memory_mib: 1024, minor: index }
    }

    #[test]
    fn names_the_uuids_or_nothing() {
        let env = |gpus: &[Gpu]| task_env(gpus).into_iter().collect::<std::collections::BTreeMap<_, _>>();
        let two = env(&[gpu(1), gpu(0)]);
        assert_eq!(two["NVIDIA_VISIBLE_DEVICES"], "GPU-1,GPU-0");
        assert_eq!(two["CUDA_VISIBLE_DEVICES"], "GPU-1,GPU-0");
        let none = env(&[]);
        assert_eq!(none["NVIDIA_VISIBLE_DEVICES"], "void");
        assert_eq!(none["CUDA_VISIBLE_DEVICES"], "");
    }
}
