//! The scripted scenario: each step's action as a person would take it, and the check of its
//! effect in Git (commits, authors, files).

use super::*;

/// The verdicts printed so far and the failing step (0 for the setup), with its line.
pub(super) struct Outcome {
    pub(super) verdicts: Vec<String>,
    pub(super) failed: Option<(usize, String)>,
}

/// What one step did, as its verdict says it, and the commits it made.
pub(super) struct StepResult {
    pub(super) effect: String,
    pub(super) commits: Vec<Commit>,
}

/// A commit on `main`: its author's name and its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Commit {
    pub(super) author: String,
    pub(super) subject: String,
}

/// The scenario's people: clients authenticated as alice and as bob.
pub(super) struct People {
    pub(super) alice: kube::Client,
    pub(super) bob: kube::Client,
}

pub(super) struct Demo {
    /// The admin's client: installs the demo's objects and plays Flux.
    pub(super) client: kube::Client,
    pub(super) people: People,
    pub(super) repo: PathBuf,
    pub(super) agent: AgentHandle,
    pub(super) running: JoinHandle<Result<(), AgentError>>,
}

pub(super) fn path_of(group_and_resource: &str, name: &str) -> String {
    format!("{FOLDER}/{NAMESPACE}/{group_and_resource}/{name}.yaml")
}

