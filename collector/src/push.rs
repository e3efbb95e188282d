//! Pushes OTLP/HTTP protobuf to a receiver every push interval. While the endpoint is down,
//! batches wait in a bounded queue (the oldest dropped first) and sends are retried with
//! exponential backoff, so an outage costs bounded memory and loses only the oldest samples.

use crate::export::otlp::{self, ResourceIdentity};
use crate::metrics;
use crate::server::Latest;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct PushSettings {
    pub url: String,
    pub interval: Duration,
    pub identity: ResourceIdentity,
    pub queue_batches: usize,
    /// Sent with every push besides Content-Type (a receiver's token); checked by
    /// [`crate::config::check_header`] when the config was read, never printed.
    pub headers: Vec<(String, String)>,
}

/// The OTLP/HTTP metrics URL: a base endpoint gets `/v1/metrics` appended, as
/// OTEL_EXPORTER_OTLP_ENDPOINT does; a URL already ending in it is used as given.
pub fn metrics_url(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    if e.starts_with("https://") {
        return Err(format!(
            "{e}: TLS is not built into the collector (it stays small and static); send to a local OpenTelemetry Collector over http:// and let it forward with TLS"
        ));
    }
    if !e.starts_with("http://") {
        return Err(format!("{e}: the OTLP endpoint must be an http:// URL"));
    }
    if e.trim_end_matches('/').ends_with("/v1/metrics") {
        Ok(e.trim_end_matches('/').to_string())
    } else {
        Ok(format!("{}/v1/metrics", e.trim_end_matches('/')))
    }
}

/// A bounded FIFO of encoded batches.
#[derive(Debug, Default)]
pub struct Queue {
    batches: VecDeque<Vec<u8>>,
    capacity: usize,
    pub dropped: u64,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Queue { batches: VecDeque::new(), capacity: capacity.max(1), dropped: 0 }
    }

    pub fn push(&mut self, batch: Vec<u8>) {
        if self.batches.len() >= self.capacity {
            self.batches.pop_front();
            self.dropped += 1;
        }
        self.batches.push_back(batch);
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Sends queued batches in order until one fails.
    pub fn flush(&mut self, mut send: impl FnMut(&[u8]) -> Result<(), String>) -> Result<usize, String> {
        let mut sent = 0;
        while let Some(front) = self.batches.front() {
            send(front)?;
            self.batches.pop_front();
            sent += 1;
        }
        Ok(sent)
    }
}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
}

/// Runs forever on its own thread.
pub fn run(settings: PushSettings, latest: Arc<Latest>, start_unix_nano: u64) {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(SEND_TIMEOUT)).build().into();
    let send = |body: &[u8]| -> Result<(), String> {
        let mut post = agent.post(&settings.url).header("Content-Type", "application/x-protobuf");
        for (name, value) in &settings.headers {
            post = post.header(name, value);
        }
        post.send(body).map(|_| ()).map_err(|e| e.to_string())
    };
    let mut queue = Queue::new(settings.queue_batches);
    let mut last_pushed: Option<u64> = None;
    let mut backoff = Duration::ZERO;
    let mut retry_at: Option<Instant> = None;
    let mut failing = false;
    let mut next_tick = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + settings.interval;
            if let Some(p) = latest.get()
                && last_pushed != Some(p.snapshot.timestamp_unix_nano)
            {
                last_pushed = Some(p.snapshot.timestamp_unix_nano);
                let families = metrics::families(&p.snapshot);
                let req = otlp::request(&families, &settings.identity, p.snapshot.timestamp_unix_nano, start_unix_nano);
                queue.push(otlp::encode(&req));
            }
        }
        if !queue.is_empty() && retry_at.is_none_or(|t| Instant::now() >= t) {
            match queue.flush(send) {
                Ok(_) => {
                    if failing {
                        eprintln!("sysmon-collector: OTLP endpoint {} reachable again", settings.url);
                    }
                    (failing, backoff, retry_at) = (false, Duration::ZERO, None);
                }
                Err(e) => {
                    backoff = next_backoff(backoff);
                    retry_at = Some(Instant::now() + backoff);
                    if !failing {
                        eprintln!(
                            "sysmon-collector: OTLP push to {} failed: {e}; retrying with backoff, keeping at most {} batches",
                            settings.url, settings.queue_batches
                        );
                    }
                    failing = true;
                }
            }
        }
        let wake = retry_at.map_or(next_tick, |r| r.min(next_tick));
        std::thread::sleep(wake.saturating_duration_since(Instant::now()).max(Duration::from_millis(10)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(metrics_url("http://127.0.0.1:4318").unwrap(), "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(metrics_url("http://h:4318/v1/metrics/").unwrap(), "http://h:4318/v1/metrics");
        assert!(metrics_url("https://h").unwrap_err().contains("TLS"));
        assert!(metrics_url("h:4318").is_err());
    }

    #[test]
    fn queue_is_bounded_and_keeps_order() {
        let mut q = Queue::new(2);
        q.push(vec![1]);
        q.push(vec![2]);
        q.push(vec![3]);
        assert_eq!((q.len(), q.dropped), (2, 1));
        let mut seen = Vec::new();
        let r = q.flush(|b| {
            if b == [3] {
                return Err("down".into());
            }
            seen.push(b[0]);
            Ok(())
        });
        assert!(r.is_err());
        assert_eq!(seen, vec![2]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.flush(|_| Ok(())), Ok(1));
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(next_backoff(Duration::ZERO), MIN_BACKOFF);
        assert_eq!(next_backoff(Duration::from_secs(8)), Duration::from_secs(16));
        assert_eq!(next_backoff(Duration::from_secs(50)), MAX_BACKOFF);
    }
}
