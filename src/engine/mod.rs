//! The batch engine: many perturbed market days evaluated at once, on the rayon CPU
//! backend (the f64 reference itself) or on a GPU through wgpu (f32 or f64 WGSL kernel).
//!
//! - [`batch`]: the flat structure-of-arrays batch and its outputs;
//! - [`cpu`]: the rayon backend, [`crate::rci::negotiate`] per (run, hour);
//! - [`gpu`]: `shaders/rci.wgsl`, its host mirrors and the chunked, overlapped runner;
//! - [`mod@bench`]: runs/s per backend and batch size;
//! - [`day`]: one market day negotiated on a backend (`p2pmarket run --backend`).

pub mod batch;
pub mod bench;
pub mod cpu;
pub mod day;
pub mod gpu;

pub use batch::{
    AdapterInfo, AgentSlot, AttackSlot, Batch, BatchOutputs, ChunkOutputs, CurveCache, HourInput,
    HourRecord, HourlyInputs, RunSpec, RunSummary, RunTrajectory,
};
pub use gpu::{GpuContext, Precision};

use crate::error::Result;

/// Which backend evaluates a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// The GPU when a hardware adapter (with the asked precision) exists, else the CPU
    /// backend, with a notice in [`BatchOutputs::notice`]. A software rasterizer (device
    /// type CPU) is not chosen: the rayon backend is faster on the same cores.
    Auto,
    /// The GPU, or an error.
    Gpu,
    /// The rayon CPU backend (always f64).
    Cpu,
}

/// Evaluates `batch` on the chosen backend. `gpu` is a context created beforehand (it is
/// costly: adapter, device, kernel compilation); with `None` one is created for this call
/// when a GPU is asked for.
pub fn run_batch(
    batch: &Batch,
    choice: BackendChoice,
    precision: Precision,
    gpu: Option<&GpuContext>,
) -> Result<BatchOutputs> {
    match choice {
        BackendChoice::Cpu => cpu::run_cpu(batch),
        BackendChoice::Gpu => match gpu {
            Some(ctx) => ctx.run(batch, precision),
            None => GpuContext::new(None)?.run(batch, precision),
        },
        BackendChoice::Auto => match gpu {
            Some(ctx) => run_auto(batch, precision, Ok(ctx)),
            None => match GpuContext::new(None) {
                Ok(ctx) => run_auto(batch, precision, Ok(&ctx)),
                Err(e) => run_auto(batch, precision, Err(e)),
            },
        },
    }
}

/// A backend opened for a command, with `Auto` decided once: the GPU when a hardware
/// adapter that can run the asked precision opens, else the rayon CPU backend with a
/// notice saying why.
pub struct OpenBackend {
    /// [`BackendChoice::Gpu`] or [`BackendChoice::Cpu`], never `Auto`.
    pub choice: BackendChoice,
    /// The GPU's context, when `choice` is `Gpu`.
    pub gpu: Option<GpuContext>,
    /// Why `Auto` fell back to the CPU backend.
    pub notice: Option<String>,
}

impl OpenBackend {
    /// The precision the batches run at when `asked` was asked for: the CPU backend is
    /// always f64.
    pub fn precision(&self, asked: Precision) -> Precision {
        match self.choice {
            BackendChoice::Cpu => Precision::F64,
            _ => asked,
        }
    }
}

