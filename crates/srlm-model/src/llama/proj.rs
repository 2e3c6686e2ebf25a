//! A linear projection of a decoder block ([`Proj`]): a base weight in HF layout, an optional
//! bias, and an optional LoRA adapter ([`LoraPair`], Hu et al. 2021, arXiv 2106.09685, Eq. 3):
//! y = x·Wᵀ + b + (α / r)·(x·Aᵀ)·Bᵀ. In a LoRA model the base is frozen (f32, or bf16 after
//! `Llama::with_base_dtype`): its projection runs as [`crate::fused::frozen_matmul_t`], which on
//! the CPU computes no weight gradient.

use super::ops::Mode;
use crate::error::Result;
use crate::quant::QWeight;
use candle_core::Tensor;
use std::sync::Arc;

/// One LoRA adapter on one projection: `a` `[r, in]`, `b` `[out, r]` (PEFT's `lora_A.weight`,
/// `lora_B.weight`), scaled by `scale` = α / r.
#[derive(Clone)]
pub(super) struct LoraPair {
    pub(super) a: Tensor,
    pub(super) b: Tensor,
    pub(super) scale: f64,
}

/// A projection: base weight `[out, in]`, optional bias `[out]`, optional adapter.
#[derive(Clone)]
pub(super) struct Proj {
    /// `[out, in]` (HF layout): f32 or bf16. A quantized base keeps an empty placeholder here
    /// and its blocks in `quantized`.
    pub(super) weight: Tensor,
    /// A frozen base weight kept in its GGUF blocks (see [`crate::quant`]).
    pub(super) quantized: Option<Arc<QWeight>>,
    /// `[out]`.
    pub(super) bias: Option<Tensor>,
    /// The base weight and bias are not trained (a LoRA model): no gradient is computed for
    /// them.
    pub(super) frozen: bool,
    /// The adapter, in a LoRA model where this projection is a target.
    pub(super) lora: Option<LoraPair>,
}

impl Proj {
    /// A trainable projection without adapter (a fully fine-tuned model).
    pub(super) fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Proj {
            weight,
            quantized: None,
            bias,
            frozen: false,
            lora: None,
        }
    }

    /// A frozen projection whose base weight is `q` (GGUF blocks), without adapter.
    pub(super) fn quantized(q: Arc<QWeight>, bias: Option<Tensor>) -> Result<Self> {
        Ok(Proj {
            weight: Tensor::zeros(0, candle_core::DType::F32, &candle_core::Device::Cpu)?,
            quantized: Some(q),
            bias: bias.as_ref().map(Tensor::detach),
            frozen: true,
            lora: None,
        })
    }

    /// The base weight as an f32 tensor `[out, in]` (a quantized or bf16 one widened: a new
    /// tensor; an f32 one shared).
    pub(super) fn dense_weight(&self) -> Result<Tensor> {
        Ok(match &self.quantized {
            Some(q) => q.dequantize()?,
            None => self.weight.detach().to_dtype(candle_core::DType::F32)?,
        })
    }

    /// `x` `[n, in]` → `[n, out]`. In [`Mode::Infer`] a few rows go through
    /// [`crate::skinny`] (no gradient), which reads the weight in place instead of packing it.
    pub(super) fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = self.base(x, mode)?;
        match self.lora_delta(x, mode)? {
            None => Ok(y),
            Some(delta) => Ok((y + delta)?),
        }
    }

    /// The adapter's part (α / r)·(x·Aᵀ)·Bᵀ `[n, out]`, when there is an adapter.
    pub(super) fn lora_delta(&self, x: &Tensor, mode: Mode) -> Result<Option<Tensor>> {
        let Some(l) = &self.lora else {
            return Ok(None);
        };
        let x = if mode == Mode::Infer { &x.detach() } else { x };
        Ok(Some((x.matmul(&l.a.t()?)?.matmul(&l.b.t()?)? * l.scale)?))
    }

    /// The base part, x·Wᵀ + b.
    pub(super) fn base(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = if let Some(q) = &self.quantized {
            let decode = mode == Mode::Infer && x.dim(0)? <= crate::skinny::MAX_ROWS;
            let x = if mode == Mode::Infer { &x.detach() } else { x };
            crate::quant::qmatmul_t(x, q, decode)?
        } else if mode == Mode::Infer && x.dim(0)? <= crate::skinny::MAX_ROWS {
            crate::skinny::matmul_t(&x.detach(), &self.weight.detach())?
        } else if self.frozen {
            crate::fused::frozen_matmul_t(x, &self.weight)?
        } else {
            x.matmul(&self.weight.t()?)?
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The tensors training updates: the adapter's in a LoRA model, else weight and bias.
    pub(super) fn trainable(&self) -> Vec<Tensor> {
        match (&self.lora, self.frozen) {
            (Some(l), _) => vec![l.a.clone(), l.b.clone()],
            (None, true) => Vec::new(),
            (None, false) => std::iter::once(self.weight.clone())
                .chain(self.bias.clone())
                .collect(),
        }
    }

    /// W + (α / r)·B·A: the weight of the same projection without adapter, `[out, in]`.
    pub(super) fn merged_weight(&self) -> Result<Tensor> {
        let w = self.dense_weight()?;
        Ok(match &self.lora {
            None => w,
            Some(l) => (w + (l.b.detach().matmul(&l.a.detach())? * l.scale)?)?,
        })
    }

    /// The same projection without adapter, its base frozen and its weight stored in `dtype`
    /// (shared when it already is); the bias stays f32.
    pub(super) fn with_base_dtype(&self, dtype: candle_core::DType) -> Result<Self> {
        if self.quantized.is_some() {
            return Ok(Proj {
                lora: None,
                ..self.clone()
            });
        }
        Ok(Proj {
            weight: self.weight.detach().to_dtype(dtype)?,
            quantized: None,
            bias: self.bias.as_ref().map(Tensor::detach),
            frozen: true,
            lora: None,
        })
    }

    /// The same projection with a frozen base (shared, not copied) and `lora` as its adapter.
    pub(super) fn frozen_with(&self, lora: Option<LoraPair>) -> Self {
        Proj {
            weight: self.weight.detach(),
            quantized: self.quantized.clone(),
            bias: self.bias.as_ref().map(Tensor::detach),
            frozen: true,
            lora,
        }
    }
}
