//! ServiceRadar's sysmon-vm checker payload, built from a [`Snapshot`]: the JSON document its
//! agent stores from `GetStatus` (`StatusResponse.message`), field for field as ServiceRadar's Go
//! checker marshals it (`collector/tests/fixtures/serviceradar/` holds the struct fields it is
//! checked against). Our own per-CPU fields (`frequency_source`, `frequency_note`,
//! `counter_rate_hz`) ride beside ServiceRadar's; a CPU without a frequency omits `frequency_hz`
//! (the Go struct's `omitempty`), so ServiceRadar stores no value rather than a made-up one.

use crate::grpc::proto::{StatusRequest, StatusResponse};
use crate::server::Published;
use crate::snapshot::Snapshot;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// The guest's address as the Go checker reports it (`host_ip`): the first IPv4 address of an
/// interface that is up, not loopback and not a container bridge. Looked up again at most once
/// a minute, so a call never waits on it.
#[derive(Default)]
pub struct HostIp {
    cached: Option<(Instant, String)>,
}

impl HostIp {
    pub fn get(&mut self) -> String {
        match &self.cached {
            Some((at, ip)) if at.elapsed() < Duration::from_secs(60) => ip.clone(),
            _ => {
                let ip = first_usable_ipv4().unwrap_or_else(|| "unknown".into());
                self.cached = Some((Instant::now(), ip.clone()));
                ip
            }
        }
    }
}

/// Interface names the Go checker skips (Docker's bridges and veths).
fn skipped(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("docker") || n.starts_with("br-") || n.starts_with("veth")
}

fn first_usable_ipv4() -> Option<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let flags = ifa.ifa_flags as libc::c_int;
        if ifa.ifa_addr.is_null() || flags & libc::IFF_UP == 0 || flags & libc::IFF_LOOPBACK != 0 {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of its family.
        if unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int != libc::AF_INET {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        if skipped(&name) {
            continue;
        }
        // SAFETY: the family is AF_INET, so the address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        let docker = ip.octets()[0] == 172 && (17..=19).contains(&ip.octets()[1]);
        if ip.is_unspecified() || ip.is_link_local() || ip.is_broadcast() || ip.is_multicast() || docker {
            continue;
        }
        found = Some(ip.to_string());
        break;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// The `status` document: `timestamp`, `host_id`, `host_ip`, `cpus`, `clusters` (omitted when
/// empty), `disks` (`[]`), `memory`, `processes` (`[]`).
pub fn status(snapshot: &Snapshot, host_ip: &str, agent_id: &str) -> Value {
    let host_id = snapshot.host.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| "unknown-host".into());
    let ts = snapshot.timestamp.clone();
    let ids = |m: &mut Map<String, Value>| {
        m.insert("timestamp".into(), json!(ts));
        // omitempty in the Go structs: an empty string is left out.
        for (k, v) in [("host_id", host_id.as_str()), ("host_ip", host_ip), ("agent_id", agent_id)] {
            if !v.is_empty() {
                m.insert(k.into(), json!(v));
            }
        }
    };
    let mut cpus = Vec::with_capacity(snapshot.cpus.len());
    for c in &snapshot.cpus {
        let mut m = Map::new();
        m.insert("core_id".into(), json!(i32::try_from(c.logical_number).unwrap_or(i32::MAX)));
        m.insert("label".into(), json!(c.cpu));
        if let Some(p) = c.policy.as_deref().filter(|p| !p.is_empty()) {
            m.insert("cluster".into(), json!(p));
        }
        m.insert("usage_percent".into(), json!(c.usage.map_or(0.0, |u| u.usage_pct)));
        if let Some(hz) = c.frequency_hz.filter(|hz| hz.is_finite() && *hz > 0.0) {
            m.insert("frequency_hz".into(), json!(hz));
        }
        ids(&mut m);
        m.insert("frequency_source".into(), json!(c.frequency_source.as_str()));
        if let Some(note) = &c.frequency_note {
            m.insert("frequency_note".into(), json!(note));
        }
        if let Some(rate) = c.counter_rate_hz {
            m.insert("counter_rate_hz".into(), json!(rate));
        }
        cpus.push(Value::Object(m));
    }
    // A cluster per cpufreq policy, with the mean of its CPUs' frequencies; only where every
    // CPU of it has one (the Go struct's frequency_hz is not omitempty, and 0 would be a lie).
    let mut clusters: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for c in &snapshot.cpus {
        let Some(p) = c.policy.clone().filter(|p| !p.is_empty()) else { continue };
        match clusters.iter_mut().find(|(n, _)| *n == p) {
            Some((_, v)) => v.push(c.frequency_hz),
            None => clusters.push((p, vec![c.frequency_hz])),
        }
    }
    let clusters: Vec<Value> = clusters
        .into_iter()
        .filter_map(|(name, f)| {
            let f: Option<Vec<f64>> = f.into_iter().collect();
            let f = f.filter(|f| !f.is_empty())?;
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            m.insert("frequency_hz".into(), json!(f.iter().sum::<f64>() / f.len() as f64));
            ids(&mut m);
            Some(Value::Object(m))
        })
        .collect();
    let mut memory = Map::new();
    memory.insert("used_bytes".into(), json!(snapshot.memory.used_bytes.unwrap_or(0)));
    memory.insert("total_bytes".into(), json!(snapshot.memory.total_bytes.unwrap_or(0)));
    ids(&mut memory);
    let mut status = Map::new();
    status.insert("timestamp".into(), json!(snapshot.timestamp));
    status.insert("host_id".into(), json!(host_id));
    status.insert("host_ip".into(), json!(host_ip));
    status.insert("cpus".into(), Value::Array(cpus));
    if !clusters.is_empty() {
        status.insert("clusters".into(), Value::Array(clusters));
    }
    status.insert("disks".into(), json!([]));
    status.insert("memory".into(), Value::Object(memory));
    status.insert("processes".into(), json!([]));
    Value::Object(status)
}

fn nanos_since(start: Instant) -> i64 {
    i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// The whole `GetStatus` answer: the message document (`available`, `response_time` in ns,
/// `status`; or `available: false` with `error` before the first sample) and the echoed fields.
pub fn status_response(
    latest: Option<&Published>,
    request: &StatusRequest,
    host_ip: &str,
    start: Instant,
) -> StatusResponse {
    let (available, message) = match latest {
        Some(p) => {
            let status = status(&p.snapshot, host_ip, &request.agent_id);
            (true, json!({"available": true, "response_time": nanos_since(start), "status": status}))
        }
        None => (false, json!({"available": false, "response_time": nanos_since(start), "error": "no sample yet"})),
    };
    StatusResponse {
        available,
        message: serde_json::to_vec(&message).unwrap_or_default(),
        service_name: request.service_name.clone(),
        service_type: request.service_type.clone(),
        response_time: nanos_since(start),
        agent_id: request.agent_id.clone(),
        poller_id: request.poller_id.clone(),
    }
}
