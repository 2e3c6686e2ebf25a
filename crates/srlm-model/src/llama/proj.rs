//! A linear projection of a decoder block ([`Proj`]): a base weight in HF layout, an optional
//! bias, and an optional LoRA adapter ([`LoraPair`], Hu et al. 2021, arXiv 2106.09685, Eq. 3):
//! y = x·Wᵀ + b + (α / r)·(x·Aᵀ)·Bᵀ. In a LoRA model the base is frozen: on the CPU its
//! projection runs as [`crate::fused::frozen_matmul_t`], which computes no weight gradient.

use super::ops::Mode;
use crate::error::Result;
use candle_core::Tensor;

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
    /// `[out, in]` (HF layout).
    pub(super) weight: Tensor,
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
            bias,
            frozen: false,
            lora: None,
        }
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
        let y = if mode == Mode::Infer && x.dim(0)? <= crate::skinny::MAX_ROWS {
            crate::skinny::matmul_t(&x.detach(), &self.weight.detach())?
        } else if self.frozen && x.device().is_cpu() {
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
        let w = self.weight.detach();
        Ok(match &self.lora {
            None => w,
            Some(l) => (w + (l.b.detach().matmul(&l.a.detach())? * l.scale)?)?,
        })
    }

    /// The same projection with a frozen base (shared, not copied) and `lora` as its adapter.
    pub(super) fn frozen_with(&self, lora: Option<LoraPair>) -> Self {
        Proj {
            weight: self.weight.detach(),
            bias: self.bias.as_ref().map(Tensor::detach),
            frozen: true,
            lora,
        }
    }
}
