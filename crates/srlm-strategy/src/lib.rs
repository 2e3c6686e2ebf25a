//! srlm-strategy (stub).
