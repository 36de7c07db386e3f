//! The training loop: batches, loss, accumulation, clipping, AdamW, logs,
//! checkpoints and resume.
//!
//! Everything random is derived from `(seed, purpose, epoch or step)` (see
//! [`crate::rng`]), and the data order is a pure function of the step, so a
//! checkpoint only has to hold the adapter, the optimizer moments and the step:
//! a resumed run then does exactly what the uninterrupted run would have done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::data::{Batch, Sequence, read_tokens};
use crate::error::{Result, TrainError};
use crate::llama::{Fwd, Inputs, Llama, segment_mask};
use crate::lora::{self, LoraSpec, read_safetensors, write_atomic, write_safetensors};
use crate::optim::{AdamW, Schedule, clip_global_norm, lr_at};
use crate::rng::{Rng, TAG_DROPOUT, TAG_SHUFFLE};

/// Everything that decides the trained adapter (the stage's resolved params).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub lora: LoraSpec,
    pub epochs: u32,
    /// Overrides `epochs` when set.
    pub max_steps: Option<u64>,
    pub lr: f64,
    pub schedule: Schedule,
    /// Warmup steps; when `None`, `warmup_ratio` of the total.
    pub warmup_steps: Option<u64>,
    pub warmup_ratio: f64,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Global gradient-norm limit.
    pub clip: Option<f64>,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub checkpoint_every: Option<u64>,
    /// Validation loss every N steps (and at the end) when a validation file is given.
    pub eval_every: Option<u64>,
    pub shuffle: bool,
    pub seed: u64,
    /// `base_model_name_or_path` in adapter_config.json.
    pub base_model: String,
    /// Use the frozen-projection op (no base-weight gradients). Off only to measure it.
    pub skip_frozen_grads: bool,
    /// Use the fused kernels (f32 CPU). Off only to measure or cross-check them.
    pub fused: bool,
}

impl TrainOptions {
    /// Defaults matching the stage's params (tests and tools).
    pub fn new(lora: LoraSpec, seed: u64) -> Self {
        TrainOptions {
            lora,
            epochs: 1,
            max_steps: None,
            lr: 2e-4,
            schedule: Schedule::Constant,
            warmup_steps: Some(0),
            warmup_ratio: 0.0,
            batch_size: 4,
            grad_accum: 1,
            clip: Some(1.0),
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            checkpoint_every: None,
            eval_every: None,
            shuffle: true,
            seed,
            base_model: String::new(),
            skip_frozen_grads: true,
            fused: true,
        }
    }
}

/// Where to read and write.
#[derive(Debug, Clone)]
pub struct TrainPaths {
    pub tokens: PathBuf,
    pub validation: Option<PathBuf>,
    /// The `adapter` output folder.
    pub out_dir: PathBuf,
    /// Checkpoints (survives a killed run).
    pub scratch_dir: PathBuf,
}

/// One line of `training_log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepLog {
    pub step: u64,
    pub epoch: f64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Non-padding tokens in this step.
    pub tokens: u64,
    pub trained_tokens: u64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
}

/// `train_summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub final_loss: f64,
    pub final_val_loss: Option<f64>,
    pub steps: u64,
    pub sequences: u64,
    pub tokens: u64,
    pub trained_tokens: u64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    pub trainable_params: u64,
    pub resumed_from_step: Option<u64>,
}

/// How a call to [`train`] ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(TrainSummary),
    /// Stopped on request after this many steps (tests simulate a kill this way).
    Stopped {
        step: u64,
    },
}

pub const LOG_FILE: &str = "training_log.jsonl";
pub const SUMMARY_FILE: &str = "train_summary.json";
pub const CHART_FILE: &str = "loss.svg";
/// The same chart as PNG.
pub const CHART_PNG_FILE: &str = "loss.png";
const LATEST: &str = "LATEST";

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: u64,
    elapsed_s: f64,
    tokens: u64,
    trained_tokens: u64,
    /// What this checkpoint was trained with; a mismatch means start over.
    fingerprint: String,
    log: Vec<StepLog>,
}

