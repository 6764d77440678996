//! The daemons' command lines and wiring: each module turns parsed options into a validated
//! configuration, builds its clients and drivers, and runs its controllers until a signal.

pub mod gateway;
pub mod network_manager;
pub mod route_agent;
pub mod telemetry;
