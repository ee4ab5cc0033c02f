//! A real node for the node tier (`just test-node`): containerd and runc with the CNI bridge,
//! a kubelet, kube-scheduler and kube-proxy, joined to a [`ControlPlane`] started with the
//! node's address. Runs only inside the namespaces `tests/node/run.sh` makes, as root.
//!
//! ```text
//!  tests/node/run.sh ─▶ builds, images (tests/node/images.sh), cgroup parent
//!    └▶ unshare net+mount+pid ─▶ tests/node/inside.sh (node0 10.240.0.1, tmpfs /run/containerd …)
//!         └▶ cargo test --test node
//!              ControlPlane (apiserver on 0.0.0.0, advertised as 10.240.0.1)
//!              Node::start ─▶ containerd ─▶ ctr images import ─▶ kubelet ─▶ scheduler, kube-proxy
//!                            pods on cni0 10.244.0.0/16 ◀── kube-proxy (iptables) Services, NodePorts
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::api::Api;

use crate::cluster::ControlPlane;
use crate::process::Process;

/// The node's name, as registered by its kubelet.
pub const NODE_NAME: &str = "portico-node";
/// The node's address (on `node0`, a veth in the run's network namespace).
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 240, 0, 1);
/// The pod network (the CNI bridge's subnet; cni0 is its first address).
pub const POD_CIDR: &str = "10.244.0.0/16";

/// What `tests/node/run.sh` hands the node tier.
#[derive(Debug, Clone)]
pub struct Environment {
    /// This run's directory (containerd, kubelet, CNI state, logs); unmounted and removed
    /// by the scripts when the run ends.
    pub dir: PathBuf,
    /// The kubelet's cgroupRoot, made by run.sh in every hierarchy.
    pub cgroup_root: String,
    /// The OCI archives and `<name>.ref` files of tests/node/images.sh.
    pub images: PathBuf,
    /// The CNI plugins.
    pub cni_bin: PathBuf,
}

impl Environment {
    /// Reads the environment run.sh sets, failing with the reason when this is not the
    /// node tier (not root, or not started by `just test-node`).
    pub fn from_env() -> Result<Environment> {
        #[allow(unsafe_code)]
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            bail!(
                "the node tier needs root (uid 0, this is uid {uid}): containerd and runc start \
                 containers and the kubelet mounts volumes; run `just test-node` as root"
            );
        }
        let var = |name: &str| {
            std::env::var_os(name).map(PathBuf::from).with_context(|| {
                format!(
                    "{name} is not set: run the node tier with `just test-node` (tests/node/run.sh)"
                )
            })
        };
        Ok(Environment {
            dir: var("PORTICO_NODE_DIR")?,
            cgroup_root: var("PORTICO_NODE_CGROUP")?.to_string_lossy().into_owned(),
            images: var("PORTICO_NODE_IMAGES")?,
            cni_bin: var("PORTICO_CNI_BIN")?,
        })
    }

    /// The reference of image `name` (`portico-operator`, `portico-proxy`, `backend`, `pause`).
    pub fn image_ref(&self, name: &str) -> Result<String> {
        let path = self.images.join(format!("{name}.ref"));
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("read {}", path.display()))?
            .trim()
            .to_string())
    }
}

/// A running node; its processes are stopped when it is dropped (and die with the test
/// process in any case; run.sh's namespaces take the containers with them).
pub struct Node {
    socket: PathBuf,
    processes: Vec<Process>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("socket", &self.socket)
            .finish()
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

impl Node {
    /// Starts containerd, imports the images, then starts the kubelet, kube-scheduler and
    /// kube-proxy against `cp`. Returns once containerd answers; [`Node::wait_ready`] waits
    /// for the kubelet to report the node Ready. Blocking.
    pub fn start(cp: &ControlPlane, env: &Environment) -> Result<Node> {
        let kube_bin = crate::cluster::kube_bin_dir()?;
        let dir = &env.dir;
        let socket = dir.join("containerd.sock");
        let pause = env.image_ref("pause")?;

        // containerd: its own root, state and sockets; CRI with our pause image and CNI.
        // restrict_oom_score_adj: no container gets a lower OOM score than containerd's own,
        // because root may lack CAP_SYS_RESOURCE (these VMs drop it) and runc then fails to
        // give the sandbox its usual -998 ("can't get final child's PID from pipe").
        let config = dir.join("containerd.toml");
        write(
            &config,
            &format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
                root = dir.join("containerd/root").display(),
                state = dir.join("containerd/state").display(),
                socket = socket.display(),
                cni_bin = env.cni_bin.display(),
                cni_conf = dir.join("cni/net.d").display(),
                opt = dir.join("containerd/opt").display(),
            ),
        )?;
        // The pod network: one bridge, addresses from the pod CIDR, cni0 as the gateway.
        write(
            &dir.join("cni/net.d/10-portico-node.conflist"),
            &serde_json::to_string_pretty(&serde_json::json!({
                "cniVersion": "1.0.0",
                "name": "portico-node",
                "plugins": [{
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": POD_CIDR, "gateway": "10.244.0.1" }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": dir.join("cni/ipam"),
                    },
                }],
            }))?,
        )?;

