//! OTLP metrics as protobuf (`ExportMetricsServiceRequest`), for OTLP/HTTP `POST /v1/metrics`.

use crate::metrics::{Family, Kind, LabelValue};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// Resource attributes identifying where the metrics come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceIdentity {
    pub service_name: String,
    pub host_id: Option<String>,
    pub vm_id: Option<String>,
    pub host_name: Option<String>,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn text(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

/// Builds the request. `time_unix_nano` is when the readings were taken (not when they are sent),
/// so a receiver can measure end-to-end latency; `start_unix_nano` starts the cumulative counters.
pub fn request(
    families: &[Family],
    id: &ResourceIdentity,
    time_unix_nano: u64,
    start_unix_nano: u64,
) -> ExportMetricsServiceRequest {
    let mut attributes =
        vec![text("service.name", &id.service_name), text("service.version", env!("CARGO_PKG_VERSION"))];
    if let Some(h) = &id.host_id {
        attributes.push(text("host.id", h));
    }
    if let Some(h) = &id.host_name {
        attributes.push(text("host.name", h));
    }
    if let Some(v) = &id.vm_id {
        attributes.push(text("vm.id", v));
    }
    let metrics = families
        .iter()
        .map(|f| {
            let points: Vec<NumberDataPoint> = f
                .points
                .iter()
                .map(|p| NumberDataPoint {
                    attributes: p
                        .labels
                        .iter()
                        .map(|l| match &l.value {
                            LabelValue::Str(s) => text(l.otel, s),
                            LabelValue::Int(i) => kv(l.otel, any_value::Value::IntValue(*i)),
                        })
                        .collect(),
                    start_time_unix_nano: if f.kind == Kind::Counter { start_unix_nano } else { 0 },
                    time_unix_nano,
                    value: Some(number_data_point::Value::AsDouble(p.value)),
                    ..Default::default()
                })
                .collect();
            let data = match f.kind {
                Kind::Gauge => metric::Data::Gauge(Gauge { data_points: points }),
                Kind::Counter => metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            };
            Metric {
                name: f.otel_name.to_string(),
                description: f.help.to_string(),
                unit: f.unit.to_string(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes, ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "sysmon-collector".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn encode(req: &ExportMetricsServiceRequest) -> Vec<u8> {
    req.encode_to_vec()
}

/// What a receiver needs from an encoded request to measure delivery: the newest data-point time
/// (when the readings were taken) and the metric names. Errors on bytes that are not a request.
pub fn summarize(body: &[u8]) -> Result<(Option<u64>, Vec<String>), prost::DecodeError> {
    let req = ExportMetricsServiceRequest::decode(body)?;
    let mut newest = None;
    let mut names = Vec::new();
    for m in req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
        names.push(m.name.clone());
        let times: Vec<u64> = match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.iter().map(|p| p.time_unix_nano).collect(),
            Some(metric::Data::Sum(s)) => s.data_points.iter().map(|p| p.time_unix_nano).collect(),
            _ => Vec::new(),
        };
        newest = times.into_iter().chain(newest).max();
    }
    Ok((newest, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_reads_back_the_newest_reading_time_and_refuses_garbage() {
        let point = |t| NumberDataPoint { time_unix_nano: t, ..Default::default() };
        let gauge = Metric {
            name: "system.cpu.frequency".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(5), point(7)] })),
            ..Default::default()
        };
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![gauge], ..Default::default() }],
                ..Default::default()
            }],
        };
        assert_eq!(summarize(&encode(&req)).unwrap(), (Some(7), vec!["system.cpu.frequency".to_string()]));
        assert_eq!(summarize(&[]).unwrap(), (None, vec![]));
        assert!(summarize(&[0xff, 0xff, 0xff]).is_err());
    }
}
