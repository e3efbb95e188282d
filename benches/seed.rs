//! Rendering the cloud-init documents and building the seed ISO (target: ≤ 5 ms).
//! Run: `cargo bench -p sysmonvm --bench seed`.

use divan::Bencher;
use sysmonvm::seed::{self, SeedInput};

fn main() {
    divan::main();
}

fn input() -> SeedInput {
    SeedInput {
        hostname: "lab".into(),
        instance_id: "iid-lab-0123456789ab".into(),
        user: "almalinux".into(),
        user_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDXMFWguxdgNkimn0lo7IjEqBkeHtGXduuieB6J1EzXN sysmonvm"
            .into(),
        host_key_private: format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ".repeat(8)
        ),
        host_key_public: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0 lab".into(),
    }
}

#[divan::bench]
fn render_documents(b: Bencher) {
    let i = input();
    b.bench_local(|| seed::render(&i).unwrap());
}

#[divan::bench]
fn render_and_build_iso(b: Bencher) {
    let i = input();
    b.bench_local(|| seed::iso::build(&seed::render(&i).unwrap()).unwrap());
}

/// SHA-256 over 64 MiB, to know what the download pipeline's hash stage costs on this CPU.
#[divan::bench(sample_count = 5)]
fn sha256_64_mib(b: Bencher) {
    use sha2::Digest;
    let data = vec![7u8; 64 << 20];
    b.bench_local(|| sha2::Sha256::digest(&data));
}
