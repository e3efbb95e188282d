//! sysmon-collector against node_exporter, in the same run, on this machine: both serve over
//! 127.0.0.1, both are scraped alternately, both are measured from /proc/<pid>. The collector runs
//! with its gRPC endpoint on (ServiceRadar's monitoring.AgentService), and GetStatus is timed
//! against GET /v1/snapshot in the same run: each on a new connection per call (as the scrapes),
//! and GetStatus also on one kept connection (as ServiceRadar's agent keeps its channel).

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
/// node_exporter collectors comparable to what sysmon-collector reads.
const NODE_COLLECTORS: &[&str] = &[
    "cpu",
    "cpufreq",
    "meminfo",
    "loadavg",
    "diskstats",
    "netdev",
    "filesystem",
    "stat",
    "hwmon",
    "thermal_zone",
    "pressure",
];

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One HTTP GET with `Connection: close`; returns the time to the last byte and the body size.
fn scrape(port: u16) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::with_capacity(64 * 1024);
    s.read_to_end(&mut body)?;
    let took = start.elapsed();
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!("port {port}: {}", String::from_utf8_lossy(&body[..body.len().min(80)]));
    }
    Ok((took, body.len()))
}

/// GET /v1/snapshot with `Connection: close`: time to the last byte and the body size.
fn snapshot(port: u16) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"GET /v1/snapshot HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::with_capacity(64 * 1024);
    s.read_to_end(&mut body)?;
    let took = start.elapsed();
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!("/v1/snapshot on port {port}: {}", String::from_utf8_lossy(&body[..body.len().min(80)]));
    }
    Ok((took, body.len()))
}

/// A minimal blocking HTTP/2 client for one unary gRPC method: enough to time GetStatus
/// without a gRPC stack in the measurement.
struct Grpc {
    s: TcpStream,
    next_stream: u32,
    decoder: sysmon_collector::grpc::hpack::Decoder,
}

fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

