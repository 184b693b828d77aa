//! (placeholder: the launcher test module)