        let mut processes = Vec::new();
        let mut containerd = Command::new("containerd");
        containerd.arg("--config").arg(&config);
        let mut containerd = Process::spawn("containerd", containerd)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            containerd.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "containerd made no socket within 30s:\n{}",
                    containerd.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        processes.push(containerd);

        // The images, into the namespace the CRI plugin reads.
        let mut archives: Vec<PathBuf> = std::fs::read_dir(&env.images)
            .with_context(|| format!("read {}", env.images.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".oci.tar"))
            .collect();
        archives.sort();
        for archive in &archives {
            let out = Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .args(["-n", "k8s.io", "images", "import"])
                .arg(archive)
                .output()
                .context("run ctr images import")?;
            if !out.status.success() {
                bail!(
                    "ctr images import {} failed:\n{}{}",
                    archive.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }

        // kubelet. cgroup v1 needs failCgroupV1: false; no swap or allocatable enforcement;
        // eviction and image GC thresholds low enough that a busy shared disk evicts nothing.
        let kubelet_config = dir.join("kubelet.yaml");
        write(&dir.join("resolv.conf"), "")?;
        write(
            &kubelet_config,
            &format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
containerRuntimeEndpoint: unix://{socket}
failSwapOn: false
enforceNodeAllocatable: []
address: {NODE_IP}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
authorization:
  mode: AlwaysAllow
podLogsDir: {logs}
resolvConf: {resolv}
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
serializeImagePulls: false
"#,
                cgroup_root = env.cgroup_root,
                socket = socket.display(),
                logs = dir.join("pod-logs").display(),
                resolv = dir.join("resolv.conf").display(),
            ),
        )?;
        let mut kubelet = Command::new(kube_bin.join("kubelet"));
        kubelet
            .arg(format!("--config={}", kubelet_config.display()))
            .arg(format!("--kubeconfig={}", cp.kubeconfig().display()))
            .arg(format!("--root-dir={}", dir.join("kubelet").display()))
            .arg(format!("--cert-dir={}", dir.join("kubelet-pki").display()))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg(format!("--node-ip={NODE_IP}"));
        processes.push(Process::spawn("kubelet", kubelet)?);

        let mut scheduler = Command::new(kube_bin.join("kube-scheduler"));
        scheduler.args([
            format!("--kubeconfig={}", cp.kubeconfig().display()),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ]);
        processes.push(Process::spawn("kube-scheduler", scheduler)?);

        // kube-proxy in iptables mode, inside the run's network namespace only. It leaves the
        // machine-wide conntrack settings alone (maxPerCore and the timeouts at 0).
        let proxy_config = dir.join("kube-proxy.yaml");
        write(
            &proxy_config,
            &format!(
                r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
clusterCIDR: {POD_CIDR}
hostnameOverride: {NODE_NAME}
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["{NODE_IP}/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  masqueradeAll: true
"#,
                kubeconfig = cp.kubeconfig().display(),
            ),
        )?;
        let mut proxy = Command::new(kube_bin.join("kube-proxy"));
        // -v=4 logs each rule sync, to line a failed request up with what kube-proxy did.
        proxy
            .arg(format!("--config={}", proxy_config.display()))
            .arg("--v=4");
        processes.push(Process::spawn("kube-proxy", proxy)?);

        Ok(Node { socket, processes })
    }

    /// Waits until the kubelet reports the node Ready (network plugin and runtime up).
    pub async fn wait_ready(&mut self, client: &kube::Client, within: Duration) -> Result<()> {
        let api = Api::<NodeObject>::all(client.clone());
        let deadline = Instant::now() + within;
        let mut last = String::from("not registered yet");
        loop {
            self.check_running()?;
            if let Some(node) = api.get_opt(NODE_NAME).await? {
                let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
                if let Some(ready) = conditions.iter().find(|c| c.type_ == "Ready") {
                    if ready.status == "True" {
                        return Ok(());
                    }
                    last = format!(
                        "Ready={} ({})",
                        ready.status,
                        ready.message.clone().unwrap_or_default()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {NODE_NAME} not Ready within {within:?}: {last}\nkubelet:\n{}",
                    self.log_tail("kubelet", 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Fails with its output when a node process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for p in &mut self.processes {
            p.check_running()?;
        }
        Ok(())
    }

    /// The last lines of a node process's output (`containerd`, `kubelet`, `kube-proxy`, …).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        self.processes
            .iter()
            .find(|p| p.name() == name)
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    /// containerd's socket (for `ctr --address`).
    pub fn containerd_socket(&self) -> &Path {
        &self.socket
    }

    /// Stops kube-proxy, the scheduler and the kubelet, then containerd. The containers
    /// themselves go with the run's PID namespace (tests/node/inside.sh).
    pub fn stop(&mut self) {
        while let Some(mut p) = self.processes.pop() {
            p.terminate();
            let deadline = Instant::now() + Duration::from_secs(5);
            while p.try_wait().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            p.kill();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
