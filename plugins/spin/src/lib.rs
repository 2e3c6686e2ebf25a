//! Strategy plugin `spin` (stub).
