//! The release workflow (.github/workflows/release.yml) cannot run here; its YAML is checked
//! instead: it runs on version tags, builds the multi-arch image from the Dockerfile, produces
//! an SBOM, signs keylessly with cosign, and publishes the CRDs and install manifests — and every
//! file, step output and job output it refers to exists.

use gitops_reverser::manifest::yaml::parse_documents;
use serde_json::Value;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn workflow() -> Value {
    let path = root().join(".github/workflows/release.yml");
    let text = std::fs::read_to_string(&path).expect("release workflow");
    let mut docs = parse_documents(&text, "release.yml").expect("valid YAML");
    assert_eq!(docs.len(), 1, "one document");
    docs.remove(0)
}

fn jobs(wf: &Value) -> &serde_json::Map<String, Value> {
    wf["jobs"].as_object().expect("jobs")
}

fn steps(job: &Value) -> Vec<&Value> {
    job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .collect::<Vec<_>>()
}

/// Every step of every job, with its job's name.
fn all_steps(wf: &Value) -> Vec<(&str, &Value)> {
    jobs(wf)
        .iter()
        .flat_map(|(name, job)| steps(job).into_iter().map(move |s| (name.as_str(), s)))
        .collect()
}

fn uses(step: &Value) -> &str {
    step["uses"].as_str().unwrap_or_default()
}

fn run(step: &Value) -> &str {
    step["run"].as_str().unwrap_or_default()
}

/// The job that has a step using `action` (an action name without version).
fn job_using<'a>(wf: &'a Value, action: &str) -> (&'a str, &'a Value) {
    let (name, _) = all_steps(wf)
        .into_iter()
        .find(|(_, s)| uses(s).split('@').next() == Some(action))
        .unwrap_or_else(|| panic!("no step uses {action}"));
    (name, &wf["jobs"][name])
}

#[test]
fn releases_run_on_version_tags_only() {
    let wf = workflow();
    // Quoted in the file: YAML 1.1 readers take a bare `on` for `true`.
    let on = &wf["on"];
    assert_eq!(on.as_object().map(|o| o.len()), Some(1), "{on}");
    let tags = on["push"]["tags"].as_array().expect("push.tags");
    assert_eq!(tags, &[Value::from("v*")]);
    assert_eq!(
        wf["permissions"]["contents"], "read",
        "least privilege by default"
    );
}

#[test]
fn the_image_is_built_for_amd64_and_arm64_from_the_dockerfile_and_pushed() {
    let wf = workflow();
    let (job_name, job) = job_using(&wf, "docker/build-push-action");
    let job_steps = steps(job);
    let actions: Vec<&str> = job_steps
        .iter()
        .map(|s| uses(s).split('@').next().unwrap_or_default())
        .collect();
    for needed in [
        "docker/setup-qemu-action",
        "docker/setup-buildx-action",
        "docker/login-action",
    ] {
        assert!(actions.contains(&needed), "{job_name} lacks {needed}");
    }
    let build = job_steps
        .iter()
        .find(|s| uses(s).starts_with("docker/build-push-action@"))
        .expect("build step");
    let with = &build["with"];
    let platforms: Vec<&str> = with["platforms"]
        .as_str()
        .expect("platforms")
        .split(',')
        .map(str::trim)
        .collect();
    assert!(platforms.contains(&"linux/amd64") && platforms.contains(&"linux/arm64"));
    assert_eq!(with["push"], true);
    let dockerfile = with["file"].as_str().unwrap_or("Dockerfile");
    assert!(root().join(dockerfile).is_file(), "{dockerfile} exists");
    assert_eq!(build["id"], "build", "the digest is read from steps.build");
    // The job may push packages and mint the OIDC token keyless signing needs.
    assert_eq!(job["permissions"]["packages"], "write");
    assert_eq!(job["permissions"]["id-token"], "write");
    // The workflow's own checks (.ci/run) come first.
    let needs = job["needs"].as_str().expect("needs");
    let check = &wf["jobs"][needs];
    assert!(
        steps(check).iter().any(|s| run(s).trim() == ".ci/run"),
        "the job the image needs runs .ci/run"
    );
}

