//! A Node.js service's own stacks, through its inspector: SIGUSR1 makes a running Node
//! process open it on 127.0.0.1:9229 (the V8 inspector: the Chrome DevTools protocol over a
//! WebSocket); `Profiler.start`, then `Profiler.stop` after the profile's seconds, gives a
//! CPU profile of the event loop's JavaScript, every function named (perf would see V8's
//! internals and anonymous JIT frames). The inspector is closed again after each profile.
//!
//! Frames are named `function (file.js:line)`; code under `node:` (Node's own) or
//! `node_modules/` is not the service's. What waits on promises is invisible to thread
//! stacks: the off-CPU view of a Node service shows libuv's threads only, and knee says so.

use super::capture::Captured;
use crate::stacks::folded::Folded;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// Where Node's inspector listens when SIGUSR1 opens it.
const INSPECTOR: &str = "127.0.0.1:9229";
/// How long the inspector may take to open.
const OPEN_WITHIN: Duration = Duration::from_secs(5);

/// The CPU profile of Node process `pid` over `seconds`.
pub fn cpu(pid: u32, seconds: f64) -> Result<Captured, String> {
    // SAFETY: kill with SIGUSR1 on a pid: asks Node to open its inspector.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) } != 0 {
        return Err(format!(
            "cannot signal pid {pid} (SIGUSR1 opens Node's inspector): {}",
            std::io::Error::last_os_error()
        ));
    }
    let url = debugger_url(pid)?;
    let mut socket = connect(&url)?;
    let mut session = Session {
        socket: &mut socket,
        next: 0,
    };
    session.call("Profiler.enable", json!({}))?;
    session.call("Profiler.setSamplingInterval", json!({"interval": 1000}))?;
    session.call("Profiler.start", json!({}))?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let stopped = session.call("Profiler.stop", json!({}))?;
    let _ = session.call("Profiler.disable", json!({}));
    // Close the inspector again: a staging service is left as it was found.
    let _ = session.call(
        "Runtime.evaluate",
        json!({"expression": "require('inspector').close()", "includeCommandLineAPI": true}),
    );
    let _ = socket.close(None);
    let profile = &stopped["profile"];
    let folded = fold(profile);
    if folded.total() == 0 {
        return Err("the inspector's profile has no samples".into());
    }
    let own = own_functions(&folded);
    Ok(Captured {
        own,
        ..Captured::stacks(folded, None, Some(1000.0))
    })
}

/// Samples per function of the service's own JavaScript (the first own frame from the leaf).
pub fn own_functions(folded: &Folded) -> std::collections::BTreeMap<String, u64> {
    let mut own = std::collections::BTreeMap::new();
    for (stack, count) in &folded.stacks {
        if let Some(frame) = stack.rsplit(';').find(|f| is_own(f)) {
            *own.entry(frame.to_string()).or_default() += count;
        }
    }
    own
}

