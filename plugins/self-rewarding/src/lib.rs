//! Strategy plugin `self-rewarding` (stub).
