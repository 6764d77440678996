//! A real `kube_runtime::Controller` running unchanged against memkube: it reconciles objects
//! created before and after it starts, keeps working after its watch is expired (410 → relist),
//! follows spec changes via `generation`, and runs finalizer cleanup on delete.

use crate::common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const FINALIZER: &str = "example.io/cleanup";

struct Ctx {
    client: Client,
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<kube::Error>>),
}

async fn mark_ready(api: &Api<Widget>, w: &Widget) -> kube::Result<Action> {
    let status = json!({
        "apiVersion": "example.io/v1", "kind": "Widget",
        "status": {"ready": true, "observedGeneration": w.metadata.generation},
    });
    api.patch_status(
        &w.name_any(),
        &PatchParams::apply("test-controller").force(),
        &Patch::Apply(status),
    )
    .await?;
    Ok(Action::await_change())
}

async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &w.namespace().unwrap());
    let apply_api = api.clone();
    finalizer(&api, FINALIZER, w, |event| async move {
        match event {
            Finalizer::Apply(w) => mark_ready(&apply_api, &w).await,
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
}

fn error_policy(_w: Arc<Widget>, _e: &ReconcileError, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ready(api: &Api<Widget>, name: &str, generation: i64) -> bool {
    let Ok(w) = api.get(name).await else {
        return false;
    };
    w.status
        .is_some_and(|s| s.ready && s.observed_generation == Some(generation))
}

#[tokio::test]
async fn controller_reconciles_relists_and_finalizes() {
    let (kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("early", 80))
        .await
        .unwrap();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
    });
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    eventually("early ready", || ready(&api, "early", 1)).await;
    assert_eq!(api.get("early").await.unwrap().finalizers(), [FINALIZER]);
    api.create(&PostParams::default(), &widget("late", 80))
        .await
        .unwrap();
    eventually("late ready", || ready(&api, "late", 1)).await;

    // the API server expires the controller's watch: it must relist and carry on
    eventually("watch open", || async { kube.watch_count() > 0 }).await;
    kube.expire_watches();
    api.create(&PostParams::default(), &widget("after-expiry", 80))
        .await
        .unwrap();
    eventually("after-expiry ready", || ready(&api, "after-expiry", 1)).await;

    // a spec change bumps generation; the controller observes it
    api.patch(
        "early",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"port": 81}})),
    )
    .await
    .unwrap();
    eventually("early generation 2", || ready(&api, "early", 2)).await;

    // delete waits for the controller's finalizer cleanup
    api.delete("late", &DeleteParams::default()).await.unwrap();
    eventually("late gone", || async { api.get("late").await.is_err() }).await;
    handle.abort();
}