/// Opens what `choice` needs for a command, once, before any work: the GPU context (none
/// for `Cpu`), and `Auto` decided as [`run_batch`] would decide it for each batch. A named
/// `adapter` must exist even for `Auto`, and `Auto` then means that adapter (the user asked
/// for that device, software rasterizer or not). On the GPU, f64 needs an adapter with
/// `SHADER_F64`: an invalid `--precision` otherwise.
pub fn open_backend(
    choice: BackendChoice,
    precision: Precision,
    adapter: Option<&str>,
) -> Result<OpenBackend> {
    let cpu = |notice| OpenBackend {
        choice: BackendChoice::Cpu,
        gpu: None,
        notice,
    };
    match (choice, adapter) {
        (BackendChoice::Cpu, _) => Ok(cpu(None)),
        (BackendChoice::Gpu, _) | (BackendChoice::Auto, Some(_)) => {
            let ctx = GpuContext::new(adapter)?;
            if precision == Precision::F64 && !ctx.supports_f64() {
                return Err(crate::error::Error::invalid(
                    "--precision",
                    "f64",
                    format!(
                        "f32 on adapter {}, which has no SHADER_F64 (64-bit floats in shaders)",
                        ctx.info().name
                    ),
                ));
            }
            Ok(OpenBackend {
                choice: BackendChoice::Gpu,
                gpu: Some(ctx),
                notice: None,
            })
        }
        (BackendChoice::Auto, None) => {
            let ctx = GpuContext::new(None);
            match auto_decision(ctx.as_ref(), precision).err() {
                None => Ok(OpenBackend {
                    choice: BackendChoice::Gpu,
                    gpu: ctx.ok(),
                    notice: None,
                }),
                Some(why) => Ok(cpu(Some(fallback_notice(&why)))),
            }
        }
    }
}

/// What `Auto` does at `precision` with `gpu` (the adapter search's outcome): runs on the
/// context, or falls back to the CPU backend for the reason given.
fn auto_decision<'a>(
    gpu: std::result::Result<&'a GpuContext, &crate::error::Error>,
    precision: Precision,
) -> std::result::Result<&'a GpuContext, String> {
    match gpu {
        Ok(ctx) if ctx.is_software() => Err(software_notice(&ctx.info().name)),
        Ok(ctx) if precision == Precision::F32 || ctx.supports_f64() => Ok(ctx),
        Ok(ctx) => Err(format!(
            "no GPU adapter found (adapter {} has no SHADER_F64)",
            ctx.info().name
        )),
        Err(e) => Err(missing_notice(e)),
    }
}

/// The `Auto` choice once the GPU context is known (or known to be missing).
fn run_auto(batch: &Batch, precision: Precision, gpu: Result<&GpuContext>) -> Result<BatchOutputs> {
    match auto_decision(gpu.as_ref().copied(), precision) {
        Ok(ctx) => ctx.run(batch, precision),
        Err(why) => {
            let mut out = cpu::run_cpu(batch)?;
            out.notice = Some(fallback_notice(&why));
            Ok(out)
        }
    }
}

/// Why `Auto` passes over a software rasterizer named `adapter`.
pub fn software_notice(adapter: &str) -> String {
    format!(
        "GPU adapter {adapter} passed over: a software rasterizer (device type CPU) is slower \
         than the rayon backend on the same cores, and --backend gpu runs the kernel on it"
    )
}

/// Why `Auto` found no adapter to use, from the adapter search's error.
pub fn missing_notice(error: &crate::error::Error) -> String {
    format!("no GPU adapter found ({error})")
}

/// The notice of an `Auto` choice that fell back to the rayon CPU backend, saying `why`.
pub fn fallback_notice(why: &str) -> String {
    format!("{why}; falling back to the rayon CPU backend")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::market::Market;
    use crate::scenario::Scenario;

    #[test]
    fn auto_falls_back_to_the_cpu_with_a_notice() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let batch = Batch::from_market(&market, &[RunSpec::default()]).unwrap();
        let missing = Err(Error::Solver {
            problem: "GPU engine".into(),
            message: "no adapter on backends VULKAN".into(),
        });
        let out = run_auto(&batch, Precision::F32, missing).unwrap();
        let notice = out.notice.as_deref().unwrap_or_default();
        assert!(
            notice.starts_with("no GPU adapter found (")
                && notice.ends_with("; falling back to the rayon CPU backend"),
            "{notice}"
        );
        assert_eq!(out.adapter.backend, "cpu");
        assert_eq!(out.records, cpu::run_cpu(&batch).unwrap().records);
    }
}
