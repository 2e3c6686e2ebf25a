//! Fused CPU kernels **with a backward pass** for the training path: RMSNorm, RoPE (with the
//! head transpose folded in), causal softmax, SwiGLU and log-softmax + gather.
//!
//! candle composes these from primitive ops when gradients are needed; every primitive
//! allocates a temporary and records a node, and the backward pass replays them one by one
//! (for the 135M model that was ~60% of a training step outside the GEMMs). Each op here is one
//! pass over memory forward and one backward, stores only its inputs, and is checked against
//! the composed version (values and gradients) in the tests below.
//!
//! All ops take contiguous f32 tensors on the CPU and run rows in parallel on candle's own
//! thread pool ([`candle_core::utils::barrier_pool`]). Callers on other devices use the
//! composed ops ([`crate::llama`] decides).

use candle_core::{
    backend::BackendStorage, bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout,
    Result, Shape, Tensor,
};
use std::ops::Range;

/// Contiguous f32 data of one input.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{op}: expected f32, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

/// Contiguous u32 data of one input.
fn u32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [u32]> {
    let data = match s {
        CpuStorage::U32(v) => v.as_slice(),
        other => bail!("{op}: expected u32 ids, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

/// A raw output pointer that row ranges of different threads write disjointly.
#[derive(Clone, Copy)]
struct Out(usize);

impl Out {
    fn new(v: &mut [f32]) -> Self {
        Out(v.as_mut_ptr() as usize)
    }
    /// # Safety
    /// `range` must lie in the buffer and no other thread may touch it concurrently.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, range: Range<usize>) -> &mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe {
            std::slice::from_raw_parts_mut((self.0 as *mut f32).add(range.start), range.len())
        }
    }
}

/// Runs `f` over `0..rows` in parallel chunks of about `min_elems / row_len` rows or more.
fn par_rows(rows: usize, row_len: usize, f: impl Fn(Range<usize>) + Sync) {
    const MIN_ELEMS: usize = 16 * 1024;
    let chunk = (MIN_ELEMS / row_len.max(1)).max(1);
    let units = rows.div_ceil(chunk);
    if units <= 1 {
        f(0..rows);
        return;
    }
    candle_core::utils::barrier_pool().execute_chunked(units, |r| {
        for u in r {
            f(u * chunk..rows.min((u + 1) * chunk));
        }
    });
}

fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    1.0 / (ss / x.len() as f32 + eps).sqrt()
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

/// y = x · r · w with r = 1/√(mean(x²) + eps) over the last dim (Zhang & Sennrich 2019).
struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "srlm-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let w = f32s(s2, l2, self.name())?;
        let d = w.len();
        let mut y = vec![0f32; x.len()];
        let out = Out::new(&mut y);
        par_rows(x.len() / d, d, |rows| {
            let y = unsafe { out.slice(rows.start * d..rows.end * d) };
            for (xr, yr) in x[rows.start * d..rows.end * d]
                .chunks_exact(d)
                .zip(y.chunks_exact_mut(d))
            {
                let r = inv_rms(xr, self.eps);
                for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(w) {
                    *yv = xv * r * wv;
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &g, &RmsNormGradX { eps: self.eps })?;
        let dw = x.apply_op2_no_bwd(&g, &RmsNormGradW { eps: self.eps })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// dx = r·(g⊙w) − r³·x·⟨g⊙w, x⟩/d.
struct RmsNormGradX {
    eps: f32,
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "srlm-rms-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let w = f32s(s2, l2, self.name())?;
        let g = f32s(s3, l3, self.name())?;
        let d = w.len();
        let mut dx = vec![0f32; x.len()];
        let out = Out::new(&mut dx);
        par_rows(x.len() / d, d, |rows| {
            let span = rows.start * d..rows.end * d;
            let dx = unsafe { out.slice(span.clone()) };
            for ((xr, gr), dr) in x[span.clone()]
                .chunks_exact(d)
                .zip(g[span.clone()].chunks_exact(d))
                .zip(dx.chunks_exact_mut(d))
            {
                let r = inv_rms(xr, self.eps);
                let dot: f32 = xr.iter().zip(gr).zip(w).map(|((a, b), c)| a * b * c).sum();
                let c = r * r * r * dot / d as f32;
                for (((dv, xv), gv), wv) in dr.iter_mut().zip(xr).zip(gr).zip(w) {
                    *dv = r * gv * wv - c * xv;
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// dw = Σ_rows g ⊙ x · r.
struct RmsNormGradW {
    eps: f32,
}

impl CustomOp2 for RmsNormGradW {
    fn name(&self) -> &'static str {
        "srlm-rms-norm-grad-w"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let g = f32s(s2, l2, self.name())?;
        let d = *l1.dims().last().unwrap_or(&1);
        let total = std::sync::Mutex::new(vec![0f32; d]);
        par_rows(x.len() / d, d, |rows| {
            let mut acc = vec![0f32; d];
            let span = rows.start * d..rows.end * d;
            for (xr, gr) in x[span.clone()].chunks_exact(d).zip(g[span].chunks_exact(d)) {
                let r = inv_rms(xr, self.eps);
                for ((a, xv), gv) in acc.iter_mut().zip(xr).zip(gr) {
                    *a += gv * xv * r;
                }
            }
            let mut t = total.lock().expect("rms-norm grad lock");
            for (t, a) in t.iter_mut().zip(&acc) {
                *t += a;
            }
        });
        let dw = total.into_inner().expect("rms-norm grad lock");
        Ok((CpuStorage::F32(dw), Shape::from(d)))
    }
}

/// RMSNorm over the last dim with a fused backward: `x` `[.., d]` f32, `weight` `[d]` f32 →
/// `[.., d]` f32. CPU only.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps: eps as f32 })
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// y = silu(gate) ⊙ up (Shazeer 2020, arXiv 2002.05202).
struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "srlm-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = f32s(s1, l1, self.name())?;
        let b = f32s(s2, l2, self.name())?;
        if a.len() != b.len() {
            bail!("srlm-swiglu: gate and up differ in size");
        }
        let mut y = vec![0f32; a.len()];
        let out = Out::new(&mut y);
        par_rows(a.len().div_ceil(1024), 1024, |rows| {
            let span = rows.start * 1024..(rows.end * 1024).min(a.len());
            let y = unsafe { out.slice(span.clone()) };
            for ((yv, av), bv) in y.iter_mut().zip(&a[span.clone()]).zip(&b[span]) {
                *yv = av * sigmoid(*av) * bv;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = gate.apply_op3_no_bwd(up, &g.contiguous()?, &SwiGluGrad)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// `[2, ..]`: d gate = g·up·σ(a)(1 + a(1 − σ(a))), d up = g·a·σ(a).
struct SwiGluGrad;

impl CustomOp3 for SwiGluGrad {
    fn name(&self) -> &'static str {
        "srlm-swiglu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = f32s(s1, l1, self.name())?;
        let b = f32s(s2, l2, self.name())?;
        let g = f32s(s3, l3, self.name())?;
        let n = a.len();
        let mut d = vec![0f32; 2 * n];
        let out = Out::new(&mut d);
        par_rows(n.div_ceil(1024), 2048, |rows| {
            let span = rows.start * 1024..(rows.end * 1024).min(n);
            let da = unsafe { out.slice(span.clone()) };
            let db = unsafe { out.slice(n + span.start..n + span.end) };
            for i in 0..span.len() {
                let j = span.start + i;
                let s = sigmoid(a[j]);
                da[i] = g[j] * b[j] * s * (1.0 + a[j] * (1.0 - s));
                db[i] = g[j] * a[j] * s;
            }
        });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((CpuStorage::F32(d), Shape::from(dims)))
    }
}

/// silu(gate) ⊙ up with a fused backward: both `[..]` f32, same shape. CPU only. The model
/// runs [`swiglu_down`]; this standalone op tests the activation's kernels.
#[cfg(test)]
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

/// y = (silu(gate) ⊙ up) · W_downᵀ: the SwiGLU activation never outlives the op. The backward
/// recomputes it from `gate` and `up` (one elementwise pass) instead of keeping an
/// `[n, intermediate]` tensor per layer for the whole step.
struct SwiGluDown {
    /// `W_down` is frozen (a LoRA model's base): its gradient is not computed.
    frozen_w: bool,
}

impl CustomOp3 for SwiGluDown {
    fn name(&self) -> &'static str {
        "srlm-swiglu-down"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, i) = l1.shape().dims2()?;
        let (d, i2) = l3.shape().dims2()?;
        if i != i2 || l2.shape().dims2()? != (n, i) {
            bail!("srlm-swiglu-down: gate/up [{n}, {i}] and W_down [{d}, {i2}] do not fit");
        }
        let (act, _) = SwiGlu.cpu_fwd(s1, l1, s2, l2)?;
        let CpuStorage::F32(act) = act else {
            bail!("srlm-swiglu-down: expected f32");
        };
        let act = Tensor::from_vec(act, (n, i), &candle_core::Device::Cpu)?;
        let w = match s3 {
            // A frozen bf16 base: widened per call, never kept.
            CpuStorage::BF16(v) => {
                let (a, b) = l3.contiguous_offsets().ok_or_else(|| {
                    candle_core::Error::Msg("srlm-swiglu-down: W_down must be contiguous".into())
                })?;
                Tensor::from_vec(
                    v[a..b].iter().map(|x| x.to_f32()).collect::<Vec<f32>>(),
                    (d, i),
                    &candle_core::Device::Cpu,
                )?
            }
            _ => Tensor::from_slice(
                f32s(s3, l3, self.name())?,
                (d, i),
                &candle_core::Device::Cpu,
            )?,
        };
        let y = act.matmul(&w.t()?)?;
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            Shape::from((n, d)),
        ))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gate, up, w, g) = (gate.detach(), up.detach(), w.detach(), g.detach());
        let act = gate.apply_op2_no_bwd(&up, &SwiGlu)?;
        let d_act = g.matmul(&widened(&w)?)?.contiguous()?;
        let dw = match self.frozen_w {
            true => None,
            false => Some(g.t()?.matmul(&act)?),
        };
        let both = gate.apply_op3_no_bwd(&up, &d_act, &SwiGluGrad)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?), dw))
    }
}

/// The SwiGLU MLP's output projection with a fused backward: `gate`, `up` `[n, intermediate]`
/// f32, `w_down` `[hidden, intermediate]` f32 (HF layout) → (silu(gate) ⊙ up) · w_downᵀ
/// `[n, hidden]`. Gradients reach all three inputs; the activation is recomputed in the
/// backward pass rather than stored. CPU only.
pub fn swiglu_down(gate: &Tensor, up: &Tensor, w_down: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op3(
        &up.contiguous()?,
        &w_down.contiguous()?,
        SwiGluDown { frozen_w: false },
    )
}

/// [`swiglu_down`] with a frozen `w_down` (a LoRA model's base weight, f32 or bf16): gradients
/// reach `gate` and `up` only, and the `[hidden, intermediate]` weight gradient is never
/// computed. A bf16 `w_down` is widened to f32 inside the op, per call.
pub fn swiglu_down_frozen(gate: &Tensor, up: &Tensor, w_down: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op3(
        &up.contiguous()?,
        &w_down.contiguous()?,
        SwiGluDown { frozen_w: true },
    )
}

/// [`swiglu_down_frozen`] with `W_down` kept in GGUF blocks ([`crate::quant`]): the activation
/// is not kept either (the backward recomputes nothing it needs: d act = g · W_down, W_down
/// dequantized per call). The same numbers as the op on the dequantized f32 weight.
struct SwiGluDownQuantized {
    w: std::sync::Arc<crate::quant::QWeight>,
}

impl CustomOp2 for SwiGluDownQuantized {
    fn name(&self) -> &'static str {
        "srlm-swiglu-down-quantized"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, i) = l1.shape().dims2()?;
        let (d, i2) = self.w.dims();
        if i != i2 || l2.shape().dims2()? != (n, i) {
            bail!(
                "{}: gate/up [{n}, {i}] and W_down [{d}, {i2}] do not fit",
                self.name()
            );
        }
        let (act, _) = SwiGlu.cpu_fwd(s1, l1, s2, l2)?;
        let CpuStorage::F32(act) = act else {
            bail!("{}: expected f32", self.name());
        };
        let act = Tensor::from_vec(act, (n, i), &candle_core::Device::Cpu)?;
        let y = act.matmul(&self.w.dequantize()?.t()?)?;
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            Shape::from((n, d)),
        ))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d_act = g.detach().matmul(&self.w.dequantize()?)?.contiguous()?;
        let both = gate
            .detach()
            .apply_op3_no_bwd(&up.detach(), &d_act, &SwiGluGrad)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// (silu(gate) ⊙ up) · W_downᵀ with `w_down` `[hidden, intermediate]` in GGUF blocks, frozen:
/// gradients reach `gate` and `up`; neither the activation nor an f32 copy of the weight
/// outlives the op. CPU only.
pub fn swiglu_down_quantized(
    gate: &Tensor,
    up: &Tensor,
    w_down: &std::sync::Arc<crate::quant::QWeight>,
) -> Result<Tensor> {
    gate.contiguous()?
        .apply_op2(&up.contiguous()?, SwiGluDownQuantized { w: w_down.clone() })
}

// ---------------------------------------------------------------------------------------------
// Frozen projection

/// y = x · Wᵀ where W is frozen: the backward returns dx = g · W only. candle's matmul always
/// computes both operands' gradients (its backward does not ask whether W needs one), which
/// for a LoRA model's frozen base would spend a third of every projection's training FLOPs on
/// gradients nobody reads. W is held by the op, never copied.
struct FrozenMatmulT {
    w: Tensor,
}

impl CustomOp1 for FrozenMatmulT {
    fn name(&self) -> &'static str {
        "srlm-frozen-matmul-t"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, k) = l.shape().dims2()?;
        let (out, k2) = self.w.dims2()?;
        if k != k2 {
            bail!("srlm-frozen-matmul-t: x [{n}, {k}] and W [{out}, {k2}] do not fit");
        }
        let x = Tensor::from_slice(f32s(s, l, self.name())?, (n, k), &candle_core::Device::Cpu)?;
        let y = x.matmul(&widened(&self.w)?.t()?)?;
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            Shape::from((n, out)),
        ))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(g.detach().matmul(&widened(&self.w)?)?))
    }
}