/// The data order: which sequences each micro-batch of each step takes.
struct Plan {
    n: usize,
    batch_size: usize,
    grad_accum: usize,
    steps_per_epoch: u64,
    total: u64,
    shuffle: bool,
    seed: u64,
    order: Option<(u64, Vec<usize>)>,
}

impl Plan {
    fn new(n: usize, o: &TrainOptions) -> Result<Plan> {
        if n == 0 {
            return Err(TrainError::param(
                "from",
                "the token file holds no sequences",
            ));
        }
        if o.batch_size == 0 || o.grad_accum == 0 {
            return Err(TrainError::param(
                "batch_size",
                "batch_size and grad_accum must be >= 1",
            ));
        }
        let per_step = o.batch_size * o.grad_accum;
        let steps_per_epoch = n.div_ceil(per_step) as u64;
        let total = o.max_steps.unwrap_or(o.epochs as u64 * steps_per_epoch);
        Ok(Plan {
            n,
            batch_size: o.batch_size,
            grad_accum: o.grad_accum,
            steps_per_epoch,
            total,
            shuffle: o.shuffle,
            seed: o.seed,
            order: None,
        })
    }

    /// Micro-batches (sequence indices) of 0-based `step`.
    fn micro_batches(&mut self, step: u64) -> Vec<Vec<usize>> {
        let epoch = step / self.steps_per_epoch;
        let k = (step % self.steps_per_epoch) as usize;
        if self.order.as_ref().map(|o| o.0) != Some(epoch) {
            let mut order: Vec<usize> = (0..self.n).collect();
            if self.shuffle {
                Rng::derive(self.seed, &[TAG_SHUFFLE, epoch]).shuffle(&mut order);
            }
            self.order = Some((epoch, order));
        }
        let order = &self.order.as_ref().expect("set").1;
        (0..self.grad_accum)
            .filter_map(|m| {
                let start = (k * self.grad_accum + m) * self.batch_size;
                (start < self.n)
                    .then(|| order[start..(start + self.batch_size).min(self.n)].to_vec())
            })
            .collect()
    }
}

/// Loss sum and trained-token count of one batch, building the graph if the
/// adapter variables are live.
pub fn batch_loss(model: &Llama, batch: &Batch, fwd: &mut Fwd<'_>) -> Result<(Tensor, usize)> {
    let mask = segment_mask(
        batch.b,
        batch.t,
        &batch.segment_ids,
        model.dtype,
        &model.device,
    )?;
    let inputs = Inputs {
        b: batch.b,
        t: batch.t,
        ids: &batch.input_ids,
        positions: &batch.position_ids,
        mask,
    };
    let hidden = model.forward_hidden(&inputs, None, fwd)?;
    model.loss_sum(&hidden, batch.b, batch.t, &batch.labels, fwd)
}

/// How [`sharded_gradients`] runs the model.
pub struct Switches {
    pub skip_frozen_grads: bool,
    pub fused: bool,
    /// `[seed, step, micro-batch]` of the dropout streams; `None`: no dropout.
    pub dropout: Option<[u64; 3]>,
}

/// Shards per micro-batch in [`sharded_gradients`]. A constant, not the
/// thread count, so that the shard boundaries (and with them the last bits
/// of the gradients) do not depend on the machine or on `threads:`.
pub const SHARDS: usize = 2;

