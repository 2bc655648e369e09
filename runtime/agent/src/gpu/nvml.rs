//! Detection through NVML, loaded at run time by `nvml-wrapper`. A host without the library or
//! the driver has no GPUs; detection never fails.

use super::Gpu;
use nvml_wrapper::Nvml;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

/// The environment variable naming the NVML library to load instead of `libnvidia-ml.so.1`
/// (a driver installed outside the loader's path, or a fake NVML in tests).
pub const NVML_LIBRARY_ENV: &str = "GANTRY_NVML_LIBRARY";

/// The GPUs of this host, from the library named by [`NVML_LIBRARY_ENV`] or else the default
/// `libnvidia-ml.so.1`; see [`detect_from`].
pub fn detect() -> Vec<Gpu> {
    let library = std::env::var_os(NVML_LIBRARY_ENV).filter(|path| !path.is_empty()).map(PathBuf::from);
    detect_from(library.as_deref())
}

/// The GPUs NVML reports, loading `library` (`None`: `libnvidia-ml.so.1` from the loader's
/// path). Without the library or the driver the answer is no GPUs, logged at debug level (warn
/// when `library` was named explicitly). A device whose uuid or minor number NVML cannot give
/// is left out with a warning: a task could not be given it.
pub fn detect_from(library: Option<&Path>) -> Vec<Gpu> {
    let mut builder = Nvml::builder();
    if let Some(path) = library {
        builder.lib_path(path.as_os_str());
    }
    let nvml = match builder.init() {
        Ok(nvml) => nvml,
        Err(error) => {
            match library {
                Some(path) => {
                    warn!(library = %path.display(), %error, "Cannot use the named NVML library; offering no GPUs.")
                }
                None => debug!(%error, "No NVIDIA driver or NVML (libnvidia-ml.so.1) here; offering no GPUs."),
            }
            return Vec::new();
        }
    };
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(error) => {
            warn!(%error, "NVML cannot count the GPUs; offering none.");
            return Vec::new();
        }
    };
    let gpus: Vec<Gpu> = (0..count).filter_map(|index| device(&nvml, index)).collect();
    debug!(count = gpus.len(), "GPUs detected.");
    gpus
}

fn device(nvml: &Nvml, index: u32) -> Option<Gpu> {
    let device = nvml
        .device_by_index(index)
        .map_err(|error| warn!(index, %error, "NVML cannot open this GPU; it is not offered."))
        .ok()?;
    let uuid = device.uuid().map_err(|error| warn!(index, %error, "No uuid for this GPU; it is not offered.")).ok()?;
    let minor = device
        .minor_number()
        .map_err(|error| warn!(index, %error, "No device node for this GPU; it is not offered."))
        .ok()?;
    let name = device.name().unwrap_or_else(|error| {
        debug!(index, %error, "No name for this GPU.");
        String::new()
    });
    let memory_mib = device.memory_info().map(|memory| memory.total / (1024 * 1024)).unwrap_or_else(|error| {
        debug!(index, %error, "No memory size for this GPU.");
        0
    });
    Some(Gpu { index, uuid, name, memory_mib, minor })
}