/// `w` as f32: itself when it is f32, else a widened copy (a bf16 frozen base's weight, widened
/// per call so that only the bf16 tensor is ever kept).
fn widened(w: &Tensor) -> Result<Tensor> {
    match w.dtype() {
        DType::F32 => Ok(w.clone()),
        _ => w.to_dtype(DType::F32),
    }
}

/// `x` `[n, in]` f32 · `w`ᵀ (`w` `[out, in]` f32 or bf16, HF layout) → `[n, out]` f32,
/// differentiable in `x` only.
///
/// On the CPU the gradient of the frozen `w` is not computed and a bf16 `w` is widened to f32
/// per call (the activations stay f32). On other devices (CUDA) it is candle's matmul in `w`'s
/// dtype: a bf16 `w` multiplies `x` rounded to bf16 (cuBLAS's bf16 GEMM, as PyTorch's autocast
/// does) and the result is widened back to f32.
pub fn frozen_matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let w = w.detach();
    if !x.device().is_cpu() {
        let y = x.to_dtype(w.dtype())?.matmul(&w.t()?)?;
        return y.to_dtype(DType::F32);
    }
    x.contiguous()?.apply_op1(FrozenMatmulT { w })
}

// ---------------------------------------------------------------------------------------------
// RoPE

/// Rotary embedding in HF's half-split layout with the head transpose folded in.
/// Forward: x `[b, s, h, hd]` → `[b, h, s, hd]`, (x1, x2) ↦ (x1·c − x2·s, x2·c + x1·s).
/// Backward (`grad`): g `[b, h, s, hd]` → `[b, s, h, hd]`, the inverse rotation.
struct Rope {
    grad: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        if self.grad {
            "srlm-rope-grad"
        } else {
            "srlm-rope"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let cos = f32s(s2, l2, self.name())?;
        let sin = f32s(s3, l3, self.name())?;
        let (b, s, h, hd) = if self.grad {
            let (b, h, s, hd) = l1.shape().dims4()?;
            (b, s, h, hd)
        } else {
            l1.shape().dims4()?
        };
        let half = hd / 2;
        if cos.len() != b * s * half || sin.len() != cos.len() {
            bail!("{}: cos/sin must be [{b}, {s}, {half}]", self.name());
        }
        // Offsets of element (bi, si, hi, 0) in the [b, s, h, hd] and [b, h, s, hd] layouts.
        let bshd = |bi: usize, si: usize, hi: usize| ((bi * s + si) * h + hi) * hd;
        let bhsd = |bi: usize, si: usize, hi: usize| ((bi * h + hi) * s + si) * hd;
        let mut y = vec![0f32; x.len()];
        let out = Out::new(&mut y);
        // Parallel over (b, h) blocks of the [b, h, s, hd] side, which are contiguous.
        par_rows(b * h, s * hd, |blocks| {
            for bh in blocks {
                let (bi, hi) = (bh / h, bh % h);
                for si in 0..s {
                    let c = &cos[(bi * s + si) * half..(bi * s + si + 1) * half];
                    let sn = &sin[(bi * s + si) * half..(bi * s + si + 1) * half];
                    let (src, dst) = if self.grad {
                        (bhsd(bi, si, hi), bshd(bi, si, hi))
                    } else {
                        (bshd(bi, si, hi), bhsd(bi, si, hi))
                    };
                    let xs = &x[src..src + hd];
                    // SAFETY: each (bi, si, hi) destination row is written by one block only.
                    let ys = unsafe { out.slice(dst..dst + hd) };
                    let (x1, x2) = xs.split_at(half);
                    let (y1, y2) = ys.split_at_mut(half);
                    if self.grad {
                        for i in 0..half {
                            y1[i] = x1[i] * c[i] + x2[i] * sn[i];
                            y2[i] = x2[i] * c[i] - x1[i] * sn[i];
                        }
                    } else {
                        for i in 0..half {
                            y1[i] = x1[i] * c[i] - x2[i] * sn[i];
                            y2[i] = x2[i] * c[i] + x1[i] * sn[i];
                        }
                    }
                }
            }
        });
        let shape = if self.grad {
            Shape::from((b, s, h, hd))
        } else {
            Shape::from((b, h, s, hd))
        };
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = g
            .contiguous()?
            .apply_op3_no_bwd(cos, sin, &Rope { grad: true })?;
        Ok((Some(dx), None, None))
    }
}

