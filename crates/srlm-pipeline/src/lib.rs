//! srlm-pipeline (stub).
