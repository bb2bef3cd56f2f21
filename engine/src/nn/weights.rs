//! Weight files: a model's `config.json` and `model.safetensors` ([`ModelFiles`], read from a
//! folder or embedded in the binary) turned into its network, and the conversion of weights to
//! another float type. The shipped `model.safetensors` may be stored in f16 or bf16 (half the
//! size in the plugin binary); every loader converts them to f32 on load, so inference is
//! unchanged apart from the rounding of the stored values.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::device::compute_device;

/// A model's two files, `config.json` and `model.safetensors`, as bytes: read from a folder
/// ([`ModelFiles::from_dir`]) or embedded in the binary (`model_loaders!`). Every model
/// loads through them, so every model accepts the same stored float types (f32, f16, bf16) and
/// fails with the same errors: no such files, a config that is not the model's, weights that
/// are not safetensors, weights that do not fit the config. The model loads onto
/// [`compute_device`] unless [`ModelFiles::on`] names another device.
pub struct ModelFiles {
    /// What the model is, in errors ("roll model", "MusicVAE").
    pub what: &'static str,
    /// Where the files came from, in messages: the folder, or `embedded assets/roll`.
    pub source: String,
    pub config: Cow<'static, [u8]>,
    pub weights: Cow<'static, [u8]>,
    /// Where the model's weights go (`None`: [`compute_device`], chosen when the model loads).
    device: Option<Device>,
}

/// The two loaders of a model type that has a constructor `from_files(&ModelFiles)`:
/// `$load(dir)`, its files in a folder, and `embedded()`, the files of `assets/$asset` embedded
/// in the binary at build time (`embedded_files()`: those files, to load them elsewhere with
/// [`ModelFiles::on`]). `$what` names the model in errors; `$hint` says how to get weights when
/// a folder has none.
macro_rules! model_loaders {
    ($load:ident, $what:literal, $asset:literal, $hint:literal) => {
        /// `config.json` and `model.safetensors` from a folder.
        pub fn $load(dir: &std::path::Path) -> anyhow::Result<Self> {
            Self::from_files(&$crate::nn::weights::ModelFiles::from_dir(
                dir, $what, $hint,
            )?)
        }

        #[doc = concat!("The shipped weights (`assets/", $asset, "`), embedded in the binary.")]
        pub fn embedded() -> anyhow::Result<Self> {
            Self::from_files(&Self::embedded_files())
        }

        #[doc = concat!("The files of the shipped weights (`assets/", $asset, "`), embedded in the binary.")]
        pub fn embedded_files() -> $crate::nn::weights::ModelFiles {
            $crate::nn::weights::ModelFiles::new(
                $what,
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../assets/",
                    $asset,
                    "/config.json"
                ))
                .as_slice(),
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../assets/",
                    $asset,
                    "/model.safetensors"
                ))
                .as_slice(),
                concat!("embedded assets/", $asset),
            )
        }
    };
}
pub(crate) use model_loaders;

/// `Debug` for a model type loaded from [`ModelFiles`], with a `source` field and a `config()`:
/// where its weights came from and its config (the network itself is left out).
macro_rules! debug_loaded_model {
    ($model:ident) => {
        impl std::fmt::Debug for $model {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($model))
                    .field("source", &self.source)
                    .field("config", self.config())
                    .finish()
            }
        }
    };
}
pub(crate) use debug_loaded_model;

impl ModelFiles {
    pub fn new(
        what: &'static str,
        config: impl Into<Cow<'static, [u8]>>,
        weights: impl Into<Cow<'static, [u8]>>,
        source: impl Into<String>,
    ) -> Self {
        Self {
            what,
            source: source.into(),
            config: config.into(),
            weights: weights.into(),
            device: None,
        }
    }

    /// The same files, to be loaded onto `device` instead of [`compute_device`].
    pub fn on(self, device: Device) -> Self {
        Self {
            device: Some(device),
            ..self
        }
    }

    /// The device the model loads onto.
    pub fn device(&self) -> Device {
        self.device.clone().unwrap_or_else(compute_device)
    }

