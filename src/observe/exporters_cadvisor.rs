//! cAdvisor's container series (what Kubernetes' kubelet serves at /metrics/cadvisor, and a
//! standalone cAdvisor at /metrics) read as the target's cgroup: its CPU quota and
//! throttling, its memory limit and working set, its OOM events. A pod's endpoint lists every
//! container of the node; the target is the container with the most CPU used (the service,
//! not its sidecars), unless there is only one.

use crate::model::series::TARGET_LIMITS;
use std::collections::BTreeMap;

/// What each container (by its `container` or `name` label) reported.
#[derive(Default)]
pub struct Containers {
    by_name: BTreeMap<String, Container>,
}

#[derive(Default, Clone, Copy)]
struct Container {
    cpu_seconds: f64,
    quota_us: Option<f64>,
    period_us: Option<f64>,
    periods: Option<f64>,
    throttled_periods: Option<f64>,
    throttled_s: Option<f64>,
    working_set: Option<f64>,
    limit: Option<f64>,
    oom_events: Option<f64>,
}

/// Takes one `container_*` sample; true when it was one of these.
pub fn read(sample: &prometheus_parse::Sample, value: f64, into: &mut Containers) -> bool {
    let name = sample
        .labels
        .get("container")
        .or_else(|| sample.labels.get("name"))
        .unwrap_or("");
    // The pause container and the pod's own cgroup are not a service.
    if name.is_empty() || name == "POD" {
        return false;
    }
    let c = into.by_name.entry(name.to_string()).or_default();
    match sample.metric.as_str() {
        "container_cpu_usage_seconds_total" => c.cpu_seconds += value,
        "container_spec_cpu_quota" => c.quota_us = Some(value),
        "container_spec_cpu_period" => c.period_us = Some(value),
        "container_cpu_cfs_periods_total" => c.periods = Some(value),
        "container_cpu_cfs_throttled_periods_total" => c.throttled_periods = Some(value),
        "container_cpu_cfs_throttled_seconds_total" => c.throttled_s = Some(value),
        "container_memory_working_set_bytes" => c.working_set = Some(value),
        "container_spec_memory_limit_bytes" => c.limit = Some(value).filter(|l| *l > 0.0),
        "container_oom_events_total" => c.oom_events = Some(value),
        _ => return false,
    }
    true
}

impl Containers {
    /// The target's container: the only one, or the one that used the most CPU.
    fn target(&self) -> Option<&Container> {
        self.by_name
            .values()
            .max_by(|a, b| a.cpu_seconds.total_cmp(&b.cpu_seconds))
    }

    /// Puts its limits as they stand into `values`; its CFS counters (periods, throttled
    /// periods, throttled seconds) for rates.
    pub fn limits_into(&self, values: &mut BTreeMap<String, f64>) -> Option<(f64, f64, f64)> {
        let c = self.target()?;
        let l = &TARGET_LIMITS;
        if let (Some(quota), Some(period)) = (c.quota_us, c.period_us) {
            if quota > 0.0 && period > 0.0 {
                values.insert(l.cpu_quota_cores.into(), quota / period);
            }
        }
        if let Some(limit) = c.limit {
            values.insert(l.memory_limit_mb.into(), limit / 1_048_576.0);
            if let Some(used) = c.working_set {
                values.insert(l.memory_used_mb.into(), used / 1_048_576.0);
            }
        }
        if let Some(oom) = c.oom_events {
            values.insert(l.oom_kills.into(), oom);
        }
        Some((
            c.periods?,
            c.throttled_periods?,
            c.throttled_s.unwrap_or(0.0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::exporters::Rates;
    use crate::model::series::{TARGET_GC_PAUSE_SHARE, TARGET_LIMITS};
    use std::time::{Duration, Instant};

    fn scrape(text: &str) -> Vec<prometheus_parse::Sample> {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap()
            .samples
    }

    fn kubelet(periods: f64, throttled: f64, seconds: f64) -> String {
        format!(
            "# TYPE container_cpu_usage_seconds_total counter\n\
             container_cpu_usage_seconds_total{{container=\"app\",pod=\"p\"}} {seconds}\n\
             container_cpu_usage_seconds_total{{container=\"sidecar\",pod=\"p\"}} 0.1\n\
             container_cpu_usage_seconds_total{{container=\"POD\",pod=\"p\"}} 99\n\
             # TYPE container_spec_cpu_quota gauge\n\
             container_spec_cpu_quota{{container=\"app\",pod=\"p\"}} 50000\n\
             # TYPE container_spec_cpu_period gauge\n\
             container_spec_cpu_period{{container=\"app\",pod=\"p\"}} 100000\n\
             # TYPE container_cpu_cfs_periods_total counter\n\
             container_cpu_cfs_periods_total{{container=\"app\",pod=\"p\"}} {periods}\n\
             # TYPE container_cpu_cfs_throttled_periods_total counter\n\
             container_cpu_cfs_throttled_periods_total{{container=\"app\",pod=\"p\"}} {throttled}\n\
             # TYPE container_spec_memory_limit_bytes gauge\n\
             container_spec_memory_limit_bytes{{container=\"app\",pod=\"p\"}} 268435456\n\
             # TYPE container_memory_working_set_bytes gauge\n\
             container_memory_working_set_bytes{{container=\"app\",pod=\"p\"}} 134217728\n"
        )
    }

    #[test]
    fn cadvisor_series_become_the_targets_cgroup() {
        let mut rates = Rates::default();
        let t0 = Instant::now();
        let (first, provided) = rates.read(&scrape(&kubelet(100.0, 10.0, 5.0)), t0);
        assert!(provided.cadvisor);
        assert_eq!(first[TARGET_LIMITS.cpu_quota_cores], 0.5);
        assert_eq!(first[TARGET_LIMITS.memory_limit_mb], 256.0);
        assert_eq!(first[TARGET_LIMITS.memory_used_mb], 128.0);
        let (second, _) = rates.read(
            &scrape(&kubelet(110.0, 19.0, 5.5)),
            t0 + Duration::from_secs(1),
        );
        assert!((second[TARGET_LIMITS.throttled_share] - 0.9).abs() < 1e-9);
    }

    #[test]
    fn gc_pause_totals_become_a_share_of_time() {
        let go = |sum: f64| {
            format!(
                "# TYPE go_gc_duration_seconds summary\n\
                 go_gc_duration_seconds{{quantile=\"0.5\"}} 0.001\n\
                 go_gc_duration_seconds_sum {sum}\n\
                 go_gc_duration_seconds_count 10\n"
            )
        };
        let mut rates = Rates::default();
        let t0 = Instant::now();
        let (_, provided) = rates.read(&scrape(&go(1.0)), t0);
        assert_eq!(provided.gc, Some("go_gc_duration_seconds_sum"));
        let (second, _) = rates.read(&scrape(&go(1.31)), t0 + Duration::from_secs(1));
        assert!((second[TARGET_GC_PAUSE_SHARE] - 0.31).abs() < 1e-9);
    }
}
