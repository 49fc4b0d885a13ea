//! What only a runtime's own profiler can say (py-spy, Java Flight Recorder, Node's
//! inspector: `flame::choose`): which function *of the service's own code* the CPU went to.
//! perf on these runtimes names the interpreter or the JIT, so without them a CPU-bound
//! verdict has no site; with them each CPU finding is named by the service's function.
//!
//! - CPython's GIL is a lock on the whole interpreter: when the target burns about one core
//!   while its threads' waits are mostly for the GIL and grew per request, the bottleneck is
//!   the GIL, held by the function the CPU profile (of the GIL's holder) spends its samples in.
//! - A Node.js event loop is one thread: `waits::one_thread` names it by the JavaScript
//!   function under most of its samples.
//! - A CPU-bound JVM or Python service: `signals::cpu_bound` names the hottest own function.

use super::table::*;
use super::{Context, Finding};
use crate::model::observed::WaitKind;
use crate::model::observed::{FunctionShare, OffCpu, OffCpuSource, ProfileSource, StepProfile};
use crate::model::verdict::Kind;

/// The service's own function the knee's CPU profile spent most samples under, and what
/// took the profile; only from a profiler that tells the service's code from the rest.
pub fn hottest_own<'a>(ctx: &Context<'a>) -> Option<(&'a FunctionShare, ProfileSource)> {
    let profile = StepProfile::of(ctx.knee).filter(|p| p.error.is_none())?;
    let top = profile.top_own.first()?;
    (top.percent >= OWN_FUNCTION_SHARE).then_some((top, profile.source))
}

/// "62% of the CPU samples at the knee (py-spy) were in service.price_quote".
pub fn hottest_line(top: &FunctionShare, source: ProfileSource) -> String {
    format!(
        "{:.0}% of the CPU samples at the knee ({source}) were in the service's {} or what it called",
        top.percent, top.function
    )
}

/// One core busy, the threads queueing for CPython's GIL: the interpreter is the lock.
pub fn gil(ctx: &Context) -> Option<Finding> {
    let knee = OffCpu::of(ctx.knee).filter(|o| o.error.is_none())?;
    if knee.source != OffCpuSource::PySpyIdle {
        return None;
    }
    let gil_ms = knee.by_kind.get(WaitKind::Gil.as_str()).copied()?;
    let share = gil_ms / knee.waiting_ms.max(1e-9);
    let per_request = |o: &OffCpu| {
        let ms = o
            .by_kind
            .get(WaitKind::Gil.as_str())
            .copied()
            .unwrap_or(0.0);
        ms / o.requests.max(1) as f64
    };
    let now = per_request(knee);
    let was = ctx
        .waits_below
        .and_then(OffCpu::of)
        .map_or(0.0, per_request);
    let grew = now >= SITE_GROWTH * was && now - was >= SITE_MIN_GROWTH_MS;
    let cpu = ctx.target_cpu()?;
    let one_core = ONE_CORE.contains(&cpu) && cpu <= ONE_CORE_MAX_SHARE * ctx.cores;
    if share * 100.0 < SITE_SHARE || !grew || !one_core {
        return None;
    }
    let holder = hottest_own(ctx).filter(|(_, source)| *source == ProfileSource::PySpy);
    let words = match holder {
        Some((top, _)) => format!("one core busy: the GIL, held by {}", top.function),
        None => "one core busy: the GIL (CPython's global interpreter lock)".to_string(),
    };
    let mut finding = Finding::new(Kind::SingleThread, Rank::Gil, words)
        .evidence(format!(
            "{:.0}% of the time the target's threads spent waiting at the knee was waiting for the GIL; {:.1} ms per request below the knee, {:.1} at it",
            share * 100.0,
            was,
            now
        ))
        .evidence(ctx.cpu_line(cpu))
        .confirm(
            "move the CPU work out of the GIL (processes: more workers; a C extension that releases it; or less work per request)",
        );
    if let Some((top, source)) = holder {
        finding = finding.evidence(hottest_line(top, source));
        finding.site = Some(top.function.clone());
    }
    Some(finding)
}

/// The event loop's JavaScript function, when Node's inspector profiled the knee.
pub fn event_loop_function<'a>(ctx: &Context<'a>) -> Option<&'a FunctionShare> {
    hottest_own(ctx)
        .filter(|(_, source)| *source == ProfileSource::NodeInspector)
        .map(|(top, _)| top)
}