    /// `config.json` and `model.safetensors` of `dir`; when either is missing, an error naming
    /// `what` and how to get the files (`hint`).
    pub fn from_dir(dir: &Path, what: &'static str, hint: &str) -> Result<Self> {
        let config_path = dir.join("config.json");
        let weights_path = dir.join("model.safetensors");
        if !weights_path.is_file() || !config_path.is_file() {
            bail!(
                "no {what} weights in {} (config.json and model.safetensors); {hint}",
                dir.display()
            );
        }
        let config = std::fs::read(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        let weights = std::fs::read(&weights_path)
            .with_context(|| format!("cannot read {}", weights_path.display()))?;
        Ok(Self::new(what, config, weights, dir.display().to_string()))
    }

    /// The model and where it came from, to start an error with.
    fn name(&self) -> String {
        format!("{} {}", self.what, self.source)
    }

    /// `config.json` read as the model's config `C` and checked by `validate`.
    pub fn config<C: serde::de::DeserializeOwned>(
        &self,
        validate: impl FnOnce(&C) -> std::result::Result<(), String>,
    ) -> Result<C> {
        let cfg: C = serde_json::from_slice(&self.config).with_context(|| {
            format!("{}: config.json is not a {} config", self.name(), self.what)
        })?;
        validate(&cfg).map_err(|e| anyhow::anyhow!("{}: config.json: {e}", self.name()))?;
        Ok(cfg)
    }

    /// The network `build` makes from the weights (each read as f32 whatever type it is stored
    /// in, on [`ModelFiles::device`]); an error when the weights are not safetensors or a tensor
    /// the network asks for is missing or has another shape (extra tensors are ignored).
    pub fn build<T>(&self, build: impl FnOnce(VarBuilder) -> candle_core::Result<T>) -> Result<T> {
        // Read on the CPU; the builder moves each tensor the network asks for to the device.
        let tensors = read_safetensors(&self.weights, &self.name())?;
        build(VarBuilder::from_tensors(
            tensors,
            DType::F32,
            &self.device(),
        ))
        .with_context(|| {
            format!(
                "{}: model.safetensors does not fit config.json",
                self.name()
            )
        })
    }

    /// A model that keeps its variables (to train them further): made by `new` from the config
    /// (checked by `validate`) on [`ModelFiles::device`], then its variables (`varmap`) set from
    /// the weights, with the errors of [`ModelFiles::build`].
    pub fn load_with_varmap<C: serde::de::DeserializeOwned, M>(
        &self,
        validate: impl FnOnce(&C) -> std::result::Result<(), String>,
        new: impl FnOnce(&C, &Device) -> Result<M>,
        varmap: impl FnOnce(&M) -> &VarMap,
    ) -> Result<M> {
        let model = new(&self.config(validate)?, &self.device())?;
        self.load_into(varmap(&model))?;
        Ok(model)
    }

    /// Set every variable of `varmap` (made by the network's constructor) from the weights, with
    /// the errors of [`ModelFiles::build`].
    fn load_into(&self, varmap: &VarMap) -> Result<()> {
        self.build(|vb| {
            let vars = varmap
                .data()
                .lock()
                .expect("the varmap lock is not poisoned");
            for (name, var) in vars.iter() {
                var.set(&vb.get(var.dims(), name)?.to_dtype(var.dtype())?)?;
            }
            Ok(())
        })
    }
}

/// The float types a weights file can be stored in.
pub fn parse_dtype(name: &str) -> Result<DType> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "f32" | "float32" => DType::F32,
        "f16" | "float16" | "half" => DType::F16,
        "bf16" | "bfloat16" => DType::BF16,
        other => bail!("unknown weight type {other:?} (f32, f16 or bf16)"),
    })
}

/// Every tensor of the safetensors bytes `bytes`, in the type it is stored in; `source` names
/// the file in the error when the bytes are not safetensors.
fn read_safetensors(bytes: &[u8], source: &str) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .with_context(|| format!("{source}: the weights are corrupt: not safetensors"))
}

/// Every tensor of a safetensors file, float tensors in f32 whatever type they are stored in.
pub fn load_f32(bytes: &[u8], source: &str) -> Result<HashMap<String, Tensor>> {
    read_safetensors(bytes, source)?
        .into_iter()
        .map(|(name, t)| {
            let t = if t.dtype().is_float() && t.dtype() != DType::F32 {
                t.to_dtype(DType::F32)
                    .with_context(|| format!("{source}: tensor {name} cannot be read as f32"))?
            } else {
                t
            };
            Ok((name, t))
        })
        .collect()
}

/// Tensor `name` of `map` (read from `path`), which must have the model's shape `dims`.
pub fn stored_tensor<'a>(
    map: &'a HashMap<String, Tensor>,
    path: &Path,
    name: &str,
    dims: &[usize],
) -> Result<&'a Tensor> {
    let t = map
        .get(name)
        .with_context(|| format!("{}: no {name}", path.display()))?;
    if t.dims() != dims {
        bail!(
            "{}: {name} has shape {:?}, the model {:?}",
            path.display(),
            t.dims(),
            dims
        );
    }
    Ok(t)
}