/// The loss sum of `seqs`; the gradients of `vars` for that sum times
/// `scale` are added to `grads` (one buffer per variable). The sequences are
/// split into [`SHARDS`] shards (at most one per sequence) whose graphs run
/// at the same time and whose gradients are added in shard order.
///
/// One graph at a time left cores idle: candle runs its own element-wise
/// ops (residual adds, layout copies, the sums of its backward pass) on the
/// calling thread, a tenth of a SmolLM2 step on 2 cores. With two shards,
/// one shard's serial work overlaps the other's matmuls; the matmuls inside
/// each still use every thread.
pub fn sharded_gradients(
    model: &Llama,
    vars: &[(String, Var)],
    seqs: &[&Sequence],
    scale: f64,
    switches: &Switches,
    grads: &mut [Vec<f32>],
) -> Result<f64> {
    use rayon::prelude::*;
    let shards = SHARDS.clamp(1, seqs.len().max(1));
    let per_shard = seqs.len().div_ceil(shards).max(1);
    let parts: Vec<(f64, Vec<Option<Vec<f32>>>)> = seqs
        .par_chunks(per_shard)
        .enumerate()
        .map(|(shard, part)| -> Result<_> {
            let batch = Batch::new(part, 0);
            if batch.trained_tokens() == 0 {
                return Ok((0.0, vec![None; vars.len()]));
            }
            let mut rng = switches.dropout.map(|[seed, step, micro]| {
                Rng::derive(seed, &[TAG_DROPOUT, step, micro, shard as u64])
            });
            let mut fwd = Fwd {
                dropout: rng.as_mut(),
                skip_frozen_grads: switches.skip_frozen_grads,
                fused: switches.fused,
                no_grad: false,
                decode: false,
            };
            let (loss, _) = batch_loss(model, &batch, &mut fwd)?;
            let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let store = loss.affine(scale, 0.0)?.backward()?;
            let grads = vars
                .iter()
                .map(|(_, var)| store.get(var.as_tensor()).map(to_f32_vec).transpose())
                .collect::<Result<_>>()?;
            Ok((loss_value, grads))
        })
        .collect::<Result<_>>()?;
    let mut loss = 0.0;
    for (part_loss, part_grads) in parts {
        loss += part_loss;
        for (acc, g) in grads.iter_mut().zip(part_grads) {
            for (a, x) in acc.iter_mut().zip(g.iter().flatten()) {
                *a += x;
            }
        }
    }
    Ok(loss)
}

fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Mean loss per trained token over `seqs` (no dropout).
pub fn evaluate(model: &Llama, seqs: &[Sequence], batch_size: usize) -> Result<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for chunk in seqs.chunks(batch_size.max(1)) {
        let refs: Vec<&Sequence> = chunk.iter().collect();
        let batch = Batch::new(&refs, 0);
        let (loss, count) = batch_loss(model, &batch, &mut Fwd::inference())?;
        sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        n += count;
    }
    Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
}

