//! `deploy/` and `certs/`, checked by the tools their users run: the Kubernetes manifests
//! against the Kubernetes schemas (kubernetes-validate, offline, strict), the Containerfile with
//! hadolint (and its build context and runtime libraries, since it cannot be built here), the
//! systemd unit with `systemd-analyze verify`, the example configurations with the proxy's own
//! loader, and the classic sidecar pod run for real: its kustomization rendered with `kubectl
//! kustomize` and played with podman's `kube play` (deploy/podman: images built locally with
//! buildah from the binary under test), a demo app writing and reading objects through the
//! sidecar over TLS with curl's SigV4, the certificate replaced on disk while an upload holds a
//! connection, and the pod stopped (SIGTERM) during a large upload.
//!
//! The tools come from `scripts/install-test-deps.sh`. A missing hadolint, kubernetes-validate
//! or systemd-analyze fails its test unless `ESCROW_ALLOW_MISSING_CLIENTS=1` (a printed SKIP).
//! The pod test needs podman, buildah, kubectl and root: without them it prints a loud SKIP and
//! returns, except under CI (`CI=true`), where it fails. Its pod, volumes and images carry
//! names of their own (`t<pid>-`), so runs of the suite side by side do not meet.
//!
//! The pod runs the debug binary the test suite builds anyway, not a release build: a release
//! build of this crate takes over 10 minutes on CI's 2 cores, the debug one is already there
//! and links the same shared libraries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use escrow_proxy::config::{Config, StoreConfig};
use escrow_proxy::mirror::ReadMode;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_escrow-proxy");
/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.35.0";
const ALLOW_MISSING: &str = "ESCROW_ALLOW_MISSING_CLIENTS";

fn root() -> PathBuf {
    PathBuf::from(ROOT)
}

fn run(program: &str, args: &[&str]) -> std::io::Result<Output> {
    Command::new(program).args(args).output()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether `program --version`-like `probe` runs; a missing tool fails the test unless
/// [`ALLOW_MISSING`]`=1`, which prints a SKIP and returns false.
fn have(program: &str, probe: &[&str], test: &str) -> bool {
    match run(program, probe) {
        Ok(out) if out.status.success() => true,
        other => {
            let why = match other {
                Ok(out) => text(&out),
                Err(e) => e.to_string(),
            };
            if std::env::var(ALLOW_MISSING).as_deref() == Ok("1") {
                println!("SKIP: {test}: {program} is missing ({why}); {ALLOW_MISSING}=1");
                false
            } else {
                panic!(
                    "{test}: {program} is missing: {why}. Run `bash scripts/install-test-deps.sh`, \
                     or set {ALLOW_MISSING}=1 to skip."
                )
            }
        }
    }
}

// === Kubernetes manifests ===

/// Every manifest a kustomization of deploy/kubernetes names (the Kubernetes objects).
const MANIFESTS: &[&str] = &[
    "deploy/kubernetes/base/configmap.yaml",
    "deploy/kubernetes/native-sidecar/deployment.yaml",
    "deploy/kubernetes/classic/deployment.yaml",
];

fn kubernetes_validate(files: &[PathBuf]) -> Output {
    let mut command = Command::new("kubernetes-validate");
    command.args(["--strict", "--kubernetes-version", KUBERNETES_VERSION]);
    command.args(files);
    command.output().expect("run kubernetes-validate")
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let test = "kubernetes_manifests_validate_against_the_schemas";
    if !have("kubernetes-validate", &["--version"], test) {
        return;
    }
    let files: Vec<PathBuf> = MANIFESTS.iter().map(|m| root().join(m)).collect();
    let out = kubernetes_validate(&files);
    assert!(out.status.success(), "kubernetes-validate:\n{}", text(&out));
    let report = text(&out);
    assert_eq!(
        report.matches(" passed for resource ").count(),
        MANIFESTS.len(),
        "every manifest was checked:\n{report}"
    );

    // Its must-fail twin: a misspelled field and a wrong type are caught.
    let dir = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(root().join("deploy/kubernetes/classic/deployment.yaml")).expect("read");
    for (what, from, to) in [
        (
            "misspelled field",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesytem: true",
        ),
        (
            "wrong type",
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: thirty",
        ),
    ] {
        assert!(original.contains(from), "the twin's edit applies");
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, original.replacen(from, to, 1)).expect("write");
        let out = kubernetes_validate(&[broken]);
        assert!(!out.status.success(), "a {what} is refused:\n{}", text(&out));
    }
}

