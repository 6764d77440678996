//! Turns a watch registration into a streaming response body of newline-delimited JSON
//! `WatchEvent`s, with periodic BOOKMARKs and the `timeoutSeconds` deadline.
//!
//! Ordering of bookmarks: a bookmark must not claim a resourceVersion whose events this stream
//! has not yet sent. Events are queued on the watcher's channel while the state lock is held,
//! so the stream takes the lock, drains the channel, reads the current resourceVersion and only
//! then queues the bookmark behind the drained events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, Interval};

use crate::Shared;
use crate::body::ResponseBody;
use crate::format::Format;
use crate::resource::ResourceType;
use crate::store::WatchMsg;

/// Everything a stream needs besides the receiver.
#[derive(Debug, Clone)]
pub struct StreamParams {
    /// The watched type.
    pub ty: ResourceType,
    /// The version objects are presented at.
    pub version: String,
    /// Send periodic bookmarks.
    pub bookmarks: bool,
    /// Bookmark period.
    pub bookmark_interval: Duration,
    /// When the stream ends.
    pub timeout: Duration,
    /// Rendering.
    pub format: Format,
}

struct StreamState {
    shared: Arc<Shared>,
    rx: UnboundedReceiver<WatchMsg>,
    pending: VecDeque<WatchMsg>,
    deadline: Instant,
    ticker: Interval,
    params: StreamParams,
}

/// A body streaming the watch until the deadline (or until the server drops the watcher).
pub fn watch_body(
    shared: Arc<Shared>,
    rx: UnboundedReceiver<WatchMsg>,
    params: StreamParams,
) -> ResponseBody {
    let period = params.bookmark_interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let state = StreamState {
        shared,
        rx,
        pending: VecDeque::new(),
        deadline: Instant::now() + params.timeout,
        ticker,
        params,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        let line = next_line(&mut st).await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), st))
    });
    StreamBody::new(stream).boxed_unsync()
}

async fn next_line(st: &mut StreamState) -> Option<Bytes> {
    loop {
        if let Some(msg) = st.pending.pop_front() {
            return Some(render(&st.params, &msg));
        }
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(st.deadline) => return None,
            msg = st.rx.recv() => st.pending.push_back(msg?),
            _ = st.ticker.tick(), if st.params.bookmarks => {
                let state = st.shared.lock();
                while let Ok(msg) = st.rx.try_recv() {
                    st.pending.push_back(msg);
                }
                st.pending.push_back(WatchMsg::Bookmark(state.resource_version()));
            }
        }
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn bookmark(params: &StreamParams, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({"kind": params.ty.kind, "apiVersion": params.ty.api_version(&params.version), "metadata": meta});
    json!({"type": "BOOKMARK", "object": object})
}

fn render(params: &StreamParams, msg: &WatchMsg) -> Bytes {
    let event = match msg {
        WatchMsg::Bookmark(rv) => bookmark(params, *rv, false),
        WatchMsg::InitialEventsEnd(rv) => bookmark(params, *rv, true),
        WatchMsg::Expired(oldest) => {
            let status = crate::error::ApiError::Expired {
                requested: 0,
                oldest: *oldest,
            }
            .to_status();
            json!({"type": "ERROR", "object": status})
        }
        WatchMsg::Event(kind, obj) => {
            let object = params
                .format
                .one(&params.ty, &params.version, obj, Utc::now());
            json!({"type": kind.as_str(), "object": object})
        }
    };
    line(&event)
}

/// A complete watch body holding one `ERROR` event (410 Expired is delivered this way, inside
/// a 200 response, so that clients relist rather than retry the same version).
pub fn error_body(status: &Value) -> ResponseBody {
    crate::body::full(line(&json!({"type": "ERROR", "object": status})))
}
