//! `x · Wᵀ` for few rows (decoding): `x` `[m, k]` with m ≤ [`MAX_ROWS`], `W` `[n, k]` in its
//! stored (HF, row-major) layout, f32, CPU, no gradient.
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

/// `x` `[m, k]` · `w` `[n, k]`ᵀ → `[m, n]` f32, detached (inference only). Uses the kernel when
/// m ≤ [`MAX_ROWS`], both are f32 on the CPU and AVX-512 is there; otherwise
/// `x.matmul(w.t())`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, k2) = w.dims2()?;
    let usable = m <= MAX_ROWS
        && k == k2
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && available();
    if !usable {
        return x.matmul(&w.t()?);
    }
    let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let w = w.contiguous()?;
    let (storage, layout) = w.storage_and_layout();
    let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(wdata)) = &*storage else {
        return x.matmul(&w.t()?);
    };
    let (a, b) = layout
        .contiguous_offsets()
        .expect("contiguous weight has offsets");
    let wv = &wdata[a..b];
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
                avx512::tile_rows(&xv, wv, out as *mut f32, m, n, k, j0, j1)
            };
        }
    });
    Tensor::from_vec(y, (m, n), &Device::Cpu)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// y[r, j] = ⟨x[r, :], w[j, :]⟩ for every row r < m and weight row j in j0..j1.
    ///
    /// # Safety
    /// AVX-512F must be available; `y` must point to an `m × n` buffer whose columns j0..j1
    /// no other thread writes; `x` is `m × k`, `w` is `n × k`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_rows(
        x: &[f32],
        w: &[f32],
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
                            _mm512_loadu_ps(w0.add(o)),
                            _mm512_loadu_ps(w1.add(o)),
                            _mm512_loadu_ps(w2.add(o)),
                            _mm512_loadu_ps(w3.add(o)),
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
                            _mm512_maskz_loadu_ps(mask, w0.add(o)),
                            _mm512_maskz_loadu_ps(mask, w1.add(o)),
                            _mm512_maskz_loadu_ps(mask, w2.add(o)),
                            _mm512_maskz_loadu_ps(mask, w3.add(o)),
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
            let got = matmul_t(&x, &w).unwrap().to_vec2::<f32>().unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
            for (gr, wr) in got.iter().zip(&want) {
                for (g, v) in gr.iter().zip(wr) {
                    assert!(
                        (g - v).abs() <= 1e-4 * (1.0 + v.abs()),
                        "{m}x{k}x{n}: {g} vs {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn falls_back_above_max_rows() {
        let dev = Device::Cpu;
        let x = Tensor::ones((MAX_ROWS + 1, 8), DType::F32, &dev).unwrap();
        let w = Tensor::ones((3, 8), DType::F32, &dev).unwrap();
        let y = matmul_t(&x, &w).unwrap();
        assert_eq!(y.dims(), &[MAX_ROWS + 1, 3]);
        assert_eq!(y.to_vec2::<f32>().unwrap()[MAX_ROWS][2], 8.0);
    }
}
