//! Registers the `train` stage kind: tokens.arrow -> a PEFT LoRA adapter.
//!
//! Params map onto [`pipe_train::trainer::TrainOptions`]; checkpoints go to the
//! stage's scratch dir, so a killed `pipe run` resumes where it stopped.

use pipe_pipeline::stage::{
    PlanEnv, Registry, RunContext, Stage, StageError, StagePlan, StageReport,
};
use pipe_train::TrainError;
use pipe_train::lora::LoraSpec;
use pipe_train::optim::Schedule;
use pipe_train::schemars::JsonSchema;
use pipe_train::trainer::{Outcome, TrainOptions, TrainPaths};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const TRAIN_CODE_VERSION: u32 = pipe_train::TRAIN_CODE_VERSION;

/// Key under which the builtin model's version enters the canonical params
/// (builtin models have no files to hash).
const BUILTIN_VERSION_KEY: &str = "_builtin_version";

/// LoRA settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(crate = "pipe_train::schemars")]
#[serde(deny_unknown_fields)]
pub struct LoraParams {
    /// Rank r of the update B·A.
    #[serde(default = "LoraParams::default_rank")]
    pub rank: usize,
    /// Scale numerator: the update is multiplied by alpha / rank (alpha / sqrt(rank) with rslora).
    #[serde(default = "LoraParams::default_alpha")]
    pub alpha: f64,
    /// Dropout on the LoRA input, in [0, 1).
    #[serde(default)]
    pub dropout: f64,
    /// Projections to adapt: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or all-linear.
    #[serde(default = "LoraParams::default_targets")]
    pub targets: Vec<String>,
    /// Rank-stabilized LoRA: scale alpha / sqrt(rank).
    #[serde(default)]
    pub rslora: bool,
}

impl LoraParams {
    fn default_rank() -> usize {
        8
    }
    fn default_alpha() -> f64 {
        16.0
    }
    fn default_targets() -> Vec<String> {
        vec!["q_proj".into(), "v_proj".into()]
    }
}

impl Default for LoraParams {
    fn default() -> Self {
        LoraParams {
            rank: Self::default_rank(),
            alpha: Self::default_alpha(),
            dropout: 0.0,
            targets: Self::default_targets(),
            rslora: false,
        }
    }
}

/// Compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(crate = "pipe_train::schemars")]
#[serde(rename_all = "lowercase")]
pub enum DeviceParam {
    Cpu,
    Cuda,
}

impl TrainParams {
    /// Ranges serde cannot check; each error names its key.
    fn check_ranges(&self) -> Result<(), StageError> {
        let bad = |key: &str, message: String| Err(StageError::params(message).with_key(key));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad(
                "warmup_ratio",
                format!("must be in [0, 1), got {}", self.warmup_ratio),
            );
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.grad_accum == 0 {
            return bad("grad_accum", "must be at least 1".into());
        }
        if self.clip.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return bad(
                "clip",
                "must be a positive number (or null: no clipping)".into(),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        if self.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return bad(
                "betas",
                format!("each must be in [0, 1), got {:?}", self.betas),
            );
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(
                "eps",
                format!("must be a positive number, got {}", self.eps),
            );
        }
        if !(self.lora.alpha.is_finite() && self.lora.alpha > 0.0) {
            return bad(
                "lora.alpha",
                format!("must be a positive number, got {}", self.lora.alpha),
            );
        }
        if self.max_steps == Some(0) || (self.max_steps.is_none() && self.epochs == 0) {
            return bad(
                if self.max_steps.is_some() {
                    "max_steps"
                } else {
                    "epochs"
                },
                "must be at least 1 (training would do nothing)".into(),
            );
        }
        for (key, every) in [
            ("checkpoint_every", self.checkpoint_every),
            ("eval_every", self.eval_every),
        ] {
            if every == Some(0) {
                return bad(key, "must be at least 1 (or null: never)".into());
            }
        }
        Ok(())
    }
}

