//! Which device runs the models. A build with the `cuda` (or `metal`) feature loads the models
//! onto the GPU when one answers, and onto the CPU otherwise, without an error; the default
//! build always runs them on the CPU. On the CPU in f32 the custom kernels of this module's
//! siblings run; on a GPU every one of them falls back to the candle ops it replaces (see
//! [`super::cpu::storage::with_candle_ops`], which runs that fallback on the CPU for the tests).

use std::sync::OnceLock;

use candle_core::{Device, DeviceLocation};

/// The device the models load onto ([`super::weights::ModelFiles`]), chosen once per process:
/// with the `cuda` feature the first CUDA GPU, with `metal` the Metal GPU, else the CPU — also
/// when the build has a GPU feature but the machine has no GPU (or no driver), and when
/// `BANDMATE_DEVICE=cpu` is set in the environment.
pub fn compute_device() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    // A clone is cheap: the GPU devices are reference-counted handles.
    DEVICE.get_or_init(choose_device).clone()
}

/// `BANDMATE_DEVICE=cpu` keeps a GPU build on the CPU; otherwise the GPU when there is one.
fn choose_device() -> Device {
    if std::env::var_os("BANDMATE_DEVICE").is_some_and(|v| v.eq_ignore_ascii_case("cpu")) {
        return Device::Cpu;
    }
    gpu().unwrap_or(Device::Cpu)
}

/// The first CUDA GPU, if the driver finds one (a failure or a panic in the driver's setup
/// leaves the models on the CPU).
#[cfg(feature = "cuda")]
fn gpu() -> Option<Device> {
    std::panic::catch_unwind(|| Device::cuda_if_available(0))
        .ok()?
        .ok()
        .filter(|d| !d.is_cpu())
}

/// The Metal GPU, if there is one.
#[cfg(all(feature = "metal", not(feature = "cuda")))]
fn gpu() -> Option<Device> {
    std::panic::catch_unwind(|| Device::metal_if_available(0))
        .ok()?
        .ok()
        .filter(|d| !d.is_cpu())
}

/// A build without a GPU feature has no GPU to choose.
#[cfg(not(any(feature = "cuda", feature = "metal")))]
fn gpu() -> Option<Device> {
    None
}

/// A device's name for people: "CPU", "CUDA GPU 0", "Metal GPU".
pub fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "CPU".into(),
        DeviceLocation::Cuda { gpu_id } => format!("CUDA GPU {gpu_id}"),
        DeviceLocation::Metal { .. } => "Metal GPU".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_without_a_gpu_feature_runs_the_models_on_the_cpu() {
        let device = compute_device();
        if cfg!(any(feature = "cuda", feature = "metal")) {
            // Either a GPU or, without one, the CPU: never an error.
            assert!(
                device.is_cpu() || device.is_cuda() || device.is_metal(),
                "{device:?}"
            );
        } else {
            assert!(device.is_cpu(), "{device:?}");
        }
        // Chosen once: the same device every time.
        assert!(compute_device().same_device(&device));
        assert_eq!(device_name(&Device::Cpu), "CPU");
        if !cfg!(any(feature = "cuda", feature = "metal")) {
            assert_eq!(device_name(&compute_device()), "CPU");
        }
    }
}
