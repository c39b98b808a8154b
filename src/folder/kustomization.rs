//! What the agent reads and edits of a `kustomization.yaml`: its `namespace:` and its
//! `resources:` list, edited line by line so that its comments and every other line stay.

use serde::Deserialize;

/// The names kustomize accepts for a kustomization file.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// True when `path`'s file name is one kustomize reads as a kustomization.
pub fn is_kustomization(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    FILE_NAMES.contains(&name)
}

/// The parts of a kustomization the folder index uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Kustomization {
    #[serde(default)]
    pub namespace: Option<String>,
    /// `resources:` (and the deprecated `bases:`); `None` when the file has no such list.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    #[serde(default)]
    bases: Option<Vec<String>>,
}

impl Kustomization {
    /// Reads a kustomization; `None` when it does not parse as one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut k: Kustomization = serde_saphyr::from_str(text).ok()?;
        if let Some(bases) = k.bases.take() {
            k.resources.get_or_insert_with(Vec::new).extend(bases);
        }
        Some(k)
    }

    /// The entries that name files or folders beside it (URLs left out), normalized.
    pub fn local_resources(&self) -> impl Iterator<Item = String> + '_ {
        self.resources
            .iter()
            .flatten()
            .filter(|r| !r.contains("://") && !r.starts_with("github.com/"))
            .map(|r| normalize_entry(r))
    }
}

/// `./a//b/` → `a/b`.
pub fn normalize_entry(entry: &str) -> String {
    entry
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The lines of the top-level `resources:` block list: the key's line and the range of lines
/// that follow it and belong to it (items, comments, blank lines between items).
struct ResourcesBlock {
    /// Index of the last item line (or of the key line when the list is empty in block form).
    last_item: Option<usize>,
    key: usize,
    items: Vec<(usize, String)>,
    indent: String,
}

fn resources_block(lines: &[&str]) -> Option<ResourcesBlock> {
    let key = lines.iter().position(|line| {
        let bare = line.trim_end();
        bare == "resources:" || bare.starts_with("resources: #") || bare.starts_with("resources:\t")
    })?;
    let mut items = Vec::new();
    let mut indent = None;
    for (i, line) in lines.iter().enumerate().skip(key + 1) {
        let trimmed = line.trim_start();
        let bare = trimmed.trim_end();
        if bare.is_empty() || bare.starts_with('#') {
            continue;
        }
        let lead = &line[..line.len() - trimmed.len()];
        if let Some(value) = bare
            .strip_prefix("- ")
            .or(if bare == "-" { Some("") } else { None })
        {
            if indent.is_none() {
                indent = Some(lead.to_string());
            }
            items.push((i, unquote(strip_comment(value).trim())));
            continue;
        }
        if lead.is_empty() {
            break; // the next top-level key
        }
        // An item's continuation (a multi-line entry): it belongs to the list.
    }
    Some(ResourcesBlock {
        last_item: items.last().map(|(i, _)| *i),
        key,
        items,
        indent: indent.unwrap_or_default(),
    })
}

fn strip_comment(value: &str) -> &str {
    if value.starts_with(['"', '\'']) {
        return value;
    }
    match value.find(" #") {
        Some(i) => &value[..i],
        None => value,
    }
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// The kustomization with `entry` appended to its `resources:` list (after the last item, at
/// the items' indentation; comments kept). `None`: no block `resources:` list to add to, or
/// the entry is listed already.
pub fn add_resource(text: &str, entry: &str) -> Option<String> {
    let ending = crate::manifest::documents::line_ending(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let block = resources_block(&lines)?;
    if block
        .items
        .iter()
        .any(|(_, item)| normalize_entry(item) == normalize_entry(entry))
    {
        return None;
    }
    let after = block.last_item.unwrap_or(block.key);
    let mut out = String::with_capacity(text.len() + entry.len() + 8);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        if i == after {
            if !line.ends_with('\n') {
                out.push_str(ending);
            }
            out.push_str(&format!("{}- {}{ending}", block.indent, quote_entry(entry)));
        }
    }
    Some(out)
}

/// The kustomization without the `resources:` item naming `entry` (its line, and the comment
/// lines right above it). `None` when no item names it.
pub fn remove_resource(text: &str, entry: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let block = resources_block(&lines)?;
    let wanted = normalize_entry(entry);
    let (at, _) = block
        .items
        .iter()
        .find(|(_, item)| normalize_entry(item) == wanted)?;
    let mut first = *at;
    while first > block.key + 1 && lines[first - 1].trim_start().starts_with('#') {
        first -= 1;
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        if !(first..=*at).contains(&i) {
            out.push_str(line);
        }
    }
    Some(out)
}

/// An entry as a YAML plain scalar where that reads back the same, else double-quoted.
fn quote_entry(entry: &str) -> String {
    let plain = !entry.is_empty()
        && !entry.starts_with(['-', '~'])
        && entry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./~".contains(c));
    if plain {
        entry.to_string()
    } else {
        serde_json::to_string(entry).unwrap_or_else(|_| entry.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\n\
        kind: Kustomization\n\
        namespace: shop # everything here\n\
        resources:\n\
        \x20 # the app\n\
        \x20 - web.yaml\n\
        \x20 - ./settings.yaml # shared\n\
        \n\
        images:\n\
        \x20 - name: web\n";

    #[test]
    fn reads_namespace_and_resources() {
        let k = Kustomization::parse(K).unwrap();
        assert_eq!(k.namespace.as_deref(), Some("shop"));
        assert_eq!(
            k.local_resources().collect::<Vec<_>>(),
            ["web.yaml", "settings.yaml"]
        );
        assert!(is_kustomization("a/b/kustomization.yaml"));
        assert!(is_kustomization("Kustomization"));
        assert!(!is_kustomization("a/kustomization.yaml.bak"));
    }

    #[test]
    fn adding_an_entry_keeps_every_other_line() {
        let out = add_resource(K, "shop/core/configmaps/new.yaml").unwrap();
        assert_eq!(
            out,
            K.replace(
                "  - ./settings.yaml # shared\n",
                "  - ./settings.yaml # shared\n  - shop/core/configmaps/new.yaml\n"
            )
        );
        assert_eq!(add_resource(K, "settings.yaml"), None, "listed already");
        assert_eq!(add_resource("namespace: a\n", "x.yaml"), None, "no list");
        let flat = "resources:\n- a.yaml\nnamespace: x\n";
        assert_eq!(
            add_resource(flat, "b c.yaml").unwrap(),
            "resources:\n- a.yaml\n- \"b c.yaml\"\nnamespace: x\n"
        );
        assert_eq!(
            add_resource("resources:\n", "a.yaml").unwrap(),
            "resources:\n- a.yaml\n"
        );
        let added = add_resource(K, "x/y.yaml").unwrap();
        let k = Kustomization::parse(&added).unwrap();
        assert_eq!(k.resources.unwrap().len(), 3);
    }

    #[test]
    fn removing_an_entry_takes_its_comment() {
        let out = remove_resource(K, "web.yaml").unwrap();
        assert_eq!(out, K.replace("  # the app\n  - web.yaml\n", ""));
        let out = remove_resource(K, "settings.yaml").unwrap();
        assert_eq!(out, K.replace("  - ./settings.yaml # shared\n", ""));
        assert_eq!(remove_resource(K, "other.yaml"), None);
    }
}