/// The `resources:` entries of a kustomization.yaml (the form these files use).
fn kustomization_resources(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read kustomization");
    assert!(text.contains("kind: Kustomization"), "{}", path.display());
    text.lines()
        .skip_while(|l| l.trim() != "resources:")
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .map(|l| l.trim_start_matches("  - ").trim().to_string())
        .collect()
}

#[test]
fn kustomizations_name_every_manifest_and_nothing_missing() {
    let mut named = Vec::new();
    for k in ["base", "native-sidecar", "classic"] {
        let dir = root().join("deploy/kubernetes").join(k);
        let resources = kustomization_resources(&dir.join("kustomization.yaml"));
        assert!(!resources.is_empty(), "{k} names resources");
        for r in resources {
            let path = dir.join(&r);
            if path.is_dir() {
                assert!(path.join("kustomization.yaml").is_file(), "{k}: {r} is a kustomization");
            } else {
                assert!(path.is_file(), "{k}: {r} exists");
                named.push(path.canonicalize().expect("canonical"));
            }
        }
    }
    for m in MANIFESTS {
        let m = root().join(m).canonicalize().expect("canonical");
        assert!(named.contains(&m), "{} is in a kustomization", m.display());
    }
}

/// The `escrow.toml` of the base ConfigMap, as the container sees it.
fn configmap_toml() -> String {
    let yaml = std::fs::read_to_string(root().join("deploy/kubernetes/base/configmap.yaml")).expect("read");
    let body: Vec<&str> = yaml
        .lines()
        .skip_while(|l| l.trim() != "escrow.toml: |")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(""))
        .collect();
    assert!(!body.is_empty(), "the ConfigMap holds escrow.toml");
    body.join("\n")
}

