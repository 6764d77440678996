//! Turns a watch registration into a streaming response body of newline-delimited JSON
//! `WatchEvent`s, with periodic BOOKMARKs (every `bookmark_interval`, and one 2 s before the
//! `timeoutSeconds` deadline, as the API server's watch cache sends them), the deadline itself,
//! and the injected connection faults (a cut ends the body with an error, a silence stops it
//! for good).
//!
//! Ordering of bookmarks: a bookmark must not claim a resourceVersion whose events this stream
//! has not yet sent. Events are queued on the watcher's channel while the state lock is held,
//! so the stream takes the lock, drains the channel, reads the current resourceVersion and only
//! then queues the bookmark behind the drained events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::time::{Instant, Interval};

use crate::Shared;
use crate::body::{ResponseBody, StreamCut};
use crate::faults::Signal;
use crate::format::Format;
use crate::resource::ResourceType;
use crate::store::WatchMsg;

/// How long before its deadline a watch with bookmarks gets its last one.
const PRE_DEADLINE_BOOKMARK: Duration = Duration::from_secs(2);

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
    /// The pre-deadline bookmark, while it is still due.
    last_bookmark: Option<Instant>,
    signals: watch::Receiver<Signal>,
    /// The fault counters when the stream opened.
    opened: Signal,
    params: StreamParams,
}

/// What the stream does next.
enum Step {
    Line(Bytes),
    Cut,
    Silent,
    End,
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
    let now = Instant::now();
    let deadline = now + params.timeout;
    let last_bookmark = deadline
        .checked_sub(PRE_DEADLINE_BOOKMARK)
        .filter(|t| *t > now && params.bookmarks);
    let signals = shared.faults.subscribe();
    let opened = *signals.borrow();
    let state = StreamState {
        shared,
        rx,
        pending: VecDeque::new(),
        deadline,
        ticker,
        last_bookmark,
        signals,
        opened,
        params,
    };
    let stream = futures::stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        match next_step(&mut st).await {
            Step::Line(line) => Some((Ok(Frame::data(line)), Some(st))),
            Step::Cut => Some((Err(StreamCut::new()), None)),
            Step::Silent => {
                drop(st); // unregisters the watcher; the client hears nothing more
                std::future::pending::<()>().await;
                None
            }
            Step::End => None,
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

async fn next_step(st: &mut StreamState) -> Step {
    loop {
        if let Some(msg) = st.pending.pop_front() {
            return Step::Line(render(&st.params, &msg));
        }
        let last_bookmark = st.last_bookmark;
        tokio::select! {
            biased;
            changed = st.signals.changed() => {
                if let Some(step) = changed.ok().and_then(|()| fault_step(st)) {
                    return step;
                }
            }
            () = tokio::time::sleep_until(st.deadline) => return Step::End,
            msg = st.rx.recv() => match msg {
                Some(msg) => st.pending.push_back(msg),
                None => return Step::End,
            },
            _ = st.ticker.tick(), if st.params.bookmarks => queue_bookmark(st),
            () = sleep_until_opt(last_bookmark), if last_bookmark.is_some() => {
                st.last_bookmark = None;
                queue_bookmark(st);
            }
        }
    }
}

/// What a change of the fault counters means for this stream.
fn fault_step(st: &mut StreamState) -> Option<Step> {
    let now = *st.signals.borrow_and_update();
    if now.cuts > st.opened.cuts {
        Some(Step::Cut)
    } else if now.silences > st.opened.silences {
        Some(Step::Silent)
    } else {
        None
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Queues a bookmark at the current version behind every event already due.
fn queue_bookmark(st: &mut StreamState) {
    let state = st.shared.lock();
    while let Ok(msg) = st.rx.try_recv() {
        st.pending.push_back(msg);
    }
    st.pending
        .push_back(WatchMsg::Bookmark(state.resource_version()));
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
