//! The exporters people already run, read as knee's own series: node_exporter's `node_*`
//! become the host series (`host.cpu_cores`, `host.cores`, memory, load, run queue, pressure)
//! and the client libraries' standard `process_*` become the target series (`target.cpu_cores`,
//! `target.rss_mb`, `target.fds`), so a target on another machine, observed only through
//! what it and its host export, is judged like a local one. Where a figure came from is kept
//! (`Provided`), and the verdict says so. Two more families map onto knee's series: the
//! runtimes' GC pause totals (Go's `go_gc_duration_seconds`, Micrometer's
//! `jvm_gc_pause_seconds`, prom-client's `nodejs_gc_duration_seconds`) become the share of
//! time the target was paused (`target.gc_pause_share`), and cAdvisor's container series
//! (Kubernetes' kubelet) become the target's cgroup limits (`target.cgroup_*`).

use std::collections::BTreeMap;
use std::time::Instant;

/// Which of knee's series groups a scrape supplied.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Provided {
    pub host: bool,
    pub target: bool,
    /// The GC pause metric it served, when it served one.
    pub gc: Option<&'static str>,
    /// It served cAdvisor's container series (the target's cgroup).
    pub cadvisor: bool,
}

/// Pause totals (seconds, cumulative `_sum`s) of each runtime's GC metric.
pub const GC_PAUSES: [&str; 3] = [
    "go_gc_duration_seconds_sum",
    "jvm_gc_pause_seconds_sum",
    "nodejs_gc_duration_seconds_sum",
];

/// Counter readings kept between two scrapes, for rates.
#[derive(Default)]
pub struct Rates {
    previous: Option<(Instant, Counters)>,
}

/// The counters the rates are made of, summed as knee needs them.
#[derive(Clone, Default)]
struct Counters {
    /// Per CPU (by its label): (busy seconds, all seconds).
    cpus: BTreeMap<String, (f64, f64)>,
    process_cpu: Option<f64>,
    pressure: BTreeMap<&'static str, f64>,
    /// Seconds paused by GC so far, summed over the metric's labels (JVM: per cause).
    gc_paused: Option<f64>,
    /// cAdvisor: (periods, throttled periods, throttled seconds) of the busiest container.
    cfs: Option<(f64, f64, f64)>,
}

/// CPU modes that are not work: the rest (user, system, nice, irq, softirq, steal) is busy,
/// as knee's own /proc/stat reading counts it.
const IDLE_MODES: [&str; 2] = ["idle", "iowait"];
/// node_pressure_* counters (seconds stalled) → knee's share-of-time series.
const PRESSURE: [(&str, &str); 3] = [
    (
        "node_pressure_cpu_waiting_seconds_total",
        "host.pressure_cpu_some",
    ),
    (
        "node_pressure_memory_waiting_seconds_total",
        "host.pressure_memory_some",
    ),
    (
        "node_pressure_io_waiting_seconds_total",
        "host.pressure_io_some",
    ),
];