#[test]
fn an_sbom_is_produced_and_the_image_is_signed_keylessly() {
    let wf = workflow();
    let (_, job) = job_using(&wf, "sigstore/cosign-installer");
    let job_steps = steps(job);
    let sbom = job_steps
        .iter()
        .find(|s| uses(s).starts_with("anchore/sbom-action@"))
        .expect("an SBOM step");
    let sbom_file = sbom["with"]["output-file"].as_str().expect("SBOM file");
    assert!(
        sbom["with"]["image"]
            .as_str()
            .is_some_and(|i| i.contains("steps.build.outputs.digest")),
        "the SBOM describes the pushed digest"
    );
    let sign = job_steps
        .iter()
        .find(|s| run(s).contains("cosign sign"))
        .expect("a signing step");
    let command = run(sign);
    assert!(command.contains("--yes"), "non-interactive: {command}");
    assert!(
        !command.contains("--key"),
        "keyless: no key is used: {command}"
    );
    assert!(
        command.contains("@${DIGEST}") && sign["env"]["DIGEST"].is_string(),
        "signs the digest, not a tag: {command}"
    );
    let attest = job_steps
        .iter()
        .find(|s| run(s).contains("cosign attest"))
        .expect("an SBOM attestation");
    assert!(run(attest).contains(sbom_file) && !run(attest).contains("--key"));
    // The installer comes before its use.
    let position = |pred: &dyn Fn(&Value) -> bool| job_steps.iter().position(|s| pred(s));
    assert!(
        position(&|s| uses(s).starts_with("sigstore/cosign-installer@"))
            < position(&|s| run(s).contains("cosign sign"))
    );
}

#[test]
fn the_crds_and_install_manifests_are_release_assets() {
    let wf = workflow();
    let job = &wf["jobs"]["release"];
    assert_eq!(job["permissions"]["contents"], "write");
    let scripts: String = steps(job).iter().map(|s| run(s)).collect();
    assert!(scripts.contains("crds/*.yaml") && scripts.contains("kubectl kustomize manifests/"));
    assert!(root().join("manifests/kustomization.yaml").is_file());
    assert!(
        std::fs::read_dir(root().join("crds"))
            .expect("crds/")
            .count()
            >= 4
    );
    let create = steps(job)
        .into_iter()
        .find(|s| run(s).contains("gh release create"))
        .expect("a release step");
    for asset in [
        "dist/crds.yaml",
        "dist/install.yaml",
        "dist/gitops-reverser.spdx.json",
    ] {
        assert!(run(create).contains(asset), "{asset} is published");
    }
    // The install manifest points at the signed digest, not a moving tag.
    assert!(scripts.contains("${IMAGE}@${DIGEST}"));
    assert!(
        job["needs"] == "image"
            && wf["jobs"]["image"]["outputs"]["digest"]
                .as_str()
                .is_some_and(|d| d.contains("steps.build.outputs.digest"))
    );
}

#[test]
fn every_action_is_pinned_and_every_reference_resolves() {
    let wf = workflow();
    for (job, step) in all_steps(&wf) {
        let action = uses(step);
        if !action.is_empty() {
            let (name, version) = action.split_once('@').expect("pinned");
            assert!(
                !name.is_empty() && !version.is_empty() && version != "main" && version != "master",
                "{job}: {action} is pinned to a release"
            );
        }
        assert!(
            !action.is_empty() ^ !run(step).is_empty(),
            "{job}: a step either uses an action or runs a command: {step}"
        );
    }
    // `steps.X` and `needs.X.outputs.Y` name steps and outputs that exist.
    for (name, job) in jobs(&wf) {
        let text = job.to_string();
        let ids: Vec<&str> = steps(job).iter().filter_map(|s| s["id"].as_str()).collect();
        for reference in text.split("steps.").skip(1) {
            let id: String = reference
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            assert!(ids.contains(&id.as_str()), "{name}: no step {id}");
        }
        for reference in text.split("needs.").skip(1) {
            let mut parts = reference.split('.');
            let (needed, outputs, output) = (parts.next(), parts.next(), parts.next());
            let output: String = output
                .unwrap_or_default()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            assert_eq!(outputs, Some("outputs"), "{name}: {reference}");
            let needed = needed.expect("a job");
            assert_eq!(job["needs"], needed, "{name} needs {needed}");
            assert!(
                wf["jobs"][needed]["outputs"][output.as_str()].is_string(),
                "{name}: job {needed} has no output {output}"
            );
        }
    }
}
