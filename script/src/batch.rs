//! `http.batch`: a VU's requests sent side by side, each on a client of its own that
//! shares the VU's cookies, groups and recorder's collector, as k6 sends a batch over
//! parallel connections.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use aiotest_http_user::HttpClient;

use crate::http::{Place, RawResponse, RequestSpec};

/// k6's `batch` and `batchPerHost` options: how many requests of a batch are in flight
/// at once, in all and to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) all: usize,
    pub(crate) per_host: usize,
}

impl Default for Limits {
    /// k6's defaults: 20 in all, 6 to one host.
    fn default() -> Self {
        Limits {
            all: 20,
            per_host: 6,
        }
    }
}

/// A request of the batch in flight on a sibling, which it hands back with the answer.
type Flight<'a> = Pin<Box<dyn Future<Output = (RawResponse, &'a mut HttpClient)> + Send + 'a>>;

/// Sends `specs` side by side on `client`'s siblings (made as needed and kept, with
/// their connections, for the VU's next batch), at most `limits` at once; the answers
/// come back in `specs`' order. Cookies the answers set reach `client`'s jar.
pub(crate) async fn send(
    client: &mut HttpClient,
    siblings: &mut Vec<HttpClient>,
    specs: Vec<RequestSpec>,
    limits: Limits,
) -> Vec<RawResponse> {
    let n = specs.len();
    let width = n.min(limits.all.max(1));
    while siblings.len() < width {
        siblings.push(client.sibling());
    }
    let before = client.cookies().clone();
    for s in siblings.iter_mut().take(width) {
        s.same_groups_as(client);
        *s.cookies_mut() = before.clone();
    }
    let hosts: Vec<Option<String>> = specs
        .iter()
        .map(|s| Place::of(s.url()).map(|p| p.host))
        .collect();
    let mut pending: Vec<Option<RequestSpec>> = specs.into_iter().map(Some).collect();
    let mut answers: Vec<Option<RawResponse>> = (0..n).map(|_| None).collect();
    {
        // The requests in flight, by their index in the batch.
        let mut slots: Vec<Option<(usize, Flight<'_>)>> = Vec::with_capacity(width);
        let mut free: Vec<&mut HttpClient> = siblings.iter_mut().take(width).collect();
        let mut in_flight_to: Vec<(Option<String>, usize)> = Vec::new();
        let mut next = 0;
        let mut done = 0;
        std::future::poll_fn(|cx| {
            loop {
                // Start what may start, in the batch's order.
                while next < n && !free.is_empty() {
                    let host = &hosts[next];
                    let busy = in_flight_to
                        .iter()
                        .find(|(h, _)| h == host)
                        .map_or(0, |(_, c)| *c);
                    if busy >= limits.per_host.max(1) {
                        break;
                    }
                    let Some(spec) = pending[next].take() else {
                        break;
                    };
                    let Some(sibling) = free.pop() else {
                        break;
                    };
                    match in_flight_to.iter_mut().find(|(h, _)| h == host) {
                        Some((_, c)) => *c += 1,
                        None => in_flight_to.push((host.clone(), 1)),
                    }
                    let flight: Flight<'_> = Box::pin(async move {
                        let r = crate::http::send(sibling, spec).await;
                        (r, sibling)
                    });
                    slots.push(Some((next, flight)));
                    next += 1;
                }
                let mut progressed = false;
                for slot in &mut slots {
                    let Some((i, flight)) = slot else { continue };
                    if let Poll::Ready((r, sibling)) = flight.as_mut().poll(cx) {
                        answers[*i] = Some(r);
                        free.push(sibling);
                        let host = &hosts[*i];
                        if let Some((_, c)) = in_flight_to.iter_mut().find(|(h, _)| h == host) {
                            *c -= 1;
                        }
                        *slot = None;
                        done += 1;
                        progressed = true;
                    }
                }
                slots.retain(Option::is_some);
                if done == n {
                    return Poll::Ready(());
                }
                if !progressed {
                    return Poll::Pending;
                }
            }
        })
        .await;
    }
    for s in siblings.iter_mut().take(width) {
        client.cookies_mut().absorb(&before, s.cookies());
        s.recorder().flush();
    }
    answers.into_iter().flatten().collect()
}