impl Rates {
    /// knee's series from one scrape's samples, and which groups they cover.
    pub fn read(
        &mut self,
        samples: &[prometheus_parse::Sample],
        now: Instant,
    ) -> (BTreeMap<String, f64>, Provided) {
        let mut values: BTreeMap<String, f64> = BTreeMap::new();
        let mut provided = Provided::default();
        let mut counters = Counters::default();
        let mut mem = (None, None, None, None);
        let mut cadvisor = super::exporters_cadvisor::Containers::default();
        for sample in samples {
            let v = match sample.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            match sample.metric.as_str() {
                "node_cpu_seconds_total" => {
                    let (Some(cpu), Some(mode)) =
                        (sample.labels.get("cpu"), sample.labels.get("mode"))
                    else {
                        continue;
                    };
                    let entry = counters.cpus.entry(cpu.to_string()).or_default();
                    entry.1 += v;
                    if !IDLE_MODES.contains(&mode) {
                        entry.0 += v;
                    }
                }
                "node_memory_MemTotal_bytes" => mem.0 = Some(v),
                "node_memory_MemAvailable_bytes" => mem.1 = Some(v),
                "node_memory_SwapTotal_bytes" => mem.2 = Some(v),
                "node_memory_SwapFree_bytes" => mem.3 = Some(v),
                "node_load1" => {
                    values.insert("host.load1".into(), v);
                }
                "node_procs_running" => {
                    values.insert("host.run_queue".into(), v);
                }
                "process_cpu_seconds_total" => counters.process_cpu = Some(v),
                "process_resident_memory_bytes" => {
                    values.insert("target.rss_mb".into(), v / 1048576.0);
                    provided.target = true;
                }
                "process_open_fds" => {
                    values.insert("target.fds".into(), v);
                    provided.target = true;
                }
                name if GC_PAUSES.contains(&name) => {
                    *counters.gc_paused.get_or_insert(0.0) += v;
                    provided.gc = GC_PAUSES.iter().copied().find(|n| *n == name);
                }
                name if name.starts_with("container_") => {
                    provided.cadvisor |= super::exporters_cadvisor::read(sample, v, &mut cadvisor);
                }
                name => {
                    if let Some((_, key)) = PRESSURE.iter().find(|(n, _)| *n == name) {
                        counters.pressure.insert(key, v);
                    }
                }
            }
        }
        if let (Some(total), Some(available)) = (mem.0, mem.1) {
            values.insert("host.mem_available_mb".into(), available / 1048576.0);
            values.insert(
                "host.mem_used_mb".into(),
                (total - available).max(0.0) / 1048576.0,
            );
        }
        if let (Some(total), Some(free)) = (mem.2, mem.3) {
            values.insert("host.swap_used_mb".into(), (total - free) / 1048576.0);
        }
        if !counters.cpus.is_empty() {
            values.insert("host.cores".into(), counters.cpus.len() as f64);
        }
        provided.host = !counters.cpus.is_empty() || mem.0.is_some();
        provided.target |= counters.process_cpu.is_some();
        if provided.cadvisor {
            counters.cfs = cadvisor.limits_into(&mut values);
        }
        if provided.host {
            // node_exporter's own process_* (and its Go runtime's GC) describe
            // node_exporter, not the target.
            values.retain(|key, _| !key.starts_with("target.") || provided.cadvisor);
            counters.process_cpu = None;
            counters.gc_paused = None;
            provided.target = false;
            provided.gc = None;
        }
        if let Some((then, before)) = &self.previous {
            let dt = now.duration_since(*then).as_secs_f64();
            if dt > 0.0 {
                rates(&counters, before, dt, &mut values);
            }
        }
        self.previous = Some((now, counters));
        (values, provided)
    }
}