/// Rotary position embedding (Su et al. 2021, RoFormer, Eq. 34; HF's half-split layout) fused
/// with the head transpose: `x` `[b, s, h, hd]` f32 (a projection's output viewed per head),
/// `cos`/`sin` `[b, s, hd/2]` f32 (no gradient) → `[b, h, s, hd]` f32. CPU only.
pub fn rope_bshd_to_bhsd(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &cos.contiguous()?.detach(),
        &sin.contiguous()?.detach(),
        Rope { grad: false },
    )
}

// ---------------------------------------------------------------------------------------------
// Causal softmax

/// softmax(scale · x) over the last dim with a causal mask: row r (counting over all leading
/// dims) is the query at position `offset + r % period`, where offset = kv − period, and sees
/// keys 0..=that position. Masked outputs are exactly 0.
struct CausalSoftmax {
    scale: f32,
    period: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "srlm-causal-softmax"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let kv = *l1.dims().last().unwrap_or(&1);
        if self.period == 0 || self.period > kv {
            bail!("srlm-causal-softmax: {} queries for {kv} keys", self.period);
        }
        let offset = kv - self.period;
        let mut y = vec![0f32; x.len()];
        let out = Out::new(&mut y);
        par_rows(x.len() / kv, kv, |rows| {
            let y = unsafe { out.slice(rows.start * kv..rows.end * kv) };
            for (i, r) in rows.clone().enumerate() {
                let seen = offset + r % self.period + 1;
                let xr = &x[r * kv..r * kv + seen];
                let yr = &mut y[i * kv..i * kv + seen];
                let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max) * self.scale;
                let mut sum = 0f32;
                for (yv, xv) in yr.iter_mut().zip(xr) {
                    *yv = (xv * self.scale - max).exp();
                    sum += *yv;
                }
                let inv = 1.0 / sum;
                yr.iter_mut().for_each(|v| *v *= inv);
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let dx = y.apply_op2_no_bwd(
            &g.contiguous()?,
            &CausalSoftmaxGrad {
                scale: self.scale,
                period: self.period,
            },
        )?;
        Ok(Some(dx))
    }
}

/// dx = scale · y ⊙ (g − ⟨g, y⟩) over the visible keys; 0 elsewhere.
struct CausalSoftmaxGrad {
    scale: f32,
    period: usize,
}

impl CustomOp2 for CausalSoftmaxGrad {
    fn name(&self) -> &'static str {
        "srlm-causal-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = f32s(s1, l1, self.name())?;
        let g = f32s(s2, l2, self.name())?;
        let kv = *l1.dims().last().unwrap_or(&1);
        let offset = kv - self.period;
        let mut dx = vec![0f32; y.len()];
        let out = Out::new(&mut dx);
        par_rows(y.len() / kv, kv, |rows| {
            let dx = unsafe { out.slice(rows.start * kv..rows.end * kv) };
            for (i, r) in rows.clone().enumerate() {
                let seen = offset + r % self.period + 1;
                let yr = &y[r * kv..r * kv + seen];
                let gr = &g[r * kv..r * kv + seen];
                let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                for ((d, yv), gv) in dx[i * kv..i * kv + seen].iter_mut().zip(yr).zip(gr) {
                    *d = self.scale * yv * (gv - dot);
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Causal attention probabilities with a fused backward: `scores` `[.., rows, kv]` f32 (raw
/// q·k), `scale` (1/√head_dim), `period` = queries per sequence (rows cycle through positions
/// kv − period .. kv − 1, as in a `[b, kv_heads, group·s, kv]` grouped-query layout) →
/// softmax(scale · scores) with future keys masked to exactly 0, same shape. CPU only.
pub fn causal_softmax(scores: &Tensor, scale: f64, period: usize) -> Result<Tensor> {
    scores.contiguous()?.apply_op1(CausalSoftmax {
        scale: scale as f32,
        period,
    })
}

// ---------------------------------------------------------------------------------------------
// log-softmax + gather

/// out[n] = logits[n, t_n] − logsumexp(logits[n, :]).
struct TargetLogps;

impl CustomOp2 for TargetLogps {
    fn name(&self) -> &'static str {
        "srlm-target-logps"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = f32s(s1, l1, self.name())?;
        let targets = u32s(s2, l2, self.name())?;
        let (n, v) = l1.shape().dims2()?;
        if targets.len() != n {
            bail!("srlm-target-logps: {} targets for {n} rows", targets.len());
        }
        if let Some(&t) = targets.iter().find(|&&t| t as usize >= v) {
            bail!("srlm-target-logps: target id {t} outside the vocabulary of {v}");
        }
        let mut y = vec![0f32; n];
        let out = Out::new(&mut y);
        par_rows(n, v, |rows| {
            let y = unsafe { out.slice(rows.clone()) };
            for (i, r) in rows.enumerate() {
                let row = &logits[r * v..(r + 1) * v];
                y[i] = row[targets[r] as usize] - logsumexp(row);
            }
        });
        Ok((CpuStorage::F32(y), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let res_and_grad = Tensor::stack(&[res.detach(), g.detach()], 0)?.contiguous()?;
        let d = logits.apply_op3_no_bwd(targets, &res_and_grad, &TargetLogpsGrad)?;
        Ok((Some(d), None))
    }
}

fn logsumexp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
    max + sum.ln()
}

/// dlogits[n, j] = g_n · (1[j = t_n] − softmax(logits[n])_j), with logsumexp recovered from
/// the forward result as logits[n, t_n] − out[n].
struct TargetLogpsGrad;

impl CustomOp3 for TargetLogpsGrad {
    fn name(&self) -> &'static str {
        "srlm-target-logps-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = f32s(s1, l1, self.name())?;
        let targets = u32s(s2, l2, self.name())?;
        let rg = f32s(s3, l3, self.name())?;
        let (n, v) = l1.shape().dims2()?;
        let (res, g) = rg.split_at(n);
        let mut d = vec![0f32; n * v];
        let out = Out::new(&mut d);
        par_rows(n, v, |rows| {
            let d = unsafe { out.slice(rows.start * v..rows.end * v) };
            for (i, r) in rows.enumerate() {
                let row = &logits[r * v..(r + 1) * v];
                let t = targets[r] as usize;
                let lse = row[t] - res[r];
                let dr = &mut d[i * v..(i + 1) * v];
                for (dv, x) in dr.iter_mut().zip(row) {
                    *dv = -g[r] * (x - lse).exp();
                }
                dr[t] += g[r];
            }
        });
        Ok((CpuStorage::F32(d), l1.shape().clone()))
    }
}

/// `log softmax(logits)[target]` per row with a fused backward: `logits` `[n, vocab]` f32,
/// `targets` `[n]` u32 → `[n]` f32 (nats). Never materialises the `[n, vocab]` log-softmax; the
/// backward writes one `[n, vocab]` gradient. CPU only.
///
/// Errors: a target id ≥ vocab, or a dtype other than f32 logits / u32 targets.
pub fn target_logps(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if targets.dtype() != DType::U32 {
        bail!(
            "target_logps: targets must be u32, got {:?}",
            targets.dtype()
        );
    }
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?.detach(), TargetLogps)
}

// ---------------------------------------------------------------------------------------------
// Frozen LM head + log-softmax + gather, in row chunks

/// Rows of hidden states per chunk of [`frozen_head_logps`]: a `[256, vocab]` f32 block (48 MiB
/// for a 49,152-token vocabulary) is the most it holds at once.
const HEAD_CHUNK: usize = 256;

/// out[n] = log softmax(h[n] · Wᵀ)[t_n] for a frozen W, never holding `[n, vocab]` logits: the
/// forward multiplies [`HEAD_CHUNK`] rows at a time and keeps only each row's result; the
/// backward recomputes a chunk's logits and turns them into dh = (onehot − softmax)·g · W.
/// Costs one more `[n, hidden] × [hidden, vocab]` GEMM than keeping the logits, and saves the
/// `[n, vocab]` logits, their copy and their gradient (3 × 118 MiB at 600 response tokens of
/// the default model).
struct FrozenHeadLogps {
    w: Tensor,
    targets: Tensor,
}

impl FrozenHeadLogps {
    /// `h` rows `r0..r0+len` times Wᵀ: `[len, vocab]`.
    fn logits(&self, h: &Tensor, r0: usize, len: usize) -> Result<Tensor> {
        h.narrow(0, r0, len)?.matmul(&self.w.t()?)
    }
}

impl CustomOp1 for FrozenHeadLogps {
    fn name(&self) -> &'static str {
        "srlm-frozen-head-logps"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l.shape().dims2()?;
        let h = Tensor::from_slice(f32s(s, l, self.name())?, (n, d), &candle_core::Device::Cpu)?;
        let mut out = Vec::with_capacity(n);
        for r0 in (0..n).step_by(HEAD_CHUNK) {
            let len = HEAD_CHUNK.min(n - r0);
            let logits = self.logits(&h, r0, len)?;
            let lp = logits.apply_op2_no_bwd(&self.targets.narrow(0, r0, len)?, &TargetLogps)?;
            out.extend(lp.to_vec1::<f32>()?);
        }
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(&self, h: &Tensor, res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (h, res, g) = (h.detach(), res.detach(), g.detach());
        let n = h.dim(0)?;
        let mut dh = Vec::with_capacity(n.div_ceil(HEAD_CHUNK));
        for r0 in (0..n).step_by(HEAD_CHUNK) {
            let len = HEAD_CHUNK.min(n - r0);
            let logits = self.logits(&h, r0, len)?;
            let res_and_grad = Tensor::stack(&[res.narrow(0, r0, len)?, g.narrow(0, r0, len)?], 0)?
                .contiguous()?;
            let d_logits = logits.apply_op3_no_bwd(
                &self.targets.narrow(0, r0, len)?,
                &res_and_grad,
                &TargetLogpsGrad,
            )?;
            dh.push(d_logits.matmul(&self.w)?);
        }
        Ok(Some(Tensor::cat(&dh, 0)?))
    }
}

/// The LM head, log-softmax and gather for a **frozen** head `w` `[vocab, hidden]` f32:
/// `hidden` `[n, hidden]` f32, `targets` `[n]` u32 → `[n]` f32 (nats), differentiable in
/// `hidden`; at most [`HEAD_CHUNK`] rows of logits exist at a time (see `FrozenHeadLogps`).
/// CPU only. Errors as [`target_logps`].
pub fn frozen_head_logps(hidden: &Tensor, w: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if targets.dtype() != DType::U32 {
        bail!("frozen_head_logps: targets must be u32");
    }
    hidden.contiguous()?.apply_op1(FrozenHeadLogps {
        w: w.detach(),
        targets: targets.contiguous()?.detach(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn randn(shape: &[usize], seed: u64) -> Var {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// A fixed random weighting so the loss depends on every output element differently.
    fn loss(y: &Tensor, seed: u64) -> Tensor {
        let w = randn(y.dims(), seed);
        (y * w.as_tensor()).unwrap().sum_all().unwrap()
    }

    /// Values and gradients of `fused` equal those of `composed` for every input var.
    fn check(
        vars: &[&Var],
        fused: impl Fn() -> Tensor,
        composed: impl Fn() -> Tensor,
        tol: f32,
        what: &str,
    ) {
        let (yf, yc) = (fused(), composed());
        assert_close(&yf, &yc, tol, what);
        let gf = loss(&yf, 99).backward().unwrap();
        let gc = loss(&yc, 99).backward().unwrap();
        for (i, v) in vars.iter().enumerate() {
            let a = gf.get(v.as_tensor()).expect("fused gradient");
            let b = gc.get(v.as_tensor()).expect("composed gradient");
            assert_close(a, b, tol, &format!("{what} grad {i}"));
        }
    }

    #[test]
    fn rms_norm_matches_composed() {
        let x = randn(&[3, 50, 256], 1);
        let w = randn(&[256], 2);
        check(
            &[&x, &w],
            || rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap(),
            || {
                crate::llama::ops::rms_norm(
                    x.as_tensor(),
                    w.as_tensor(),
                    1e-5,
                    crate::llama::Mode::Train,
                )
                .unwrap()
            },
            1e-5,
            "rms_norm",
        );
    }

    #[test]
    fn swiglu_matches_composed() {
        let a = randn(&[4, 30001], 3);
        let b = randn(&[4, 30001], 4);
        check(
            &[&a, &b],
            || swiglu(a.as_tensor(), b.as_tensor()).unwrap(),
            || (a.as_tensor().silu().unwrap() * b.as_tensor()).unwrap(),
            1e-5,
            "swiglu",
        );
    }

    #[test]
    fn swiglu_down_matches_composed() {
        let a = randn(&[70, 300], 11);
        let b = randn(&[70, 300], 12);
        let w = randn(&[40, 300], 13);
        check(
            &[&a, &b, &w],
            || swiglu_down(a.as_tensor(), b.as_tensor(), w.as_tensor()).unwrap(),
            || {
                let act = (a.as_tensor().silu().unwrap() * b.as_tensor()).unwrap();
                act.matmul(&w.as_tensor().t().unwrap()).unwrap()
            },
            1e-4,
            "swiglu_down",
        );
    }

    #[test]
    fn frozen_ops_match_composed_and_leave_the_weight_without_gradient() {
        let x = randn(&[70, 300], 21);
        let w = randn(&[40, 300], 22);
        check(
            &[&x],
            || frozen_matmul_t(x.as_tensor(), w.as_tensor()).unwrap(),
            || x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap(),
            1e-4,
            "frozen_matmul_t",
        );
        let y = frozen_matmul_t(x.as_tensor(), w.as_tensor()).unwrap();
        let g = loss(&y, 99).backward().unwrap();
        assert!(g.get(w.as_tensor()).is_none(), "no gradient for a frozen W");

        let (a, b) = (randn(&[70, 300], 23), randn(&[70, 300], 24));
        check(
            &[&a, &b],
            || swiglu_down_frozen(a.as_tensor(), b.as_tensor(), w.as_tensor()).unwrap(),
            || swiglu_down(a.as_tensor(), b.as_tensor(), w.as_tensor()).unwrap(),
            1e-5,
            "swiglu_down_frozen",
        );
        let y = swiglu_down_frozen(a.as_tensor(), b.as_tensor(), w.as_tensor()).unwrap();
        let g = loss(&y, 99).backward().unwrap();
        assert!(
            g.get(w.as_tensor()).is_none(),
            "no gradient for a frozen W_down"
        );
    }

    #[test]
    fn rope_matches_composed() {
        let (b, s, h, hd) = (2, 65, 3, 64);
        let x = randn(&[b, s, h, hd], 5);
        let cos = randn(&[b, s, hd / 2], 6);
        let sin = randn(&[b, s, hd / 2], 7);
        check(
            &[&x],
            || rope_bshd_to_bhsd(x.as_tensor(), cos.as_tensor(), sin.as_tensor()).unwrap(),
            || {
                let xt = x.as_tensor().transpose(1, 2).unwrap().contiguous().unwrap();
                crate::llama::ops::rope(
                    &xt,
                    cos.as_tensor(),
                    sin.as_tensor(),
                    crate::llama::Mode::Train,
                )
                .unwrap()
            },
            1e-5,
            "rope",
        );
    }

    #[test]
    fn causal_softmax_matches_masked_softmax() {
        // [b=2, groups=2, rep·s = 2·4, kv = 4]: rows cycle through positions 0..4.
        let (s, kv) = (100, 100);
        let x = randn(&[2, 2, 2 * s, kv], 8);
        let mask: Vec<f32> = (0..2 * s)
            .flat_map(|r| (0..kv).map(move |j| if j <= r % s { 0.0 } else { -1e9 }))
            .collect();
        let mask = Tensor::from_vec(mask, (2 * s, kv), &Device::Cpu).unwrap();
        check(
            &[&x],
            || causal_softmax(x.as_tensor(), 0.5, s).unwrap(),
            || {
                let z = (x.as_tensor() * 0.5).unwrap().broadcast_add(&mask).unwrap();
                candle_nn::ops::softmax(&z, D::Minus1).unwrap()
            },
            1e-5,
            "causal_softmax",
        );
        // Masked probabilities are exactly zero: row 0 sees only key 0.
        let y = causal_softmax(x.as_tensor(), 0.5, s).unwrap();
        let row0 = y
            .flatten_to(2)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(row0[0], 1.0);
        assert!(row0[1..].iter().all(|&p| p == 0.0));
    }

    #[test]
    fn causal_softmax_with_cached_keys() {
        // 2 new queries after 3 cached keys: they sit at positions 3 and 4 of 5.
        let x = randn(&[1, 2, 5], 9);
        let y = causal_softmax(x.as_tensor(), 1.0, 2).unwrap();
        let y = y.flatten_to(1).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y[0][4], 0.0);
        assert!(y[0][3] > 0.0 && y[1][4] > 0.0);
        let s: f32 = y[1].iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
    }

    #[test]
    fn frozen_head_logps_matches_the_head_then_target_logps_across_chunks() {
        // 600 rows: three chunks, the last partial.
        let h = randn(&[600, 24], 11);
        let w = randn(&[300, 24], 12).as_tensor().detach();
        let ids: Vec<u32> = (0..600u32).map(|i| (i * 577) % 300).collect();
        let t = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
        check(
            &[&h],
            || frozen_head_logps(h.as_tensor(), &w, &t).unwrap(),
            || {
                let logits = h.as_tensor().matmul(&w.t().unwrap()).unwrap();
                target_logps(&logits, &t).unwrap()
            },
            1e-5,
            "frozen_head_logps",
        );
    }

    #[test]
    fn target_logps_matches_composed_and_hand_value() {
        // 40 rows × 2000: large enough to run on several threads.
        let logits = randn(&[40, 2000], 10);
        let ids: Vec<u32> = (0..41u32).map(|i| (i * 577) % 2000).collect();
        let t = Tensor::new(&ids[1..], &Device::Cpu).unwrap();
        check(
            &[&logits],
            || target_logps(logits.as_tensor(), &t).unwrap(),
            || {
                let l = logits.as_tensor().unsqueeze(0).unwrap();
                let ids = Tensor::new(ids.as_slice(), &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                crate::scoring::target_logps(&l, &ids)
                    .unwrap()
                    .squeeze(0)
                    .unwrap()
            },
            1e-5,
            "target_logps",
        );
        // Hand value: uniform logits over 4 classes → ln(1/4).
        let u = Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[2u32], &Device::Cpu).unwrap();
        let v = target_logps(&u, &t).unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((v - (0.25f32).ln()).abs() < 1e-6);
        // Out-of-vocabulary target: an error, not a read past the row.
        let bad = Tensor::new(&[4u32], &Device::Cpu).unwrap();
        let e = target_logps(&u, &bad).unwrap_err().to_string();
        assert!(e.contains("outside the vocabulary"), "{e}");
    }
}
