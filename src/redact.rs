//! Secrets never leave knee: user:password in URLs, query parameters and headers whose names
//! look like credentials are replaced by `REDACTED` in everything written.

pub const REDACTED: &str = "REDACTED";

/// Header names whose values are always secret.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];
/// Name fragments that make a header or a query parameter secret.
const SECRET_WORDS: [&str; 8] = [
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "auth",
    "session",
    "signature",
];

pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&lower.as_str()) || SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// Redacts user info and secret-looking query parameters of a URL.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let head = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{REDACTED}@{host}{path}"),
                None => head.to_string(),
            }
        }
        None => head.to_string(),
    };
    match query {
        None => head,
        Some(query) => {
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_name(name) => format!("{name}={REDACTED}"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{head}?{}", params.join("&"))
        }
    }
}

/// Redacts a command line: URLs, `-H "Name: value"` headers with secret names, `--body`.
pub fn redact_command(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut previous = "";
    for arg in args {
        let redacted = if matches!(previous, "-H" | "--header") {
            redact_header_arg(arg)
        } else if let Some(value) = arg.strip_prefix("--header=") {
            format!("--header={}", redact_header_arg(value))
        } else if previous == "--metrics-header" {
            redact_header_value(arg)
        } else if let Some(value) = arg.strip_prefix("--metrics-header=") {
            format!("--metrics-header={}", redact_header_value(value))
        } else if matches!(previous, "--body") {
            REDACTED.to_string()
        } else if arg.contains("://") {
            redact_url(arg)
        } else {
            arg.clone()
        };
        out.push(redacted);
        previous = arg.as_str();
    }
    out
}

/// A scrape's header is given only to reach the endpoint: its value is always secret.
fn redact_header_value(header: &str) -> String {
    match header.split_once(':') {
        Some((name, _)) => format!("{name}: {REDACTED}"),
        None => REDACTED.to_string(),
    }
}

fn redact_header_arg(header: &str) -> String {
    match header.split_once(':') {
        Some((name, _)) if is_secret_name(name.trim()) => format!("{name}: {REDACTED}"),
        _ => header.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact_url("https://bob:pw@host:8443/a?api_key=s3cr3t&page=2"),
            "https://REDACTED@host:8443/a?api_key=REDACTED&page=2"
        );
        assert_eq!(redact_url("http://127.0.0.1:80/x"), "http://127.0.0.1:80/x");
    }

    #[test]
    fn commands() {
        let args: Vec<String> = [
            "knee",
            "run",
            "-H",
            "Authorization: Bearer s3cr3t",
            "--header=X-Trace: 1",
            "--url",
            "http://h/?token=s3cr3t",
            "--metrics-header",
            "X-Scope: s3cr3t",
            "--metrics-header=X-Org:s3cr3t",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = redact_command(&args).join(" ");
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("X-Trace: 1"));
        assert!(out.contains("X-Scope: REDACTED"), "{out}");
        assert!(out.contains("--metrics-header=X-Org: REDACTED"), "{out}");
    }
}