/// `config` with every absolute secret path (`/run/secrets/escrow/…`,
/// `/run/credentials/escrow-proxy.service/…`) moved into `dir`, each file created there
/// (0600), and `/var/lib/escrow` and `/etc/escrow-proxy` moved too; loaded with the proxy's
/// own loader.
fn load_relocated(config: &str, dir: &Path) -> Config {
    use std::os::unix::fs::PermissionsExt;
    let mut text = config.to_string();
    for prefix in [
        "/run/secrets/escrow/",
        "/run/credentials/escrow-proxy.service/",
        "/var/lib/escrow/",
        "/etc/escrow-proxy/",
    ] {
        text = text.replace(prefix, &format!("{}/", dir.display()));
    }
    let secrets: Vec<String> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("secret_key_file") || l.trim_start().starts_with("ca_file"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect();
    for s in secrets {
        std::fs::write(&s, "example-secret-0123456789").expect("write secret");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let file = dir.join("escrow.toml");
    std::fs::write(&file, text).expect("write config");
    Config::load(Some(&file), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}\nconfig:\n{config}"))
}

#[test]
fn the_example_configurations_load_and_read_from_the_mirror() {
    let dir = tempfile::tempdir().expect("tempdir");
    let oss = std::fs::read_to_string(root().join("deploy/examples/oss-primary-aws-mirror.toml")).expect("read");
    let config = load_relocated(&oss, dir.path());
    let StoreConfig::S3(primary) = &config.primary else {
        panic!("OSS is an s3 store")
    };
    assert_eq!(
        primary.endpoint.as_deref(),
        Some("https://oss-cn-hangzhou.aliyuncs.com")
    );
    assert!(!primary.path_style, "OSS serves virtual-hosted style only");
    let mirror = config.mirror.as_ref().expect("a mirror");
    assert_eq!(mirror.read, ReadMode::Mirror);
    let StoreConfig::S3(aws) = &mirror.store else {
        panic!("AWS is an s3 store")
    };
    assert_eq!((aws.endpoint.as_deref(), aws.region.as_str()), (None, "us-west-2"));
    assert!(config.server.listen.ip().is_loopback());

    let dir = tempfile::tempdir().expect("tempdir");
    let aws = std::fs::read_to_string(root().join("deploy/examples/aws-primary-onprem-mirror.toml")).expect("read");
    let config = load_relocated(&aws, dir.path());
    assert!(config.server.tls.is_some(), "off loopback: TLS");
    let mirror = config.mirror.as_ref().expect("a mirror");
    assert_eq!(mirror.read, ReadMode::Mirror);
    let StoreConfig::S3(onprem) = &mirror.store else {
        panic!("on-premises is an s3 store")
    };
    assert!(onprem.path_style && onprem.ca_file.is_some());

    // The sidecar's own ConfigMap loads too, with its drain settings.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load_relocated(&configmap_toml(), dir.path());
    assert_eq!(config.server.limits.drain_delay, Duration::from_secs(5));
    assert_eq!(config.server.limits.shutdown_grace, Duration::from_secs(20));
    assert_eq!(config.mirror.as_ref().expect("mirror").read, ReadMode::Mirror);
}

#[test]
fn termination_grace_covers_drain_and_shutdown_grace() {
    let config = configmap_toml();
    let setting = |name: &str| -> u64 {
        config
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("{name} in the ConfigMap"))
            .trim()
            .parse()
            .expect("a number")
    };
    let needed = setting("drain_delay_secs") + setting("shutdown_grace_secs");
    for form in ["native-sidecar", "classic"] {
        let yaml =
            std::fs::read_to_string(root().join(format!("deploy/kubernetes/{form}/deployment.yaml"))).expect("read");
        let grace: u64 = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds: "))
            .expect("terminationGracePeriodSeconds")
            .parse()
            .expect("a number");
        assert!(
            grace > needed,
            "{form}: terminationGracePeriodSeconds {grace} must exceed drain + grace {needed}"
        );
    }
}

// === Containerfile ===

#[test]
fn containerfile_passes_hadolint() {
    let test = "containerfile_passes_hadolint";
    if !have("hadolint", &["--version"], test) {
        return;
    }
    let file = root().join("deploy/container/Containerfile");
    let out = run("hadolint", &[file.to_str().expect("utf-8")]).expect("run hadolint");
    assert!(out.status.success(), "hadolint:\n{}", text(&out));
    let content = std::fs::read_to_string(&file).expect("read");
    assert!(content.contains("USER 65532"), "non-root");
    assert!(content.contains("HEALTHCHECK"), "a health check");
    assert!(
        content.contains("rust:1.95.0-"),
        "the pinned toolchain (rust-toolchain.toml)"
    );

    // The must-fail twin: an unpinned base image and an unpinned apt install are flagged.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("Containerfile");
    std::fs::write(
        &bad,
        "FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n",
    )
    .expect("write");
    let out = run("hadolint", &[bad.to_str().expect("utf-8")]).expect("run hadolint");
    assert!(
        !out.status.success(),
        "hadolint flags a bad Containerfile:\n{}",
        text(&out)
    );
}

/// What the Containerfile's build stage copies (`COPY a b ./`, `COPY src ./src`): the paths
/// taken from the build context.
fn containerfile_build_context(containerfile: &str) -> Vec<String> {
    containerfile
        .lines()
        .take_while(|l| !l.starts_with("FROM ") || l.contains(" AS build"))
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The crate's files a `cargo build --release --bin escrow-proxy` reads besides `src/`: every
/// lib, bin and bench target's source (cargo loads all targets of the manifest), from
/// `cargo metadata`, relative to the crate root; those not under one of `context`'s paths.
fn targets_outside(context: &[String]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--locked",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(ROOT)
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata:\n{}", text(&out));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let root = root().canonicalize().expect("canonical root");
    let mut outside = Vec::new();
    for target in meta["packages"][0]["targets"].as_array().expect("targets") {
        let kinds: Vec<&str> = target["kind"]
            .as_array()
            .expect("kind")
            .iter()
            .filter_map(|k| k.as_str())
            .collect();
        if !kinds
            .iter()
            .any(|k| ["lib", "bin", "bench", "custom-build"].contains(k))
        {
            continue;
        }
        let path = PathBuf::from(target["src_path"].as_str().expect("src_path"));
        let relative = path.strip_prefix(&root).expect("a target of this crate").to_path_buf();
        if !context.iter().any(|c| relative.starts_with(c)) {
            outside.push(relative.display().to_string());
        }
    }
    outside
}

/// What can be checked of the image without a registry (none is reachable here, so it is
/// never built in the tests): the build stage copies the manifest, lock file, toolchain pin and
/// every target's source (cargo loads them all, benches included), and the binary links only
/// libraries the distroless `cc` runtime ships (glibc's libc and libm, libgcc_s, the loader).
#[test]
fn containerfile_context_is_complete_and_the_runtime_has_the_binarys_libraries() {
    let content = std::fs::read_to_string(root().join("deploy/container/Containerfile")).expect("read");
    let context = containerfile_build_context(&content);
    for needed in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        assert!(
            context.iter().any(|c| c == needed),
            "the build copies {needed}: {context:?}"
        );
    }
    let outside = targets_outside(&context);
    assert!(outside.is_empty(), "targets the build stage does not copy: {outside:?}");
    // Its must-fail twin: a context without benches/ misses the bench targets.
    let without: Vec<String> = context.iter().filter(|c| *c != "benches").cloned().collect();
    assert!(
        targets_outside(&without).iter().any(|t| t.starts_with("benches")),
        "a context missing benches/ is caught"
    );

    assert!(
        content.contains("FROM gcr.io/distroless/cc-debian12"),
        "the runtime checked below"
    );
    let out = run("ldd", &[BIN]).expect("ldd");
    let libraries: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
        .collect();
    assert!(libraries.iter().any(|l| l.starts_with("libc.so")), "{libraries:?}");
    for lib in &libraries {
        assert!(
            [
                "linux-vdso.so.1",
                "libgcc_s.so.1",
                "libm.so.6",
                "libc.so.6",
                "ld-linux-x86-64.so.2",
                "ld-linux-aarch64.so.1"
            ]
            .contains(&lib.as_str()),
            "{lib}: not in the distroless cc image (glibc, libgcc_s only)"
        );
    }
}

// === systemd ===

/// `systemd-analyze verify` on the unit with its ExecStart pointed at `binary`: its output
/// (empty when the unit is clean) and success.
fn verify_unit(unit_text: &str, binary: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("escrow-proxy.service");
    std::fs::write(&unit, unit_text.replace("/usr/local/bin/escrow-proxy", binary)).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    (out.status.success(), text(&out))
}

#[test]
fn systemd_unit_verifies_cleanly() {
    let test = "systemd_unit_verifies_cleanly";
    if !have("systemd-analyze", &["--version"], test) {
        return;
    }
    let unit = std::fs::read_to_string(root().join("deploy/systemd/escrow-proxy.service")).expect("read unit");
    let (ok, output) = verify_unit(&unit, BIN);
    assert!(ok && output.trim().is_empty(), "systemd-analyze verify:\n{output}");
    for needed in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "LoadCredential=root.key:",
    ] {
        assert!(unit.contains(needed), "the unit has {needed:?}");
    }
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("Environment=") && l.to_lowercase().contains("secret")),
        "no secret in the environment"
    );

    // The must-fail twins: an unknown directive is reported, a missing program fails.
    let (_, output) = verify_unit(&unit.replace("NoNewPrivileges=", "NoNewPrivilege="), BIN);
    assert!(
        output.contains("Unknown key"),
        "a misspelled directive is reported:\n{output}"
    );
    let (ok, _) = verify_unit(&unit, "/nonexistent/escrow-proxy");
    assert!(!ok, "a missing ExecStart program fails verification");

    // The env example holds settings only.
    let env = std::fs::read_to_string(root().join("deploy/systemd/escrow-proxy.env.example")).expect("read");
    assert!(env.lines().any(|l| l.starts_with("RUST_LOG=")));
    assert!(
        !env.lines()
            .any(|l| !l.starts_with('#') && l.to_lowercase().contains("secret"))
    );
}

