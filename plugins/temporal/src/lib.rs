//! Strategy plugin `temporal` (stub).
