//! An endpoint's name from a request's path: the segments that are ids (numbers, UUIDs, long
//! hex strings) become `{id}`, the query is dropped, so `/users/42?full=1` and `/users/7`
//! are both `/users/{id}`.

/// The path template of a path and query.
pub fn of(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let segments: Vec<&str> = path
        .split('/')
        .map(|segment| if is_id(segment) { "{id}" } else { segment })
        .collect();
    segments.join("/")
}

fn is_id(segment: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    let numeric = !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit());
    let uuid = segment.len() == 36
        && segment.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && segment.split('-').all(hex);
    let long_hex =
        segment.len() >= 8 && hex(segment) && segment.chars().any(|c| c.is_ascii_digit());
    numeric || uuid || long_hex
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_become_placeholders() {
        for (path, template) in [
            ("/users/42?full=1", "/users/{id}"),
            ("/users/42/orders/7", "/users/{id}/orders/{id}"),
            ("/o/123e4567-e89b-12d3-a456-426614174000", "/o/{id}"),
            ("/blob/5f2b9c0ad41e", "/blob/{id}"),
            ("/v2/search", "/v2/search"),
            ("/cafe", "/cafe"),
            ("/deadbeef", "/deadbeef"),
            ("/", "/"),
        ] {
            assert_eq!(super::of(path), template, "{path}");
        }
    }
}