// === certs/ ===

#[test]
fn certs_dir_ignores_every_key() {
    let ignore = std::fs::read_to_string(root().join("certs/.gitignore")).expect("certs/.gitignore");
    let lines: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(lines.first(), Some(&"*"), "everything is ignored by default");
    assert!(
        lines
            .iter()
            .all(|l| *l == "*" || (l.starts_with('!') && !l.contains("key"))),
        "only documentation is let through: {lines:?}"
    );
    // And git agrees, for the files `certs generate` writes there (when git is here).
    if let Ok(out) = Command::new("git")
        .args([
            "-C",
            ROOT,
            "check-ignore",
            "certs/server-key.pem",
            "certs/ca.pem",
            "certs/client-key.pem",
        ])
        .output()
        && out.status.code() != Some(128)
    {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            3,
            "{}",
            text(&out)
        );
    }
}

// === the sidecar pod under podman ===

/// Bound for each wait on the pod (images are local; the demo moves about 16 MiB).
const POD_WAIT: Duration = Duration::from_secs(180);
/// The upload kept open across the certificate replacement: MiB, at this rate (curl's
/// `--limit-rate`), so it lasts about 12 s, longer than a reload takes (`tls_reload_secs` 2).
const ROTATE_UPLOAD: (&str, &str) = ("24", "2M");
/// The upload the pod is stopped during: about 16 s, within drain_delay_secs (5) +
/// shutdown_grace_secs (20) of the ConfigMap.
const DRAIN_UPLOAD: (&str, &str, u64) = ("32", "2M", 32 << 20);

