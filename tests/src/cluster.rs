//! A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and (for garbage
//! collection and namespace deletion) kube-controller-manager, built from the upstream Go
//! modules by `tests/kube/build.sh`.
//!
//! ```text
//!  tests/kube/build.sh ─▶ target/kube/<go.sum hash>/bin/{etcd,kube-apiserver,kube-controller-manager}
//!  ControlPlane::start ─▶ certs + token file ─▶ etcd ─▶ kube-apiserver ─▶ /readyz ─▶ controller-manager
//!                       └▶ <dir>/admin.kubeconfig
//! ```
//!
//! Authentication: a static admin token (group `system:masters`) and service-account tokens
//! signed by a per-run key, so the TokenRequest API hands out real tokens. Authorization: RBAC.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::certs::{Ca, signing_key_pem};
use crate::process::Process;

/// The Kubernetes version built by tests/kube (kept in step with its go.mod).
pub const KUBERNETES_VERSION: &str = "v1.35.4";

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where certificates, the kubeconfig and etcd's data live.
    pub dir: PathBuf,
    /// Also run kube-controller-manager (garbage collector, namespace, service-account controllers).
    pub controller_manager: bool,
    /// The apiserver's secure port; 0 picks a free one.
    pub port: u16,
    /// For a cluster with a node (`crate::node`): the node's address, which the apiserver
    /// also listens on and publishes as the `kubernetes` Service's endpoint so pods reach it,
    /// and the controller manager then also runs the controllers pods need (Deployments,
    /// ReplicaSets, EndpointSlices, node lifecycle, the root CA ConfigMap).
    pub node_address: Option<std::net::Ipv4Addr>,
}

/// A running control plane. Its processes die with the process that started it.
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    ca_pem: String,
    admin_token: String,
    kubeconfig: PathBuf,
    processes: Mutex<Vec<Process>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("dir", &self.dir)
            .finish()
    }
}