/// The series that need two readings: CPU (host per core and in all; the process) and
/// pressure, each only when its counter did not go backwards (a restart).
fn rates(now: &Counters, before: &Counters, dt: f64, values: &mut BTreeMap<String, f64>) {
    let mut busy_cores = 0.0;
    let mut counted = false;
    for (i, (cpu, (busy, all))) in now.cpus.iter().enumerate() {
        let Some((busy0, all0)) = before.cpus.get(cpu) else {
            continue;
        };
        if busy < busy0 || all <= all0 {
            continue;
        }
        busy_cores += (busy - busy0) / dt;
        counted = true;
        values.insert(format!("host.cpu{i}"), (busy - busy0) / (all - all0));
    }
    if counted {
        values.insert("host.cpu_cores".into(), busy_cores);
    }
    if let (Some(cpu), Some(cpu0)) = (now.process_cpu, before.process_cpu) {
        if cpu >= cpu0 {
            values.insert("target.cpu_cores".into(), (cpu - cpu0) / dt);
        }
    }
    if let (Some(paused), Some(paused0)) = (now.gc_paused, before.gc_paused) {
        if paused >= paused0 {
            values.insert(
                crate::model::series::TARGET_GC_PAUSE_SHARE.into(),
                (paused - paused0) / dt,
            );
        }
    }
    if let (Some((p, t, s)), Some((p0, t0, s0))) = (now.cfs, before.cfs) {
        let limits = &crate::model::series::TARGET_LIMITS;
        if p > p0 && t >= t0 {
            values.insert(limits.throttled_share.into(), (t - t0) / (p - p0));
        }
        if s >= s0 {
            values.insert(limits.throttled_s_per_s.into(), (s - s0) / dt);
        }
    }
    for (key, stalled) in &now.pressure {
        if let Some(stalled0) = before.pressure.get(key).filter(|s0| *s0 <= stalled) {
            values.insert((*key).to_string(), (stalled - stalled0) / dt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scrape(text: &str) -> Vec<prometheus_parse::Sample> {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap()
            .samples
    }

    /// node_exporter's exposition (with its own process_* metrics, which describe it).
    fn node(idle0: f64, user0: f64, idle1: f64, user1: f64, stalled: f64) -> String {
        format!(
            "# TYPE node_cpu_seconds_total counter\n\
             node_cpu_seconds_total{{cpu=\"0\",mode=\"idle\"}} {idle0}\n\
             node_cpu_seconds_total{{cpu=\"0\",mode=\"user\"}} {user0}\n\
             node_cpu_seconds_total{{cpu=\"0\",mode=\"iowait\"}} 1\n\
             node_cpu_seconds_total{{cpu=\"1\",mode=\"idle\"}} {idle1}\n\
             node_cpu_seconds_total{{cpu=\"1\",mode=\"user\"}} {user1}\n\
             node_cpu_seconds_total{{cpu=\"1\",mode=\"iowait\"}} 1\n\
             # TYPE node_memory_MemTotal_bytes gauge\nnode_memory_MemTotal_bytes 4294967296\n\
             # TYPE node_memory_MemAvailable_bytes gauge\nnode_memory_MemAvailable_bytes 1073741824\n\
             # TYPE node_load1 gauge\nnode_load1 1.5\n\
             # TYPE node_procs_running gauge\nnode_procs_running 3\n\
             # TYPE node_pressure_cpu_waiting_seconds_total counter\nnode_pressure_cpu_waiting_seconds_total {stalled}\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 0.5\n\
             # TYPE process_open_fds gauge\nprocess_open_fds 9\n"
        )
    }

    /// A service's client-library exposition.
    fn service(cpu: f64) -> String {
        format!(
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 52428800\n\
             # TYPE process_open_fds gauge\nprocess_open_fds 17\n\
             # TYPE app_queue_depth gauge\napp_queue_depth 4\n"
        )
    }

    #[test]
    fn node_exporter_and_process_series_become_host_and_target_series() {
        let (mut host, mut process) = (Rates::default(), Rates::default());
        let t0 = Instant::now();
        let (first, provided) = host.read(&scrape(&node(100.0, 50.0, 100.0, 50.0, 10.0)), t0);
        assert_eq!(
            provided,
            Provided {
                host: true,
                target: false,
                ..Provided::default()
            },
            "its process_* are its own"
        );
        assert!(!first.contains_key("target.fds"), "{first:?}");
        assert_eq!(first["host.cores"], 2.0);
        assert_eq!(first["host.mem_used_mb"], 3072.0);
        assert_eq!(first["host.mem_available_mb"], 1024.0);
        assert_eq!(first["host.load1"], 1.5);
        assert_eq!(first["host.run_queue"], 3.0);
        assert!(
            !first.contains_key("host.cpu_cores"),
            "a rate needs two scrapes"
        );
        let (target, provided) = process.read(&scrape(&service(10.0)), t0);
        assert_eq!(
            provided,
            Provided {
                host: false,
                target: true,
                ..Provided::default()
            }
        );
        assert_eq!(target["target.rss_mb"], 50.0);
        assert_eq!(target["target.fds"], 17.0);
        // 2 s later: cpu0 busy 2 s of 2 s, cpu1 busy 1 s of 2 s; the process used 3 s.
        let later = t0 + Duration::from_secs(2);
        let (second, _) = host.read(&scrape(&node(100.0, 52.0, 101.0, 51.0, 11.5)), later);
        assert!((second["host.cpu_cores"] - 1.5).abs() < 1e-9, "{second:?}");
        assert!((second["host.cpu0"] - 1.0).abs() < 1e-9);
        assert!((second["host.cpu1"] - 0.5).abs() < 1e-9);
        assert!((second["host.pressure_cpu_some"] - 0.75).abs() < 1e-9);
        let (target, _) = process.read(&scrape(&service(16.0)), later);
        assert!((target["target.cpu_cores"] - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_restarted_exporter_gives_no_negative_rate_and_other_metrics_provide_nothing() {
        let mut rates = Rates::default();
        let t0 = Instant::now();
        rates.read(&scrape(&node(100.0, 50.0, 100.0, 50.0, 10.0)), t0);
        let (after, _) = rates.read(
            &scrape(&node(1.0, 1.0, 1.0, 1.0, 0.5)),
            t0 + Duration::from_secs(1),
        );
        assert!(
            !after.contains_key("host.cpu_cores") && !after.contains_key("host.pressure_cpu_some")
        );
        let (values, provided) = rates.read(
            &scrape("# TYPE app_queue_depth gauge\napp_queue_depth 4\n"),
            t0 + Duration::from_secs(2),
        );
        assert!(values.is_empty());
        assert_eq!(provided, Provided::default());
    }
}
