//! Renderers of [`crate::metrics::families`]: Prometheus text exposition and OTLP protobuf.

pub mod otlp;
pub mod prometheus;