/// podman's setup for this machine: runc (crun fails here on RLIMIT_NOFILE with cgroups v1
/// hybrid) and a containers.conf with no default ulimits and the cgroupfs manager; and names
/// of this run's own (NAME_PREFIX, IMAGE_TAG), so concurrent runs of the suite never meet.
struct Podman {
    conf: tempfile::TempDir,
    runtime: Option<&'static str>,
    prefix: String,
    tag: String,
}

impl Podman {
    fn new() -> Self {
        let conf = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            conf.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\n",
        )
        .expect("write containers.conf");
        let runtime = run("runc", &["--version"])
            .is_ok_and(|o| o.status.success())
            .then_some("runc");
        let id = std::process::id();
        Self {
            conf,
            runtime,
            prefix: format!("t{id}-"),
            tag: format!("t{id}"),
        }
    }

    fn podman_command(&self) -> String {
        match self.runtime {
            Some(r) => format!("podman --runtime {r}"),
            None => "podman".into(),
        }
    }

    fn env(&self, command: &mut Command) {
        command
            .env("CONTAINERS_CONF", self.conf.path().join("containers.conf"))
            .env("PODMAN", self.podman_command())
            .env("NAME_PREFIX", &self.prefix)
            .env("IMAGE_TAG", &self.tag);
    }

    /// `podman ARGS` (with the runtime and containers.conf), not yet run.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("podman");
        if let Some(r) = self.runtime {
            command.args(["--runtime", r]);
        }
        command.args(args);
        self.env(&mut command);
        command
    }

    /// `podman ARGS`.
    fn podman(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run podman")
    }

    /// `bash deploy/podman/SCRIPT ARGS`.
    fn script(&self, script: &str, args: &[&str]) -> Output {
        let mut command = Command::new("bash");
        command.arg(root().join("deploy/podman").join(script)).args(args);
        self.env(&mut command);
        command.output().expect("run script")
    }

    fn pod(&self) -> String {
        format!("{}escrow-demo-pod-0", self.prefix)
    }

    fn app(&self) -> String {
        format!("{}-app", self.pod())
    }

    fn proxy(&self) -> String {
        format!("{}-escrow-proxy", self.pod())
    }

    fn logs(&self, container: &str) -> String {
        text(&self.podman(&["logs", container]))
    }

    /// `podman exec` in the app container: the demo app, or curl (the image has no PATH lookup
    /// for exec).
    fn in_app(&self, args: &[&str]) -> Command {
        let app = self.app();
        let mut all = vec!["exec", app.as_str()];
        all.extend_from_slice(args);
        self.command(&all)
    }

    /// Polls `what` (bounded by [`POD_WAIT`]) until it returns `Some`.
    #[track_caller]
    fn wait_for<T>(&self, describe: &str, mut what: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + POD_WAIT;
        loop {
            if let Some(v) = what() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "{describe}: not within {POD_WAIT:?}; app:\n{}\nproxy:\n{}",
                    self.logs(&self.app()),
                    self.logs(&self.proxy())
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Tears the pod down, and removes this run's images, however the test ends.
struct PodGuard<'a> {
    podman: &'a Podman,
    secrets: String,
}

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        let out = self.podman.script("kube-play.sh", &["down", &self.secrets]);
        if !out.status.success() {
            eprintln!("pod teardown: {}", text(&out));
        }
        for image in ["localhost/escrow-proxy", "localhost/escrow-proxy-demo-app"] {
            let _ = self.podman.podman(&["rmi", &format!("{image}:{}", self.podman.tag)]);
        }
    }
}

