//! The CLI's client of a running engine's HTTP listener (`dragonfly-mle tap`, `top`): where
//! it listens, and one GET.

use std::path::Path;

use anyhow::{anyhow, bail, Context};

/// `--http`, else config.lua's `engine.http`.
pub fn address(root: &Path, http: Option<&str>) -> anyhow::Result<String> {
    if let Some(a) = http {
        return Ok(a.to_string());
    }
    let (config, errors) = dragonfly_config::load_all(root);
    let config = config.ok_or_else(|| {
        anyhow!(
            "cannot read the config to find engine.http: {}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    if config.engine.http.is_empty() {
        bail!(
            "{}: engine.http is not set, so the engine has no HTTP listener to tap; set it (engine.http = \"127.0.0.1:7070\") or give --http ADDR",
            root.join(&config.file).display()
        );
    }
    Ok(config.engine.http)
}

/// Send `GET path` to the engine at `addr`; the response, its body still to read.
pub async fn request(
    addr: &str,
    path: &str,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the engine's HTTP listener at {addr}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .with_context(|| format!("{addr}: the HTTP handshake failed"))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr)
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    sender
        .send_request(req)
        .await
        .with_context(|| format!("{addr}: the request failed"))
}

/// `GET path` as JSON (an error for a status other than 200, with the body's `error`).
pub async fn get_json(addr: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let res = request(addr, path).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("{addr}{path}: not JSON ({status})"))?;
    if !status.is_success() {
        bail!(
            "{addr}{path}: {}",
            v["error"].as_str().unwrap_or(status.as_str())
        );
    }
    Ok(v)
}
