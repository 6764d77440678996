//! Unit tests of schema validation.