/// Whether the pod test can run here; prints a loud SKIP (or fails under CI) when not.
fn pod_test_possible(test: &str) -> bool {
    let mut missing = Vec::new();
    for (tool, probe) in [
        ("podman", "--version"),
        ("buildah", "--version"),
        ("kubectl", "version"),
    ] {
        let ok = if tool == "kubectl" {
            run(tool, &[probe, "--client"]).is_ok_and(|o| o.status.success())
        } else {
            run(tool, &[probe]).is_ok_and(|o| o.status.success())
        };
        if !ok {
            missing.push(tool.to_string());
        }
    }
    let is_root = run("id", &["-u"]).is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        missing.push("root (rootful podman and files owned by uid 65532)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{test}: SKIPPED: the sidecar pod test did NOT run: missing {}. \
         `bash scripts/install-test-deps.sh` installs podman, buildah, runc, catatonit and kubectl.",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message} (CI=true: failing instead of skipping)");
    }
    eprintln!("\n!!!!!!!!!!\n{message}\n!!!!!!!!!!\n");
    println!("SKIP: {message}");
    false
}

/// `demo-app upload NAME MIB RATE` run in the app container (`podman exec`), its output
/// collected by a thread; returns the child and the channel of its lines.
fn start_upload(
    podman: &Podman,
    name: &str,
    mib: &str,
    rate: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = podman
        .in_app(&["demo-app", "upload", name, mib, rate])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("podman exec demo-app upload");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The lines of an upload until "upload: done" (bounded).
fn upload_result(rx: &std::sync::mpsc::Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + POD_WAIT;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let done = line == "upload: done";
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("the upload did not finish within {POD_WAIT:?}: {lines:?}")
}

/// Waits (bounded) for the upload's "upload: started" line.
fn upload_started(rx: &std::sync::mpsc::Receiver<String>) {
    let line = rx.recv_timeout(POD_WAIT).expect("the upload starts");
    assert!(line.starts_with("upload: started"), "{line}");
}

/// The `fields` of the proxy's JSON access lines.
fn access_lines(proxy_log: &str) -> Vec<serde_json::Value> {
    proxy_log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["target"] == "escrow_proxy::access")
        .map(|v| v["fields"].clone())
        .collect()
}

