//! The deployment files under `deploy/` (Dockerfile, compose, nginx, Kubernetes, systemd), checked
//! without running them (no container engine here): every YAML document parses; every
//! `ISV__SECTION__KEY` they name is a real setting of `config/default.toml`; the settings that
//! production cannot default (keys, secrets, database) are given to every replica by compose and
//! by Kubernetes, secrets only by reference; and the files agree with each other (Secret and
//! ConfigMap names, key file paths, ports, the production.toml in the ConfigMap).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// Settings with no value production can default: nothing is generated there.
const REQUIRED: [&str; 6] = [
    "alipay.app_private_key_file",
    "alipay.alipay_public_key_file",
    "security.encryption_key",
    "admin.token",
    "api.token",
    "database.url",
];

/// Of those, the ones that are secrets: never written as a value in a deployment file.
const SECRET: [&str; 4] = [
    "security.encryption_key",
    "admin.token",
    "api.token",
    "database.url",
];

const KEYS_DIR: &str = "/etc/isv-lifecycle/keys";
const PRODUCTION_TOML: &str = "/etc/isv-lifecycle/production.toml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn yaml_files() -> Vec<PathBuf> {
    let mut all = Vec::new();
    files_under(&deploy(), &mut all);
    all.into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect()
}

fn load(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{}: YAML does not parse: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `config/default.toml`, as the service reads it.
fn defaults() -> config::Config {
    config::Config::builder()
        .add_source(config::File::from(root().join("config/default.toml")))
        .build()
        .expect("config/default.toml")
}

/// `ISV__ALIPAY__APP_ID` → `alipay.app_id` (the inverse of `isv_lifecycle::config::env_name`).
fn setting_of(var: &str) -> Option<String> {
    let rest = var.to_ascii_lowercase();
    let rest = rest.strip_prefix("isv__")?;
    let parts: Vec<&str> = rest.split("__").collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(parts.join("."))
}

/// Panics with every variable (and where it was found) that names no setting.
fn assert_real_settings<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let defaults = defaults();
    let mut bad = Vec::new();
    for (var, origin) in vars {
        let ok = setting_of(var).is_some_and(|setting| {
            isv_lifecycle::config::env_name(&setting) == var
                && defaults.get::<config::Value>(&setting).is_ok()
        });
        if !ok {
            bad.push(format!(
                "{var} (in {origin}) is not ISV__SECTION__KEY of a setting in config/default.toml"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn s(y: &Yaml) -> Option<&str> {
    y.as_str()
}

/// A YAML scalar as text (keys and values in manifests may be numbers or booleans).
fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(v) | Yaml::Real(v) => Some(v.clone()),
        Yaml::Integer(v) => Some(v.to_string()),
        Yaml::Boolean(v) => Some(v.to_string()),
        _ => None,
    }
}

fn no_aliases_left(y: &Yaml, origin: &str) {
    match y {
        Yaml::Alias(_) => panic!("{origin}: an unresolved YAML alias"),
        Yaml::Array(a) => a.iter().for_each(|v| no_aliases_left(v, origin)),
        Yaml::Hash(h) => h.iter().for_each(|(k, v)| {
            no_aliases_left(k, origin);
            no_aliases_left(v, origin);
        }),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Every YAML document parses.

#[test]
fn every_yaml_file_under_deploy_parses() {
    let files = yaml_files();
    for expected in [
        "deploy/docker-compose.yml",
        "deploy/k8s/deployment.yaml",
        "deploy/k8s/service.yaml",
        "deploy/k8s/configmap.yaml",
        "deploy/k8s/secret.example.yaml",
    ] {
        assert!(
            files.iter().any(|f| rel(f) == expected),
            "{expected} is missing"
        );
    }
    for file in &files {
        let docs = load(file);
        assert!(!docs.is_empty(), "{}: no YAML document", rel(file));
        for (i, doc) in docs.iter().enumerate() {
            assert!(
                doc.as_hash().is_some(),
                "{} document {i}: not a mapping",
                rel(file)
            );
            no_aliases_left(doc, &rel(file));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compose.

struct ComposeService {
    name: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
}

fn compose() -> (Yaml, Vec<ComposeService>) {
    let path = deploy().join("docker-compose.yml");
    let doc = load(&path).remove(0);
    let services = doc["services"]
        .as_hash()
        .expect("docker-compose.yml: services");
    let mut out = Vec::new();
    for (name, service) in services {
        let name = s(name).expect("service name").to_string();
        let mut env = BTreeMap::new();
        match &service["environment"] {
            Yaml::Hash(h) => {
                for (k, v) in h {
                    env.insert(
                        text(k).expect("environment key"),
                        text(v).unwrap_or_default(),
                    );
                }
            }
            Yaml::Array(a) => {
                for item in a {
                    let item = s(item).expect("environment entry");
                    let (k, v) = item.split_once('=').unwrap_or((item, ""));
                    env.insert(k.to_string(), v.to_string());
                }
            }
            Yaml::BadValue | Yaml::Null => {}
            other => panic!("docker-compose.yml: {name}.environment: {other:?}"),
        }
        let command = match &service["command"] {
            Yaml::Array(a) => a.iter().map(|c| text(c).expect("command word")).collect(),
            Yaml::String(c) => c.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        out.push(ComposeService { name, command, env });
    }
    (doc, out)
}

fn compose_service<'a>(services: &'a [ComposeService], name: &str) -> &'a ComposeService {
    services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("docker-compose.yml: no service {name}"))
}

#[test]
fn compose_names_only_real_settings() {
    let (_, services) = compose();
    let vars: Vec<(String, String)> = services
        .iter()
        .flat_map(|svc| {
            svc.env
                .keys()
                .filter(|k| k.starts_with("ISV__"))
                .map(|k| (k.clone(), format!("docker-compose.yml {}", svc.name)))
        })
        .collect();
    assert!(!vars.is_empty());
    assert_real_settings(vars.iter().map(|(v, o)| (v.as_str(), o.as_str())));
}

#[test]
fn compose_gives_every_replica_and_the_simulator_what_production_cannot_default() {
    let (doc, services) = compose();
    let runs_image: Vec<&ComposeService> = services
        .iter()
        .filter(|s| {
            matches!(
                s.command.first().map(String::as_str),
                Some("serve" | "sim" | "migrate")
            )
        })
        .collect();
    for name in ["serve-1", "serve-2", "sim"] {
        assert!(
            runs_image.iter().any(|s| s.name == name),
            "docker-compose.yml: {name} does not run the image"
        );
    }
    assert_eq!(
        runs_image
            .iter()
            .filter(|s| s.command[0] == "serve")
            .count(),
        2,
        "two replicas"
    );
    for svc in &runs_image {
        for setting in REQUIRED {
            let var = isv_lifecycle::config::env_name(setting);
            let value = svc.env.get(&var).unwrap_or_else(|| {
                panic!(
                    "docker-compose.yml: {} does not set {var} ({setting})",
                    svc.name
                )
            });
            if SECRET.contains(&setting) && setting != "database.url" {
                // From deploy/.env, never written in the file.
                assert!(
                    value.starts_with("${") && value.ends_with('}'),
                    "docker-compose.yml: {}: {var} must come from deploy/.env (${{...}}), not be written here",
                    svc.name
                );
            }
        }
        for file_var in [
            "ISV__ALIPAY__APP_PRIVATE_KEY_FILE",
            "ISV__ALIPAY__ALIPAY_PUBLIC_KEY_FILE",
        ] {
            assert!(
                svc.env[file_var].starts_with(&format!("{KEYS_DIR}/")),
                "docker-compose.yml: {}: {file_var} outside the mounted {KEYS_DIR}",
                svc.name
            );
        }
        if svc.command[0] != "sim" {
            let config_at = svc.command.iter().position(|c| c == "--config");
            assert_eq!(
                config_at.map(|i| svc.command[i + 1].as_str()),
                Some(PRODUCTION_TOML),
                "docker-compose.yml: {} runs with the production profile",
                svc.name
            );
        }
        // The keys are mounted read-only where the settings point.
        let volumes = doc["services"][svc.name.as_str()]["volumes"]
            .as_vec()
            .unwrap_or_else(|| panic!("docker-compose.yml: {}: no volumes", svc.name));
        assert!(
            volumes.iter().any(|v| {
                s(&v["target"]) == Some(KEYS_DIR) && v["read_only"].as_bool() == Some(true)
                    || s(v).is_some_and(|v| v.contains(&format!(":{KEYS_DIR}:ro")))
            }),
            "docker-compose.yml: {}: {KEYS_DIR} not mounted read-only",
            svc.name
        );
    }

    // The local setup talks to the simulator, which sends its messages through the proxy.
    let sim = compose_service(&services, "sim");
    let arg = |name: &str| {
        let i = sim.command.iter().position(|c| c == name).unwrap();
        sim.command[i + 1].clone()
    };
    let listen_port = arg("--listen").rsplit(':').next().unwrap().to_string();
    assert!(arg("--platform-key").starts_with(&format!("{KEYS_DIR}/")));
    assert_eq!(arg("--gateway-url"), "http://proxy:8080/alipay/gateway");
    for svc in runs_image.iter().filter(|s| s.command[0] == "serve") {
        assert_eq!(
            svc.env["ISV__ALIPAY__GATEWAY_URL"],
            format!("http://sim:{listen_port}/gateway.do"),
            "docker-compose.yml: {} must call the simulator",
            svc.name
        );
    }

    // Ordering: the database is healthy before anything that uses it starts.
    assert!(
        s(&doc["services"]["db"]["healthcheck"]["test"][1])
            .is_some_and(|t| t.contains("pg_isready")),
        "db healthcheck uses pg_isready"
    );
    for name in ["serve-1", "serve-2"] {
        assert_eq!(
            s(&doc["services"][name]["depends_on"]["db"]["condition"]),
            Some("service_healthy"),
            "{name} waits for a healthy db"
        );
    }
}

#[test]
fn nginx_balances_the_compose_replicas() {
    let (doc, services) = compose();
    let conf = read(&deploy().join("nginx.conf"));
    let replicas: Vec<&str> = services
        .iter()
        .filter(|s| s.command.first().map(String::as_str) == Some("serve"))
        .map(|s| s.name.as_str())
        .collect();
    for name in &replicas {
        assert!(
            conf.contains(&format!("server {name}:8080")),
            "nginx.conf does not balance over {name}:8080"
        );
    }
    assert!(conf.contains("listen 8080;"));
    let proxy_mount = doc["services"]["proxy"]["volumes"][0].as_str().unwrap();
    assert!(proxy_mount.starts_with("./nginx.conf:"));
    // Gateway messages reach 60 KB; server.max_body_bytes is 256 KiB.
    assert!(conf.contains("client_max_body_size 256k;"));
}

// ---------------------------------------------------------------------------------------------
// Kubernetes.

struct K8s {
    deployments: Vec<(String, Yaml)>,
    /// ConfigMap name → data.
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret name → keys (data and stringData).
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    services: Vec<Yaml>,
    disruption_budgets: Vec<Yaml>,
    network_policies: Vec<Yaml>,
    ingresses: Vec<Yaml>,
}

fn k8s() -> K8s {
    let mut out = K8s {
        deployments: Vec::new(),
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
        services: Vec::new(),
        disruption_budgets: Vec::new(),
        network_policies: Vec::new(),
        ingresses: Vec::new(),
    };
    for file in yaml_files() {
        if !rel(&file).starts_with("deploy/k8s/") {
            continue;
        }
        for doc in load(&file) {
            let name = s(&doc["metadata"]["name"])
                .unwrap_or_else(|| panic!("{}: a document without metadata.name", rel(&file)))
                .to_string();
            let data = |fields: &[&str]| {
                let mut map = BTreeMap::new();
                for field in fields {
                    if let Some(h) = doc[*field].as_hash() {
                        for (k, v) in h {
                            map.insert(text(k).unwrap(), text(v).unwrap_or_default());
                        }
                    }
                }
                map
            };
            match s(&doc["kind"]) {
                Some("Deployment") => out.deployments.push((rel(&file), doc.clone())),
                Some("ConfigMap") => {
                    out.config_maps.insert(name, data(&["data"]));
                }
                Some("Secret") => {
                    out.secrets.insert(name, data(&["data", "stringData"]));
                }
                Some("Service") => out.services.push(doc.clone()),
                Some("PodDisruptionBudget") => out.disruption_budgets.push(doc.clone()),
                Some("NetworkPolicy") => out.network_policies.push(doc.clone()),
                Some("Ingress") => out.ingresses.push(doc.clone()),
                other => panic!("{}: unexpected kind {other:?}", rel(&file)),
            }
        }
    }
    assert_eq!(out.deployments.len(), 1, "one Deployment");
    out
}

/// A container's environment: name → where it comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Value(String),
    Secret(String, String),
    ConfigMap(String, String),
}

fn container_env(k: &K8s, container: &Yaml, origin: &str) -> BTreeMap<String, Source> {
    let mut env = BTreeMap::new();
    for from in container["envFrom"].as_vec().cloned().unwrap_or_default() {
        if let Some(name) = s(&from["configMapRef"]["name"]) {
            let data = k.config_maps.get(name).unwrap_or_else(|| {
                panic!("{origin}: envFrom configMapRef {name}: no such ConfigMap in deploy/k8s")
            });
            for key in data.keys() {
                env.insert(key.clone(), Source::ConfigMap(name.into(), key.clone()));
            }
        } else if let Some(name) = s(&from["secretRef"]["name"]) {
            let data = k.secrets.get(name).unwrap_or_else(|| {
                panic!("{origin}: envFrom secretRef {name}: no such Secret in deploy/k8s")
            });
            for key in data.keys() {
                env.insert(key.clone(), Source::Secret(name.into(), key.clone()));
            }
        } else {
            panic!("{origin}: envFrom entry {from:?}");
        }
    }
    for entry in container["env"].as_vec().cloned().unwrap_or_default() {
        let name = s(&entry["name"])
            .unwrap_or_else(|| panic!("{origin}: env entry without a name"))
            .to_string();
        let source = if let Some(v) = text(&entry["value"]) {
            Source::Value(v)
        } else if let Some(secret) = s(&entry["valueFrom"]["secretKeyRef"]["name"]) {
            let key = s(&entry["valueFrom"]["secretKeyRef"]["key"]).unwrap();
            assert!(
                k.secrets.get(secret).is_some_and(|d| d.contains_key(key)),
                "{origin}: {name} refers to Secret {secret} key {key}, not in secret.example.yaml"
            );
            Source::Secret(secret.into(), key.into())
        } else if let Some(map) = s(&entry["valueFrom"]["configMapKeyRef"]["name"]) {
            let key = s(&entry["valueFrom"]["configMapKeyRef"]["key"]).unwrap();
            assert!(
                k.config_maps.get(map).is_some_and(|d| d.contains_key(key)),
                "{origin}: {name} refers to ConfigMap {map} key {key}, not in configmap.yaml"
            );
            Source::ConfigMap(map.into(), key.into())
        } else {
            panic!("{origin}: env {name}: neither value nor a Secret/ConfigMap reference");
        };
        env.insert(name, source);
    }
    env
}

fn containers(doc: &Yaml) -> Vec<Yaml> {
    doc["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .cloned()
        .expect("spec.template.spec.containers")
}

#[test]
fn k8s_names_only_real_settings() {
    let k = k8s();
    let mut vars: Vec<(String, String)> = Vec::new();
    for (file, doc) in &k.deployments {
        for c in containers(doc) {
            for e in c["env"].as_vec().cloned().unwrap_or_default() {
                let name = s(&e["name"]).unwrap().to_string();
                if name.starts_with("ISV__") {
                    vars.push((name, format!("{file} env")));
                }
            }
        }
    }
    for (map, data) in &k.config_maps {
        for key in data.keys().filter(|k| k.starts_with("ISV__")) {
            vars.push((key.clone(), format!("ConfigMap {map}")));
        }
    }
    assert!(!vars.is_empty());
    assert_real_settings(vars.iter().map(|(v, o)| (v.as_str(), o.as_str())));
}

#[test]
fn k8s_gives_every_replica_what_production_cannot_default_and_secrets_by_reference() {
    let k = k8s();
    let (file, doc) = &k.deployments[0];
    assert_eq!(
        doc["spec"]["replicas"].as_i64(),
        Some(2),
        "{file}: replicas"
    );
    let pod = &doc["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let volumes = pod["volumes"].as_vec().expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| s(&v["name"]) == Some(name))
            .unwrap_or_else(|| panic!("{file}: no volume {name}"))
    };
    for c in containers(doc) {
        let origin = format!("{file} container {}", s(&c["name"]).unwrap());
        let args: Vec<String> = c["args"]
            .as_vec()
            .expect("args")
            .iter()
            .map(|a| text(a).unwrap())
            .collect();
        assert_eq!(
            args,
            ["serve", "--config", PRODUCTION_TOML],
            "{origin}: args"
        );
        let env = container_env(&k, &c, &origin);
        for setting in REQUIRED {
            let var = isv_lifecycle::config::env_name(setting);
            let source = env
                .get(&var)
                .unwrap_or_else(|| panic!("{origin}: {var} ({setting}) is not set"));
            if SECRET.contains(&setting) {
                assert!(
                    matches!(source, Source::Secret(..)),
                    "{origin}: {var} must come from a Secret, not {source:?}"
                );
            }
        }

        // Probes, resources, a read-only root with a writable /tmp.
        assert_eq!(s(&c["livenessProbe"]["httpGet"]["path"]), Some("/healthz"));
        assert_eq!(s(&c["readinessProbe"]["httpGet"]["path"]), Some("/readyz"));
        for kind in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                assert!(
                    text(&c["resources"][kind][res]).is_some(),
                    "{origin}: resources.{kind}.{res}"
                );
            }
        }
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
            Some(true)
        );
        let mounts = c["volumeMounts"].as_vec().expect("volumeMounts");
        let mount = |path: &str| {
            mounts
                .iter()
                .find(|m| s(&m["mountPath"]) == Some(path))
                .unwrap_or_else(|| panic!("{origin}: nothing mounted at {path}"))
        };
        let tmp = mount("/tmp");
        assert!(
            !volume(s(&tmp["name"]).unwrap())["emptyDir"].is_badvalue(),
            "/tmp is an emptyDir"
        );

        // production.toml from the ConfigMap, where --config points.
        let config = mount(PRODUCTION_TOML);
        let config_map = s(&volume(s(&config["name"]).unwrap())["configMap"]["name"]).unwrap();
        let key = s(&config["subPath"]).unwrap();
        assert!(
            k.config_maps
                .get(config_map)
                .is_some_and(|d| d.contains_key(key)),
            "{origin}: ConfigMap {config_map} has no {key}"
        );

        // Key files: the Secret volume at KEYS_DIR holds the files the settings name.
        let keys = mount(KEYS_DIR);
        assert_eq!(keys["readOnly"].as_bool(), Some(true));
        let secret = s(&volume(s(&keys["name"]).unwrap())["secret"]["secretName"]).unwrap();
        let secret_keys = k
            .secrets
            .get(secret)
            .unwrap_or_else(|| panic!("{origin}: Secret {secret} not in secret.example.yaml"));
        for var in [
            "ISV__ALIPAY__APP_PRIVATE_KEY_FILE",
            "ISV__ALIPAY__ALIPAY_PUBLIC_KEY_FILE",
        ] {
            let path = match &env[var] {
                Source::Value(v) => v.clone(),
                Source::ConfigMap(map, key) => k.config_maps[map][key].clone(),
                Source::Secret(..) => panic!("{origin}: {var} is a path, not a secret"),
            };
            let name = path
                .strip_prefix(&format!("{KEYS_DIR}/"))
                .unwrap_or_else(|| panic!("{origin}: {var}={path} is outside {KEYS_DIR}"));
            assert!(
                secret_keys.contains_key(name),
                "{origin}: {var}={path}, but Secret {secret} has no key {name}"
            );
        }
    }

    // The Service sends port 80 to the container's 8080.
    let svc = k
        .services
        .iter()
        .find(|s| text(&s["metadata"]["name"]).as_deref() == Some("isv-lifecycle"))
        .expect("Service isv-lifecycle");
    assert_eq!(s(&svc["spec"]["type"]), Some("ClusterIP"));
    assert_eq!(svc["spec"]["ports"][0]["port"].as_i64(), Some(80));
    let target = &svc["spec"]["ports"][0]["targetPort"];
    let container_port = &containers(doc)[0]["ports"][0];
    assert!(
        target.as_i64() == Some(8080)
            || (s(target).is_some() && s(target) == s(&container_port["name"])),
        "service targetPort"
    );
    assert_eq!(container_port["containerPort"].as_i64(), Some(8080));
}

#[test]
fn the_example_secrets_hold_placeholders_only() {
    let k = k8s();
    assert!(!k.secrets.is_empty());
    for (name, data) in &k.secrets {
        for (key, value) in data {
            assert!(
                value.contains("REPLACE_ME"),
                "secret.example.yaml: {name}.{key} must be a REPLACE_ME placeholder"
            );
        }
    }
    // Placeholders must not pass as real secrets: the service refuses tokens under 16
    // characters and an encryption key that is not the base64 of 32 bytes.
    let secrets = &k.secrets["isv-lifecycle-secrets"];
    assert!(secrets["admin-token"].len() < 16 && secrets["api-token"].len() < 16);
    assert!(secrets["encryption-key"].contains('_'));
}

#[test]
fn the_configmap_production_toml_is_a_complete_settings_file() {
    use config::{FileFormat, Source as _, Value, ValueKind};
    let k = k8s();
    let toml = &k.config_maps["isv-lifecycle-config"]["production.toml"];
    let built = config::Config::builder()
        .add_source(config::File::from_str(toml, FileFormat::Toml))
        .build()
        .expect("the ConfigMap's production.toml parses");
    let settings: isv_lifecycle::config::Settings = built
        .clone()
        .try_deserialize()
        .expect("the ConfigMap's production.toml has every setting");
    assert_eq!(
        settings.app.environment,
        isv_lifecycle::config::Environment::Production
    );
    assert!(
        settings
            .alipay
            .app_private_key_file
            .starts_with(&format!("{KEYS_DIR}/"))
    );

    // No key that config/default.toml does not have (a typo would be silently ignored).
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match &v.kind {
            ValueKind::Table(t) => {
                for (k, v) in t {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&path, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut keys = Vec::new();
    for (k, v) in built.collect().unwrap() {
        leaves(&k, &v, &mut keys);
    }
    let defaults = defaults();
    let unknown: Vec<_> = keys
        .iter()
        .filter(|k| defaults.get::<Value>(k).is_err())
        .collect();
    assert!(unknown.is_empty(), "not settings: {unknown:?}");
}

// ---------------------------------------------------------------------------------------------
// Every file: any ISV__ name anywhere under deploy/ (comments included) is a real setting.

#[test]
fn every_isv_name_anywhere_under_deploy_is_a_real_setting() {
    let mut all = Vec::new();
    files_under(&deploy(), &mut all);
    let mut found: BTreeSet<(String, String)> = BTreeSet::new();
    for file in &all {
        let Ok(content) = std::fs::read_to_string(file) else {
            continue;
        };
        let mut rest = content.as_str();
        while let Some(at) = rest.find("ISV__") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let name = tail[..end].trim_end_matches('_');
            // The documented pattern itself, and the bare prefix ("plain ISV__ values").
            if name != "ISV__SECTION__KEY" && name != "ISV" {
                found.insert((name.to_string(), rel(file)));
            }
            rest = &tail[end.max(5)..];
        }
    }
    assert!(
        found.iter().any(|(_, f)| f == "deploy/Dockerfile"),
        "the Dockerfile sets ISV__SERVER__LISTEN"
    );
    assert_real_settings(found.iter().map(|(v, f)| (v.as_str(), f.as_str())));
}

// ---------------------------------------------------------------------------------------------
// Dockerfile.

#[test]
fn dockerfile_builds_from_the_repository_root_and_runs_unprivileged() {
    let path = deploy().join("Dockerfile");
    let text = read(&path);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    for expected in [
        // Build and run on the same Debian release (12, bookworm): the binary links its glibc.
        "FROM rust:1.95.0-bookworm AS build",
        "FROM debian:12.11-slim",
        "USER 10001",
        "WORKDIR /var/lib/isv-lifecycle",
        "EXPOSE 8080",
        "ENV ISV__SERVER__LISTEN=0.0.0.0:8080",
        r#"ENTRYPOINT ["isv-lifecycle"]"#,
    ] {
        assert!(has(expected), "Dockerfile: no `{expected}`");
    }
    assert!(text.contains("cargo build --profile dist --locked"));
    assert!(text.contains("target/dist/isv-lifecycle"));
    // Dependencies compiled once and kept between builds (BuildKit cache mounts).
    assert!(text.contains("--mount=type=cache,target=/src/target"));
    assert!(text.contains("--mount=type=cache,target=/usr/local/cargo/registry"));
    // Pinned base images: a full release, never a floating tag.
    for line in lines.iter().filter(|l| l.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).unwrap();
        let tag = image.split_once(':').map(|(_, t)| t).unwrap_or("latest");
        let version = tag.split('-').next().unwrap();
        assert!(
            version.split('.').count() >= 2
                && version.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "Dockerfile: {image} is not pinned to a release"
        );
    }
    assert!(text.contains("libpq-dev") && text.contains("libpq5"));
    assert!(
        has(&format!(
            r#"CMD ["serve", "--config", "{PRODUCTION_TOML}"]"#
        )),
        "Dockerfile: CMD serves with {PRODUCTION_TOML}"
    );
    // The binary is its own probe (the slim image has no curl).
    let health = lines
        .iter()
        .position(|l| l.starts_with("HEALTHCHECK"))
        .expect("Dockerfile: HEALTHCHECK");
    let probe = format!("{} {}", lines[health], lines[health + 1]);
    assert!(
        probe.contains(r#"CMD ["isv-lifecycle", "healthcheck""#),
        "Dockerfile: HEALTHCHECK runs `isv-lifecycle healthcheck`: {probe}"
    );

    // The build context leaves out build output and the fuzz corpora.
    let ignore = read(&root().join(".dockerignore"));
    for entry in ["target/", "fuzz/", ".git/", "data/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore: no {entry}"
        );
    }
    // The `dist` profile the image builds with is stripped and carries no debug info.
    let manifest: toml_like::Table = toml_like::parse(&read(&root().join("Cargo.toml")));
    assert_eq!(
        manifest.get("profile.dist", "inherits"),
        Some("\"release\"")
    );
    assert_eq!(manifest.get("profile.dist", "strip"), Some("true"));
    assert_eq!(manifest.get("profile.dist", "debug"), Some("false"));
    // COPY sources exist relative to the build context, the repository root.
    for line in lines.iter().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        for src in &words[..words.len() - 1] {
            if *src != "." {
                assert!(
                    root().join(src).exists(),
                    "Dockerfile: COPY {src}: not in the repository root"
                );
            }
        }
    }
}

/// Just enough TOML to read `[section] key = value` lines of Cargo.toml (values unparsed).
mod toml_like {
    pub struct Table(Vec<(String, String, String)>);

    impl Table {
        pub fn get(&self, section: &str, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(s, k, _)| s == section && k == key)
                .map(|(_, _, v)| v.as_str())
        }
    }

    pub fn parse(text: &str) -> Table {
        let mut section = String::new();
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let Some((k, v)) = line.split_once('=')
                && !line.starts_with('#')
            {
                out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
            }
        }
        Table(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Health checks in compose; Kubernetes disruption budget, preStop, token, network policy, Ingress.

#[test]
fn compose_replicas_are_health_checked_and_waited_for() {
    let (doc, services) = compose();
    for svc in services
        .iter()
        .filter(|s| s.command.first().map(String::as_str) == Some("serve"))
    {
        let test: Vec<String> = doc["services"][svc.name.as_str()]["healthcheck"]["test"]
            .as_vec()
            .unwrap_or_else(|| panic!("docker-compose.yml: {}: no healthcheck", svc.name))
            .iter()
            .map(|w| text(w).unwrap())
            .collect();
        assert_eq!(
            &test[..3],
            ["CMD", "isv-lifecycle", "healthcheck"],
            "docker-compose.yml: {}",
            svc.name
        );
        assert_eq!(
            s(&doc["services"]["proxy"]["depends_on"][svc.name.as_str()]["condition"]),
            Some("service_healthy"),
            "the proxy waits for {} to be healthy",
            svc.name
        );
    }
    for name in ["proxy", "sim"] {
        assert!(
            !doc["services"][name]["healthcheck"]["test"].is_badvalue(),
            "docker-compose.yml: {name}: no healthcheck"
        );
    }
    assert_eq!(
        s(&doc["services"]["sim"]["depends_on"]["proxy"]["condition"]),
        Some("service_healthy")
    );
}

#[test]
fn k8s_pods_survive_drains_hold_no_token_and_are_reached_only_through_the_gateway_and_api() {
    let k = k8s();
    let (file, doc) = &k.deployments[0];
    let pod = &doc["spec"]["template"]["spec"];
    let labels = &doc["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        pod["automountServiceAccountToken"].as_bool(),
        Some(false),
        "{file}: automountServiceAccountToken"
    );
    let container = &containers(doc)[0];
    let pre_stop = &container["lifecycle"]["preStop"];
    assert!(
        !pre_stop["exec"]["command"].is_badvalue() || !pre_stop["sleep"].is_badvalue(),
        "{file}: no preStop"
    );
    let port_named = |name: &str| {
        container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| s(&p["name"]) == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
    };
    assert_eq!(port_named("http"), Some(8080));
    assert_eq!(port_named("admin"), Some(9090));
    // The ConfigMap's production.toml puts the admin listener on that port.
    let toml = &k.config_maps["isv-lifecycle-config"]["production.toml"];
    assert!(toml.contains("admin_listen = \"0.0.0.0:9090\""), "{toml}");

    let selects_pods = |selector: &Yaml| {
        selector["matchLabels"]
            .as_hash()
            .expect("matchLabels")
            .iter()
            .all(|(k, v)| labels[s(k).unwrap()].as_str() == s(v))
    };
    assert_eq!(k.disruption_budgets.len(), 1);
    let pdb = &k.disruption_budgets[0];
    assert!(selects_pods(&pdb["spec"]["selector"]));
    assert!(
        pdb["spec"]["minAvailable"].as_i64().is_some_and(|n| n >= 1)
            || pdb["spec"]["maxUnavailable"].as_i64() == Some(1)
    );

    assert_eq!(k.network_policies.len(), 1);
    let policy = &k.network_policies[0];
    assert!(selects_pods(&policy["spec"]["podSelector"]));
    let types: Vec<&str> = policy["spec"]["policyTypes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(s)
        .collect();
    assert!(types.contains(&"Ingress") && types.contains(&"Egress"));
    // The admin port is never open to the same peers as the public one.
    let rules = policy["spec"]["ingress"].as_vec().unwrap();
    for rule in rules {
        let ports: Vec<String> = rule["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| text(&p["port"]).unwrap())
            .collect();
        assert!(
            !(ports.contains(&"http".to_string()) && ports.contains(&"admin".to_string())),
            "one rule opens both ports"
        );
    }

    // The Ingress: exactly /alipay/gateway and /api/, to the public port.
    assert_eq!(k.ingresses.len(), 1);
    let mut paths = Vec::new();
    for rule in k.ingresses[0]["spec"]["rules"].as_vec().unwrap() {
        for p in rule["http"]["paths"].as_vec().unwrap() {
            let backend = &p["backend"]["service"];
            assert_eq!(s(&backend["name"]), Some("isv-lifecycle"));
            assert_eq!(s(&backend["port"]["name"]), Some("http"));
            paths.push((
                s(&p["path"]).unwrap().to_string(),
                s(&p["pathType"]).unwrap().to_string(),
            ));
        }
    }
    assert_eq!(
        paths,
        [
            ("/alipay/gateway".to_string(), "Exact".to_string()),
            ("/api/".to_string(), "Prefix".to_string())
        ]
    );
    // The public Service has no admin port.
    let public = k
        .services
        .iter()
        .find(|s| text(&s["metadata"]["name"]).as_deref() == Some("isv-lifecycle"))
        .unwrap();
    assert!(
        public["spec"]["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .all(|p| text(&p["targetPort"]).as_deref() != Some("admin"))
    );
}

// ---------------------------------------------------------------------------------------------
// systemd.

#[test]
fn the_systemd_unit_is_sandboxed() {
    let path = deploy().join("isv-lifecycle.service");
    let unit = read(&path);
    let set = |key: &str| {
        unit.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
    };
    for (key, value) in [
        ("UMask", "0077"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert!(
            set(key).iter().any(|v| v == value),
            "isv-lifecycle.service: no {key}={value}"
        );
    }
    // The score itself, where systemd's analyzer is installed (Debian: the systemd package).
    let analyzed = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output();
    let Ok(out) = analyzed else {
        eprintln!("systemd-analyze not installed: exposure score not checked");
        return;
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for isv-lifecycle.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}
