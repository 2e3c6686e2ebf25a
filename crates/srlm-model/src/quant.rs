//! A frozen weight kept in its GGUF file's own quantized blocks ([`QWeight`]), multiplied
//! with f32 activations ([`qmatmul_t`]): the base of LoRA models at a fraction of the f32
//! memory (Q4_1: 20 bytes per 32 weights, 6.4× less), with **the f32 model's numbers**.
//!
//! srlm's f32 model of a GGUF file holds the blocks dequantized by candle (Q4_1:
//! w = q·d + m). This module multiplies with exactly those values: with many rows (training,
//! prefill, scoring) the weight is dequantized by candle per call (a transient `[out, in]` f32
//! matrix, a few MB for a projection) and multiplied by the same GEMM; with few rows (decoding)
//! an AVX-512 kernel dequantizes Q4_1 blocks in registers and accumulates in the order of
//! [`crate::skinny`]'s f32 kernel. Both give the f32 model's results bit for bit (tested).
//! Unlike candle's `QMatMul`, which quantizes the activations to Q8_1 and has no backward, the
//! op here is differentiable in `x` (dx = g · W, W dequantized per call); W gets no gradient.
//! CPU only.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{bail, CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor};
use std::sync::Arc;

/// A frozen `[rows, cols]` weight in GGML blocks along `cols`, on the CPU.
pub struct QWeight {
    q: QTensor,
    rows: usize,
    cols: usize,
}

impl std::fmt::Debug for QWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QWeight({:?}, [{}, {}])",
            self.q.dtype(),
            self.rows,
            self.cols
        )
    }
}

impl QWeight {
    /// Wraps a 2-D CPU `QTensor` (GGUF layout: `[rows, cols]` with blocks along `cols`).
    ///
    /// Errors: another rank, a device other than the CPU, or rows that are not whole blocks.
    pub fn new(q: QTensor) -> Result<Self> {
        let (rows, cols) = q.shape().dims2()?;
        if !matches!(q.device(), Device::Cpu) {
            bail!("a quantized base weight lives on the CPU");
        }
        if cols % q.dtype().block_size() != 0 {
            bail!(
                "{:?} rows of {cols} are not whole blocks of {}",
                q.dtype(),
                q.dtype().block_size()
            );
        }
        Ok(QWeight { q, rows, cols })
    }

    /// `(rows, cols)`, i.e. `[out, in]` in HF layout.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The GGML block type.
    pub fn dtype(&self) -> GgmlDType {
        self.q.dtype()
    }

    /// Bytes held.
    pub fn size_in_bytes(&self) -> usize {
        self.q.storage_size_in_bytes()
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.q.dtype().block_size() * self.q.dtype().type_size()
    }

    /// The weight as f32 `[rows, cols]` on the CPU: the values srlm's f32 model of the same
    /// file holds (candle's dequantization; Q4_1 by an AVX-512 loop computing the same
    /// `q·d + m` per element, checked equal bit for bit).
    pub fn dequantize(&self) -> Result<Tensor> {
        #[cfg(target_arch = "x86_64")]
        if self.q.dtype() == GgmlDType::Q4_1 && crate::skinny::available() {
            let q = self.q.data()?;
            let mut out = vec![0f32; self.rows * self.cols];
            let per_row = self.row_bytes();
            let cols = self.cols;
            let ptr = out.as_mut_ptr() as usize;
            candle_core::utils::barrier_pool().execute_chunked(self.rows, |range| {
                for r in range {
                    // SAFETY: AVX-512F detected; each row writes its own `cols` floats.
                    unsafe {
                        q4_1::dequantize_row(
                            &q[r * per_row..(r + 1) * per_row],
                            (ptr as *mut f32).add(r * cols),
                        )
                    };
                }
            });
            return Tensor::from_vec(out, (self.rows, self.cols), &Device::Cpu);
        }
        self.q.dequantize(&Device::Cpu)
    }

