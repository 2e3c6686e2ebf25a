//! srlm-dpo (stub).
