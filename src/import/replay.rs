//! `knee run --replay FILE`: a log's requests sent at their recorded times (open model), so its
//! bursts stay bursts, which a mix at an even rate smooths away. The requests are the log's
//! own (each distinct method and path one request, named by its endpoint as `knee import`
//! names them); answers the log shows as errors are left out, as an import leaves them. An
//! access log's times are whole seconds: the requests of one second are spread evenly across
//! it (its count per second, the burst, is kept); finer times (JSON logs) are kept as they are.

use super::{template, Read};

/// The log as sends: its requests, and when each is sent (seconds from the first, in order).
#[derive(Debug, PartialEq)]
pub struct Replay {
    /// (name, method, path and query), in the order first seen.
    pub requests: Vec<(String, String, String)>,
    /// (offset in seconds, index into `requests`), earliest first.
    pub sends: Vec<(f64, u32)>,
    /// From the first send's second to the end of the last one's (or the last send).
    pub span_s: f64,
    /// Left out: answered 4xx/5xx, or without a time.
    pub errors: usize,
    pub untimed: usize,
}

impl Replay {
    /// The log's mean rate, requests per second.
    pub fn mean_rps(&self) -> f64 {
        self.sends.len() as f64 / self.span_s.max(1e-3)
    }
}

/// The sends of what was read; an error when no request has a time.
pub fn of(read: &Read) -> Result<Replay, String> {
    let mut requests: Vec<(String, String, String)> = Vec::new();
    let mut timed: Vec<(f64, u32)> = Vec::new();
    let (mut errors, mut untimed) = (0, 0);
    for entry in &read.entries {
        if entry.status.is_some_and(|s| s >= 400) {
            errors += 1;
            continue;
        }
        let Some(time) = entry.time else {
            untimed += 1;
            continue;
        };
        let index = match requests
            .iter()
            .position(|(_, m, p)| *m == entry.method && *p == entry.path)
        {
            Some(index) => index,
            None => {
                let name = format!("{} {}", entry.method, template::of(&entry.path));
                requests.push((name, entry.method.clone(), entry.path.clone()));
                requests.len() - 1
            }
        };
        timed.push((time, index as u32));
    }
    if timed.is_empty() {
        return Err("no request with a time to replay it at".into());
    }
    // Stable: requests of one instant keep the log's order.
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let whole_seconds = timed.iter().all(|(t, _)| t.fract() == 0.0);
    let first = timed[0].0.floor();
    let (sends, span_s) = if whole_seconds {
        let mut sends = Vec::with_capacity(timed.len());
        for second in timed.chunk_by(|a, b| a.0 == b.0) {
            let n = second.len() as f64;
            for (i, (t, request)) in second.iter().enumerate() {
                sends.push((t - first + (i as f64 + 0.5) / n, *request));
            }
        }
        let last = timed[timed.len() - 1].0;
        (sends, last - first + 1.0)
    } else {
        let first = timed[0].0;
        let sends: Vec<(f64, u32)> = timed.iter().map(|(t, r)| (t - first, *r)).collect();
        let span = sends[sends.len() - 1].0;
        (sends, span + 1e-3)
    };
    Ok(Replay {
        requests,
        sends,
        span_s,
        errors,
        untimed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::Entry;

    fn entry(time: Option<f64>, path: &str, status: u16) -> Entry {
        Entry {
            time,
            method: "GET".into(),
            path: path.into(),
            status: Some(status),
            headers: Vec::new(),
            body: None,
        }
    }

    #[test]
    fn a_seconds_requests_are_spread_across_it_and_errors_left_out() {
        let read = Read {
            entries: vec![
                entry(Some(100.0), "/users/1", 200),
                entry(Some(102.0), "/users/2", 200),
                entry(Some(102.0), "/users/1", 200),
                entry(Some(102.0), "/search", 200),
                entry(Some(102.0), "/missing", 404),
                entry(None, "/search", 200),
                entry(Some(104.0), "/search", 200),
            ],
            format: "test",
            origin: None,
            unreadable: 0,
            first_unreadable: None,
        };
        let replay = of(&read).unwrap();
        let names: Vec<&str> = replay.requests.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["GET /users/{id}", "GET /users/{id}", "GET /search"]);
        let offsets: Vec<f64> = replay.sends.iter().map(|s| s.0).collect();
        let third = 1.0 / 3.0;
        let expected = [0.5, 2.0 + third / 2.0, 2.5, 3.0 - third / 2.0, 4.5];
        for (got, want) in offsets.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{offsets:?}");
        }
        assert_eq!(
            replay.sends.iter().map(|s| s.1).collect::<Vec<_>>(),
            [0, 1, 0, 2, 2]
        );
        assert_eq!((replay.span_s, replay.errors, replay.untimed), (5.0, 1, 1));
        assert!((replay.mean_rps() - 1.0).abs() < 1e-9);
        // Finer times are kept as they are.
        let fine = Read {
            entries: vec![entry(Some(10.25), "/a", 200), entry(Some(10.75), "/a", 200)],
            ..read
        };
        let replay = of(&fine).unwrap();
        assert_eq!(replay.sends, vec![(0.0, 0), (0.5, 0)]);
    }
}