    /// The same weight with its rows reordered: row `i` of the result is row `order[i]` here
    /// (blocks lie within rows, so this moves bytes only).
    ///
    /// Errors: `order` is not a permutation of the rows.
    pub fn permute_rows(&self, order: &[usize]) -> Result<Self> {
        let mut seen = vec![false; self.rows];
        let permutation = order.len() == self.rows
            && order
                .iter()
                .all(|&r| r < self.rows && !std::mem::replace(&mut seen[r], true));
        if !permutation {
            bail!("not a permutation of {} rows", self.rows);
        }
        let data = self.q.data()?;
        let rb = self.row_bytes();
        let mut out = Vec::with_capacity(data.len());
        for &r in order {
            out.extend_from_slice(&data[r * rb..(r + 1) * rb]);
        }
        let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
            self.q.dtype(),
            &out,
            vec![self.rows, self.cols],
            &Device::Cpu,
        )?;
        QWeight::new(q)
    }
}

/// `x` `[n, in]` f32 · `w`ᵀ (`w` `[out, in]` quantized) → `[n, out]` f32, differentiable in `x`
/// only. `decode` (at most [`crate::skinny::MAX_ROWS`] rows, no gradient) runs the in-register
/// kernel where the f32 model runs [`crate::skinny`]; otherwise the dequantized weight goes
/// through the GEMM as the f32 model's does: the f32 model's numbers either way (see the
/// module doc). Errors: shapes that do not fit, `x` not on the CPU.
pub fn qmatmul_t(x: &Tensor, w: &Arc<QWeight>, decode: bool) -> Result<Tensor> {
    if !x.device().is_cpu() {
        bail!("a quantized base runs on the CPU only");
    }
    x.contiguous()?.apply_op1(QMatmulT {
        w: w.clone(),
        decode,
    })
}

struct QMatmulT {
    w: Arc<QWeight>,
    decode: bool,
}

impl CustomOp1 for QMatmulT {
    fn name(&self) -> &'static str {
        "srlm-qmatmul-t"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, k) = l.shape().dims2()?;
        let (out, k2) = self.w.dims();
        if k != k2 {
            bail!("srlm-qmatmul-t: x [{n}, {k}] and W [{out}, {k2}] do not fit");
        }
        let CpuStorage::F32(data) = s else {
            bail!("srlm-qmatmul-t: expected f32 activations");
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            bail!("srlm-qmatmul-t: input must be contiguous");
        };
        let x = &data[a..b];
        #[cfg(target_arch = "x86_64")]
        if self.decode
            && n <= crate::skinny::MAX_ROWS
            && self.w.dtype() == GgmlDType::Q4_1
            && crate::skinny::available()
        {
            let q = self.w.q.data()?;
            return Ok((
                CpuStorage::F32(q4_1::matmul_t(x, &q, n, out, k)),
                Shape::from((n, out)),
            ));
        }
        let xt = Tensor::from_slice(x, (n, k), &Device::Cpu)?;
        let y = xt.matmul(&self.w.dequantize()?.t()?)?;
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            Shape::from((n, out)),
        ))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(g.detach().matmul(&self.w.dequantize()?)?))
    }
}

/// Q4_1 blocks (llama.cpp's `block_q4_1`: f16 d, f16 m, 16 bytes of nibbles; element j is the
/// low nibble of byte j, element j + 16 its high nibble; w = q·d + m) times f32 rows.
#[cfg(target_arch = "x86_64")]
mod q4_1 {
    use std::arch::x86_64::*;

    const BLOCK: usize = 32;
    const BLOCK_BYTES: usize = 20;