/// The inspector's WebSocket URL for `pid`, once it listens.
fn debugger_url(pid: u32) -> Result<String, String> {
    let deadline = Instant::now() + OPEN_WITHIN;
    loop {
        let listed = crate::observe::http::Get::new(
            &format!("http://{INSPECTOR}/json/list"),
            Duration::from_secs(2),
            1 << 20,
        )
        .send();
        if let Ok(body) = listed {
            let targets: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the inspector's target list is not JSON: {e}"))?;
            let url = targets
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string);
            return url.ok_or_else(|| format!("Node's inspector (pid {pid}) lists no target"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "Node's inspector did not open on {INSPECTOR} after SIGUSR1 to pid {pid} (another process holding the port? started with --inspect-port?)"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn connect(url: &str) -> Result<WebSocket<TcpStream>, String> {
    let stream = TcpStream::connect(INSPECTOR).map_err(|e| format!("inspector: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| format!("inspector: {e}"))?;
    let (socket, _) = tungstenite::client(url, stream).map_err(|e| format!("inspector: {e}"))?;
    Ok(socket)
}

/// A DevTools protocol session: calls and their answers (events in between are skipped).
struct Session<'a> {
    socket: &'a mut WebSocket<TcpStream>,
    next: u64,
}

impl Session<'_> {
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next += 1;
        let id = self.next;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::text(request))
            .map_err(|e| format!("inspector: {method}: {e}"))?;
        loop {
            let message = self
                .socket
                .read()
                .map_err(|e| format!("inspector: {method}: {e}"))?;
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text)
                .map_err(|e| format!("inspector: {method}: not JSON: {e}"))?;
            if answer["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("inspector: {method}: {error}"));
            }
            return Ok(answer["result"].clone());
        }
    }
}

/// Folds a V8 CPU profile (`nodes` with `children`, each with its `hitCount`).
pub fn fold(profile: &Value) -> Folded {
    let nodes = profile["nodes"].as_array().cloned().unwrap_or_default();
    let mut parent: HashMap<u64, u64> = HashMap::new();
    let mut by_id: HashMap<u64, &Value> = HashMap::new();
    for node in &nodes {
        let Some(id) = node["id"].as_u64() else {
            continue;
        };
        by_id.insert(id, node);
        for child in node["children"].as_array().into_iter().flatten() {
            if let Some(child) = child.as_u64() {
                parent.insert(child, id);
            }
        }
    }
    let mut folded = Folded::default();
    for (id, node) in &by_id {
        let hits = node["hitCount"].as_u64().unwrap_or(0);
        if hits == 0 {
            continue;
        }
        let mut names = Vec::new();
        let mut at = Some(*id);
        while let Some(current) = at {
            if let Some(frame) = by_id.get(&current).and_then(|n| frame_name(n)) {
                names.push(frame);
            }
            at = parent.get(&current).copied();
        }
        names.reverse();
        if !names.is_empty() {
            *folded.stacks.entry(names.join(";")).or_default() += hits;
        }
    }
    folded
}

/// "renderInvoice (service.js:12)"; None for the profile's root.
fn frame_name(node: &Value) -> Option<String> {
    let frame = &node["callFrame"];
    let function = frame["functionName"].as_str().unwrap_or("");
    if function == "(root)" {
        return None;
    }
    let url = frame["url"].as_str().unwrap_or("");
    let function = if function.is_empty() {
        "(anonymous)"
    } else {
        function
    };
    if url.is_empty() {
        return Some(function.to_string());
    }
    // The service's files by their name alone; Node's own modules and packages by enough of
    // their path to tell them from the service's (`is_own` reads it).
    let file = if url.starts_with("node:") {
        url
    } else if let Some(at) = url.rfind("node_modules/") {
        &url[at..]
    } else {
        url.rsplit('/').next().unwrap_or(url)
    };
    let line = frame["lineNumber"].as_i64().map_or(0, |l| l + 1);
    Some(format!("{function} ({file}:{line})"))
}

/// Whether a frame name is the service's own JavaScript: from a file (V8's builtins such as
/// `hrtimeBigInt` and its entries such as "(program)" have none), and not Node's (`node:`)
/// or a package's (`node_modules`).
pub fn is_own(frame: &str) -> bool {
    let from_a_file = frame.ends_with(')') && frame.contains(" (");
    from_a_file
        && !frame.starts_with('(')
        && !frame.contains("(node:")
        && !frame.contains("node_modules")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v8_profile_folds_into_named_stacks() {
        let profile = json!({"nodes": [
            {"id": 1, "callFrame": {"functionName": "(root)", "url": ""}, "hitCount": 0, "children": [2, 5]},
            {"id": 2, "callFrame": {"functionName": "", "url": "file:///srv/service.js", "lineNumber": 40}, "hitCount": 0, "children": [3]},
            {"id": 3, "callFrame": {"functionName": "handle", "url": "file:///srv/service.js", "lineNumber": 20}, "hitCount": 2, "children": [4]},
            {"id": 4, "callFrame": {"functionName": "renderInvoice", "url": "file:///srv/service.js", "lineNumber": 11}, "hitCount": 90, "children": []},
            {"id": 5, "callFrame": {"functionName": "(idle)", "url": ""}, "hitCount": 8, "children": []}
        ]});
        let folded = fold(&profile);
        assert_eq!(
            folded.stacks["(anonymous) (service.js:41);handle (service.js:21);renderInvoice (service.js:12)"],
            90
        );
        assert_eq!(folded.stacks["(idle)"], 8);
        // Node's modules and packages keep their path: the site is the service's function
        // under them, not the builtin or the framework it called.
        let frame = |function: &str, url: &str| {
            frame_name(
                &json!({"callFrame": {"functionName": function, "url": url, "lineNumber": 87}}),
            )
            .unwrap()
        };
        let hash = frame("Hash", "node:internal/crypto/hash");
        assert_eq!(hash, "Hash (node:internal/crypto/hash:88)");
        assert!(!is_own(&hash));
        let router = frame(
            "handle",
            "file:///srv/app/node_modules/express/lib/router/index.js",
        );
        assert_eq!(
            router,
            "handle (node_modules/express/lib/router/index.js:88)"
        );
        assert!(!is_own(&router));
        assert!(is_own(&frame("renderInvoice", "file:///srv/app/app.js")));
        assert!(is_own("renderInvoice (service.js:12)"));
        assert!(!is_own(
            "processTicksAndRejections (node:internal/process/task_queues:96)"
        ));
        assert!(!is_own("(garbage collector)"));
        assert!(!is_own("hrtimeBigInt"), "a V8 builtin");
        assert!(!is_own("render (/srv/node_modules/ejs/lib/ejs.js:12)"));
    }
}