/// Params of the `train` stage.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(crate = "pipe_train::schemars")]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Base model (builtin:tiny, a Hugging Face folder or cached hub id, or a .gguf file); defaults to the recipe's `model:`.
    #[serde(default)]
    pub model: Option<String>,
    /// LoRA settings.
    #[serde(default)]
    pub lora: LoraParams,
    /// Passes over the training sequences (ignored when max_steps is set).
    #[serde(default = "TrainParams::default_epochs")]
    pub epochs: u32,
    /// Stop after this many optimizer steps (overrides epochs).
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Peak learning rate.
    #[serde(default = "TrainParams::default_lr")]
    pub lr: f64,
    /// Learning-rate shape after warmup: constant, linear or cosine.
    #[serde(default = "TrainParams::default_schedule")]
    pub schedule: Schedule,
    /// Linear warmup, in steps (takes precedence over warmup_ratio).
    #[serde(default)]
    pub warmup_steps: Option<u64>,
    /// Linear warmup as a fraction of all steps.
    #[serde(default)]
    pub warmup_ratio: f64,
    /// Sequences per micro-batch (padded to the longest in the batch).
    #[serde(default = "TrainParams::default_batch_size")]
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step.
    #[serde(default = "TrainParams::default_grad_accum")]
    pub grad_accum: usize,
    /// Clip the global gradient norm to this value (null: no clipping).
    #[serde(default = "TrainParams::default_clip")]
    pub clip: Option<f64>,
    /// AdamW decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW betas.
    #[serde(default = "TrainParams::default_betas")]
    pub betas: [f64; 2],
    /// AdamW epsilon.
    #[serde(default = "TrainParams::default_eps")]
    pub eps: f64,
    /// Write a resumable checkpoint every N steps (null: never).
    #[serde(default = "TrainParams::default_checkpoint_every")]
    pub checkpoint_every: Option<u64>,
    /// Held-out loss every N steps on the tokenize stage's `validation` output, when present.
    #[serde(default)]
    pub eval_every: Option<u64>,
    /// Shuffle sequences each epoch (seeded).
    #[serde(default = "TrainParams::default_shuffle")]
    pub shuffle: bool,
    /// Seed for LoRA init, shuffling and dropout; defaults to the recipe's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// CPU threads; defaults to what the engine gives the stage (all cores).
    /// Results are deterministic for a fixed thread count.
    #[serde(default)]
    pub threads: Option<usize>,
    /// cpu, or cuda (needs pipe-train built with its `cuda` feature).
    #[serde(default = "TrainParams::default_device")]
    pub device: DeviceParam,
    /// Also write the merged model (W + scale·B·A) as a Hugging Face folder, output `merged`.
    #[serde(default)]
    pub merge: bool,
}

impl TrainParams {
    fn default_epochs() -> u32 {
        1
    }
    fn default_lr() -> f64 {
        2e-4
    }
    fn default_schedule() -> Schedule {
        Schedule::Constant
    }
    fn default_batch_size() -> usize {
        4
    }
    fn default_grad_accum() -> usize {
        1
    }
    fn default_clip() -> Option<f64> {
        Some(1.0)
    }
    fn default_betas() -> [f64; 2] {
        [0.9, 0.999]
    }
    fn default_eps() -> f64 {
        1e-8
    }
    fn default_checkpoint_every() -> Option<u64> {
        Some(50)
    }
    fn default_shuffle() -> bool {
        true
    }
    fn default_device() -> DeviceParam {
        DeviceParam::Cpu
    }
}

fn stage_error(err: TrainError) -> StageError {
    match err {
        TrainError::Param { key, message } => {
            StageError::params(format!("`{key}`: {message}")).with_key(key)
        }
        e @ (TrainError::Io { .. } | TrainError::BadFile { .. }) => {
            StageError::input(e.to_string())
        }
        e => StageError::failed(e.to_string()),
    }
}

struct Train;

