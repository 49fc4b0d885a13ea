//! User flows (`[[flows]]`): requests sent in order by one virtual user, with think time
//! between them, values taken from one response and put into the next requests (`${token}`),
//! and rows of a CSV feeder. A real user logs in and then browses; a mix of independent
//! requests cannot carry the session from one to the next. Checked once here (every
//! variable a step uses is a feeder column or taken by an earlier step), so the engine only
//! substitutes and extracts.

use crate::plan::RequestPlan;
use http::HeaderValue;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The flows of a run; a rate is flows started per second (the open model's unit).
#[derive(Debug)]
pub struct Flows {
    pub list: Vec<FlowPlan>,
}

impl Flows {
    /// The flows over the run's requests (as the command line left them): a step whose
    /// request still has a `${…}` keeps it as its template.
    pub fn over(mut list: Vec<FlowPlan>, requests: &[RequestPlan]) -> Flows {
        for step in list.iter_mut().flat_map(|f| f.steps.iter_mut()) {
            let request = &requests[step.request];
            let templated = request.path.contains("${")
                || request.body.windows(2).any(|w| w == b"${")
                || request
                    .headers
                    .iter()
                    .any(|(_, v)| v.as_bytes().windows(2).any(|w| w == b"${"));
            step.template = templated.then(|| request.clone());
        }
        Flows { list }
    }

    /// The weights the mix picks flows by.
    pub fn weights(&self) -> Vec<u32> {
        self.list.iter().map(|f| f.weight).collect()
    }

    /// The request a flow starts with (what a flow never sent is counted against).
    pub fn first_request(&self, flow: usize) -> u32 {
        self.list
            .get(flow)
            .and_then(|f| f.steps.first())
            .map_or(0, |s| s.request as u32)
    }
}

#[derive(Debug, Clone)]
pub struct FlowPlan {
    pub name: String,
    pub weight: u32,
    pub steps: Vec<FlowStep>,
    /// One row per flow started, in turn (the file's rows again from the top after the last).
    pub feeder: Option<Feeder>,
}

#[derive(Debug, Clone)]
pub struct FlowStep {
    /// Its request in the run's requests (its figures are that request's name's).
    pub request: usize,
    /// The pause after its response, before the next step is sent.
    pub think: Duration,
    /// What it takes from its response, in order.
    pub extract: Vec<Extract>,
    /// The request with its `${…}` still in it, when it has any (rendered per flow).
    pub template: Option<RequestPlan>,
}

/// A value a step takes from its response, named for the requests after it.
#[derive(Debug, Clone)]
pub struct Extract {
    pub var: String,
    pub from: ExtractFrom,
}

#[derive(Debug, Clone)]
pub enum ExtractFrom {
    /// A JSON pointer into the body (`/data/token`): a string as it is, a number or a
    /// boolean as written, an object or array as JSON; null or absent fails.
    Json(String),
    /// The first value of a response header.
    Header(http::HeaderName),
    /// The first match in the body: its first group if it has one, else the whole match.
    Regex(regex::Regex),
}

impl ExtractFrom {
    /// What the response gives, or None (a failed extraction).
    pub fn apply(&self, headers: &[(String, String)], body: &[u8]) -> Option<String> {
        match self {
            ExtractFrom::Json(pointer) => {
                let value: serde_json::Value = serde_json::from_slice(body).ok()?;
                match value.pointer(pointer)? {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            }
            ExtractFrom::Header(name) => headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.as_str()))
                .map(|(_, v)| v.clone()),
            ExtractFrom::Regex(re) => {
                let text = String::from_utf8_lossy(body);
                let found = re.captures(&text)?;
                let m = found.get(1).or_else(|| found.get(0))?;
                Some(m.as_str().to_string())
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ExtractFrom::Json(p) => format!("json {p}"),
            ExtractFrom::Header(h) => format!("header {h}"),
            ExtractFrom::Regex(re) => format!("regex {}", re.as_str()),
        }
    }
}

/// A CSV file's rows: its first line names the columns, each a variable of the flow.
#[derive(Debug)]
pub struct Feeder {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    next: AtomicUsize,
}

impl Clone for Feeder {
    /// A copy starts from the first row again.
    fn clone(&self) -> Self {
        Feeder {
            columns: self.columns.clone(),
            rows: self.rows.clone(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Feeder {
    /// Parses CSV (RFC 4180: fields in double quotes may hold commas, quotes doubled and
    /// line breaks); a row with a different number of fields than the header is an error
    /// naming its line.
    pub fn parse(text: &str) -> Result<Feeder, String> {
        let records = csv_records(text)?;
        let mut records = records.into_iter();
        let (_, columns) = records.next().ok_or("the file is empty")?;
        if let Some(bad) = columns
            .iter()
            .find(|c| c.is_empty() || !c.chars().all(|ch| ch.is_alphanumeric() || ch == '_'))
        {
            return Err(format!(
                "line 1: column '{bad}' is not a variable name (letters, digits and _)"
            ));
        }
        let mut rows = Vec::new();
        for (line, row) in records {
            if row.len() == 1 && row[0].is_empty() {
                continue; // a blank line
            }
            if row.len() != columns.len() {
                return Err(format!(
                    "line {line}: {} fields where the header has {}",
                    row.len(),
                    columns.len()
                ));
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err("no rows under the header".into());
        }
        Ok(Feeder {
            columns,
            rows,
            next: AtomicUsize::new(0),
        })
    }

    /// The next row's values by column name.
    pub fn next_row(&self) -> impl Iterator<Item = (&str, &str)> {
        let row = &self.rows[self.next.fetch_add(1, Ordering::Relaxed) % self.rows.len()];
        self.columns
            .iter()
            .map(String::as_str)
            .zip(row.iter().map(String::as_str))
    }
}

/// CSV records with the line each starts on.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut line, mut start_line) = (1, 1);
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                line += usize::from(c == '\n');
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                fields.push(std::mem::take(&mut field));
                records.push((start_line, std::mem::take(&mut fields)));
                line += 1;
                start_line = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {start_line}: a quoted field is not closed"));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((start_line, fields));
    }
    Ok(records)
}

/// A piece of a text with `${name}` variables in it: the one reading of that syntax, for
/// the profile's environment expansion, a flow's variable check and its rendering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    /// `${name}`: the name.
    Var(&'a str),
    /// A `${` with no `}` after it, and the rest of the text.
    Unclosed(&'a str),
}

/// `text` as text and variables, in order.
pub fn pieces(text: &str) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let piece = match rest.find("${") {
            Some(0) => match rest[2..].find('}') {
                Some(end) => {
                    let name = &rest[2..2 + end];
                    rest = &rest[3 + end..];
                    return Some(Piece::Var(name));
                }
                None => Piece::Unclosed(rest),
            },
            Some(start) => {
                let text = &rest[..start];
                rest = &rest[start..];
                return Some(Piece::Text(text));
            }
            None => Piece::Text(rest),
        };
        rest = "";
        Some(piece)
    })
}

/// The `${name}` variables in `text`, in order.
pub fn variables(text: &str) -> Vec<&str> {
    pieces(text)
        .filter_map(|p| match p {
            Piece::Var(name) => Some(name),
            _ => None,
        })
        .collect()
}

/// One virtual user's values: feeder columns, then what its steps took.
#[derive(Debug, Default)]
pub struct Vars(Vec<(String, String)>);

impl Vars {
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `text` with each `${name}` this user has replaced by its value (others left as they
    /// are: the plan checked there are none).
    pub fn render(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 32);
        for piece in pieces(text) {
            match piece {
                Piece::Text(text) | Piece::Unclosed(text) => out.push_str(text),
                Piece::Var(name) => match self.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        out.push_str("${");
                        out.push_str(name);
                        out.push('}');
                    }
                },
            }
        }
        out
    }

    /// The template request with this user's values in its path, headers and body; a value
    /// that cannot be in a header (a line break) is an error naming the header.
    pub fn request(&self, template: &RequestPlan) -> Result<RequestPlan, String> {
        let mut request = template.clone();
        request.path = self.render(&template.path);
        for (name, value) in &mut request.headers {
            let text = value.to_str().unwrap_or_default();
            if text.contains("${") {
                *value = HeaderValue::from_str(&self.render(text))
                    .map_err(|_| format!("header {name}: the value is not valid in HTTP"))?;
            }
        }
        let body = String::from_utf8_lossy(&template.body);
        if body.contains("${") {
            request.body = bytes::Bytes::from(self.render(&body));
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_feeder_reads_quotes_and_names_a_bad_line() {
        let feeder = Feeder::parse("user,password\nann,\"a,b\"\"c\"\n\nbob,x\r\n").unwrap();
        assert_eq!(feeder.columns, ["user", "password"]);
        assert_eq!(feeder.rows, [vec!["ann", "a,b\"c"], vec!["bob", "x"]]);
        let first: Vec<_> = feeder.next_row().collect();
        let second: Vec<_> = feeder.next_row().collect();
        let third: Vec<_> = feeder.next_row().collect();
        assert_eq!(first, [("user", "ann"), ("password", "a,b\"c")]);
        assert_eq!(second[0], ("user", "bob"));
        assert_eq!(third[0], ("user", "ann"), "rows come round again");
        let err = Feeder::parse("a,b\n1,2\n3\n").unwrap_err();
        assert_eq!(err, "line 3: 1 fields where the header has 2");
        assert!(Feeder::parse("a b\n1\n").unwrap_err().contains("'a b'"));
        assert!(Feeder::parse("a\n\"open\n")
            .unwrap_err()
            .contains("not closed"));
        assert!(Feeder::parse("a\n").unwrap_err().contains("no rows"));
    }

    #[test]
    fn extraction_from_json_header_and_regex() {
        let headers = vec![("X-Session".to_string(), "s-42".to_string())];
        let body = br#"{"data":{"token":"abc","n":7,"none":null},"html":"id=991;"}"#;
        let json = |p: &str| ExtractFrom::Json(p.into()).apply(&headers, body);
        assert_eq!(json("/data/token").as_deref(), Some("abc"));
        assert_eq!(json("/data/n").as_deref(), Some("7"));
        assert_eq!(json("/data/none"), None);
        assert_eq!(json("/data/missing"), None);
        assert_eq!(
            ExtractFrom::Json("/a".into()).apply(&headers, b"not json"),
            None
        );
        let header = ExtractFrom::Header(http::HeaderName::from_static("x-session"));
        assert_eq!(header.apply(&headers, body).as_deref(), Some("s-42"));
        let re = |p: &str| ExtractFrom::Regex(regex::Regex::new(p).unwrap()).apply(&headers, body);
        assert_eq!(re(r"id=(\d+)").as_deref(), Some("991"));
        assert_eq!(re(r"id=\d+").as_deref(), Some("id=991"));
        assert_eq!(re(r"nothing(\d)"), None);
    }

    #[test]
    fn a_text_reads_as_text_variables_and_an_unclosed_rest() {
        use Piece::*;
        let read = |t| pieces(t).collect::<Vec<_>>();
        assert_eq!(read(""), []);
        assert_eq!(read("plain $x {y}"), [Text("plain $x {y}")]);
        assert_eq!(read("${a}"), [Var("a")]);
        assert_eq!(
            read("/u/${id}?t=${tok}&${rest"),
            [
                Text("/u/"),
                Var("id"),
                Text("?t="),
                Var("tok"),
                Text("&"),
                Unclosed("${rest")
            ]
        );
        assert_eq!(read("${}x"), [Var(""), Text("x")]);
    }

    #[test]
    fn a_user_renders_its_values_and_leaves_others() {
        let mut vars = Vars::default();
        vars.set("token", "t1".into());
        vars.set("token", "t2".into());
        assert_eq!(
            vars.render("/a/${token}?x=${other}&${"),
            "/a/t2?x=${other}&${"
        );
        assert_eq!(variables("${a} and ${b_2}"), ["a", "b_2"]);
        let template = RequestPlan {
            name: "f/s".into(),
            method: http::Method::POST,
            path: "/u/${token}".into(),
            headers: vec![(
                http::header::AUTHORIZATION,
                HeaderValue::from_static("Bearer ${token}"),
            )],
            body: bytes::Bytes::from_static(b"{\"t\":\"${token}\"}"),
            weight: 1,
            slo: None,
        };
        let request = vars.request(&template).unwrap();
        assert_eq!(request.path, "/u/t2");
        assert_eq!(request.headers[0].1, "Bearer t2");
        assert_eq!(&request.body[..], b"{\"t\":\"t2\"}");
        vars.set("token", "bad\nvalue".into());
        assert!(vars
            .request(&template)
            .unwrap_err()
            .contains("authorization"));
    }
}