/// What converting a file changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversion {
    pub tensors: usize,
    /// Float values converted.
    pub values: usize,
    pub bytes_before: usize,
    pub bytes_after: usize,
    /// Largest |new - old| over every value.
    pub max_abs_error: f64,
    /// Largest |new - old| / |old| over the values with |old| ≥ 1e-4 (smaller ones are
    /// dominated by the absolute error).
    pub max_rel_error: f64,
    /// Non-zero values that became zero (below the type's smallest subnormal).
    pub flushed_to_zero: usize,
    /// Finite values that became infinite (above the type's largest value).
    pub overflowed: usize,
}

/// The tensors of the safetensors bytes `bytes` with every float tensor in `dtype` (names,
/// shapes and other tensors kept), and what that changed (`bytes_after` is left at 0).
pub fn convert_tensors(
    bytes: &[u8],
    dtype: DType,
    source: &str,
) -> Result<(HashMap<String, Tensor>, Conversion)> {
    if !dtype.is_float() {
        bail!("weights can be stored in f32, f16 or bf16, not {dtype:?}");
    }
    let tensors = read_safetensors(bytes, source)?;
    let mut report = Conversion {
        tensors: tensors.len(),
        bytes_before: bytes.len(),
        ..Conversion::default()
    };
    let mut converted = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !t.dtype().is_float() {
            converted.insert(name, t);
            continue;
        }
        let new = t.to_dtype(dtype)?;
        let old: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let back: Vec<f32> = new.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        report.values += old.len();
        for (&a, &b) in old.iter().zip(&back) {
            if a.is_finite() && !b.is_finite() {
                report.overflowed += 1;
                continue;
            }
            if a != 0.0 && b == 0.0 {
                report.flushed_to_zero += 1;
            }
            let err = f64::from((b - a).abs());
            report.max_abs_error = report.max_abs_error.max(err);
            if a.abs() >= 1e-4 {
                report.max_rel_error = report.max_rel_error.max(err / f64::from(a.abs()));
            }
        }
        converted.insert(name, new);
    }
    Ok((converted, report))
}

/// The float types stored in a safetensors file, with how many bytes each takes (for messages).
pub fn stored_types(bytes: &[u8], source: &str) -> Result<Vec<(DType, usize)>> {
    let tensors = read_safetensors(bytes, source)?;
    let mut types: Vec<(DType, usize)> = Vec::new();
    for t in tensors.values() {
        let size = t.elem_count() * t.dtype().size_in_bytes();
        match types.iter_mut().find(|(d, _)| *d == t.dtype()) {
            Some((_, n)) => *n += size,
            None => types.push((t.dtype(), size)),
        }
    }
    types.sort_by_key(|(d, _)| d.as_str());
    Ok(types)
}

