//! A `kube::Client` talking to memkube over real HTTP (the server kubectl uses): CRUD and a
//! watch stream across the socket, and shutdown closing open watches.

use crate::common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use kube::api::{PostParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};
use tokio::time::timeout;

#[tokio::test]
async fn kube_client_over_http_creates_and_watches() {
    let (kube, _) = setup();
    let server = kube
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = kube::Config::new(server.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<Widget> = Api::namespaced(client, "default");
    let rv = kube.resource_version().to_string();
    let mut events = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &widget("over-http", 80))
        .await
        .unwrap();
    match timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(w) => assert_eq!(w.name_any(), "over-http"),
        other => panic!("unexpected {other:?}"),
    }
    let version: serde_json::Value = raw_http_get(&server.url(), "/version").await;
    assert_eq!(version["major"], "1");
    server.shutdown().await;
    let ended = timeout(Duration::from_secs(5), events.next())
        .await
        .expect("watch ends on shutdown");
    assert!(!matches!(ended, Some(Ok(WatchEvent::Added(_)))));
}

/// GET over a raw TCP connection (HTTP/1.1), returning the JSON body.
async fn raw_http_get(base: &str, path: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}
