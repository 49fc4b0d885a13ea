//! The check before any load: each request of the mix is sent once, on a connection of its
//! own, through the same client the load uses (so TLS, HTTP/2 and headers are as they will
//! be). A wrong URL used to run a probe of failures and end with "no knee reached: every step
//! held"; now it ends here, in one line that names the URL and what came back (exit 2).

use super::errors::{Answer, ErrorClass};
use super::Engine;
use crate::error::Error;
use crate::plan::{RequestPlan, TargetPlan};
use crate::redact::redact_url;

impl Engine {
    /// Sends each request of the mix once; the first that cannot be right is an input error.
    pub async fn check_target(
        &self,
        target: &TargetPlan,
        requests: &[RequestPlan],
    ) -> Result<(), Error> {
        if target.check.skip {
            return Ok(());
        }
        if let Some(flows) = &self.flows {
            return self.check_flows(target, flows, requests).await;
        }
        let timeout = self.client.request_timeout();
        for (index, request) in requests.iter().enumerate() {
            let client = self.client.clone();
            let answer = self.lanes()[0]
                .handle
                .spawn(async move {
                    let (mut fresh, mut connected) = (None, None);
                    tokio::time::timeout(timeout, client.send(&mut fresh, index, &mut connected))
                        .await
                        .unwrap_or(Err(ErrorClass::RequestTimeout))
                })
                .await
                .unwrap_or(Err(ErrorClass::Other));
            let url = redact_url(&format!(
                "{}{}",
                target.base.to_string().trim_end_matches('/'),
                if request.path.is_empty() {
                    ""
                } else {
                    &request.path
                }
            ));
            let what = format!("target check: {} {url}", request.method);
            match answer {
                Ok(answer) if answer.error().is_none() => {}
                Ok(answer) if target.check.allowed.iter().any(|p| p.matches(answer.status)) => {}
                Ok(Answer {
                    status: 200,
                    grpc: Some(code),
                }) => {
                    return Err(Error::input(format!(
                        "{what} answered gRPC status {code} ({}): is the method right, and its request? (skip the check: --no-check)",
                        ErrorClass::grpc_status_name(code)
                    )))
                }
                Ok(Answer { status, .. }) => {
                    return Err(Error::input(format!(
                        "{what} answered {status}{}: is the URL right? (expected error statuses: --allow-status {status}; skip the check: --no-check)",
                        http::StatusCode::from_u16(status)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .map_or(String::new(), |r| format!(" {r}"))
                    )))
                }
                Err(class) => {
                    return Err(Error::input(format!(
                        "{what} failed: {} (skip the check: --no-check)",
                        explain(class, timeout)
                    )))
                }
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Runs each flow once, step after step; the first step that fails, or whose value
    /// cannot be taken, is an input error naming the flow and the step.
    async fn check_flows(
        &self,
        target: &TargetPlan,
        flows: &std::sync::Arc<crate::plan::flow::Flows>,
        requests: &[RequestPlan],
    ) -> Result<(), Error> {
        let timeout = self.client.request_timeout();
        for index in 0..flows.list.len() {
            let (client, flows_, requests_) =
                (self.client.clone(), flows.clone(), requests.to_vec());
            let allowed = target.check.allowed.clone();
            let failure = self.lanes()[0]
                .handle
                .spawn(async move {
                    super::flow::check_once(&client, &flows_, &requests_, index, &allowed).await
                })
                .await
                .unwrap_or(Some((String::new(), Err(ErrorClass::Other))));
            let Some((step, answer)) = failure else {
                continue;
            };
            let what = format!("target check: flow {}, step {step}", flows.list[index].name);
            return Err(Error::input(match answer {
                Ok(Answer { status, .. }) => format!(
                    "{what} answered {status} (expected error statuses: --allow-status {status}; skip the check: --no-check)"
                ),
                Err(ErrorClass::ExtractFailed) => {
                    format!("{what} (is the step's extract right? skip the check: --no-check)")
                }
                Err(class) => format!(
                    "{what} failed: {} (skip the check: --no-check)",
                    explain(class, timeout)
                ),
            }));
        }
        Ok(())
    }
}

/// What an error class means for a target that has not answered yet.
fn explain(class: ErrorClass, timeout: std::time::Duration) -> String {
    match class {
        ErrorClass::ConnectRefused => "connection refused: nothing listens there".into(),
        ErrorClass::ConnectTimeout => "no answer to the connect (a firewall, a wrong host?)".into(),
        ErrorClass::Tls => {
            "the TLS handshake failed (not TLS there? a self-signed certificate: --insecure)".into()
        }
        ErrorClass::RequestTimeout => format!("no response within {timeout:?}"),
        ErrorClass::ConnectionReset => "the connection was closed before a response".into(),
        ErrorClass::Protocol => "the answer is not HTTP".into(),
        other => other.as_str().replace('_', " "),
    }
}