/// The acceptance run of issue 12, as deploy/kubernetes/README.md gives the commands: the
/// classic form's kustomization rendered with `kubectl kustomize` and played with `podman kube
/// play` (deploy/podman/kube-play.sh); the demo app writes and reads through the sidecar over
/// TLS; the certificate is replaced on disk while an upload holds a connection open (new
/// handshakes get the new one, the open connection finishes its upload and serves one more
/// request); then the pod is stopped (SIGTERM to every container, as the kubelet does) during
/// a large upload: the upload completes and every container exits 0.
#[test]
fn the_classic_sidecar_pod_serves_its_app_under_podman_kube_play() {
    let test = "the_classic_sidecar_pod_serves_its_app_under_podman_kube_play";
    if !pod_test_possible(test) {
        return;
    }
    let podman = Podman::new();
    let started = Instant::now();
    let (app, proxy) = (podman.app(), podman.proxy());

    let out = podman.script("build-images.sh", &[BIN]);
    assert!(out.status.success(), "build-images.sh:\n{}", text(&out));
    let user = podman.podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}",
        &format!("localhost/escrow-proxy:{}", podman.tag),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        "65532:65532",
        "non-root image"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    let secrets_arg = secrets.to_str().expect("utf-8").to_string();
    let out = podman.script("make-secrets.sh", &[&secrets_arg, BIN]);
    assert!(out.status.success(), "make-secrets.sh:\n{}", text(&out));
    let client_secret = std::fs::read_to_string(secrets.join("escrow-proxy-secrets/client-app")).expect("read");
    // Mounted as the kubelet mounts a Secret under `fsGroup: 65532`: root-owned, 0440.
    {
        use std::os::unix::fs::MetadataExt;
        for file in ["escrow-proxy-secrets/root.key", "escrow-proxy-tls/tls.key"] {
            let meta = std::fs::metadata(secrets.join(file)).expect("secret file");
            assert_eq!(
                (meta.mode() & 0o777, meta.uid(), meta.gid()),
                (0o440, 0, 65532),
                "{file}: shaped like a Kubernetes Secret under fsGroup"
            );
        }
    }

    // A pod left by an earlier, interrupted run goes first.
    let _ = podman.script("kube-play.sh", &["down", &secrets_arg]);
    let guard = PodGuard {
        podman: &podman,
        secrets: secrets_arg.clone(),
    };
    let out = podman.script("kube-play.sh", &["up", &secrets_arg, "--network", "none"]);
    assert!(out.status.success(), "kube-play.sh up:\n{}", text(&out));

    // 1. The demo app reports its verdict (over TLS to the sidecar).
    let app_log = podman.wait_for("the demo app's verdict", || {
        let log = podman.logs(&app);
        (log.contains("demo-app: OK") || log.contains("demo-app: FAILED")).then_some(log)
    });
    assert!(
        app_log.contains("demo-app: OK") && !app_log.contains("FAILED"),
        "app:\n{app_log}\nproxy:\n{}",
        podman.logs(&proxy)
    );

    // The probes the manifests run (exec, on the admin API's loopback) pass inside the pod.
    for path in ["/ready", "/live"] {
        let url = format!("http://127.0.0.1:9090{path}");
        let out = podman.podman(&["exec", &proxy, "/usr/local/bin/escrow-proxy", "probe", "--url", &url]);
        assert!(out.status.success(), "probe {path} in the pod:\n{}", text(&out));
    }

    // 2. The certificate replaced on disk while a client is connected. The app trusts only
    // the first CA for its upload, so that upload's connection was made with the first
    // certificate; the new CA goes beside it for the checks of new handshakes.
    let next = dir.path().join("next");
    let status = Command::new(BIN)
        .args(["certs", "generate", "--out"])
        .arg(&next)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("certs generate");
    assert!(status.success());
    std::fs::copy(
        next.join("ca.pem"),
        secrets.join("escrow-proxy-app-credentials/new-ca.crt"),
    )
    .expect("new CA");
    let (mut upload, lines) = start_upload(&podman, "rotate", ROTATE_UPLOAD.0, ROTATE_UPLOAD.1);
    upload_started(&lines);
    let reloads_before = podman.logs(&proxy).matches("tls certificate reloaded").count();
    // Key first, then the certificate (as a renewal writing file by file may): the watcher may
    // see a mismatched pair in between and refuse it; the finished pair wins.
    // Rewritten in place (not `fs::copy`, which would bring the source's mode): the files keep
    // their owner and mode, as a Secret's projected files do.
    let tls = secrets.join("escrow-proxy-tls");
    let rewrite = |from: &str, to: &str| {
        let bytes = std::fs::read(next.join(from)).expect("read new file");
        std::fs::write(tls.join(to), bytes).expect("rewrite");
    };
    rewrite("server-key.pem", "tls.key");
    rewrite("server.pem", "tls.crt");
    podman.wait_for("the proxy reloads the certificate", || {
        (podman.logs(&proxy).matches("tls certificate reloaded").count() > reloads_before).then_some(())
    });
    let handshake = |ca: &str| {
        let out = podman
            .in_app(&[
                "/usr/bin/curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                ca,
                "https://localhost:8443/",
            ])
            .output()
            .expect("podman exec curl");
        (out.status.success(), text(&out))
    };
    let (ok, out) = handshake("/run/secrets/app/new-ca.crt");
    assert!(
        ok && out.contains("403"),
        "a new handshake verifies with the new CA: {out}"
    );
    let (ok, out) = handshake("/run/secrets/app/ca.crt");
    assert!(!ok, "a new handshake no longer verifies with the old CA: {out}");
    assert!(
        upload.try_wait().expect("try_wait").is_none(),
        "the upload was still running after the replacement (or raise ROTATE_UPLOAD)"
    );
    let result = upload_result(&lines);
    assert!(upload.wait().expect("wait").success());
    assert!(
        result.contains(&"upload: rotate.bin HTTP 200 connects 1 etag ok".to_string())
            && result.contains(&"upload: rotate-after.bin HTTP 200 connects 0".to_string()),
        "the open connection finished its upload and served the next request on it: {result:?}"
    );

    // 3. SIGTERM to the pod during a large upload (the app's CA bundle now holds the new CA).
    let ca = std::fs::read(next.join("ca.pem")).expect("read CA");
    std::fs::write(secrets.join("escrow-proxy-app-credentials/ca.crt"), ca).expect("rewrite CA");
    let (mut upload, lines) = start_upload(&podman, "drain", DRAIN_UPLOAD.0, DRAIN_UPLOAD.1);
    upload_started(&lines);
    let out = podman.podman(&["pod", "stop", "--time", "60", &podman.pod()]);
    assert!(out.status.success(), "podman pod stop:\n{}", text(&out));
    let result = upload_result(&lines);
    let _ = upload.wait();
    let app_log = podman.logs(&app);
    let proxy_log = podman.logs(&proxy);
    assert!(
        result.contains(&"upload: drain.bin HTTP 200 connects 1 etag ok".to_string()),
        "the upload in flight at SIGTERM completed: {result:?}\napp:\n{app_log}\nproxy:\n{proxy_log}"
    );
    assert!(
        app_log.contains("demo-app: SIGTERM during an upload; letting it finish")
            && app_log.contains("demo-app: stopped"),
        "the app got SIGTERM while its upload ran:\n{app_log}"
    );
    for container in [&proxy, &app] {
        let code = podman.podman(&["inspect", "--format", "{{.State.ExitCode}}", container]);
        assert_eq!(
            String::from_utf8_lossy(&code.stdout).trim(),
            "0",
            "{container} exits 0 on SIGTERM; proxy log:\n{proxy_log}"
        );
    }
    assert!(
        proxy_log.contains("\"message\":\"stopped\""),
        "a graceful stop:\n{proxy_log}"
    );

    // Its log: JSON access lines for every request, each naming its stores; no secret.
    let access = access_lines(&proxy_log);
    let line = |op: &str, key: &str| {
        access
            .iter()
            .find(|f| f["operation"] == op && f["key"] == key)
            .unwrap_or_else(|| panic!("no {op} {key} access line:\n{proxy_log}"))
    };
    for key in ["small.bin", "big.bin"] {
        assert_eq!(line("PutObject", key)["stores"], "primary+mirror");
        assert_eq!(
            line("GetObject", key)["stores"],
            "mirror",
            "the ConfigMap reads the mirror first"
        );
        assert_eq!(line("DeleteObject", key)["status"], 204);
    }
    let drained = line("PutObject", "drain.bin");
    assert_eq!(
        (drained["status"].as_u64(), drained["bytes_in"].as_u64()),
        (Some(200), Some(DRAIN_UPLOAD.2))
    );
    assert_eq!(line("PutObject", "rotate-after.bin")["status"], 200);
    let stop_at = proxy_log.find("stop requested").expect("the proxy logged the stop");
    let drained_at = proxy_log
        .find("\"key\":\"drain.bin\"")
        .expect("the drained upload's line");
    assert!(drained_at > stop_at, "the upload finished after SIGTERM");
    assert!(
        !proxy_log.contains(client_secret.trim()),
        "the client secret is never logged"
    );

    drop(guard);
    let left = podman.podman(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}", podman.pod()),
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "the pod is gone: {}",
        text(&left)
    );
    println!("{test}: pod test took {:?}", started.elapsed());
}