/// Train an adapter on `model` (already loaded, no LoRA yet); write the outputs.
/// `stop_after` ends the run after that many steps without writing outputs
/// (a stand-in for a killed process in tests).
pub fn train(
    mut model: Llama,
    opts: &TrainOptions,
    paths: &TrainPaths,
    stop_after: Option<u64>,
    on_step: &mut dyn FnMut(&StepLog, u64),
) -> Result<Outcome> {
    let _heap = crate::heap::RetainFreedMemory::start();
    let seqs = read_tokens(&paths.tokens)?;
    let validation = match &paths.validation {
        Some(p) => read_tokens(p)?,
        None => Vec::new(),
    };
    lora::attach(&mut model, &opts.lora, opts.seed)?;
    let vars: Vec<(String, Var)> = lora::variables(&model);
    let sizes: Vec<usize> = vars.iter().map(|(_, v)| v.elem_count()).collect();
    let mut opt = AdamW::new(&sizes, opts.beta1, opts.beta2, opts.eps, opts.weight_decay);
    let mut plan = Plan::new(seqs.len(), opts)?;
    let total = plan.total;
    let warmup = opts
        .warmup_steps
        .unwrap_or((opts.warmup_ratio * total as f64).ceil() as u64);
    let fingerprint =
        serde_json::to_string(&(opts, seqs.len(), &paths.tokens.file_name())).expect("json");

    let mut log: Vec<StepLog> = Vec::new();
    let mut start_step = 0u64;
    let mut elapsed_before = 0.0;
    let (mut tokens, mut trained_tokens) = (0u64, 0u64);
    let mut resumed_from = None;
    if let Some(ck) = load_checkpoint(&paths.scratch_dir, &fingerprint)? {
        let (state, weights, moments) = ck;
        for (i, (key, var)) in vars.iter().enumerate() {
            let get = |map: &BTreeMap<String, Tensor>, k: &str| -> Result<Tensor> {
                map.get(k).cloned().ok_or_else(|| {
                    TrainError::bad(&paths.scratch_dir, format!("checkpoint lacks `{k}`"))
                })
            };
            var.set(&get(&weights, key)?.to_dtype(model.dtype)?)?;
            opt.m[i] = to_f32_vec(&get(&moments, &format!("m.{key}"))?)?;
            opt.v[i] = to_f32_vec(&get(&moments, &format!("v.{key}"))?)?;
        }
        start_step = state.step;
        elapsed_before = state.elapsed_s;
        tokens = state.tokens;
        trained_tokens = state.trained_tokens;
        log = state.log;
        resumed_from = Some(state.step);
    }

    let started = Instant::now();
    let mut params: Vec<Vec<f32>> = vars
        .iter()
        .map(|(_, v)| to_f32_vec(v.as_tensor()))
        .collect::<Result<_>>()?;
    for step in start_step..total {
        if stop_after.is_some_and(|s| step >= s) {
            return Ok(Outcome::Stopped { step });
        }
        let t0 = Instant::now();
        let micro = plan.micro_batches(step);
        let micro: Vec<Vec<&Sequence>> = micro
            .iter()
            .map(|idx| idx.iter().map(|i| &seqs[*i]).collect())
            .collect();
        let (step_trained, step_tokens) = micro.iter().fold((0, 0), |(trained, real), m| {
            let batch = Batch::new(m, 0);
            (trained + batch.trained_tokens(), real + batch.real_tokens())
        });
        let mut grads: Vec<Vec<f32>> = sizes.iter().map(|n| vec![0.0; *n]).collect();
        let mut loss_sum = 0.0;
        for (mi, part) in micro.iter().enumerate() {
            let switches = Switches {
                skip_frozen_grads: opts.skip_frozen_grads,
                fused: opts.fused,
                dropout: Some([opts.seed, step, mi as u64]),
            };
            // Per trained token of the whole accumulated step, as if it were one batch.
            let scale = 1.0 / step_trained.max(1) as f64;
            loss_sum += sharded_gradients(&model, &vars, part, scale, &switches, &mut grads)?;
        }
        let grad_norm = clip_global_norm(&mut grads, opts.clip);
        let lr = lr_at(opts.schedule, opts.lr, step, total, warmup);
        opt.update(&mut params, &grads, lr, step + 1);
        for ((_, var), p) in vars.iter().zip(&params) {
            let t = Tensor::from_slice(p, var.shape(), &Device::Cpu)?
                .to_device(&model.device)?
                .to_dtype(model.dtype)?;
            var.set(&t)?;
        }
        tokens += step_tokens as u64;
        trained_tokens += step_trained as u64;
        let secs = t0.elapsed().as_secs_f64();
        let done = step + 1;
        let val_loss = match opts.eval_every {
            Some(every)
                if !validation.is_empty() && (done % every.max(1) == 0 || done == total) =>
            {
                Some(evaluate(&model, &validation, opts.batch_size)?)
            }
            _ => None,
        };
        let entry = StepLog {
            step: done,
            epoch: done as f64 / plan.steps_per_epoch as f64,
            loss: if step_trained == 0 {
                f64::NAN
            } else {
                loss_sum / step_trained as f64
            },
            lr,
            grad_norm,
            tokens: step_tokens as u64,
            trained_tokens: step_trained as u64,
            tokens_per_s: step_tokens as f64 / secs.max(1e-9),
            elapsed_s: elapsed_before + started.elapsed().as_secs_f64(),
            val_loss,
        };
        on_step(&entry, total);
        log.push(entry);
        if let Some(every) = opts.checkpoint_every
            && every > 0
            && done % every == 0
            && done < total
        {
            let state = CheckpointState {
                step: done,
                elapsed_s: elapsed_before + started.elapsed().as_secs_f64(),
                tokens,
                trained_tokens,
                fingerprint: fingerprint.clone(),
                log: log.clone(),
            };
            save_checkpoint(&paths.scratch_dir, &state, &vars, &opt)?;
        }
    }

    // Outputs.
    let out = &paths.out_dir;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    lora::save_adapter(out, &model, &opts.lora, &opts.base_model)?;
    // The stage's outputs must be byte-identical across runs (cache, early
    // cutoff, `pipe reproduce`), and a resumed run must equal an uninterrupted
    // one: wall-clock figures and the resume point go to the stage stats, not
    // into these files.
    let mut jsonl = String::new();
    for entry in &log {
        let value = without_timing(serde_json::to_value(entry).expect("json"));
        jsonl.push_str(&serde_json::to_string(&value).expect("json"));
        jsonl.push('\n');
    }
    write_atomic(&out.join(LOG_FILE), jsonl.as_bytes())?;
    let train_points: Vec<(u64, f64)> = log.iter().map(|e| (e.step, e.loss)).collect();
    let val_points: Vec<(u64, f64)> = log
        .iter()
        .filter_map(|e| e.val_loss.map(|v| (e.step, v)))
        .collect();
    crate::plot::loss_svg(&out.join(CHART_FILE), &train_points, &val_points)?;
    crate::plot::svg_to_png(&out.join(CHART_FILE), &out.join(CHART_PNG_FILE))?;
    let elapsed = log.last().map(|e| e.elapsed_s).unwrap_or(0.0);
    let summary = TrainSummary {
        final_loss: log.last().map(|e| e.loss).unwrap_or(f64::NAN),
        final_val_loss: val_points.last().map(|p| p.1),
        steps: total,
        sequences: seqs.len() as u64,
        tokens,
        trained_tokens,
        tokens_per_s: tokens as f64 / elapsed.max(1e-9),
        elapsed_s: elapsed,
        trainable_params: sizes.iter().sum::<usize>() as u64,
        resumed_from_step: resumed_from,
    };
    let text = serde_json::to_string_pretty(&without_timing(
        serde_json::to_value(&summary).expect("json"),
    ))
    .expect("json");
    write_atomic(&out.join(SUMMARY_FILE), text.as_bytes())?;
    Ok(Outcome::Finished(summary))
}

