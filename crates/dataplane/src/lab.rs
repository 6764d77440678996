//! Namespace lab (in progress).
