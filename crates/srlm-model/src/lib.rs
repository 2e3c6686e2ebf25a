//! srlm-model (stub).