    /// y `[m, n]` = x `[m, k]` · Wᵀ for W `[n, k]` in Q4_1 blocks `q`.
    pub(super) fn matmul_t(x: &[f32], q: &[u8], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        const CHUNK: usize = 64;
        let units = n.div_ceil(CHUNK);
        let out = y.as_mut_ptr() as usize;
        candle_core::utils::barrier_pool().execute_chunked(units, |range| {
            for u in range {
                let (j0, j1) = (u * CHUNK, n.min((u + 1) * CHUNK));
                // SAFETY: AVX-512F was detected by the caller; column ranges are disjoint.
                unsafe { tile_rows(x, q, out as *mut f32, m, n, k, j0, j1) };
            }
        });
        y
    }

    /// Dequantizes one block's 32 weights as two 16-lane halves, exactly as candle does:
    /// `(q as f32) * d + m` (a multiply, then an add; no fused multiply-add).
    #[target_feature(enable = "avx512f")]
    unsafe fn block(p: *const u8) -> (__m512, __m512) {
        unsafe {
            let d = half::f16::from_bits(u16::from_le_bytes([*p, *p.add(1)])).to_f32();
            let mn = half::f16::from_bits(u16::from_le_bytes([*p.add(2), *p.add(3)])).to_f32();
            let qs = _mm_loadu_si128(p.add(4) as *const __m128i);
            let low4 = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(qs, low4);
            let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low4);
            let (d, mn) = (_mm512_set1_ps(d), _mm512_set1_ps(mn));
            let f = |v: __m128i| {
                _mm512_add_ps(
                    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)), d),
                    mn,
                )
            };
            (f(lo), f(hi))
        }
    }

    /// Writes one row's `row.len() / 20 · 32` weights to `out`.
    ///
    /// # Safety
    /// AVX-512F must be available; `out` must hold the row's weights.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dequantize_row(row: &[u8], out: *mut f32) {
        for b in 0..row.len() / BLOCK_BYTES {
            unsafe {
                let (lo, hi) = block(row.as_ptr().add(b * BLOCK_BYTES));
                _mm512_storeu_ps(out.add(b * BLOCK), lo);
                _mm512_storeu_ps(out.add(b * BLOCK + 16), hi);
            }
        }
    }

    /// y[r, j] = ⟨x[r, :], w[j, :]⟩ for rows r < m and weight rows j in j0..j1. Each panel of
    /// 4 weight rows is dequantized once into an f32 buffer (L1-sized), then multiplied as
    /// `crate::skinny`'s f32 kernel multiplies: the same values accumulated in the same
    /// order, so the same results.
    ///
    /// # Safety
    /// AVX-512F must be available; `y` must point to an `m × n` buffer whose columns j0..j1
    /// no other thread writes; `x` is `m × k`, `q` holds `n` rows of `k / 32` blocks.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_rows(
        x: &[f32],
        q: &[u8],
        y: *mut f32,
        m: usize,
        n: usize,
        k: usize,
        j0: usize,
        j1: usize,
    ) {
        let row_bytes = k / BLOCK * BLOCK_BYTES;
        let chunks = k / 16;
        let mut panel = vec![0f32; 4 * k];
        let xp = x.as_ptr();
        let mut j = j0;
        while j < j1 {
            let jn = (j1 - j).min(4);
            // Rows past the panel's end repeat row j (a valid address); their sums are never
            // stored.
            for t in 0..4 {
                let src = j + if t < jn { t } else { 0 };
                unsafe {
                    dequantize_row(
                        &q[src * row_bytes..(src + 1) * row_bytes],
                        panel.as_mut_ptr().add(t * k),
                    )
                };
            }
            let wp = panel.as_ptr();
            let mut r = 0;
            while r < m {
                let rn = (m - r).min(4);
                let mut acc = [[_mm512_setzero_ps(); 4]; 4];
                let xrow = |t: usize| unsafe { xp.add((r + if t < rn { t } else { 0 }) * k) };
                let xr = [xrow(0), xrow(1), xrow(2), xrow(3)];
                for c in 0..chunks {
                    let o = c * 16;
                    let wv = [0, 1, 2, 3].map(|t| unsafe { _mm512_loadu_ps(wp.add(t * k + o)) });
                    let xv = xr.map(|p| unsafe { _mm512_loadu_ps(p.add(o)) });
                    for (a, wv) in acc.iter_mut().zip(wv) {
                        for (s, xv) in a.iter_mut().zip(xv) {
                            *s = _mm512_fmadd_ps(wv, xv, *s);
                        }
                    }
                }
                for (tj, a) in acc.iter().enumerate().take(jn) {
                    for (tr, s) in a.iter().enumerate().take(rn) {
                        // SAFETY: (r + tr, j + tj) is inside y and in this thread's columns.
                        unsafe { *y.add((r + tr) * n + j + tj) = _mm512_reduce_add_ps(*s) };
                    }
                }
                r += 4;
            }
            j += 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn q4_1(rows: usize, cols: usize) -> (Arc<QWeight>, Tensor) {
        let w = Tensor::randn(0f32, 0.5, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let qw = Arc::new(QWeight::new(q).unwrap());
        let deq = qw.dequantize().unwrap();
        (qw, deq)
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn few_and_many_rows_give_the_dequantized_weights_numbers_bit_for_bit() {
        for (m, k, n) in [
            (1, 576, 1536),
            (7, 64, 130),
            (33, 96, 9),
            (64, 32, 5),
            (65, 64, 7),
            (300, 576, 192),
        ] {
            let (qw, deq) = q4_1(n, k);
            let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
            // The f32 model's paths on the same values: the skinny kernel for decoding, the
            // GEMM otherwise.
            let decoded = qmatmul_t(&x, &qw, true).unwrap();
            let want = if m <= crate::skinny::MAX_ROWS {
                crate::skinny::matmul_t(&x, &deq).unwrap()
            } else {
                x.matmul(&deq.t().unwrap()).unwrap()
            };
            assert_eq!(bits(&decoded), bits(&want), "{m}x{k}x{n} decoding");
            let trained = qmatmul_t(&x, &qw, false).unwrap();
            let want = x.matmul(&deq.t().unwrap()).unwrap();
            assert_eq!(bits(&trained), bits(&want), "{m}x{k}x{n}");
        }
    }

    #[test]
    fn the_fast_dequantization_is_candles_bit_for_bit() {
        let (qw, deq) = q4_1(70, 96);
        assert_eq!(bits(&deq), bits(&qw.q.dequantize(&Device::Cpu).unwrap()));
    }

    #[test]
    fn the_input_gradient_is_g_times_the_dequantized_weight() {
        let (qw, deq) = q4_1(48, 64);
        let x = candle_core::Var::from_tensor(
            &Tensor::randn(0f32, 1.0, (5, 64), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let g = Tensor::randn(0f32, 1.0, (5, 48), &Device::Cpu).unwrap();
        let loss = (qmatmul_t(x.as_tensor(), &qw, false).unwrap() * &g)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let dx = grads.get(x.as_tensor()).unwrap();
        assert_eq!(bits(dx), bits(&g.matmul(&deq).unwrap()));
    }

    #[test]
    fn rows_permute_as_bytes_and_bad_input_is_refused() {
        let (qw, deq) = q4_1(4, 64);
        let p = qw.permute_rows(&[2, 0, 3, 1]).unwrap();
        let pd = p.dequantize().unwrap();
        for (i, r) in [2usize, 0, 3, 1].into_iter().enumerate() {
            assert_eq!(bits(&pd.get(i).unwrap()), bits(&deq.get(r).unwrap()));
        }
        assert!(qw.permute_rows(&[0, 0, 1, 2]).is_err());
        assert!(qw.permute_rows(&[0, 1, 2]).is_err());
        let x = Tensor::zeros((2, 32), DType::F32, &Device::Cpu).unwrap();
        assert!(qmatmul_t(&x, &qw, false).is_err(), "in 32 against 64");
        assert_eq!(qw.size_in_bytes(), 4 * 2 * 20);
    }
}
