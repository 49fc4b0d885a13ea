//! Reading the requests out of access logs: nginx's and Apache's combined and common formats,
//! and JSON lines with the usual field names. Each line becomes an `Entry`; a line that is
//! not one is skipped and counted with its line number, never a panic.

use super::Entry;

/// `host ident user [02/Dec/2026:17:15:27 +0000] "GET /path HTTP/1.1" 200 512 ["ref" "ua"]`.
pub fn parse_clf(line: &str) -> Result<Entry, String> {
    let open = line.find('[').ok_or("no [time]")?;
    let close = open + line[open..].find(']').ok_or("no ] after the time")?;
    let time = parse_clf_time(&line[open + 1..close])?;
    let rest = &line[close + 1..];
    let q1 = rest.find('"').ok_or("no \"request\"")?;
    let q2 = q1
        + 1
        + rest[q1 + 1..]
            .find('"')
            .ok_or("the request's quote is not closed")?;
    let request = &rest[q1 + 1..q2];
    let mut parts = request.split_whitespace();
    let method = parts.next().ok_or("an empty request")?;
    let path = parts.next().ok_or("no path in the request")?;
    if !method.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(format!("'{method}' is not an HTTP method"));
    }
    let status = rest[q2 + 1..]
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no status after the request")?;
    Ok(Entry {
        time: Some(time),
        method: method.to_string(),
        path: path_of(path)?,
        status: Some(status),
        headers: Vec::new(),
        body: None,
    })
}

/// `02/Dec/2026:17:15:27 +0000` → seconds since the epoch.
fn parse_clf_time(text: &str) -> Result<f64, String> {
    let bad = || format!("'{text}' is not a log time (02/Dec/2026:17:15:27 +0000)");
    let (stamp, zone) = text.split_once(' ').unwrap_or((text, "+0000"));
    let mut fields = stamp.splitn(4, [':', '/']);
    let day: i64 = fields.next().and_then(|d| d.parse().ok()).ok_or_else(bad)?;
    let month = fields.next().ok_or_else(bad)?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)
    .ok_or_else(bad)? as i64
        + 1;
    let year: i64 = fields.next().and_then(|y| y.parse().ok()).ok_or_else(bad)?;
    let clock: Vec<i64> = fields
        .next()
        .ok_or_else(bad)?
        .split(':')
        .map(|n| n.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [h, m, s] = clock[..] else {
        return Err(bad());
    };
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let zone = zone.trim_start_matches(['+', '-']);
    let offset = zone
        .get(..2)
        .zip(zone.get(2..4))
        .and_then(|(h, m)| Some(h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60))
        .ok_or_else(bad)?;
    let days = days_from_civil(year, month, day);
    Ok((days * 86_400 + h * 3600 + m * 60 + s - sign * offset) as f64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A JSON line with the usual names: method (`method`, `request_method`, `verb`), path
/// (`path`, `uri`, `request_uri`, `url`, or a `request` of "GET /p HTTP/1.1"), status
/// (`status`, `status_code`), time (`time`, `timestamp`, `@timestamp`, `ts`: seconds since
/// the epoch, or RFC 3339).
pub fn parse_json(line: &str) -> Result<Entry, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let field = |names: &[&str]| names.iter().find_map(|n| value.get(*n));
    let text = |names: &[&str]| field(names).and_then(|v| v.as_str()).map(str::to_string);
    let (mut method, mut path) = (
        text(&["method", "request_method", "verb"]),
        text(&["path", "uri", "request_uri", "url"]),
    );
    if let Some(request) = text(&["request"]) {
        let mut parts = request.split_whitespace();
        method = method.or(parts.next().map(str::to_string));
        path = path.or(parts.next().map(str::to_string));
    }
    let method = method.ok_or("no method field (method, request_method, verb)")?;
    let path = path.ok_or("no path field (path, uri, request_uri, url, request)")?;
    let status = field(&["status", "status_code", "response_status"]).and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| u16::try_from(n).ok())
    });
    let time = field(&["time", "timestamp", "@timestamp", "ts"]).and_then(|v| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse::<f64>().ok()))
            .or_else(|| {
                v.as_str()
                    .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
                    .map(|t| {
                        t.duration_since(std::time::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64())
                    })
            })
    });
    Ok(Entry {
        time,
        method: method.to_ascii_uppercase(),
        path: path_of(&path)?,
        status,
        headers: Vec::new(),
        body: None,
    })
}

/// The path and query of a request target (an absolute URL keeps only those).
pub fn path_of(target: &str) -> Result<String, String> {
    let path = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find(['/', '?']).map_or("/", |j| &rest[j..])
        }
        None => target,
    };
    if !path.starts_with('/') {
        return Err(format!("'{target}' is not a path"));
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_combined_and_common_lines() {
        let combined = r#"10.0.0.7 - alice [02/Dec/2026:17:15:27 +0100] "GET /users/42?full=1 HTTP/1.1" 200 512 "https://x/" "curl/8""#;
        let entry = parse_clf(combined).unwrap();
        assert_eq!(entry.method, "GET");
        assert_eq!(entry.path, "/users/42?full=1");
        assert_eq!(entry.status, Some(200));
        // 2026-12-02T16:15:27Z
        assert_eq!(entry.time, Some(1_796_228_127.0));
        let common = r#"::1 - - [02/Dec/2026:16:15:28 +0000] "POST /orders HTTP/1.0" 503 -"#;
        let entry = parse_clf(common).unwrap();
        assert_eq!((entry.method.as_str(), entry.status), ("POST", Some(503)));
        assert_eq!(entry.time, Some(1_796_228_128.0));
        assert!(parse_clf("garbage").unwrap_err().contains("[time]"));
        assert!(
            parse_clf(r#"h - - [02/Foo/2026:16:15:28 +0000] "GET / HTTP/1.1" 200 1"#)
                .unwrap_err()
                .contains("not a log time")
        );
    }

    #[test]
    fn reads_json_lines_by_their_usual_names() {
        let entry = parse_json(
            r#"{"@timestamp":"2026-12-02T16:15:27Z","request":"GET /a/b HTTP/1.1","status":"404"}"#,
        )
        .unwrap();
        assert_eq!(
            (entry.method.as_str(), entry.path.as_str()),
            ("GET", "/a/b")
        );
        assert_eq!(entry.status, Some(404));
        assert_eq!(entry.time, Some(1_796_228_127.0));
        let entry = parse_json(r#"{"verb":"put","url":"http://h:8/x?y=1","ts":12.5}"#).unwrap();
        assert_eq!(
            (entry.method.as_str(), entry.path.as_str()),
            ("PUT", "/x?y=1")
        );
        assert_eq!(entry.time, Some(12.5));
        assert!(parse_json(r#"{"path":"/x"}"#)
            .unwrap_err()
            .contains("no method"));
    }
}
