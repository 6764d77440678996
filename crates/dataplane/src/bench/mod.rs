//! Datapath benchmark (in progress).