impl Grpc {
    fn connect(port: u16) -> Result<Grpc> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // Windows of 1 GiB (stream and connection), so the kept connection never waits on one.
        let mut settings = 4u16.to_be_bytes().to_vec();
        settings.extend_from_slice(&(1u32 << 30).to_be_bytes());
        h2_frame(&mut hello, 4, 0, 0, &settings);
        h2_frame(&mut hello, 8, 0, 0, &((1u32 << 30) - 65_535).to_be_bytes());
        s.write_all(&hello)?;
        Ok(Grpc { s, next_stream: 1, decoder: sysmon_collector::grpc::hpack::Decoder::new(4096, 1 << 20) })
    }

    /// One GetStatus call; the StatusResponse's message size.
    fn get_status(&mut self) -> Result<usize> {
        use prost::Message;
        use sysmon_collector::grpc::{hpack, proto};
        let id = self.next_stream;
        self.next_stream += 2;
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        hpack::encode_literal(&mut block, ":path", proto::GET_STATUS);
        hpack::encode_literal(&mut block, ":authority", "127.0.0.1");
        hpack::encode_literal(&mut block, "content-type", "application/grpc");
        hpack::encode_literal(&mut block, "te", "trailers");
        let req = proto::StatusRequest {
            service_name: "sysmon-vm".into(),
            service_type: "grpc".into(),
            agent_id: "bench".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let mut body = vec![0];
        body.extend_from_slice(&(req.len() as u32).to_be_bytes());
        body.extend_from_slice(&req);
        let mut out = Vec::new();
        h2_frame(&mut out, 1, 0x4, id, &block);
        h2_frame(&mut out, 0, 0x1, id, &body);
        self.s.write_all(&out)?;
        let (mut buf, mut data) = (Vec::new(), Vec::new());
        let mut chunk = [0u8; 16384];
        loop {
            while buf.len() >= 9 {
                let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                match kind {
                    4 if flags & 1 == 0 => {
                        let mut ack = Vec::new();
                        h2_frame(&mut ack, 4, 1, 0, &[]);
                        self.s.write_all(&ack)?;
                    }
                    0 if stream == id => data.extend_from_slice(&payload),
                    1 => {
                        let fields = self.decoder.decode(&payload).map_err(|e| anyhow::anyhow!("{e}"))?;
                        if stream == id && flags & 1 != 0 {
                            let status = fields.iter().find(|(n, _)| n == b"grpc-status").map(|(_, v)| v.clone());
                            if status.as_deref() != Some(b"0") {
                                bail!(
                                    "GetStatus: grpc-status {:?}",
                                    status.map(|s| String::from_utf8_lossy(&s).into_owned())
                                );
                            }
                            let r = proto::StatusResponse::decode(data.get(5..).unwrap_or_default())?;
                            if !r.available {
                                bail!("GetStatus: not available: {}", String::from_utf8_lossy(&r.message));
                            }
                            return Ok(r.message.len());
                        }
                    }
                    7 => bail!("GetStatus: GOAWAY"),
                    _ => {}
                }
            }
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                bail!("GetStatus: connection closed");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn wait_ready(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if scrape(port).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing answered on port {port}")
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of all the process's threads in nanoseconds, from /proc/<pid>/task/*/schedstat
/// (first field: time on the CPU). utime/stime tick in 10 ms steps, too coarse for 0.1 %.
fn cpu_nanos(pid: u32) -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 30u64;
    let mut scrapes = 300usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().context("--seconds N")?.parse()?,
            "--scrapes" => scrapes = it.next().context("--scrapes N")?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    if !std::path::Path::new(NODE_EXPORTER).exists() {
        bail!("{NODE_EXPORTER} not found: apt-get install prometheus-node-exporter");
    }
    let root = crate::workspace_root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "sysmon-collector"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("building sysmon-collector failed");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or(root.join("target"));
    let collector_bin = target_dir.join("release/sysmon-collector");

    let (sys_port, node_port, grpc_port) = (free_port()?, free_port()?, free_port()?);
    let sysmon = Proc(
        Command::new(&collector_bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{sys_port}"), "--interval", "1s"])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start sysmon-collector")?,
    );
    let mut node_args =
        vec!["--collector.disable-defaults".to_string(), format!("--web.listen-address=127.0.0.1:{node_port}")];
    node_args.extend(NODE_COLLECTORS.iter().map(|c| format!("--collector.{c}")));
    let node = Proc(
        Command::new(NODE_EXPORTER)
            .args(&node_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start node_exporter")?,
    );
    wait_ready(sys_port)?;
    wait_ready(node_port)?;
    std::thread::sleep(Duration::from_millis(1200)); // sysmon's second sample, so rates exist

    for _ in 0..20 {
        scrape(sys_port)?;
        scrape(node_port)?;
    }
    let (mut sys_lat, mut node_lat) = (Vec::with_capacity(scrapes), Vec::with_capacity(scrapes));
    let (mut sys_bytes, mut node_bytes) = (0, 0);
    for _ in 0..scrapes {
        let (d, n) = scrape(sys_port)?;
        sys_lat.push(d);
        sys_bytes = n;
        let (d, n) = scrape(node_port)?;
        node_lat.push(d);
        node_bytes = n;
    }
    sys_lat.sort();
    node_lat.sort();

    // GetStatus against GET /v1/snapshot, alternately: a new connection per call for both, then
    // GetStatus on one kept connection.
    for _ in 0..20 {
        snapshot(sys_port)?;
        Grpc::connect(grpc_port)?.get_status()?;
    }
    let (mut snap_lat, mut grpc_lat, mut kept_lat) = (Vec::new(), Vec::new(), Vec::new());
    let (mut snap_bytes, mut grpc_bytes) = (0, 0);
    let mut kept = Grpc::connect(grpc_port)?;
    for _ in 0..scrapes {
        let (d, n) = snapshot(sys_port)?;
        snap_lat.push(d);
        snap_bytes = n;
        let t = Instant::now();
        grpc_bytes = Grpc::connect(grpc_port)?.get_status()?;
        grpc_lat.push(t.elapsed());
        let t = Instant::now();
        kept.get_status()?;
        kept_lat.push(t.elapsed());
    }
    snap_lat.sort();
    grpc_lat.sort();
    kept_lat.sort();

    // CPU over a window in which each produces one sample per second: sysmon samples on its own
    // 1 s timer (and is scraped once a second), node_exporter collects on each 1 s scrape.
    let (sp, np) = (sysmon.0.id(), node.0.id());
    let (s0, n0) = (cpu_nanos(sp).context("sysmon stat")?, cpu_nanos(np).context("node stat")?);
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(seconds) {
        scrape(sys_port)?;
        scrape(node_port)?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let elapsed = window.elapsed().as_secs_f64();
    let (s1, n1) = (cpu_nanos(sp).context("sysmon stat")?, cpu_nanos(np).context("node stat")?);
    let cpu_pct = |a: u64, b: u64| (b - a) as f64 / 1e9 / elapsed * 100.0;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| measure | sysmon-collector | node_exporter | ratio |");
    println!("|---|---|---|---|");
    let (sm, nm) = (percentile(&sys_lat, 0.5), percentile(&node_lat, 0.5));
    println!(
        "| median scrape latency ({scrapes} scrapes) | {:.3} ms | {:.3} ms | {:.3}× |",
        ms(sm),
        ms(nm),
        ms(sm) / ms(nm)
    );
    let (s95, n95) = (percentile(&sys_lat, 0.95), percentile(&node_lat, 0.95));
    println!("| p95 scrape latency | {:.3} ms | {:.3} ms | {:.3}× |", ms(s95), ms(n95), ms(s95) / ms(n95));
    println!("| response size | {} B | {} B | |", sys_bytes, node_bytes);
    println!();
    println!("| sysmon-collector, same run | median | p95 | size |");
    println!("|---|---|---|---|");
    for (what, lat, size) in [
        ("GET /v1/snapshot (HTTP/1.1, new connection)", &snap_lat, snap_bytes),
        ("GetStatus (gRPC, new connection)", &grpc_lat, grpc_bytes),
        ("GetStatus (gRPC, one kept connection)", &kept_lat, grpc_bytes),
    ] {
        println!("| {what} | {:.3} ms | {:.3} ms | {size} B |", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.95)));
    }
    println!();
    println!("| measure | sysmon-collector | node_exporter | ratio |");
    println!("|---|---|---|---|");
    let (srss, nrss) = (status_kb(sp, "VmRSS:").unwrap_or(0), status_kb(np, "VmRSS:").unwrap_or(0));
    println!(
        "| RSS after the run | {:.1} MB | {:.1} MB | {:.3}× |",
        srss as f64 / 1024.0,
        nrss as f64 / 1024.0,
        srss as f64 / nrss as f64
    );
    let (shwm, nhwm) = (status_kb(sp, "VmHWM:").unwrap_or(0), status_kb(np, "VmHWM:").unwrap_or(0));
    println!("| peak RSS | {:.1} MB | {:.1} MB | |", shwm as f64 / 1024.0, nhwm as f64 / 1024.0);
    println!(
        "| CPU, one sample/s for {seconds} s | {:.3} % of a core | {:.3} % of a core | |",
        cpu_pct(s0, s1),
        cpu_pct(n0, n1)
    );
    Ok(())
}