impl Demo {
    /// Polls `check` until it yields a value, the agent stops, or the step's deadline passes.
    pub(super) async fn until<T>(
        &self,
        what: &str,
        mut check: impl FnMut() -> Result<Option<T>, DemoError>,
    ) -> Result<T, DemoError> {
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            if let Some(value) = check()? {
                return Ok(value);
            }
            if self.running.is_finished() {
                return Err(DemoError::AgentStopped(
                    "its task ended; see the log above".into(),
                ));
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout {
                    what: what.into(),
                    after: STEP_DEADLINE,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// True when no worker holds a queued change, an open window or an unpushed commit.
    pub(super) fn workers_idle(&self) -> bool {
        self.agent.registry.handles().iter().all(|worker| {
            worker.queued() == 0 && worker.stats().waiting_changes.load(Ordering::SeqCst) == 0
        })
    }

    /// Waits until the agent watches what the rule selects and its initial reconcile is done.
    /// An empty folder's reconcile commits nothing, so this reads the agent's state; it must hold
    /// on two polls in a row, so a readiness left over from a plan without the destination (set
    /// a moment before the watches were counted) is not mistaken for the reconcile's.
    pub(super) async fn wait_until_ready(&self) -> Result<(), DemoError> {
        let agent = &self.agent;
        let what = "the agent to watch configmaps, deployments and services and finish its initial reconcile";
        let mut held = 0;
        let result = self
            .until(what, || {
                let ready = agent.watches() >= 3
                    && !agent.registry.is_empty()
                    && agent.readiness.is_ready()
                    && self.workers_idle();
                held = if ready { held + 1 } else { 0 };
                Ok((held >= 2).then_some(()))
            })
            .await;
        match (result, agent.readiness.check()) {
            (Err(DemoError::Timeout { what, after }), Err(reason)) => Err(DemoError::Timeout {
                what: format!("{what} (not ready: {reason})"),
                after,
            }),
            (result, _) => result,
        }
    }

    /// Runs the steps in order; stops at the first that misbehaves.
    pub(super) async fn scenario(&self, out: &mut dyn Write) -> Result<Outcome, DemoError> {
        let mut outcome = Outcome {
            verdicts: Vec::new(),
            failed: None,
        };
        // Who acts in each step; their step's commits must all be authored by them.
        let steps: [(&str, Step, Option<&str>); 5] = [
            (
                "alice creates ConfigMap shop/settings, Deployment shop/web, Service shop/web",
                Step::Create,
                Some(ALICE),
            ),
            (
                "pat comments the ConfigMap's file in Git; bob edits ConfigMap shop/settings (data.mode: standard → sale)",
                Step::Edit,
                Some(BOB),
            ),
            (
                "alice scales Deployment shop/web to 3 replicas (scale subresource)",
                Step::Scale,
                Some(ALICE),
            ),
            ("bob deletes Service shop/web", Step::Delete, Some(BOB)),
            (
                "Flux re-apply (server-side apply as kustomize-controller, Flux labels)",
                Step::FluxReapply,
                None,
            ),
        ];
        for (index, (title, step, author)) in steps.into_iter().enumerate() {
            let number = index + 1;
            writeln!(out, "step {number}: {title} …")?;
            out.flush()?;
            let result = self.step(step).await.and_then(|result| match author {
                Some(who) if result.commits.iter().any(|c| c.author != who) => {
                    Err(DemoError::Unexpected(format!(
                        "{}, expected every commit authored by {who}",
                        describe_commits(&result.commits)
                    )))
                }
                _ => Ok(result),
            });
            match result {
                Ok(result) => {
                    outcome
                        .verdicts
                        .push(format!("✓ step {number}: {title} → {}", result.effect));
                }
                Err(e) => {
                    let line = format!("✗ step {number}: {title} → {e}");
                    outcome.failed = Some((number, line));
                    break;
                }
            }
        }
        Ok(outcome)
    }

    pub(super) async fn step(&self, step: Step) -> Result<StepResult, DemoError> {
        match step {
            Step::Create => self.create(&self.people.alice).await,
            Step::Edit => self.edit(&self.people.bob).await,
            Step::Scale => self.scale(&self.people.alice).await,
            Step::Delete => self.delete(&self.people.bob).await,
            Step::FluxReapply => self.flux_reapply().await,
        }
    }

    /// Step 1: three new objects → their three files.
    pub(super) async fn create(&self, client: &kube::Client) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        let configmap: ConfigMap = from_json(
            "ConfigMap shop/settings",
            json!({"metadata": {"name": "settings", "namespace": NAMESPACE},
                "data": {"mode": "standard", "currency": "EUR"}}),
        )?;
        let deployment: Deployment = from_json(
            "Deployment shop/web",
            json!({"metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"app": "web"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                            "ports": [{"containerPort": 8080}]}]}}}}),
        )?;
        let service: Service = from_json(
            "Service shop/web",
            json!({"metadata": {"name": "web", "namespace": NAMESPACE},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )?;
        let post = PostParams {
            field_manager: Some(DEMO_MANAGER.into()),
            ..PostParams::default()
        };
        Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
            .create(&post, &configmap)
            .await
            .map_err(kube_error("creating ConfigMap shop/settings"))?;
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
            .create(&post, &deployment)
            .await
            .map_err(kube_error("creating Deployment shop/web"))?;
        Api::<Service>::namespaced(client.clone(), NAMESPACE)
            .create(&post, &service)
            .await
            .map_err(kube_error("creating Service shop/web"))?;
        let paths = [
            path_of("core/configmaps", "settings"),
            path_of("apps/deployments", "web"),
            path_of("core/services", "web"),
        ];
        self.until("the three files in the repository", || {
            for path in &paths {
                if file(&self.repo, path)?.is_none() {
                    return Ok(None);
                }
            }
            Ok(self.workers_idle().then_some(()))
        })
        .await?;
        let new = commits_since(&self.repo, before.as_deref())?;
        let changed = changed_files(&self.repo, before.as_deref())?;
        let added = changed.iter().filter(|(status, _)| status == "A").count();
        if new.is_empty() || added != paths.len() {
            return Err(DemoError::Unexpected(format!(
                "{} commits adding {added} files, expected the 3 files added",
                new.len()
            )));
        }
        Ok(StepResult {
            effect: format!("{}, {added} files added", describe_commits(&new)),
            commits: new,
        })
    }

    /// Step 2: one field of the ConfigMap → one commit that changes its file.
    pub(super) async fn edit(&self, client: &kube::Client) -> Result<StepResult, DemoError> {
        // Pat explains the value in Git first; bob's edit must keep the comment (in place).
        let path = path_of("core/configmaps", "settings");
        commit_by_hand(
            &self.repo,
            &path,
            "settings: why mode is what it is",
            |text| {
                text.replace(
                    "mode: standard",
                    "mode: standard # standard, or sale during promotions",
                )
            },
        )?;
        let before = tip(&self.repo)?;
        Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
            .patch(
                "settings",
                &PatchParams {
                    field_manager: Some(DEMO_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(json!({"data": {"mode": "sale"}})),
            )
            .await
            .map_err(kube_error("patching ConfigMap shop/settings"))?;
        self.until("mode: sale in the ConfigMap's file", || {
            let edited = file(&self.repo, &path)?.is_some_and(|text| text.contains("mode: sale"));
            Ok((edited && self.workers_idle()).then_some(()))
        })
        .await?;
        let mut result = self.one_commit_changing(before.as_deref(), &path, "M")?;
        let kept = file(&self.repo, &path)?
            .is_some_and(|text| text.contains("mode: sale # standard, or sale during promotions"));
        if !kept {
            return Err(DemoError::Unexpected(format!(
                "pat's comment in {path} did not survive bob's edit"
            )));
        }
        result.effect.push_str(", pat's comment kept");
        Ok(result)
    }

    /// Step 3: `spec.replicas` through the scale subresource → one commit.
    pub(super) async fn scale(&self, client: &kube::Client) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
            .patch_scale(
                "web",
                &PatchParams {
                    field_manager: Some(DEMO_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(json!({"spec": {"replicas": 3}})),
            )
            .await
            .map_err(kube_error("scaling Deployment shop/web"))?;
        let path = path_of("apps/deployments", "web");
        self.until("replicas: 3 in the Deployment's file", || {
            let scaled = file(&self.repo, &path)?.is_some_and(|text| text.contains("replicas: 3"));
            Ok((scaled && self.workers_idle()).then_some(()))
        })
        .await?;
        self.one_commit_changing(before.as_deref(), &path, "M")
    }

    /// Step 4: a deleted object → one commit removing its file.
    pub(super) async fn delete(&self, client: &kube::Client) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        Api::<Service>::namespaced(client.clone(), NAMESPACE)
            .delete("web", &DeleteParams::default())
            .await
            .map_err(kube_error("deleting Service shop/web"))?;
        let path = path_of("core/services", "web");
        self.until("the Service's file to be removed", || {
            let gone = file(&self.repo, &path)?.is_none();
            Ok((gone && self.workers_idle()).then_some(()))
        })
        .await?;
        let mut result = self.one_commit_changing(before.as_deref(), &path, "D")?;
        result.effect.push_str(", file removed");
        Ok(result)
    }

    /// Exactly one new commit since `before`, and it changes `path` (`status` A/M/D).
    pub(super) fn one_commit_changing(
        &self,
        before: Option<&str>,
        path: &str,
        status: &str,
    ) -> Result<StepResult, DemoError> {
        let new = commits_since(&self.repo, before)?;
        let changed = changed_files(&self.repo, before)?;
        let expected = vec![(status.to_string(), path.to_string())];
        if new.len() != 1 || changed != expected {
            let files: Vec<String> = changed.iter().map(|(s, p)| format!("{s} {p}")).collect();
            return Err(DemoError::Unexpected(format!(
                "{} changing [{}], expected 1 commit changing {status} {path}",
                describe_commits(&new),
                files.join(", ")
            )));
        }
        Ok(StepResult {
            effect: describe_commits(&new),
            commits: new,
        })
    }

    /// Step 5: every file of the folder applied back the way Flux does → the agent recognises
    /// each object as what Git says and commits nothing.
    pub(super) async fn flux_reapply(&self) -> Result<StepResult, DemoError> {
        let before = tip(&self.repo)?;
        let commits_before = commits_since(&self.repo, None)?.len();
        let paths = folder_files(&self.repo)?;
        let metrics = &self.agent.metrics;
        let counted = [
            EventDecision::Exact,
            EventDecision::HashAnnotation,
            EventDecision::Near,
            EventDecision::Written,
            EventDecision::Excluded,
            EventDecision::StatusOnly,
        ];
        let counts_before: Vec<u64> = counted.iter().map(|d| metrics.events(*d)).collect();
        let mut applied = 0u64;
        for path in &paths {
            let Some(text) = file(&self.repo, path)? else {
                continue;
            };
            let mut documents = parse_documents(&text, path).map_err(|e| DemoError::Object {
                what: path.clone(),
                problem: e.to_string(),
            })?;
            let Some(mut object) = documents.pop() else {
                continue;
            };
            self.flux_apply(path, &mut object).await?;
            applied += 1;
        }
        if applied == 0 {
            return Err(DemoError::Unexpected(format!(
                "no files in {FOLDER} to re-apply"
            )));
        }
        let deltas = self
            .until("the agent's decision on every re-applied object", || {
                let deltas: Vec<u64> = counted
                    .iter()
                    .zip(&counts_before)
                    .map(|(d, before)| metrics.events(*d).saturating_sub(*before))
                    .collect();
                Ok((deltas.iter().sum::<u64>() >= applied).then_some(deltas))
            })
            .await?;
        let decided: Vec<String> = counted
            .iter()
            .zip(&deltas)
            .filter(|(_, n)| **n > 0)
            .map(|(d, n)| format!("{d} ×{n}"))
            .collect();
        let written = metrics
            .events(EventDecision::Written)
            .saturating_sub(counts_before[3]);
        if written > 0 {
            return Err(DemoError::Unexpected(format!(
                "the agent decided to write {written} file(s) ({})",
                decided.join(", ")
            )));
        }
        // Decided; a commit would now be at most a quiet period and a push away.
        let watch_until = Instant::now() + NO_COMMIT_WATCH;
        while Instant::now() < watch_until {
            if tip(&self.repo)? != before || !self.workers_idle() {
                let new = commits_since(&self.repo, before.as_deref())?;
                return Err(DemoError::Unexpected(format!(
                    "{} after the re-apply ({}), expected none",
                    describe_commits(&new),
                    decided.join(", ")
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        let commits_after = commits_since(&self.repo, None)?.len();
        if commits_after != commits_before {
            return Err(DemoError::Unexpected(format!(
                "{commits_before} commits before the re-apply, {commits_after} after"
            )));
        }
        Ok(StepResult {
            effect: format!(
                "{applied} files applied, no commit ({})",
                decided.join(", ")
            ),
            commits: Vec::new(),
        })
    }

    /// Server-side applies one file as kustomize-controller, with Flux's labels added.
    pub(super) async fn flux_apply(&self, path: &str, object: &mut Value) -> Result<(), DemoError> {
        let problem = |problem: &str| DemoError::Object {
            what: path.to_string(),
            problem: problem.to_string(),
        };
        let labels = object
            .pointer_mut("/metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| problem("no metadata"))?
            .entry("labels")
            .or_insert_with(|| json!({}));
        let labels = labels
            .as_object_mut()
            .ok_or_else(|| problem("metadata.labels is not a mapping"))?;
        labels.insert(FLUX_NAME_LABEL.into(), json!("demo"));
        labels.insert(FLUX_NAMESPACE_LABEL.into(), json!("flux-system"));
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
        let (Some(api_version), Some(kind), Some(name)) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"))
        else {
            return Err(problem("apiVersion, kind or metadata.name missing"));
        };
        let namespace = text("/metadata/namespace").map(str::to_string);
        let gvk = kube::core::GroupVersionKind::try_from(&kube::core::TypeMeta {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })
        .map_err(|e| problem(&e.to_string()))?;
        let name = name.to_string();
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(kube_error(format!("discovering {api_version} {kind}")))?;
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply(FLUX_MANAGER).force(),
            &Patch::Apply(&*object),
        )
        .await
        .map_err(kube_error(format!("applying {path} as {FLUX_MANAGER}")))?;
        Ok(())
    }
}

#[derive(Clone, Copy)]
pub(super) enum Step {
    Create,
    Edit,
    Scale,
    Delete,
    FluxReapply,
}

/// `1 commit by alice (subject)`, `N commits by alice (subject; subject)`, or with several
/// authors `N commits (subject by alice; subject by bob)`.
pub(super) fn describe_commits(commits: &[Commit]) -> String {
    let Some(first) = commits.first() else {
        return "no commit".into();
    };
    let count = match commits.len() {
        1 => "1 commit".to_string(),
        n => format!("{n} commits"),
    };
    if commits.iter().all(|c| c.author == first.author) {
        let subjects: Vec<&str> = commits.iter().map(|c| c.subject.as_str()).collect();
        format!("{count} by {} ({})", first.author, subjects.join("; "))
    } else {
        let each: Vec<String> = commits
            .iter()
            .map(|c| format!("{} by {}", c.subject, c.author))
            .collect();
        format!("{count} ({})", each.join("; "))
    }
}
