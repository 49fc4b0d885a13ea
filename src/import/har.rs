//! Reading the requests out of a HAR file (a browser's network export): method, URL, headers
//! and body of each entry. Credentials never reach the profile: cookies and Authorization
//! become `${KNEE_COOKIE}` / `${KNEE_AUTHORIZATION}`, expanded from the environment when the
//! profile is loaded; headers the client sets itself (Host, Content-Length, HTTP/2's
//! pseudo-headers, connection management) are left out.

use super::Entry;

/// Headers knee's client sets itself, or that say nothing about the request.
const DROPPED: [&str; 8] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "accept-encoding",
    "upgrade",
    "te",
];

/// The entries of a HAR document, and the origin (scheme://host:port) most of them went to.
pub fn parse(text: &str) -> Result<(Vec<Entry>, Option<String>), String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON at line {}: {e}", e.line()))?;
    let entries = doc
        .pointer("/log/entries")
        .and_then(|e| e.as_array())
        .ok_or("no log.entries: not a HAR file")?;
    let mut origins: Vec<(String, usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let request = entry
            .get("request")
            .ok_or(format!("log.entries[{i}] has no request"))?;
        let str_of = |v: &serde_json::Value, key: &str| {
            v.get(key)
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .ok_or(format!("log.entries[{i}].request has no {key}"))
        };
        let url = str_of(request, "url")?;
        let method = str_of(request, "method")?.to_ascii_uppercase();
        let origin = origin_of(&url).ok_or(format!("log.entries[{i}]: '{url}' is not a URL"))?;
        match origins.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, n)) => *n += 1,
            None => origins.push((origin, 1)),
        }
        out.push(Entry {
            time: entry
                .get("startedDateTime")
                .and_then(|t| t.as_str())
                .and_then(|t| humantime::parse_rfc3339_weak(t.get(..19)?).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            method,
            path: super::logs::path_of(&url)?,
            status: entry
                .pointer("/response/status")
                .and_then(|s| s.as_u64())
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| *s > 0),
            headers: headers_of(request),
            body: request
                .pointer("/postData/text")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        });
    }
    origins.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    Ok((out, origins.into_iter().next().map(|(o, _)| o)))
}

/// The request's headers worth replaying, credentials replaced by placeholders.
fn headers_of(request: &serde_json::Value) -> Vec<(String, String)> {
    let Some(headers) = request.get("headers").and_then(|h| h.as_array()) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for header in headers {
        let (Some(name), Some(value)) = (
            header.get("name").and_then(|n| n.as_str()),
            header.get("value").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        if name.starts_with(':') || DROPPED.contains(&lower.as_str()) {
            continue;
        }
        let value = match lower.as_str() {
            "cookie" => "${KNEE_COOKIE}".to_string(),
            "authorization" => "${KNEE_AUTHORIZATION}".to_string(),
            _ => value.to_string(),
        };
        if !out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push((name.to_string(), value));
        }
    }
    out
}

/// `https://h:8443/x?y` → `https://h:8443`.
fn origin_of(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    (host_end > 0).then(|| url[..scheme_end + 3 + host_end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_and_keeps_credentials_out() {
        let har = r#"{"log":{"entries":[
          {"startedDateTime":"2026-12-02T16:15:27.123Z","request":{"method":"post","url":"https://shop.test:8443/api/cart?x=1",
            "headers":[{"name":":authority","value":"shop.test"},{"name":"Cookie","value":"session=s3cr3t"},
                       {"name":"Authorization","value":"Bearer t0ken"},{"name":"Content-Type","value":"application/json"},
                       {"name":"Content-Length","value":"9"}],
            "postData":{"mimeType":"application/json","text":"{\"id\":7}"}},"response":{"status":201}},
          {"request":{"method":"GET","url":"https://shop.test:8443/"},"response":{"status":0}}]}}"#;
        let (entries, origin) = parse(har).unwrap();
        assert_eq!(origin.as_deref(), Some("https://shop.test:8443"));
        let cart = &entries[0];
        assert_eq!(
            (cart.method.as_str(), cart.path.as_str()),
            ("POST", "/api/cart?x=1")
        );
        assert_eq!(cart.status, Some(201));
        assert_eq!(cart.body.as_deref(), Some("{\"id\":7}"));
        assert_eq!(cart.time, Some(1_796_228_127.0));
        assert_eq!(
            cart.headers,
            vec![
                ("Cookie".to_string(), "${KNEE_COOKIE}".to_string()),
                (
                    "Authorization".to_string(),
                    "${KNEE_AUTHORIZATION}".to_string()
                ),
                ("Content-Type".to_string(), "application/json".to_string()),
            ]
        );
        assert_eq!(
            entries[1].status, None,
            "status 0: the browser got no answer"
        );
        assert!(parse("{}").unwrap_err().contains("not a HAR file"));
    }
}
