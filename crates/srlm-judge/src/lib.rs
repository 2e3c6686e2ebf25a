//! srlm-judge (stub).