/// Write the safetensors file `path` again as `out` (may be `path`) with its float tensors in
/// `dtype`, through a temporary file beside it; the conversion's report.
pub fn convert_file(path: &Path, out: &Path, dtype: DType) -> Result<Conversion> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (tensors, mut report) = convert_tensors(&bytes, dtype, &path.display().to_string())?;
    let tmp = out.with_extension("safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    report.bytes_after = std::fs::metadata(&tmp)?.len() as usize;
    // The new file as readable as the old one.
    std::fs::set_permissions(&tmp, std::fs::metadata(path)?.permissions())?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HashMap<String, Tensor> {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.0371).collect();
        HashMap::from([
            (
                "a.weight".to_string(),
                Tensor::from_vec(values, (8, 8), &Device::Cpu).unwrap(),
            ),
            (
                "tiny".to_string(),
                Tensor::from_vec(vec![1e-9f32, 70000.0], 2, &Device::Cpu).unwrap(),
            ),
            (
                "count".to_string(),
                Tensor::from_vec(vec![3u32, 4], 2, &Device::Cpu).unwrap(),
            ),
        ])
    }

    /// A fresh folder for the files of the test `name`.
    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bandmate-weights-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn conversion_keeps_names_and_shapes_and_reports_rounding() {
        let dir = scratch_dir("conversion");
        let f32_path = dir.join("f32.safetensors");
        candle_core::safetensors::save(&sample(), &f32_path).unwrap();
        for (dtype, bound) in [(DType::F16, 1e-3), (DType::BF16, 8e-3)] {
            let out = dir.join(format!("{}.safetensors", dtype.as_str()));
            let report = convert_file(&f32_path, &out, dtype).unwrap();
            let half = std::fs::read(&out).unwrap();
            let raw = candle_core::safetensors::load_buffer(&half, &Device::Cpu).unwrap();
            assert_eq!(raw["a.weight"].dtype(), dtype);
            assert_eq!(raw["count"].dtype(), DType::U32);
            assert_eq!(stored_types(&half, "test").unwrap().len(), 2);
            let back = load_f32(&half, "test").unwrap();
            assert_eq!(back.len(), 3);
            assert_eq!(back["a.weight"].dims(), &[8, 8]);
            assert_eq!(back["a.weight"].dtype(), DType::F32);
            assert_eq!(back["count"].to_vec1::<u32>().unwrap(), vec![3, 4]);
            assert_eq!(report.tensors, 3);
            assert_eq!(report.values, 66);
            assert!(report.max_rel_error > 0.0 && report.max_rel_error < bound);
            if dtype == DType::F16 {
                // 1e-9 is below f16's smallest subnormal; 70,000 above its largest value.
                assert_eq!((report.flushed_to_zero, report.overflowed), (1, 1));
            } else {
                assert_eq!((report.flushed_to_zero, report.overflowed), (0, 0));
            }
            assert!(report.bytes_after < report.bytes_before);
            assert_eq!(report.bytes_after, half.len());
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn dtype_names() {
        assert_eq!(parse_dtype("F16").unwrap(), DType::F16);
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert_eq!(parse_dtype("f32").unwrap(), DType::F32);
        assert!(parse_dtype("int8").is_err());
    }

    #[test]
    fn model_files_load_any_float_type_and_say_what_is_wrong() {
        let a = Tensor::from_vec(vec![1.5f32, -2.0, 0.25], 3, &Device::Cpu).unwrap();
        let save = |dtype: DType| {
            let tensors = HashMap::from([("a".to_string(), a.to_dtype(dtype).unwrap())]);
            let path = scratch_dir("files").join(format!("{}.safetensors", dtype.as_str()));
            candle_core::safetensors::save(&tensors, &path).unwrap();
            std::fs::read(&path).unwrap()
        };
        let files = |weights: Vec<u8>| ModelFiles::new("test model", &b"{}"[..], weights, "here");
        let error = |r: Result<()>| format!("{:#}", r.unwrap_err());
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let values = files(save(dtype))
                .build(|vb| vb.get(3, "a")?.to_vec1::<f32>())
                .unwrap();
            assert_eq!(values, vec![1.5, -2.0, 0.25], "{dtype:?}");
            let varmap = initialized(&(), |_, vb| vb.get(3, "a"));
            files(save(dtype)).load_into(&varmap).unwrap();
            let loaded = varmap.data().lock().unwrap()["a"].to_vec1::<f32>().unwrap();
            assert_eq!(loaded, vec![1.5, -2.0, 0.25], "{dtype:?}");
        }

        let corrupt = files(b"definitely not safetensors".to_vec());
        let e = error(corrupt.build(|vb| vb.get(3, "a").map(drop)));
        assert!(
            e.starts_with("test model here:") && e.contains("not safetensors"),
            "{e}"
        );
        let weights = save(DType::F32);
        let e = error(files(weights.clone()).build(|vb| vb.get(4, "a").map(drop)));
        assert!(e.contains("does not fit config.json"), "{e}");
        let e = error(files(weights).build(|vb| vb.get(3, "b").map(drop)));
        assert!(
            e.contains("does not fit config.json") && e.contains('b'),
            "{e}"
        );
        let e = format!(
            "{:#}",
            files(vec![]).config(|_: &Vec<u8>| Ok(())).unwrap_err()
        );
        assert!(e.contains("config.json is not a test model config"), "{e}");
        let e = format!(
            "{:#}",
            ModelFiles::from_dir(Path::new("/nowhere"), "test model", "make some")
                .err()
                .unwrap()
        );
        assert!(e.starts_with("no test model weights in /nowhere") && e.ends_with("make some"));
        std::fs::remove_dir_all(scratch_dir("files")).ok();
    }

    /// The files of a model of config `cfg` whose variables are `varmap`, with the weights saved
    /// as f32 and as `dtype`.
    fn saved_both_ways(
        cfg: &impl serde::Serialize,
        varmap: &VarMap,
        name: &str,
        dtype: DType,
    ) -> [ModelFiles; 2] {
        let dir = scratch_dir(name);
        let full = dir.join("f32.safetensors");
        let half = dir.join("half.safetensors");
        varmap.save(&full).unwrap();
        convert_file(&full, &half, dtype).unwrap();
        let (full, half) = (std::fs::read(&full).unwrap(), std::fs::read(&half).unwrap());
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            half.len() < full.len() * 6 / 10,
            "{} of {}",
            half.len(),
            full.len()
        );
        let json = serde_json::to_vec(cfg).unwrap();
        let files = |weights, source| ModelFiles::new("model", json.clone(), weights, source);
        [files(full, "f32"), files(half, dtype.as_str())]
    }

    /// The variables the constructor `new` of a network of config `cfg` makes, at their initial
    /// values.
    fn initialized<C, N>(
        cfg: &C,
        new: impl FnOnce(&C, VarBuilder) -> candle_core::Result<N>,
    ) -> VarMap {
        let varmap = VarMap::new();
        new(
            cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        varmap
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn random_values(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn a_half_roll_model_predicts_as_the_f32_one() {
        use crate::diffusion::RollModel;
        use crate::models::roll::{Config, RollUnet};
        let cfg = Config::tiny();
        let varmap = initialized(&cfg, RollUnet::new);
        let per = 2 * cfg.steps * cfg.pitches;
        let x: Vec<f32> = random_values(2 * per, 3)
            .iter()
            .map(|v| f32::from(*v > 0.6))
            .collect();
        for dtype in [DType::F16, DType::BF16] {
            let [full, half] = saved_both_ways(&cfg, &varmap, "roll", dtype);
            let a = RollModel::from_files(&full).unwrap();
            let b = RollModel::from_files(&half).unwrap();
            let (pa, pb) = (
                a.predict_x0(&x, &[3, 40]).unwrap(),
                b.predict_x0(&x, &[3, 40]).unwrap(),
            );
            let bound = if dtype == DType::F16 { 2e-3 } else { 2e-2 };
            assert!(
                max_diff(&pa, &pb) < bound,
                "{dtype:?}: {}",
                max_diff(&pa, &pb)
            );
            assert_ne!(pa, pb, "the rounding changes something");
        }
    }

    #[test]
    fn half_melody_models_match_the_f32_ones() {
        use crate::latent::LatentModel;
        use crate::vae::MelodyVae;
        use crate::vae::VaeShape;
        let shape = VaeShape::preset("tiny").unwrap();
        let vae = MelodyVae::random(&shape).unwrap();
        let [full, half] = saved_both_ways(&shape, vae.varmap(), "vae", DType::F16);
        let a = MelodyVae::from_files(&full).unwrap();
        let b = MelodyVae::from_files(&half).unwrap();
        let window: Vec<u8> = (0..a.window_steps())
            .map(|i| [60u8, 1, 64, 0][i % 4])
            .collect();
        let (za, zb) = (a.encode(&[&window]).unwrap(), b.encode(&[&window]).unwrap());
        assert!(
            max_diff(&za[0], &zb[0]) < 5e-3,
            "{}",
            max_diff(&za[0], &zb[0])
        );

        let cfg = crate::models::latent_score::Config::tiny();
        let score = LatentModel::random(&cfg).unwrap();
        let [full, half] = saved_both_ways(&cfg, score.varmap(), "latent", DType::F16);
        let a = LatentModel::from_files(&full).unwrap();
        let b = LatentModel::from_files(&half).unwrap();
        let dims = vec![1, cfg.positions, cfg.z_dim];
        let x =
            Tensor::from_vec(random_values(dims.iter().product(), 5), dims, &Device::Cpu).unwrap();
        let t = Tensor::from_vec(vec![0.5f32], 1, &Device::Cpu).unwrap();
        let run = |m: &LatentModel| -> Vec<f32> {
            let y = m.score().forward(&x, &t).unwrap();
            y.flatten_all().unwrap().to_vec1().unwrap()
        };
        let (ya, yb) = (run(&a), run(&b));
        let scale = ya.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            max_diff(&ya, &yb) < 5e-3 * scale.max(1.0),
            "{}",
            max_diff(&ya, &yb)
        );
    }

    #[test]
    fn a_half_band_model_answers_as_the_f32_one() {
        use crate::band::player::BandModel;
        use crate::models::band::{BandVae, Config};
        let cfg = Config::tiny();
        let varmap = initialized(&cfg, BandVae::new);
        let [full, half] = saved_both_ways(&cfg, &varmap, "band", DType::F16);
        let a = BandModel::from_files(&full).unwrap();
        let b = BandModel::from_files(&half).unwrap();
        let bar = vec![None; cfg.tracks.len()];
        let (_, pa) = a.step(&bar, &a.initial_state().unwrap()).unwrap();
        let (_, pb) = b.step(&bar, &b.initial_state().unwrap()).unwrap();
        for (x, y) in pa.iter().zip(&pb) {
            assert!(max_diff(x, y) < 2e-3, "{}", max_diff(x, y));
        }
    }
}
