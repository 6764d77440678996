//! Serves an empty memkube over HTTP for manual use with kubectl:
//! `cargo run -p isthmus-memkube --example serve -- 127.0.0.1:8001 crds/*.yaml`
//! then `kubectl --server http://127.0.0.1:8001 get ns`.

use std::net::SocketAddr;

use isthmus_memkube::MemKube;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8001".into())
        .parse()?;
    let kube = MemKube::new();
    for path in args {
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc)?;
            kube.register_crd(&crd)?;
        }
    }
    let server = kube.serve_http(addr).await?;
    println!("memkube serving on {}", server.url());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
