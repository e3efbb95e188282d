//! `sysmonvm`: the VM-lab CLI. The lifecycle commands (profiles, images, seed, QEMU, SSH) are
//! being built issue by issue; see README.md for what works today.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => println!("sysmonvm {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "sysmonvm {}: the VM lifecycle commands are not built yet.\nThe guest collector is: cargo run -p sysmon-collector -- snapshot",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
