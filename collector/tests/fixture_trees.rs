//! The whole sampler over fixture trees made from real captures. Expected values were read from
//! the fixture files by hand (quoted next to each assertion), not produced by running the code.

mod common;

use common::Tree;
use std::time::{Duration, Instant};
use sysmon_collector::{FrequencySource, Sampler, SamplerOptions, Snapshot, Source, export, metrics};

const DOCKER_ID: &str = "532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b";

fn no_perf() -> SamplerOptions {
    SamplerOptions { perf: false, cgroups: vec![], container: None }
}

fn debian_guest() -> Tree {
    let t = Tree::new();
    t.copy_dir("debian12-tcg-guest/proc", "proc");
    t.copy_fixture("debian12-tcg-guest/cgroup-v2/cgroup.controllers", "sys/fs/cgroup/cgroup.controllers");
    t.copy_dir(
        &format!("debian12-tcg-guest/cgroup-v2/system.slice/docker-{DOCKER_ID}.scope.t0"),
        &format!("sys/fs/cgroup/system.slice/docker-{DOCKER_ID}.scope"),
    );
    t.write("sys/devices/system/cpu/online", "0-1\n");
    t
}

/// The Debian guest with everything every source reads: hostname, kernel and os-release too.
fn complete_debian_guest() -> Tree {
    let t = debian_guest();
    t.write("proc/sys/kernel/hostname", "guest-under-test\n");
    t.write("proc/sys/kernel/osrelease", "6.1.0-27-amd64\n");
    t.write("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n");
    t
}

fn status(snap: &Snapshot, source: Source) -> bool {
    let found: Vec<_> = snap.sources.iter().filter(|s| s.source == source.name()).collect();
    assert_eq!(found.len(), 1, "one status per source: {:?}", snap.sources);
    found[0].success
}

fn failed(snap: &Snapshot) -> Vec<&str> {
    snap.sources.iter().filter(|s| !s.success).map(|s| s.source.as_str()).collect()
}

