//! The command line: `crds`, `sanitize` and `diff`, with their output and exit-code contracts.
//! Each command reads its inputs, calls the pure core, and writes to the streams it is given.

use crate::manifest::equivalence::{Verdict, compare};
use crate::manifest::exclude::ExclusionPolicy;
use crate::manifest::layout::PathTemplate;
use crate::manifest::object::describe;
use crate::manifest::pipeline::{Outcome, expand_list, prepare};
use crate::manifest::sanitize::sanitized;
use crate::manifest::yaml::{parse_documents, to_multi_yaml, to_yaml};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Exit code of a command that worked (and, for `diff`, found the documents equivalent).
pub const EXIT_OK: u8 = 0;
/// Exit code of `diff` when the documents differ.
pub const EXIT_DIFFERENT: u8 = 1;
/// Exit code for unreadable input or another error.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "gitops-reverser",
    version,
    about = "Keeps a folder of a Git repository equal to the live state of selected Kubernetes objects",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every CustomResourceDefinition of gitops-reverser as multi-document YAML
    /// (the same bytes as the files in crds/, concatenated in name order).
    Crds,
    /// Print objects exactly as they would be written to Git: sanitized, with their content hash.
    ///
    /// Reads one object, a List, or a multi-document YAML/JSON stream. A skipped object prints
    /// one line on stderr: `skipped <apiVersion>/<Kind> <namespace/>name: <reason>`.
    Sanitize(SanitizeArgs),
    /// Compare a document from Git with a live object (as `kubectl get -o yaml|json` prints it).
    ///
    /// Exit 0 with `equivalent: exact|hash-annotation|near (<reason>)`; exit 1 with a unified
    /// diff of the sanitized documents and a line naming the differing paths; exit 2 on error.
    Diff(DiffArgs),
}

#[derive(Debug, clap::Args)]
pub struct SanitizeArgs {
    /// File to read; `-` or nothing reads standard input.
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,
    /// Let Secrets through (by default they are never written; prefer SealedSecrets).
    #[arg(long)]
    pub allow_secrets: bool,
    /// Print `<path> sha256:<hex>` per kept object instead of the documents.
    #[arg(long)]
    pub paths: bool,
    /// Folder the paths are inside (with --paths).
    #[arg(long, default_value = ".", value_name = "FOLDER")]
    pub folder: String,
    /// Path template (with --paths); placeholders {namespace} {group} {version} {kind}
    /// {resource} {name}.
    #[arg(long, default_value = crate::manifest::layout::DEFAULT_TEMPLATE, value_name = "TEMPLATE")]
    pub path_template: String,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The document as stored in Git.
    pub git_file: PathBuf,
    /// The live object, as `kubectl get -o yaml` or `-o json` prints it.
    pub live_file: PathBuf,
}

/// Runs a parsed command line; returns the process exit code. Errors are printed on `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = match cli.command {
        Command::Crds => crds(out),
        Command::Sanitize(args) => sanitize(&args, out, err),
        Command::Diff(args) => diff(&args, out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_ERROR
        }
    }
}

/// An error of the command line, naming the input it is about.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {input}: {source}")]
    Read { input: String, source: io::Error },
    #[error(transparent)]
    Yaml(#[from] crate::manifest::yaml::YamlError),
    #[error("{input}: document {index}: {problem}")]
    Document {
        input: String,
        index: usize,
        problem: String,
    },
    #[error(transparent)]
    Layout(#[from] crate::manifest::layout::LayoutError),
    #[error("cannot write output: {0}")]
    Write(#[from] io::Error),
}

fn crds(out: &mut dyn Write) -> Result<u8, CliError> {
    out.write_all(crate::crd::render_all()?.as_bytes())?;
    Ok(EXIT_OK)
}

fn sanitize(args: &SanitizeArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
    let template = PathTemplate::parse(&args.path_template)?;
    if args.folder != "." {
        crate::manifest::layout::validate_folder(&args.folder)?;
    }
    let policy = if args.allow_secrets {
        ExclusionPolicy::allowing_secrets()
    } else {
        ExclusionPolicy::default()
    };
    let (input, docs) = read_documents(args.input.as_deref())?;
    let mut kept = Vec::new();
    for (index, doc) in docs.into_iter().flat_map(expand_list).enumerate() {
        let label = describe(&doc);
        match prepare(doc, &policy) {
            Ok(Outcome::Kept(manifest)) => kept.push(manifest),
            Ok(Outcome::Skipped { id, exclusion }) => {
                writeln!(err, "skipped {id}: {}", exclusion.reason)?;
            }
            Err(problem) => {
                return Err(CliError::Document {
                    input,
                    index: index + 1,
                    problem: format!("{label}: {problem}"),
                });
            }
        }
    }
    if args.paths {
        for manifest in &kept {
            writeln!(
                out,
                "{} {}",
                manifest.path(&template, &args.folder, None),
                manifest.hash
            )?;
        }
    } else {
        out.write_all(to_multi_yaml(kept.iter().map(|m| &m.doc))?.as_bytes())?;
    }
    Ok(EXIT_OK)
}

fn diff(args: &DiffArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let git = read_single(&args.git_file)?;
    let live = read_single(&args.live_file)?;
    let verdict = compare(&git, &live);
    if let Verdict::Different { paths } = &verdict {
        let (git_yaml, live_yaml) = (to_yaml(&sanitized(&git))?, to_yaml(&sanitized(&live))?);
        let diff = similar::TextDiff::from_lines(&git_yaml, &live_yaml);
        let header_git = format!("git: {}", args.git_file.display());
        let header_live = format!("live: {}", args.live_file.display());
        write!(
            out,
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&header_git, &header_live)
        )?;
        writeln!(out, "different: {}", paths.join(", "))?;
        return Ok(EXIT_DIFFERENT);
    }
    writeln!(out, "{verdict}")?;
    Ok(EXIT_OK)
}

/// Reads a file (or stdin for `-`/nothing) and parses it into documents; returns the name used
/// in messages with them.
fn read_documents(path: Option<&Path>) -> Result<(String, Vec<Value>), CliError> {
    let (input, text) = match path {
        None => read_stdin()?,
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => {
            let input = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|source| CliError::Read {
                input: input.clone(),
                source,
            })?;
            (input, text)
        }
    };
    let docs = parse_documents(&text, &input)?;
    Ok((input, docs))
}

fn read_stdin() -> Result<(String, String), CliError> {
    let input = "<stdin>".to_string();
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| CliError::Read {
            input: input.clone(),
            source,
        })?;
    Ok((input, text))
}

fn read_single(path: &Path) -> Result<Value, CliError> {
    let (input, docs) = read_documents(Some(path))?;
    let count = docs.len();
    let mut docs = docs.into_iter();
    match (docs.next(), count) {
        (Some(doc), 1) if doc.is_object() => Ok(doc),
        (Some(_), 1) => Err(CliError::Document {
            input,
            index: 1,
            problem: "expected a Kubernetes object (a mapping)".into(),
        }),
        _ => Err(CliError::Document {
            input,
            index: count,
            problem: format!("expected exactly one document, found {count}"),
        }),
    }
}
