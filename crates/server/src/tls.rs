//! TLS settings turned into what the link and the public listener need. Files are read once
//! at start; every error names the setting.

use crate::config::Config;
use anyhow::Context;
use onramp_link::{CoreTls, EdgeTls, PemIdentity};
use std::path::Path;

fn read_pem(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("{setting}: cannot read {}", path.display()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        anyhow::bail!("{setting}: {} is not a PEM file (no -----BEGIN line)", path.display());
    }
    Ok(bytes)
}

fn identity(cert: &Path, key: &Path, names: (&str, &str)) -> anyhow::Result<PemIdentity> {
    Ok(PemIdentity { cert: read_pem(names.0, cert)?, key: read_pem(names.1, key)? })
}

/// How core reaches one edge URL: `https://` needs the CA of the edges' certificates;
/// `http://` is plaintext and only allowed with `link_insecure`.
pub fn core_link_tls(cfg: &Config, edge_url: &str) -> anyhow::Result<Option<CoreTls>> {
    if edge_url.starts_with("http://") {
        if !cfg.link_insecure {
            anyhow::bail!(
                "edge_urls (ONRAMP_EDGE_URLS): {edge_url} is a plaintext link; use https:// with \
                 ONRAMP_LINK_CA_FILE (and ONRAMP_LINK_CERT_FILE/ONRAMP_LINK_KEY_FILE for mutual TLS), \
                 or set ONRAMP_LINK_INSECURE=true on a private network"
            );
        }
        return Ok(None);
    }
    let ca = cfg.link_ca_file.as_deref().with_context(|| {
        format!("link_ca_file (ONRAMP_LINK_CA_FILE): needed to verify the certificate of {edge_url}")
    })?;
    let identity = match &cfg.link_cert {
        Some((c, k)) => Some(identity(c, k, ("link_cert_file", "link_key_file"))?),
        None => None,
    };
    Ok(Some(CoreTls { ca: read_pem("link_ca_file", ca)?, identity }))
}

/// The standalone edge's link listener. Secure means mutual TLS: only a core with a
/// certificate from `link_ca_file` can connect and receive enrollment requests.
pub fn edge_link_tls(cfg: &Config) -> anyhow::Result<Option<EdgeTls>> {
    let Some((cert, key)) = &cfg.link_cert else {
        if cfg.link_insecure {
            tracing::warn!(
                "core link without TLS (ONRAMP_LINK_INSECURE): any host that reaches the link address can pose as core"
            );
            return Ok(None);
        }
        anyhow::bail!(
            "link_cert_file (ONRAMP_LINK_CERT_FILE): the edge needs a certificate and key for the core link, and \
             ONRAMP_LINK_CA_FILE to accept only core; set ONRAMP_LINK_INSECURE=true to run it in plaintext"
        );
    };
    let client_ca = match &cfg.link_ca_file {
        Some(ca) => Some(read_pem("link_ca_file", ca)?),
        None if cfg.link_insecure => {
            tracing::warn!("core link without client certificates (ONRAMP_LINK_INSECURE): any host can pose as core");
            None
        }
        None => anyhow::bail!(
            "link_ca_file (ONRAMP_LINK_CA_FILE): needed so the edge accepts only core's client certificate; \
             set ONRAMP_LINK_INSECURE=true to accept any client"
        ),
    };
    if client_ca.is_some() && cfg.link_core_name.is_none() {
        tracing::warn!(
            "ONRAMP_LINK_CORE_NAME not set: any client certificate from ONRAMP_LINK_CA_FILE is accepted as core; \
             set it to the DNS name in core's certificate"
        );
    }
    if cfg.link_core_name.is_some() && client_ca.is_none() {
        anyhow::bail!(
            "link_core_name (ONRAMP_LINK_CORE_NAME): checking core's name needs client certificates, so set \
             ONRAMP_LINK_CA_FILE too"
        );
    }
    Ok(Some(EdgeTls {
        identity: identity(cert, key, ("link_cert_file", "link_key_file"))?,
        client_ca,
        core_name: cfg.link_core_name.clone(),
    }))
}

/// TLS of core's gateway listener. Gateways authenticate with their token, so without TLS
/// the token and peer sets cross the network readable: plaintext is allowed on a loopback
/// address (a gateway on the same host, or a TLS-terminating tunnel) with a warning, and
/// elsewhere only with `gateway_insecure`.
pub fn gateway_listener_tls(cfg: &Config) -> anyhow::Result<Option<PemIdentity>> {
    if let Some((cert, key)) = &cfg.gateway_tls {
        return Ok(Some(identity(cert, key, ("gateway_tls_cert_file", "gateway_tls_key_file"))?));
    }
    if cfg.gateway_insecure {
        tracing::warn!(addr = %cfg.gateway_addr, "gateway listener without TLS (ONRAMP_GATEWAY_INSECURE): gateway tokens and peer sets cross the network in plaintext");
        return Ok(None);
    }
    if cfg.gateway_addr.ip().is_loopback() {
        tracing::warn!(addr = %cfg.gateway_addr, "gateway listener without TLS on loopback; set ONRAMP_GATEWAY_TLS_CERT_FILE and ONRAMP_GATEWAY_TLS_KEY_FILE before serving other hosts");
        return Ok(None);
    }
    anyhow::bail!(
        "gateway_addr (ONRAMP_GATEWAY_ADDR) {} is not loopback: set ONRAMP_GATEWAY_TLS_CERT_FILE and \
         ONRAMP_GATEWAY_TLS_KEY_FILE, or ONRAMP_GATEWAY_INSECURE=true to serve gateways in plaintext",
        cfg.gateway_addr
    )
}

/// HTTPS for the public listener, when certificate files are configured.
pub async fn public_tls(cfg: &Config) -> anyhow::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    let Some((cert, key)) = &cfg.edge_tls else { return Ok(None) };
    let id = identity(cert, key, ("edge_tls_cert_file", "edge_tls_key_file"))?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(id.cert, id.key)
        .await
        .context("edge_tls_cert_file / edge_tls_key_file (ONRAMP_EDGE_TLS_*): not a usable certificate and key")?;
    Ok(Some(tls))
}

/// Serves the public edge router on `listener`, over HTTPS when `tls` is set, with the
/// listener limits, until `shutdown` resolves. Trusted proxies carry many clients, so the
/// per-address cap does not apply to them.
pub async fn serve_public(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    cfg: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = tls.map(|t| {
        let mut c = (*t.get_inner()).clone();
        // HTTP/1.1 only: the listener's timeouts are defined for it.
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        std::sync::Arc::new(c)
    });
    let settings = crate::listener::Listener {
        name: "public edge",
        limits: cfg.http_limits.clone(),
        exempt: cfg.edge_trusted_proxies.clone(),
        tls,
    };
    crate::listener::serve(listener, router, settings, shutdown).await
}
