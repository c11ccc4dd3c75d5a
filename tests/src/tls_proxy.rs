//! A TLS terminator in front of a plaintext Kafka broker (tokio-rustls).
//!
//! tansu 0.6 accepts `--cert/--key` but never uses them: its broker builds a TLS acceptor and
//! drops it (`let _acceptor = ...` in tansu-broker/src/broker.rs), so every connection stays
//! plaintext. Tests and `cargo xtask kafka up --secure` therefore put this proxy in front of
//! tansu and advertise the proxy's address. With a client CA it also *requires* and verifies
//! a client certificate (mutual TLS, rustls's `WebPkiClientVerifier`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Builds the proxy's TLS acceptor: its certificate chain and key, and, when `client_ca` is
/// given, a verifier that requires a client certificate signed by that CA.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading {}", ca.display()))?
            {
                roots.add(certificate?)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(TlsAcceptor::from(Arc::new(
        builder.with_single_cert(chain, key)?,
    )))
}

/// Accepts TLS connections on `listener` and forwards each, decrypted, to `upstream`, until
/// the task is dropped. A failed handshake only closes that connection.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, upstream: SocketAddr) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let Ok(mut plain) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = plain.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
    }
}

/// A [`serve`] loop on its own thread and runtime, stopped when dropped.
#[derive(Debug)]
pub struct TlsProxy {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// Listens on `listen` (port 0 picks one) and forwards to `upstream`.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> anyhow::Result<TlsProxy> {
        let acceptor = acceptor(cert, key, client_ca)?;
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding the TLS proxy on {listen}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                tokio::select! {
                    () = serve(listener, acceptor, upstream) => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(TlsProxy {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
