//! [`KvCache`]: the keys and values of every layer kept between incremental decoding steps
//! ([`super::Llama::forward_cached`]), with the row selection sampling uses to expand a prompt
//! into K rows and to drop finished rows.

use crate::error::Result;
use candle_core::Tensor;

/// Per-layer key/value cache for incremental decoding. Tensors are
/// `[batch, num_key_value_heads, cached_len, head_dim]`, f32.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// One `(keys, values)` per layer, `None` until the first step (filled by
    /// [`super::Llama::forward_cached`]).
    pub(super) layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// Number of cached positions (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the batch rows listed in `rows` (in that order, repeats allowed): used to expand
    /// one prefilled prompt into K sample rows, and to drop finished rows.
    pub fn select_rows(&self, rows: &[u32]) -> Result<KvCache> {
        let Some(first) = self.layers.first().and_then(|l| l.as_ref()) else {
            return Ok(self.clone());
        };
        let idx = Tensor::new(rows, first.0.device())?;
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((k.index_select(&idx, 0)?, v.index_select(&idx, 0)?))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers })
    }
}
