//! Read-only inspection commands: they read the cluster's resources and this node's kernel and
//! report; they never change either.

pub mod diagnose;