/// The directory holding etcd, kube-apiserver and kube-controller-manager, building them
/// first when they are not cached (`tests/kube/build.sh`; `PORTICO_KUBE_BIN` overrides).
pub fn kube_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PORTICO_KUBE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    crate::cached_build("tests/kube/build.sh", "the test control plane")
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
///
/// Taken below the kernel's ephemeral range (32768 and up by default): a port from that
/// range can be handed to some process's outgoing connection between this check and the
/// caller's bind, which made a test control plane fail now and then with "address already
/// in use". Below it, only another listener can take it.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Spread over the range and never hand out the same port twice in one process.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = u32::from_str_radix(&random_hex(2), 16).unwrap_or(0);
    for _ in 0..200 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((seed + n * 7919) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A plain-HTTP GET on 127.0.0.1, for etcd's /health.
fn http_get_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and (optionally) kube-controller-manager, and waits until
    /// the apiserver reports ready. Blocking; call it outside async code or via spawn_blocking.
    ///
    /// A port [`free_port`] found free can still be taken before the server binds it (a CI
    /// run saw etcd fail so, once in many runs): such a start is retried with other ports
    /// and a fresh etcd data directory, at most twice.
    pub fn start(opts: &Options) -> Result<ControlPlane> {
        let mut attempt = 0;
        loop {
            match Self::start_once(opts, attempt) {
                Err(e) if attempt < 2 && format!("{e:#}").contains("address already in use") => {
                    eprintln!("control plane: a chosen port was taken before its bind; retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn start_once(opts: &Options, attempt: u32) -> Result<ControlPlane> {
        let bin = kube_bin_dir()?;
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir)?;

        // Certificates and credentials.
        let ca = Ca::new("portico-test-ca")?;
        let node_address = opts.node_address.map(|a| a.to_string());
        let mut names = vec![
            "localhost",
            "127.0.0.1",
            "kubernetes",
            "kubernetes.default.svc",
            "10.96.0.1",
        ];
        names.extend(node_address.as_deref());
        let serving = ca.server(&names)?;
        let write = |name: &str, data: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, data).with_context(|| format!("write {}", path.display()))?;
            Ok(path)
        };
        let ca_file = write("ca.crt", &ca.cert_pem)?;
        let cert_file = write("apiserver.crt", &serving.cert_pem)?;
        let key_file = write("apiserver.key", &serving.key_pem)?;
        let (sa_private, sa_public) = signing_key_pem()?;
        let sa_key = write("service-account.key", &sa_private)?;
        let sa_pub = write("service-account.pub", &sa_public)?;
        let admin_token = random_hex(24);
        let tokens = write(
            "tokens.csv",
            &format!("{admin_token},portico-admin,portico-admin,\"system:masters\"\n"),
        )?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = if opts.port == 0 {
            free_port()?
        } else {
            opts.port
        };
        let server = format!("https://127.0.0.1:{api_port}");

        let mut processes = Vec::new();

        // etcd, with its data in memory when /dev/shm is there.
        let data_dir = match std::env::var_os("PORTICO_ETCD_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => dir.join("etcd"),
        };
        let data_dir = match attempt {
            0 => data_dir,
            n => data_dir.with_extension(format!("retry{n}")),
        };
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.args([
            "--name=default".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
            "--quota-backend-bytes=8589934592".into(),
        ]);
        let mut etcd = Process::spawn("etcd", etcd)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_get_ok(etcd_port, "/health") {
            etcd.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "etcd did not become healthy within 30s; output:\n{}",
                    etcd.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        processes.push(etcd);

        let mut apiserver = Command::new(bin.join("kube-apiserver"));
        apiserver.args([format!("--etcd-servers=http://127.0.0.1:{etcd_port}")]);
        match &node_address {
            // Inside the node tier's own network namespace: pods reach the apiserver through
            // the `kubernetes` Service, whose endpoint is the node's address.
            Some(node) => apiserver.args([
                "--bind-address=0.0.0.0".to_string(),
                format!("--advertise-address={node}"),
            ]),
            None => apiserver.args([
                "--bind-address=127.0.0.1",
                // Only used to publish the `kubernetes` Service endpoints, switched off below.
                "--advertise-address=10.244.0.1",
                "--endpoint-reconciler-type=none",
            ]),
        };
        apiserver.args([
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", cert_file.display()),
            format!("--tls-private-key-file={}", key_file.display()),
            format!("--client-ca-file={}", ca_file.display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--enable-priority-and-fairness=false".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--event-ttl=10m".into(),
        ]);
        let mut apiserver = Process::spawn("kube-apiserver", apiserver)?;

        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(&server, &ca.cert_pem, &admin_token),
        )?;

        let cp = ControlPlane {
            dir: dir.clone(),
            server,
            ca_pem: ca.cert_pem.clone(),
            admin_token,
            kubeconfig: kubeconfig.clone(),
            processes: Mutex::new(Vec::new()),
        };
        cp.wait_ready(&mut apiserver, Duration::from_secs(90))?;
        processes.push(apiserver);

        if opts.controller_manager {
            let mut kcm = Command::new(bin.join("kube-controller-manager"));
            let controllers = if node_address.is_some() {
                "garbagecollector,namespace,serviceaccount,deployment,replicaset,endpointslice,\
                 nodelifecycle,root-ca-cert-publisher,disruption"
            } else {
                "garbagecollector,namespace,serviceaccount"
            };
            kcm.args([
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--controllers={controllers}"),
                format!("--root-ca-file={}", ca_file.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--use-service-account-credentials=false".into(),
                "--concurrent-gc-syncs=5".into(),
                "--concurrent-namespace-syncs=5".into(),
            ]);
            let mut kcm = Process::spawn("kube-controller-manager", kcm)?;
            std::thread::sleep(Duration::from_millis(300));
            kcm.check_running()?;
            processes.push(kcm);
        }
        *cp.processes.lock().map_err(|_| anyhow!("poisoned"))? = processes;
        Ok(cp)
    }

    /// Polls `/readyz` with the admin token on a private runtime until it answers `ok`.
    fn wait_ready(&self, apiserver: &mut Process, timeout: Duration) -> Result<()> {
        let config = self.config_with_token(&self.admin_token)?;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        // A thread of its own: this may run on a runtime's blocking pool.
        std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let client = kube::Client::try_from(config)?;
                    loop {
                        apiserver.check_running()?;
                        let req = http::Request::get("/readyz").body(Vec::new())?;
                        match client.request_text(req).await {
                            Ok(body) if body.trim() == "ok" => return Ok(()),
                            Ok(body) => last = body,
                            Err(e) => last = e.to_string(),
                        }
                        if Instant::now() > deadline {
                            bail!(
                                "kube-apiserver not ready within {timeout:?}: {last}\noutput:\n{}",
                                apiserver.log_tail(40)
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                })
            })
            .join()
            .map_err(|_| anyhow!("readiness thread panicked"))?
        })
    }

    /// The apiserver URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA that signed the apiserver's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The static admin token (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory of this control plane's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kube client configuration that authenticates with `token`.
    pub fn config_with_token(&self, token: &str) -> Result<kube::Config> {
        let mut config = kube::Config::new(self.server.parse()?);
        let ca = rustls_pki_types::pem::PemObject::from_pem_slice(self.ca_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|e| anyhow!("parse test CA: {e}"))?;
        config.root_cert = Some(vec![ca]);
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))?;
        config.default_namespace = "default".into();
        Ok(config)
    }

    /// A client authenticated as the admin. Call inside a Tokio runtime; make one per test.
    pub fn client(&self) -> kube::Client {
        self.client_with_token(&self.admin_token)
    }

    /// A client authenticated with `token` (for example a ServiceAccount's).
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let config = self
            .config_with_token(token)
            .expect("client configuration for the test control plane");
        kube::Client::try_from(config).expect("kube client for the test control plane")
    }

    /// Writes a kubeconfig that authenticates with `token` and returns its path.
    pub fn write_kubeconfig(&self, token: &str, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, kubeconfig_yaml(&self.server, &self.ca_pem, token))
            .with_context(|| format!("write {}", path.display()))?;
        Ok(path.to_path_buf())
    }

    /// Creates a namespace named `<prefix>-<random>` and returns its name.
    pub async fn new_namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", random_hex(3));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        name
    }

    /// Creates the ServiceAccount when it is missing.
    pub async fn ensure_service_account(&self, namespace: &str, name: &str) -> Result<()> {
        let api = Api::<ServiceAccount>::namespaced(self.client(), namespace);
        if api.get_opt(name).await?.is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A real, signed token of the ServiceAccount `namespace/name`, from the TokenRequest API.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let api = Api::<ServiceAccount>::namespaced(self.client(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let response: TokenRequest = api
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for serviceaccount {namespace}/{name}"))?;
        response
            .status
            .map(|s| s.token)
            .ok_or_else(|| anyhow!("TokenRequest for {namespace}/{name} returned no token"))
    }

    /// Stops every process of this control plane.
    pub fn stop(&self) {
        if let Ok(mut processes) = self.processes.lock() {
            // Reverse order: controller-manager, apiserver, then etcd.
            while let Some(mut p) = processes.pop() {
                p.terminate();
                let deadline = Instant::now() + Duration::from_secs(5);
                while p.try_wait().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                p.kill();
            }
        }
    }

    /// Fails when a control-plane process has died.
    pub fn check_running(&self) -> Result<()> {
        let mut processes = self.processes.lock().map_err(|_| anyhow!("poisoned"))?;
        for p in processes.iter_mut() {
            p.check_running()?;
        }
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    use base64_lite::encode;
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: portico-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: portico-test\n  user:\n    token: {token}\ncontexts:\n- name: portico-test\n  context:\n    cluster: portico-test\n    user: portico-test\n    namespace: default\ncurrent-context: portico-test\n",
        ca = encode(ca_pem.as_bytes()),
    )
}

/// Standard base64, enough for a kubeconfig; avoids a dependency for twelve lines.
mod base64_lite {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn encodes_like_rfc4648() {
            assert_eq!(super::encode(b""), "");
            assert_eq!(super::encode(b"f"), "Zg==");
            assert_eq!(super::encode(b"fo"), "Zm8=");
            assert_eq!(super::encode(b"foobar"), "Zm9vYmFy");
        }
    }
}

static SHARED: OnceLock<std::result::Result<ControlPlane, String>> = OnceLock::new();

/// The control plane shared by the tests of one test binary, started on first use.
///
/// When it cannot be built or started the calling test fails with the reason: the tests
/// that need a cluster never skip.
pub async fn control_plane() -> &'static ControlPlane {
    let shared = tokio::task::spawn_blocking(|| {
        SHARED.get_or_init(|| {
            let dir = crate::scratch_dir("control-plane");
            ControlPlane::start(&Options {
                dir,
                controller_manager: true,
                port: 0,
                node_address: None,
            })
            .map_err(|e| format!("{e:#}"))
        })
    })
    .await
    .expect("control plane start task");
    match shared {
        Ok(cp) => cp,
        Err(e) => panic!("the test control plane could not start: {e}"),
    }
}
