//! `sysmonvm image fetch` of a 1 GiB image over loopback against `curl -o` alone and
//! `curl -o` + `sha256sum`, in the same run, from the same in-memory HTTP server.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn serve(image: Arc<Vec<u8>>, checksum: Arc<String>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (image, checksum) = (image.clone(), checksum.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let body: &[u8] = if line.contains("CHECKSUM") { checksum.as_bytes() } else { &image };
                let mut w = stream;
                let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                for chunk in body.chunks(4 << 20) {
                    if w.write_all(chunk).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(base)
}

fn timed(mut cmd: Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(args: &[String]) -> Result<()> {
    let mut mib = 1024usize;
    let mut rounds = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mib" => mib = it.next().context("--mib N")?.parse()?,
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    let root = crate::workspace_root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "sysmonvm"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("building sysmonvm failed");
    }
    let bin = root.join("target/release/sysmonvm");

    let len = mib << 20;
    let mut image = vec![0u8; len];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in image.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let digest = {
        let tmp = std::env::temp_dir().join("sysmonvm-bench-digest");
        std::fs::write(&tmp, &image)?;
        let out = Command::new("sha256sum").arg(&tmp).output()?;
        std::fs::remove_file(&tmp)?;
        String::from_utf8(out.stdout)?.split_whitespace().next().context("sha256sum output")?.to_string()
    };
    let checksum = format!("SHA256 (bench.img) = {digest}\n");
    let base = serve(Arc::new(image), Arc::new(checksum))?;
    let url = format!("{base}/images/bench.img");
    let work = tempfile_dir()?;
    let out_file = work.join("curl.img");

    let (mut curl, mut curl_sha, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut c = Command::new("curl");
        c.args(["-s", "-f", "-o", out_file.to_str().unwrap(), &url]);
        curl.push(timed(c)?);
        let _ = std::fs::remove_file(&out_file);

        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!("curl -s -f -o '{0}' '{url}' && sha256sum '{0}' | grep -q {digest}", out_file.display()),
        ]);
        curl_sha.push(timed(c)?);
        let _ = std::fs::remove_file(&out_file);

        let ws = work.join(format!("ws{round}"));
        let mut c = Command::new(&bin);
        c.args(["--workspace", ws.to_str().unwrap(), "image", "fetch", "--json", "--url", &url]);
        c.args(["--checksum-url", &format!("{base}/images/CHECKSUM")]);
        // Plain http needs a pinned (or signed) digest; the CHECKSUM is still fetched and compared.
        c.args(["--sha256", &digest]);
        ours.push(timed(c)?);
        let _ = std::fs::remove_dir_all(&ws);
    }
    let _ = std::fs::remove_dir_all(&work);
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    let (c, cs, o) = (median(curl), median(curl_sha), median(ours));
    println!("| {mib} MiB over 127.0.0.1, median of {rounds} | time | throughput | vs curl alone |");
    println!("|---|---|---|---|");
    println!("| `curl -o` | {:.2} s | {:.0} MiB/s | 1.00× |", c.as_secs_f64(), rate(c));
    println!(
        "| `curl -o` + `sha256sum` | {:.2} s | {:.0} MiB/s | {:.2}× |",
        cs.as_secs_f64(),
        rate(cs),
        rate(cs) / rate(c)
    );
    println!(
        "| `sysmonvm image fetch` (CHECKSUM, download, hash, verify, cache) | {:.2} s | {:.0} MiB/s | {:.2}× |",
        o.as_secs_f64(),
        rate(o),
        rate(o) / rate(c)
    );
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("sysmonvm-bench-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
