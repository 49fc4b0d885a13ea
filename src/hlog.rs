//! Per-step histogram logs in HdrHistogram's standard V2 interval-log format (compressed,
//! base64), `hist/<step>.hlog`: one interval per histogram, tagged `latency` and `service`.
//! Any HdrHistogram tool reads them (HistogramLogProcessor, HdrHistogram-rs, hdrhistogram-go),
//! and they keep the whole distribution, so runs taken on several machines can be merged
//! exactly by adding histograms, never by averaging percentiles.

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Writes `histograms` (tag, histogram) as one interval each, starting at `start`.
pub fn write(
    path: &Path,
    start: SystemTime,
    duration: Duration,
    histograms: &[(&str, &Histogram<u64>)],
) -> Result<(), String> {
    let mut bytes = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut bytes, &mut serializer)
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        for (tag, histogram) in histograms {
            let tag = Tag::new(tag).ok_or_else(|| format!("bad histogram tag '{tag}'"))?;
            log.write_histogram(histogram, Duration::ZERO, duration, Some(tag))
                .map_err(|e| format!("cannot write {}: {e:?}", path.display()))?;
        }
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads a log back: each interval's tag (or "") and histogram, in order.
pub fn read(path: &Path) -> Result<Vec<(String, Histogram<u64>)>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut deserializer = Deserializer::new();
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|e| format!("{}: not an interval log: {e:?}", path.display()))?;
        if let LogEntry::Interval(interval) = entry {
            let encoded = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .map_err(|e| format!("{}: bad base64: {e}", path.display()))?;
            let histogram: Histogram<u64> = deserializer
                .deserialize(&mut encoded.as_slice())
                .map_err(|e| format!("{}: bad histogram: {e:?}", path.display()))?;
            let tag = interval
                .tag()
                .map_or(String::new(), |t| t.as_str().to_string());
            out.push((tag, histogram));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_reads_back_the_histograms_it_was_written_with() {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut service = latency.clone();
        for v in [120u64, 4_000, 4_100, 250_000, 9_999_999] {
            latency.record(v).unwrap();
            service.record(v / 2).unwrap();
        }
        let dir = std::env::temp_dir().join(format!("knee-hlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("step.hlog");
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        write(
            &path,
            start,
            Duration::from_secs(2),
            &[("latency", &latency), ("service", &service)],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("#[StartTime: 1800000000"), "{text}");
        assert!(text.contains("Tag=latency,0.000,2.000,"), "{text}");
        let back = read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, "latency");
        assert_eq!(back[0].1, latency);
        assert_eq!(back[1].0, "service");
        assert_eq!(back[1].1, service);
    }
}
