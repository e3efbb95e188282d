//! sysmon-collector: the guest agent of sysmonvm. See `collector/README.md` for the metrics and
//! what each frequency source means inside a VM, and `collector/SCHEMA.md` for the JSON.
//!
//! Data flow: [`roots::Roots`] says where files are → one reader per [`source::Source`] ([`cpu`],
//! [`frequency`], [`memory`], [`disk`], [`network`], [`filesystems`], [`thermal`], [`containers`],
//! [`host`]), each over the pure [`parse`] functions → [`sampler::Sampler`] runs and times them and
//! turns two readings into a [`snapshot::Snapshot`] with each source's success and duration →
//! [`metrics::families`] defines every metric once, per source → exporters render Prometheus text
//! ([`export::prometheus`]) and OTLP ([`export::otlp`]).

pub mod config;
pub mod container_view;
pub mod containers;
pub mod cpu;
pub mod disk;
pub mod export;
pub mod files;
pub mod filesystems;
pub mod frequency;
pub mod grpc;
pub mod host;
pub mod memory;
pub mod metrics;
pub mod network;
pub mod parse;
pub mod perf;
pub mod platform;
pub mod push;
pub mod roots;
pub mod sampler;
pub mod server;
pub mod serviceradar;
pub mod snapshot;
pub mod source;
pub mod thermal;
pub mod warnings;

pub use roots::Roots;
pub use sampler::{Sampler, SamplerOptions};
pub use snapshot::{FrequencySource, Snapshot, SourceStatus};
pub use source::Source;
