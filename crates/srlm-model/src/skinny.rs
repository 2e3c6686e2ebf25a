//! `x · Wᵀ` for few rows (decoding): `x` `[m, k]` f32 with m ≤ [`MAX_ROWS`], `W` `[n, k]` in its
//! stored (HF, row-major) layout, f32 or bf16 (a frozen LoRA base), CPU, no gradient.
//!
//! A general GEMM packs both operands into panels on every call; when `x` has a handful of rows
//! (one per sequence being sampled) packing the weight matrix costs more than the arithmetic:
//! on the default model it was ~40% of a 32-row decoding step. This kernel streams `W` once, in
//! place, and keeps `x` in cache: each 4 × 4 tile of (weight rows × x rows) accumulates 16 dot
//! products in AVX-512 registers. Machines without AVX-512 (and other devices) use candle's
//! matmul instead; a test checks both agree.

use candle_core::{DType, Device, Result, Tensor};

/// Most rows the kernel is used for; above it the GEMM's packing pays off.
pub const MAX_ROWS: usize = 64;

/// Whether this machine runs the kernel (x86-64 with AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` `[m, k]` f32 · `w` `[n, k]`ᵀ (f32 or bf16) → `[m, n]` f32, detached (inference only).
/// Uses the kernel when m ≤ [`MAX_ROWS`], both are on the CPU and AVX-512 is there; otherwise
/// candle's matmul (see `general`).
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, k2) = w.dims2()?;
    let usable = m <= MAX_ROWS
        && k == k2
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && matches!(w.dtype(), DType::F32 | DType::BF16)
        && available();
    if !usable || cfg!(not(target_arch = "x86_64")) {
        return general(x, w);
    }
    #[cfg(target_arch = "x86_64")]
    return skinny(x, w, m, n, k);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the kernel is x86-64 only")
}

#[cfg(target_arch = "x86_64")]
fn skinny(x: &Tensor, w: &Tensor, m: usize, n: usize, k: usize) -> Result<Tensor> {
    let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let w = w.contiguous()?;
    let (storage, layout) = w.storage_and_layout();
    let (a, b) = layout
        .contiguous_offsets()
        .expect("contiguous weight has offsets");
    let y = match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(wdata)) => {
            run(&xv, &wdata[a..b], m, n, k)
        }
        candle_core::Storage::Cpu(candle_core::CpuStorage::BF16(wdata)) => {
            run(&xv, &wdata[a..b], m, n, k)
        }
        _ => return general(x, &w),
    };
    Tensor::from_vec(y, (m, n), &Device::Cpu)
}

/// `x · wᵀ` by candle's matmul, for shapes, dtypes or devices the kernel does not take: a bf16
/// `w` (a frozen base) multiplies `x` widened on the CPU (where candle has no bf16 GEMM), and
/// `x` rounded to bf16 elsewhere (cuBLAS's bf16 GEMM); the result is f32.
fn general(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    match (w.dtype(), x.device().is_cpu()) {
        (DType::F32, _) => x.matmul(&w.t()?),
        (_, true) => x.matmul(&w.to_dtype(DType::F32)?.t()?),
        (dt, false) => x.to_dtype(dt)?.matmul(&w.t()?)?.to_dtype(DType::F32),
    }
}

