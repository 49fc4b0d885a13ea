//! The kernel's queues as signals (USE for the network stack): the listen (accept) queue
//! and the SYN queue are resources with a saturation signal of their own. When a server
//! accepts too slowly from too small a backlog, the kernel drops SYNs (`ListenOverflows`,
//! `ListenDrops`), clients retry after TCP's 1 s SYN retransmission timeout, and latency
//! grows a 1 s tail that lives in the connect, while the service itself looks idle.

use super::table::*;
use super::{Context, Finding};
use crate::model::series::net;
use crate::model::verdict::Kind;
use crate::units::fmt_ms;

/// The listen backlog overflowed at the knee while the target's CPU was not saturated.
pub fn accept_queue(ctx: &Context) -> Option<Finding> {
    let rate = |key: &str| ctx.at_knee(key).unwrap_or(0.0);
    let below = |key: &str| ctx.below(key).unwrap_or(0.0);
    let overflows = rate(net::LISTEN_OVERFLOWS_PER_S).max(rate(net::LISTEN_DROPS_PER_S));
    let before = below(net::LISTEN_OVERFLOWS_PER_S).max(below(net::LISTEN_DROPS_PER_S));
    if overflows < MIN_OVERFLOWS_PER_S || overflows < 2.0 * before + 1.0 {
        return None;
    }
    let cpu_saturated = ctx
        .target_cpu()
        .is_some_and(|c| c >= CPU_SATURATED_SHARE * ctx.cores);
    let rank = if cpu_saturated {
        Rank::AcceptQueueCpuSaturated
    } else {
        Rank::AcceptQueue
    };
    let mut finding = Finding::new(
        Kind::AcceptQueue,
        rank,
        "the listen backlog overflowed (the kernel's accept queue)",
    )
    .evidence(format!(
        "the listen backlog overflowed: {overflows:.0} SYNs dropped per second at the knee (below it: {before:.0})"
    ))
    .confirm(
        "raise the listen backlog (the listen(2) backlog, net.core.somaxconn) or accept faster; \
         `ss -ltn` shows the accept queue (Recv-Q) against its backlog (Send-Q)",
    );
    if let Some(connect) = ctx
        .knee
        .connect_ms
        .as_ref()
        .filter(|c| c.syn_retransmitted > 0)
    {
        let rung = connect.retransmit_rung().map_or(String::new(), |r| {
            format!(", on the {:.0} s rung", r / 1000.0)
        });
        finding = finding.evidence(format!(
            "clients waited for the SYN retransmit: {} of {} connects ({:.0}%) took 0.9 s or more \
             (TCP resends a dropped SYN after 1 s, then 3 s, 7 s); connect p99 {}{rung}",
            connect.syn_retransmitted,
            connect.count,
            connect.retransmitted_share() * 100.0,
            fmt_ms(connect.p99),
        ));
    }
    if let Some(queue) = crate::analyze::series(ctx.knee, net::ACCEPT_QUEUE) {
        let backlog = crate::analyze::series(ctx.knee, net::ACCEPT_BACKLOG)
            .map_or(String::new(), |b| {
                format!("; the listening socket's backlog is {:.0}: raise it (listen(2) backlog, net.core.somaxconn) or accept faster", b.max)
            });
        finding = finding.evidence(format!(
            "the accept queue held up to {:.0} connections waiting (mean {:.1}){backlog}",
            queue.max, queue.mean
        ));
    }
    let cookies = rate(net::SYNCOOKIES_SENT_PER_S);
    if cookies >= MIN_SYNCOOKIES_PER_S {
        finding = finding.evidence(format!(
            "SYN cookies were sent, {cookies:.0}/s: the SYN queue was full too"
        ));
    }
    if let Some(cpu) = ctx.target_cpu() {
        finding = finding.evidence(ctx.cpu_line(cpu));
    }
    Some(finding)
}

/// Retransmits rising at the knee without listen overflows: loss, or a full queue on the path.
pub fn network(ctx: &Context) -> Option<Finding> {
    let rate = |key: &str| ctx.at_knee(key).unwrap_or(0.0);
    let retransmits = rate(net::RETRANSMITTED_SEGMENTS_PER_S);
    let before = ctx.below(net::RETRANSMITTED_SEGMENTS_PER_S).unwrap_or(0.0);
    let overflows = rate(net::LISTEN_OVERFLOWS_PER_S).max(rate(net::LISTEN_DROPS_PER_S));
    if overflows >= MIN_OVERFLOWS_PER_S
        || retransmits < MIN_RETRANSMITS_PER_S
        || retransmits < 3.0 * before + MIN_RETRANSMITS_PER_S
    {
        return None;
    }
    Some(
        Finding::new(
            Kind::Network,
            Rank::Network,
            "network: retransmits rising (loss or a full queue on the path)",
        )
        .evidence(format!(
            "{retransmits:.0} TCP segments retransmitted per second at the knee (below it: {before:.0}), with no listen overflow"
        ))
        .evidence(format!(
            "{:.0} retransmission timeouts per second",
            rate(net::TCP_TIMEOUTS_PER_S)
        ))
        .confirm("`ss -ti` for retransmits per connection, and the path's drops (tc -s qdisc, the NIC's counters)"),
    )
}