/// Drop the fields that depend on the wall clock or on whether the run resumed.
fn without_timing(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        for key in ["tokens_per_s", "elapsed_s", "resumed_from_step"] {
            map.remove(key);
        }
    }
    value
}

fn save_checkpoint(
    scratch: &Path,
    state: &CheckpointState,
    vars: &[(String, Var)],
    opt: &AdamW,
) -> Result<()> {
    let name = format!("ckpt-{:08}", state.step);
    let dir = scratch.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let mut weights = BTreeMap::new();
    let mut moments = BTreeMap::new();
    for (i, (key, var)) in vars.iter().enumerate() {
        weights.insert(key.clone(), var.as_tensor().to_dtype(DType::F32)?);
        let shape = var.shape();
        moments.insert(
            format!("m.{key}"),
            Tensor::from_slice(&opt.m[i], shape, &Device::Cpu)?,
        );
        moments.insert(
            format!("v.{key}"),
            Tensor::from_slice(&opt.v[i], shape, &Device::Cpu)?,
        );
    }
    write_safetensors(&dir.join("adapter.safetensors"), &weights)?;
    write_safetensors(&dir.join("optimizer.safetensors"), &moments)?;
    let text = serde_json::to_string(state).expect("json");
    write_atomic(&dir.join("state.json"), text.as_bytes())?;
    // The pointer flips only once the folder is complete: a kill at any moment
    // leaves either the old or the new checkpoint, never half of one.
    write_atomic(&scratch.join(LATEST), name.as_bytes())?;
    for entry in std::fs::read_dir(scratch).map_err(|e| TrainError::io(scratch, e))? {
        let entry = entry.map_err(|e| TrainError::io(scratch, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with("ckpt-") && file_name != name {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

type Loaded = (
    CheckpointState,
    BTreeMap<String, Tensor>,
    BTreeMap<String, Tensor>,
);

fn load_checkpoint(scratch: &Path, fingerprint: &str) -> Result<Option<Loaded>> {
    let Ok(name) = std::fs::read_to_string(scratch.join(LATEST)) else {
        return Ok(None);
    };
    let dir = scratch.join(name.trim());
    let state_path = dir.join("state.json");
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(None);
    };
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| TrainError::bad(&state_path, e.to_string()))?;
    if state.fingerprint != fingerprint {
        return Ok(None);
    }
    let weights = read_safetensors(&dir.join("adapter.safetensors"))?;
    let moments = read_safetensors(&dir.join("optimizer.safetensors"))?;
    Ok(Some((state, weights, moments)))
}