/// The kernel over a weight of f32 or bf16 elements.
#[cfg(target_arch = "x86_64")]
fn run<E: avx512::WeightElem>(xv: &[f32], wv: &[E], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    // Threads split the weight rows; each writes its own columns of y.
    const CHUNK: usize = 64;
    let units = n.div_ceil(CHUNK);
    let out = y.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(units, |range| {
        for u in range {
            let (j0, j1) = (u * CHUNK, n.min((u + 1) * CHUNK));
            // SAFETY: AVX-512F was detected (`available`); column ranges are disjoint.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx512::tile_rows(xv, wv, out as *mut f32, m, n, k, j0, j1)
            };
        }
    });
    y
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// A weight element type the kernel streams: 16 consecutive elements load as 16 f32 lanes.
    pub(super) trait WeightElem: Copy + Sync {
        /// Loads `p[0..16]` as f32.
        ///
        /// # Safety
        /// AVX-512F must be available and `p[0..16]` readable.
        unsafe fn load16(p: *const Self) -> __m512;
        /// Loads `p[0..rem]` as f32, zeros after (rem < 16).
        ///
        /// # Safety
        /// AVX-512F must be available and `p[0..rem]` readable.
        unsafe fn load_tail(p: *const Self, rem: usize) -> __m512;
    }

    impl WeightElem for f32 {
        #[inline(always)]
        unsafe fn load16(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_tail(p: *const f32, rem: usize) -> __m512 {
            unsafe { _mm512_maskz_loadu_ps(((1u32 << rem) - 1) as __mmask16, p) }
        }
    }

    /// bf16 is the upper half of an f32: widening is a 16-bit shift, so a bf16 weight streams
    /// half the bytes of an f32 one.
    impl WeightElem for half::bf16 {
        #[inline(always)]
        unsafe fn load16(p: *const half::bf16) -> __m512 {
            unsafe {
                let h = _mm256_loadu_si256(p as *const __m256i);
                _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
            }
        }
        #[inline(always)]
        unsafe fn load_tail(p: *const half::bf16, rem: usize) -> __m512 {
            let mut buf = [half::bf16::ZERO; 16];
            // SAFETY: p[0..rem] is readable (caller), buf holds 16.
            unsafe {
                std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), rem);
                Self::load16(buf.as_ptr())
            }
        }
    }

    /// y[r, j] = ⟨x[r, :], w[j, :]⟩ for every row r < m and weight row j in j0..j1.
    ///
    /// # Safety
    /// AVX-512F must be available; `y` must point to an `m × n` buffer whose columns j0..j1
    /// no other thread writes; `x` is `m × k`, `w` is `n × k`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_rows<E: WeightElem>(
        x: &[f32],
        w: &[E],
        y: *mut f32,
        m: usize,
        n: usize,
        k: usize,
        j0: usize,
        j1: usize,
    ) {
        let full = k / 16;
        let rem = k % 16;
        let mask: __mmask16 = ((1u32 << rem) - 1) as __mmask16;
        let xp = x.as_ptr();
        let wp = w.as_ptr();
        let mut j = j0;
        while j < j1 {
            let jn = (j1 - j).min(4);
            let mut r = 0;
            while r < m {
                let rn = (m - r).min(4);
                let mut acc = [[_mm512_setzero_ps(); 4]; 4];
                // Rows past the tile's end read row 0 again (a valid address); their sums
                // are never stored.
                let wrow = |t: usize| unsafe { wp.add((j + if t < jn { t } else { 0 }) * k) };
                let xrow = |t: usize| unsafe { xp.add((r + if t < rn { t } else { 0 }) * k) };
                let (w0, w1, w2, w3) = (wrow(0), wrow(1), wrow(2), wrow(3));
                let (x0, x1, x2, x3) = (xrow(0), xrow(1), xrow(2), xrow(3));
                for c in 0..full {
                    let o = c * 16;
                    let wv = unsafe {
                        [
                            E::load16(w0.add(o)),
                            E::load16(w1.add(o)),
                            E::load16(w2.add(o)),
                            E::load16(w3.add(o)),
                        ]
                    };
                    let xv = unsafe {
                        [
                            _mm512_loadu_ps(x0.add(o)),
                            _mm512_loadu_ps(x1.add(o)),
                            _mm512_loadu_ps(x2.add(o)),
                            _mm512_loadu_ps(x3.add(o)),
                        ]
                    };
                    for (a, wv) in acc.iter_mut().zip(wv) {
                        for (s, xv) in a.iter_mut().zip(xv) {
                            *s = _mm512_fmadd_ps(wv, xv, *s);
                        }
                    }
                }
                if rem > 0 {
                    let o = full * 16;
                    let wv = unsafe {
                        [
                            E::load_tail(w0.add(o), rem),
                            E::load_tail(w1.add(o), rem),
                            E::load_tail(w2.add(o), rem),
                            E::load_tail(w3.add(o), rem),
                        ]
                    };
                    let xv = unsafe {
                        [
                            _mm512_maskz_loadu_ps(mask, x0.add(o)),
                            _mm512_maskz_loadu_ps(mask, x1.add(o)),
                            _mm512_maskz_loadu_ps(mask, x2.add(o)),
                            _mm512_maskz_loadu_ps(mask, x3.add(o)),
                        ]
                    };
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

    #[test]
    fn matches_candle_matmul_on_awkward_shapes() {
        let dev = Device::Cpu;
        // m not a multiple of 4, n not a multiple of 4 or of the thread chunk, k with a tail.
        for (m, k, n) in [
            (1, 576, 1536),
            (7, 37, 130),
            (32, 576, 192),
            (64, 16, 5),
            (3, 1, 9),
        ] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            // A bf16 weight (a frozen base) against f32 math on the same, widened, values.
            let w16 = w.to_dtype(DType::BF16).unwrap();
            let w16_wide = w16.to_dtype(DType::F32).unwrap();
            for (w, w_f32) in [(&w, &w), (&w16, &w16_wide)] {
                let got = matmul_t(&x, w).unwrap().to_vec2::<f32>().unwrap();
                let want = x.matmul(&w_f32.t().unwrap()).unwrap();
                for (gr, wr) in got.iter().zip(&want.to_vec2::<f32>().unwrap()) {
                    for (g, v) in gr.iter().zip(wr) {
                        assert!(
                            (g - v).abs() <= 1e-4 * (1.0 + v.abs()),
                            "{m}x{k}x{n} {:?}: {g} vs {v}",
                            w.dtype()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn falls_back_above_max_rows() {
        let dev = Device::Cpu;
        let x = Tensor::ones((MAX_ROWS + 1, 8), DType::F32, &dev).unwrap();
        let w = Tensor::ones((3, 8), DType::F32, &dev).unwrap();
        for w in [w.clone(), w.to_dtype(DType::BF16).unwrap()] {
            let y = matmul_t(&x, &w).unwrap();
            assert_eq!(y.dims(), &[MAX_ROWS + 1, 3]);
            assert_eq!(y.to_vec2::<f32>().unwrap()[MAX_ROWS][2], 8.0);
        }
    }
}