#[test]
fn every_source_succeeds_with_a_duration_on_a_complete_guest_tree() {
    let t = complete_debian_guest();
    let mut s = Sampler::new(t.roots(), no_perf());
    let t0 = Instant::now();
    for snap in [s.sample_at(t0), s.sample_at(t0 + Duration::from_secs(1))] {
        assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
        let names: Vec<&str> = snap.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(
            names,
            ["cpu", "frequency", "memory", "disk", "network", "filesystems", "thermal", "containers", "host"]
        );
        for st in &snap.sources {
            assert!(st.success, "{st:?}");
            assert!(st.duration_seconds > 0.0 && st.duration_seconds < 5.0, "{st:?}");
        }
        // The sources' reads are part of the sample's own duration.
        let total: f64 = snap.sources.iter().map(|s| s.duration_seconds).sum();
        assert!(total <= snap.collector.sample_duration_seconds || snap.collector.sample_duration_seconds == 0.0);
        assert_eq!(snap.host.os.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    }
}

#[test]
fn without_meminfo_memory_fails_with_a_warning_and_no_made_up_memory_metrics() {
    let t = complete_debian_guest();
    std::fs::remove_file(t.path("proc/meminfo")).unwrap();
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(failed(&snap), ["memory"]);
    let w: Vec<_> = snap.warnings.iter().filter(|w| w.subsystem.as_deref() == Some("memory")).collect();
    assert_eq!(w.len(), 1, "{:?}", snap.warnings);
    assert!(w[0].source.ends_with("proc/meminfo") && w[0].message == "not found", "{w:?}");
    assert_eq!(snap.memory, Default::default(), "every memory reading null");

    let families = metrics::families(&snap);
    for f in &families {
        assert!(
            !f.otel_name.starts_with("system.memory")
                && !f.otel_name.starts_with("system.paging")
                && f.otel_name != "system.linux.memory.available",
            "{} published without meminfo: {:?}",
            f.otel_name,
            f.points
        );
    }
    let text = export::prometheus::render(&families);
    assert!(text.contains("sysmon_source_success{source=\"memory\"} 0\n"), "{text}");
    assert!(text.contains("sysmon_source_success{source=\"cpu\"} 1\n"), "{text}");
    assert!(text.contains("sysmon_warnings 1\n"), "{text}");
    assert!(!text.contains("system_memory") && !text.contains("system_paging"), "{text}");
}

#[test]
fn a_meminfo_without_some_keys_names_them_and_publishes_only_what_it_has() {
    let t = complete_debian_guest();
    // An old kernel's meminfo: no MemAvailable (before 3.14).
    let meminfo: String = common::fixture("debian12-tcg-guest/proc/meminfo")
        .lines()
        .filter(|l| !l.starts_with("MemAvailable:"))
        .map(|l| format!("{l}\n"))
        .collect();
    t.write("proc/meminfo", &meminfo);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(failed(&snap), ["memory"]);
    assert!(
        snap.warnings.iter().any(|w| w.subsystem.as_deref() == Some("memory") && w.message.contains("MemAvailable"))
    );
    assert_eq!(snap.memory.available_bytes, None);
    assert_eq!(snap.memory.total_bytes, Some(2_019_612 * 1024));
    let names: Vec<&str> = metrics::families(&snap).iter().map(|f| f.otel_name).collect();
    assert!(names.contains(&"system.memory.limit") && !names.contains(&"system.linux.memory.available"), "{names:?}");
}

#[test]
fn an_unreadable_cgroup_root_or_a_missing_named_cgroup_fails_containers() {
    // The cgroup root is a file, not a directory: expected, but it cannot be listed.
    let t = complete_debian_guest();
    std::fs::remove_dir_all(t.path("sys/fs/cgroup")).unwrap();
    t.write("sys/fs/cgroup", "not a directory\n");
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(failed(&snap), ["containers"]);
    let w = snap.warnings.iter().find(|w| w.subsystem.as_deref() == Some("containers")).expect("a containers warning");
    assert!(w.source.ends_with("sys/fs/cgroup") && w.message.contains("cgroup root unreadable"), "{w:?}");

    let t = complete_debian_guest();
    let options =
        SamplerOptions { perf: false, cgroups: vec!["system.slice/gone.service".into()], ..Default::default() };
    let mut s = Sampler::new(t.roots(), options);
    for _ in 0..2 {
        let snap = s.sample();
        assert!(!status(&snap, Source::Containers));
        assert!(snap.containers.iter().any(|c| c.id == DOCKER_ID), "the found containers are still read");
        assert!(snap.warnings.iter().any(|w| w.subsystem.as_deref() == Some("containers")
            && w.source == "cgroup system.slice/gone.service"));
    }
}

#[test]
fn debian_tcg_guest_reports_cpuinfo_with_a_tsc_note_and_the_docker_scope() {
    let t = debian_guest();
    let mut s = Sampler::new(t.roots(), no_perf());
    let t0 = Instant::now();
    let first = s.sample_at(t0);
    assert_eq!(first.cpus.len(), 2);
    // proc/cpuinfo: "cpu MHz : 2596.145" on both vCPUs; "flags: ... hypervisor ..."
    for c in &first.cpus {
        assert_eq!(c.frequency_hz, Some(2_596_145_000.0));
        assert_eq!(c.frequency_source, FrequencySource::Cpuinfo);
        assert!(c.frequency_note.as_deref().unwrap().contains("TSC"), "{:?}", c.frequency_note);
        assert_eq!(c.usage, None, "a first sample has no interval");
    }
    assert_eq!(first.host.virtualization.as_deref(), Some("hypervisor"));
    // proc/meminfo: MemTotal 2019612 kB, MemFree 1855248, Buffers 8344, Cached 83952
    assert_eq!(first.memory.total_bytes, Some(2_019_612 * 1024));
    // proc/diskstats: vda and vdb (the seed) are whole disks; vda1/vda2 partitions and loop0-7 are left out
    assert_eq!(first.disks.iter().map(|d| d.device.as_str()).collect::<Vec<_>>(), vec!["vda", "vdb"]);
    assert_eq!(first.disks[0].read_bytes, 188_978 * 512);
    // proc/net/dev: lo and enp0s2
    assert_eq!(first.networks.len(), 2);

    // cgroup v2 scope as read at t0: usage_usec 4557704, cpu.max "50000 100000", memory.current 14143488
    let c = first.containers.iter().find(|c| c.id == DOCKER_ID).expect("docker scope found");
    assert_eq!((c.runtime.as_str(), c.cgroup_version), ("docker", 2));
    assert_eq!(c.cpu_seconds, Some(4.557704));
    assert_eq!(c.cpu_limit_cores, Some(0.5));
    assert_eq!(c.memory_bytes, Some(14_143_488));
    assert_eq!(c.cpu_usage_cores, None);

    // The same scope at t1 (usage_usec 7335029), 5 s later: (7.335029 - 4.557704) / 5 = 0.555465 cores.
    let scope = t.path(&format!("sys/fs/cgroup/system.slice/docker-{DOCKER_ID}.scope"));
    for f in ["cpu.stat", "memory.current", "pids.current"] {
        std::fs::copy(
            common::fixtures()
                .join(format!("debian12-tcg-guest/cgroup-v2/system.slice/docker-{DOCKER_ID}.scope.t1/{f}")),
            scope.join(f),
        )
        .unwrap();
    }
    let second = s.sample_at(t0 + Duration::from_secs(5));
    let c = second.containers.iter().find(|c| c.id == DOCKER_ID).unwrap();
    let cores = c.cpu_usage_cores.unwrap();
    assert!((cores - 0.555465).abs() < 1e-6, "{cores}");
    // t1 cpu.stat: nr_throttled 145
    assert_eq!(c.cpu_throttled_periods, Some(145));
    assert_eq!(second.interval_seconds, Some(5.0));
}

#[test]
fn big_little_policies_from_the_snapdragon_dump() {
    let t = Tree::new();
    t.unflatten("sysfs-cpufreq/arm64-snapdragon-a510-a710-a715-x3-three-policies.flat");
    t.synthetic_stat(8, 1, 10, 90);
    t.copy_fixture("proc-cpuinfo/aarch64-snapdragon-a510-a710-a715-x3.cpuinfo", "proc/cpuinfo");
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(snap.cpus.len(), 8);
    // policy0 (cpu0-2): scaling_cur_freq 1017600, min 307200, max 2016000, governor walt
    // policy3 (cpu3-6): scaling_cur_freq 1056000, max 2803200; policy7 (cpu7): 864000, max 3187200
    let expect = [
        (0, "policy0", 1_017_600.0, 307_200.0, 2_016_000.0),
        (2, "policy0", 1_017_600.0, 307_200.0, 2_016_000.0),
        (3, "policy3", 1_056_000.0, 499_200.0, 2_803_200.0),
        (6, "policy3", 1_056_000.0, 499_200.0, 2_803_200.0),
        (7, "policy7", 864_000.0, 595_200.0, 3_187_200.0),
    ];
    for (cpu, policy, cur, min, max) in expect {
        let c = &snap.cpus[cpu];
        assert_eq!(c.policy.as_deref(), Some(policy), "cpu{cpu}");
        assert_eq!(c.frequency_hz, Some(cur * 1000.0), "cpu{cpu}");
        assert_eq!(c.frequency_source, FrequencySource::Cpufreq);
        assert_eq!(c.frequency_detail.as_deref(), Some("scaling_cur_freq"));
        assert_eq!((c.frequency_min_hz, c.frequency_max_hz), (Some(min * 1000.0), Some(max * 1000.0)));
        assert_eq!(c.governor.as_deref(), Some("walt"));
        assert_eq!(c.driver.as_deref(), Some("qcom-cpufreq-hw"));
    }
}

#[test]
fn policies_found_through_related_cpus_when_cpun_cpufreq_is_missing() {
    let t = Tree::new();
    t.unflatten("sysfs-cpufreq/arm64-snapdragon-a510-a710-a715-x3-three-policies.flat");
    for n in 0..8 {
        std::fs::remove_file(t.path(&format!("sys/devices/system/cpu/cpu{n}/cpufreq"))).unwrap();
    }
    t.synthetic_stat(8, 1, 10, 90);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(snap.cpus[5].frequency_hz, Some(1_056_000_000.0));
    assert_eq!(snap.cpus[7].frequency_hz, Some(864_000_000.0));
}

#[test]
fn epyc_boost_prefers_scaling_cur_freq_over_the_requested_pstate() {
    let t = Tree::new();
    t.unflatten("sysfs-cpufreq/x86_64-amd-epyc-7451-acpi-cpufreq-boost-cpu0-3.flat");
    t.synthetic_stat(4, 1, 50, 50);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    // policy0: scaling_cur_freq 2893313 while cpuinfo_cur_freq = cpuinfo_max_freq = 2300000
    assert_eq!(snap.cpus[0].frequency_hz, Some(2_893_313_000.0));
    assert_eq!(snap.cpus[0].frequency_max_hz, Some(2_300_000_000.0));
    assert_eq!(snap.cpus[1].frequency_hz, Some(2_892_404_000.0));
}

#[test]
fn cpuinfo_avg_freq_is_preferred_when_the_kernel_has_it() {
    let t = Tree::new();
    t.unflatten("sysfs-cpufreq/x86_64-amd-epyc-7451-acpi-cpufreq-boost-cpu0-3.flat");
    t.write("sys/devices/system/cpu/cpufreq/policy0/cpuinfo_avg_freq", "2750000\n");
    t.synthetic_stat(4, 1, 50, 50);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(snap.cpus[0].frequency_hz, Some(2_750_000_000.0));
    assert_eq!(snap.cpus[0].frequency_detail.as_deref(), Some("cpuinfo_avg_freq"));
    assert_eq!(snap.cpus[1].frequency_detail.as_deref(), Some("scaling_cur_freq"));
}

#[test]
fn node_exporter_fixture_gives_the_same_hertz_as_node_exporter() {
    let t = Tree::new();
    t.unflatten("sysfs-cpufreq/node-exporter-fixture-4cpu-intel_pstate.flat");
    t.synthetic_stat(4, 1, 50, 50);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    // The oracle: node_exporter's own e2e expectation for the same sysfs fixture.
    let oracle = common::fixture("node-exporter/e2e-output.cpu-frequency-lines.txt");
    for c in &snap.cpus {
        let line = oracle
            .lines()
            .find(|l| l.starts_with(&format!("node_cpu_scaling_frequency_hertz{{cpu=\"{}\"}}", c.logical_number)))
            .unwrap();
        let expected: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(c.frequency_hz, Some(expected), "{}", c.cpu);
    }
}

#[test]
fn unparsable_current_frequency_is_null_with_a_reason_never_zero() {
    let t = Tree::new();
    t.write("sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "<unknown>\n");
    t.write("sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "2000000\n");
    t.synthetic_stat(1, 1, 1, 1);
    t.write("proc/cpuinfo", "processor\t: 0\nBogoMIPS\t: 48.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n");
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    let c = &snap.cpus[0];
    assert_eq!((c.frequency_hz, c.frequency_source), (None, FrequencySource::None));
    let note = c.frequency_note.as_deref().unwrap();
    assert!(note.contains("<unknown>") && note.contains("cpu MHz"), "{note}");
}

#[test]
fn apple_hvf_guest_has_no_source_and_says_why() {
    let t = Tree::new();
    t.copy_fixture("proc-cpuinfo/aarch64-apple-m3-max-vm-guest.cpuinfo.excerpt", "proc/cpuinfo");
    t.synthetic_stat(2, 1, 10, 10);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(snap.host.virtualization.as_deref(), Some("apple-hvf"));
    for c in &snap.cpus {
        assert_eq!((c.frequency_hz, c.frequency_source), (None, FrequencySource::None));
        let note = c.frequency_note.as_deref().unwrap();
        assert!(note.contains("no cpufreq") && note.contains("disabled") && note.contains("cpu MHz"), "{note}");
    }
}

/// The arm64 TCG guest of shared/notes/guest-image-arm64-probe.md: no cpufreq, no `cpu MHz`,
/// `BogoMIPS : 2000.00` (the 1 GHz generic timer) and DMI naming QEMU. Neither BogoMIPS nor the
/// DMI strings are a frequency; without a counter the answer is `none`.
#[test]
fn arm64_tcg_guest_bogomips_and_dmi_are_never_a_frequency() {
    let t = Tree::new();
    let block = "processor\t: {n}\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n\
                 CPU implementer\t: 0x00\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0x051\nCPU revision\t: 0\n";
    t.write("proc/cpuinfo", &format!("{}\n{}", block.replace("{n}", "0"), block.replace("{n}", "1")));
    t.write("sys/class/dmi/id/sys_vendor", "QEMU\n");
    t.write("sys/class/dmi/id/product_name", "QEMU Virtual Machine\n");
    t.synthetic_stat(2, 1, 10, 10);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(snap.host.virtualization.as_deref(), Some("qemu"));
    for c in &snap.cpus {
        assert_eq!((c.frequency_hz, c.frequency_source, c.counter_rate_hz), (None, FrequencySource::None, None));
        assert!(c.frequency_note.as_deref().unwrap().contains("cpu MHz"));
    }
}

#[test]
fn cgroup_v1_docker_container_from_the_elastic_capture() {
    let t = Tree::new();
    let id = "b29faf21b7eff959f64b4192c34d5d67a707fe8561e9eaa608cb27693fba4242";
    let v1 = |controller: &str, file: &str| {
        t.copy_fixture(
            &format!("cgroup-v1/docker-container.{file}"),
            &format!("sys/fs/cgroup/{controller}/docker/{id}/{file}"),
        );
    };
    for f in ["cpuacct.usage", "cpuacct.stat", "cpuacct.usage_percpu"] {
        v1("cpu,cpuacct", f);
    }
    for f in ["cpu.stat", "cpu.cfs_quota_us", "cpu.cfs_period_us"] {
        v1("cpu,cpuacct", f);
    }
    for f in ["memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat"] {
        v1("memory", f);
    }
    v1("blkio", "blkio.throttle.io_service_bytes");
    t.synthetic_stat(1, 1, 1, 1);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    let c = snap.containers.iter().find(|c| c.id == id).expect("v1 docker container");
    assert_eq!((c.runtime.as_str(), c.cgroup_version, c.cgroup_path.as_str()), ("docker", 1, &*format!("docker/{id}")));
    // cpuacct.usage 95996653175 ns; cpu.stat nr_throttled 1046, throttled_time 352597023453 ns;
    // cfs_quota_us -1 (no limit); memory.limit_in_bytes 9223372036854771712 (no limit)
    assert_eq!(c.cpu_seconds, Some(95.996653175));
    assert_eq!(c.cpu_throttled_periods, Some(1046));
    assert_eq!(c.cpu_throttled_seconds, Some(352.597023453));
    assert_eq!(c.cpu_limit_cores, None);
    assert_eq!(c.memory_limit_bytes, None);
    let usage: u64 = common::fixture("cgroup-v1/docker-container.memory.usage_in_bytes").trim().parse().unwrap();
    assert_eq!(c.memory_bytes, Some(usage));
    // pids controller missing from the capture: null and a warning, not a failure.
    assert_eq!(c.pids, None);
    assert!(snap.warnings.iter().any(|w| w.source.contains(id) && w.message.contains("pids.current")));
}

#[test]
fn an_empty_tree_gives_nulls_and_warnings_not_a_panic() {
    let t = Tree::new();
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert!(snap.cpus.is_empty());
    assert_eq!(snap.memory.total_bytes, None);
    assert_eq!(snap.load, None);
    for f in ["stat", "meminfo", "loadavg", "diskstats", "net/dev"] {
        assert!(snap.warnings.iter().any(|w| w.source.ends_with(f)), "no warning for {f}: {:?}", snap.warnings);
    }
    // Every source that found nothing to read fails, and names itself in a warning; no sensors and
    // no cgroup hierarchy are an honest "none" (a VM has no thermal zones).
    assert_eq!(failed(&snap), ["cpu", "frequency", "memory", "disk", "network", "filesystems", "host"]);
    for name in failed(&snap) {
        assert!(snap.warnings.iter().any(|w| w.subsystem.as_deref() == Some(name)), "{name}: {:?}", snap.warnings);
    }
    assert!(snap.warnings.iter().all(|w| w.subsystem.is_some()));
    // No CPU list is no count, not a count of 0.
    let names: Vec<&str> = metrics::families(&snap).iter().map(|f| f.otel_name).collect();
    assert!(!names.contains(&"system.cpu.logical.count"), "{names:?}");
    assert!(names.contains(&"sysmon.source.success") && names.contains(&"sysmon.source.duration"), "{names:?}");
}

#[test]
fn truncated_and_garbled_files_keep_the_rest_of_the_sample() {
    let t = debian_guest();
    let stat = common::fixture("debian12-tcg-guest/proc/stat");
    t.write("proc/stat", &stat[..stat.find("cpu1").unwrap() + 6]); // cut inside the cpu1 line
    t.write("proc/meminfo", "MemTotal:        2019612 kB\nMemFree:  garbage\n");
    t.write("proc/loadavg", "");
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    assert_eq!(snap.cpus.len(), 1, "cpu0 survives the cut");
    assert_eq!(snap.memory.total_bytes, Some(2_019_612 * 1024));
    assert_eq!(snap.memory.free_bytes, None);
    assert_eq!(snap.load, None);
    assert!(snap.warnings.iter().any(|w| w.source.ends_with("stat") && w.message.contains("unreadable")));
    assert!(snap.warnings.iter().any(|w| w.source.ends_with("meminfo")));
    assert!(snap.warnings.iter().any(|w| w.source.ends_with("loadavg")));
    assert_eq!(snap.disks.len(), 2);
}

#[test]
fn thermal_zones_and_hwmon() {
    let t = Tree::new();
    t.write("sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
    t.write("sys/class/thermal/thermal_zone0/temp", "45000\n");
    t.write("sys/class/thermal/thermal_zone1/type", "acpitz\n");
    t.write("sys/class/thermal/thermal_zone1/temp", "-274000\n"); // impossible: driver error value
    t.write("sys/class/hwmon/hwmon1/name", "coretemp\n");
    t.write("sys/class/hwmon/hwmon1/temp2_input", "51500\n");
    t.write("sys/class/hwmon/hwmon1/temp2_label", "Core 0\n");
    t.synthetic_stat(1, 1, 1, 1);
    let snap = Sampler::new(t.roots(), no_perf()).sample();
    let got: Vec<(&str, f64)> = snap.temperatures.iter().map(|t| (t.sensor.as_str(), t.celsius)).collect();
    assert_eq!(got, vec![("thermal_zone0/x86_pkg_temp", 45.0), ("hwmon1/coretemp/Core 0", 51.5)]);
    assert!(snap.warnings.iter().any(|w| w.source.contains("thermal_zone1")));
    // A sensor that is there but unreadable fails the thermal source.
    assert!(!status(&snap, Source::Thermal));
}

#[test]
fn usage_percentages_from_stat_deltas() {
    let t = Tree::new();
    t.synthetic_stat(2, 1, 0, 0);
    let mut s = Sampler::new(t.roots(), no_perf());
    let t0 = Instant::now();
    s.sample_at(t0);
    // each CPU: +30 busy (user) ticks and +70 idle ticks → 30 %
    t.synthetic_stat(2, 1, 30, 70);
    let snap = s.sample_at(t0 + Duration::from_secs(1));
    for c in &snap.cpus {
        let u = c.usage.unwrap();
        assert!((u.usage_pct - 30.0).abs() < 1e-9 && (u.idle_pct - 70.0).abs() < 1e-9);
    }
    assert!((snap.cpu_total.unwrap().usage_pct - 30.0).abs() < 1e-9);
}

/// A collector in a container (recorded on the Debian docker guest, debian12-docker-guest/): its
/// own /proc shows the container's network and mounts; the host's procfs (`--host-procfs`) shows
/// the host init's.
fn container_on_debian_guest() -> Tree {
    let t = complete_debian_guest();
    t.copy_fixture("debian12-docker-guest/container-proc-net-dev", "proc/net/dev");
    t.copy_fixture("debian12-docker-guest/container-proc-mounts", "proc/mounts");
    t.copy_fixture("debian12-docker-guest/host-proc-1-net-dev", "host/proc/1/net/dev");
    t.copy_fixture("debian12-docker-guest/host-proc-1-mounts", "host/proc/1/mounts");
    t.write("host/proc/1/root/etc/os-release", "PRETTY_NAME=\"the host's Debian 12\"\n");
    std::fs::remove_file(t.path("etc/os-release")).unwrap();
    t
}

fn interfaces(snap: &Snapshot) -> Vec<&str> {
    snap.networks.iter().map(|n| n.interface.as_str()).collect()
}

#[test]
fn in_a_container_the_narrowed_sources_say_so_and_the_host_procfs_gives_the_hosts_view() {
    use sysmon_collector::container_view::ContainerView;
    let t = container_on_debian_guest();
    let view = ContainerView { marker: "/.dockerenv".into(), own_cgroup_namespace: true };
    let in_container = SamplerOptions { perf: false, cgroups: vec![], container: Some(view.clone()) };

    // A plain container: the container's own interfaces and mounts, each source saying why.
    let snap = Sampler::new(t.roots(), in_container.clone()).sample_at(Instant::now());
    assert_eq!(interfaces(&snap), ["lo", "eth0"], "the container's netns, as recorded");
    assert_eq!(failed(&snap), ["network", "filesystems", "containers", "host"], "{:?}", snap.warnings);
    for source in ["network", "filesystems", "containers", "host"] {
        let w: Vec<_> = snap.warnings.iter().filter(|w| w.subsystem.as_deref() == Some(source)).collect();
        assert!(w.iter().any(|w| w.message.contains("in a container (/.dockerenv)")), "{source}: {w:?}");
    }
    assert_eq!(snap.host.os, None, "the tree has no os-release of its own");

    // The host's /proc mounted and named: the host init's network, mounts and os-release. The
    // container's own root is `/` (no --rootfs): mount points and os-release are reached through
    // the host init's root, which comes before the container's own os-release.
    let roots = sysmon_collector::Roots { host_procfs: Some(t.path("host/proc")), rootfs: "/".into(), ..t.roots() };
    let mounted = ContainerView { own_cgroup_namespace: false, ..view };
    let options = SamplerOptions { container: Some(mounted), ..in_container };
    let snap = Sampler::new(roots, options).sample_at(Instant::now());
    assert_eq!(interfaces(&snap), ["lo", "enp0s3", "docker0", "veth20f01b1"], "the host init's netns, as recorded");
    assert_eq!(snap.host.os.as_deref(), Some("the host's Debian 12"), "through the host init's root");
    // "/dev/vda2 / ext4" is the host's one real filesystem; statvfs reaches it through 1/root.
    let mounts: Vec<&str> = snap.filesystems.iter().map(|f| f.mountpoint.as_str()).collect();
    assert_eq!(mounts, ["/"], "{:?}", snap.warnings);
    assert!(failed(&snap).is_empty(), "{:?}", snap.warnings);
}