impl Stage for Train {
    fn kind(&self) -> &'static str {
        "train"
    }

    fn code_version(&self) -> u32 {
        TRAIN_CODE_VERSION
    }

    fn about(&self) -> &'static str {
        "LoRA fine-tuning on tokens.arrow; writes a PEFT adapter, logs, loss chart"
    }

    fn params_schema(&self) -> Value {
        crate::stages::schema::<TrainParams>()
    }

    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        let mut p: TrainParams = crate::stages::parse_params(params)?;
        p.check_ranges()?;
        if env.inputs.len() != 1 {
            return Err(StageError::params(format!(
                "train takes one input (a tokenize stage), got {}",
                env.inputs.len()
            ))
            .with_key("from"));
        }
        let (reference, resolved) = crate::stages::plan_model(p.model.as_deref(), env)?;
        if p.device == DeviceParam::Cuda && !pipe_train::CUDA_ENABLED {
            return Err(
                StageError::params("this pipe was built without CUDA support")
                    .with_key("device")
                    .with_hint("use `device: cpu`, or build pipe-train with `--features cuda`"),
            );
        }
        LoraSpec::new(
            p.lora.rank,
            p.lora.alpha,
            p.lora.dropout,
            &p.lora.targets,
            p.lora.rslora,
        )
        .map_err(stage_error)?;
        p.model = Some(reference);
        p.seed = Some(p.seed.unwrap_or(env.seed));
        let mut canonical =
            serde_json::to_value(&p).map_err(|e| StageError::failed(e.to_string()))?;
        if matches!(resolved, pipe_model::ResolvedModel::Builtin { .. }) {
            canonical[BUILTIN_VERSION_KEY] = pipe_model::builtin::TINY_VERSION.into();
        }
        let mut outputs = vec!["adapter".to_owned()];
        if p.merge {
            outputs.push("merged".to_owned());
        }
        Ok(StagePlan {
            params: canonical,
            outputs,
            files: resolved.files(),
        })
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let mut params = ctx.params.clone();
        if let Some(map) = params.as_object_mut() {
            map.remove(BUILTIN_VERSION_KEY);
        }
        let p: TrainParams = crate::stages::parse_params(&params)?;
        let reference = p.model.clone().unwrap_or_default();
        let resolved = pipe_model::resolve(&reference, ctx.recipe_dir)
            .map_err(|e| StageError::input(e.to_string()).with_key("model"))?;
        let input = ctx
            .inputs
            .first()
            .ok_or_else(|| StageError::input("train needs a tokenize stage in `from`"))?;
        let train_dir = input.get("train").unwrap_or_else(|| input.primary());
        let tokens = train_dir.join(pipe_train::data::TOKENS_FILE);
        if !tokens.is_file() {
            return Err(StageError::input(format!(
                "{} not found: `from` must name a tokenize stage",
                tokens.display()
            )));
        }
        let validation = if input.output.is_none() {
            input
                .get("validation")
                .map(|d| d.join(pipe_train::data::TOKENS_FILE))
                .filter(|f| f.is_file())
        } else {
            None
        };
        pipe_train::set_threads(p.threads.unwrap_or(ctx.threads));
        let lora = LoraSpec::new(
            p.lora.rank,
            p.lora.alpha,
            p.lora.dropout,
            &p.lora.targets,
            p.lora.rslora,
        )
        .map_err(stage_error)?;
        let opts = TrainOptions {
            lora,
            epochs: p.epochs,
            max_steps: p.max_steps,
            lr: p.lr,
            schedule: p.schedule,
            warmup_steps: p.warmup_steps,
            warmup_ratio: p.warmup_ratio,
            batch_size: p.batch_size,
            grad_accum: p.grad_accum,
            clip: p.clip,
            weight_decay: p.weight_decay,
            beta1: p.betas[0],
            beta2: p.betas[1],
            eps: p.eps,
            checkpoint_every: p.checkpoint_every,
            eval_every: p.eval_every,
            shuffle: p.shuffle,
            seed: p.seed.unwrap_or(ctx.seed),
            base_model: reference.clone(),
            skip_frozen_grads: true,
            fused: true,
        };
        let model = pipe_train::loader::load_f32_cpu(&resolved).map_err(stage_error)?;
        let paths = TrainPaths {
            tokens,
            validation,
            out_dir: ctx.output_dir("adapter"),
            scratch_dir: ctx.scratch_dir.to_owned(),
        };
        let mut total_set = false;
        let progress = ctx.progress;
        let mut on_step = |log: &pipe_train::trainer::StepLog, total: u64| {
            if !total_set {
                progress.set_total(total, "steps");
                total_set = true;
            }
            progress.inc(1);
            progress.message(&format!(
                "loss {:.4}, {:.0} tok/s",
                log.loss, log.tokens_per_s
            ));
        };
        let summary = match pipe_train::trainer::train(model, &opts, &paths, None, &mut on_step)
            .map_err(stage_error)?
        {
            Outcome::Finished(s) => s,
            Outcome::Stopped { step } => {
                return Err(StageError::failed(format!(
                    "training stopped at step {step}"
                )));
            }
        };
        if p.merge {
            pipe_train::merge::merge_to_hf(&resolved, &paths.out_dir, &ctx.output_dir("merged"))
                .map_err(stage_error)?;
        }
        let mut report = StageReport {
            summary: format!(
                "{} steps, loss {:.4}, {:.0} tok/s{}",
                summary.steps,
                summary.final_loss,
                summary.tokens_per_s,
                summary
                    .resumed_from_step
                    .map(|s| format!(" (resumed from step {s})"))
                    .unwrap_or_default()
            ),
            ..Default::default()
        };
        if let Value::Object(map) = serde_json::to_value(&summary).unwrap_or(Value::Null) {
            for (k, v) in map {
                report.stats.insert(k, v);
            }
        }
        report
            .metrics
            .insert("train_loss".into(), summary.final_loss.into());
        if let Some(v) = summary.final_val_loss {
            report.metrics.insert("val_loss".into(), v.into());
        }
        Ok(report)
    }
}

pub fn register(registry: &mut Registry) {
    registry.add(Train);
}
