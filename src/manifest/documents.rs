//! The documents of a multi-document YAML file as byte ranges, and the edits that replace,
//! remove or insert one while every other byte of the file stays as it was.
//!
//! A document ends where a `---` line (at column 0, as YAML requires) begins the next; the
//! comments after a separator belong to the document that follows. Documents with nothing but
//! comments and blank lines are not documents (the YAML reader skips them too), so the spans
//! match [`crate::manifest::yaml::parse_documents`] one for one.

use std::ops::Range;

/// One document of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The document's own text: after its separator line, up to the next separator (or the end
    /// of the file), leading comments included.
    pub text: Range<usize>,
    /// The `---` line that introduces it (with its line ending), when there is one.
    pub separator: Option<Range<usize>>,
}

impl Span {
    /// The document's text in `file`.
    pub fn of<'a>(&self, file: &'a str) -> &'a str {
        &file[self.text.clone()]
    }

    /// Where the document begins, its separator included.
    fn start(&self) -> usize {
        self.separator
            .as_ref()
            .map_or(self.text.start, |separator| separator.start)
    }
}

/// The documents of a file, in order; documents that hold only comments are left out.
pub fn split(file: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut separator: Option<Range<usize>> = None;
    let mut start = 0;
    let mut offset = 0;
    let mut push = |separator: Option<Range<usize>>, text: Range<usize>| {
        if has_content(&file[text.clone()]) {
            spans.push(Span { text, separator });
        }
    };
    for line in file.split_inclusive('\n') {
        let here = offset;
        offset += line.len();
        match marker(line) {
            Marker::Separator => {
                push(separator.take(), start..here);
                separator = Some(here..offset);
                start = offset;
            }
            // `--- value`: the separator line carries the document's first content.
            Marker::SeparatorWithContent => {
                push(separator.take(), start..here);
                start = here;
            }
            Marker::End => {
                push(separator.take(), start..here);
                start = offset;
            }
            Marker::None => {}
        }
    }
    push(separator, start..file.len());
    spans
}

enum Marker {
    Separator,
    SeparatorWithContent,
    End,
    None,
}

fn marker(line: &str) -> Marker {
    let bare = line.trim_end_matches(['\n', '\r']);
    if let Some(rest) = bare.strip_prefix("---") {
        if rest.is_empty() {
            return Marker::Separator;
        }
        if rest.starts_with([' ', '\t']) {
            let rest = rest.trim();
            return if rest.is_empty() || rest.starts_with('#') {
                Marker::Separator
            } else {
                Marker::SeparatorWithContent
            };
        }
    }
    if let Some(rest) = bare.strip_prefix("...")
        && (rest.is_empty() || rest.starts_with([' ', '\t']))
    {
        return Marker::End;
    }
    Marker::None
}

/// True when a document's text holds more than comments, blank lines and directives.
fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !(line.is_empty() || line.starts_with('#') || line.starts_with('%'))
    })
}

/// The line ending the file uses (`\r\n` when its first line ends so).
pub fn line_ending(file: &str) -> &'static str {
    match file.find('\n') {
        Some(i) if i > 0 && file.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// `doc` with the file's line endings and a final line ending.
fn normalized(doc: &str, ending: &str) -> String {
    let mut out = if ending == "\r\n" && !doc.contains("\r\n") {
        doc.replace('\n', "\r\n")
    } else {
        doc.to_string()
    };
    if !out.ends_with('\n') {
        out.push_str(ending);
    }
    out
}

/// The file with one document's text replaced by `doc` (its separator and every other byte
/// kept). A document that ended the file without a final line break gets none either.
pub fn replace(file: &str, span: &Span, doc: &str) -> String {
    let ending = line_ending(file);
    let given_ending = doc.ends_with('\n');
    let mut doc = normalized(doc, ending);
    // The file's last document without a final line break gets none either — unless the new
    // text has its own (a `|+` block scalar's trailing newline is part of its value).
    if span.text.end == file.len() && !file.ends_with('\n') && !given_ending {
        doc.truncate(doc.len() - ending.len());
    }
    let mut out = String::with_capacity(file.len() + doc.len());
    out.push_str(&file[..span.text.start]);
    out.push_str(&doc);
    out.push_str(&file[span.text.end..]);
    out
}

/// The file without one document: its text and its separator go; the other documents and the
/// text before the first separator (a file's header comment) stay. Empty when it was the
/// file's only document and nothing else was there.
pub fn remove(file: &str, span: &Span) -> String {
    let mut out = String::with_capacity(file.len());
    out.push_str(&file[..span.start()]);
    out.push_str(&file[span.text.end..]);
    if !has_content(&out) && out.trim().is_empty() {
        return String::new();
    }
    out
}

/// The file with `doc` inserted as a new document before `before` (a span of `file`), or at
/// the end when `before` is `None`; introduced by a `---` line.
pub fn insert(file: &str, before: Option<&Span>, doc: &str) -> String {
    let ending = line_ending(file);
    let doc = normalized(doc, ending);
    let mut out = String::with_capacity(file.len() + doc.len() + 8);
    match before {
        Some(span) => {
            let at = span.start();
            out.push_str(&file[..at]);
            out.push_str("---");
            out.push_str(ending);
            out.push_str(&doc);
            if span.separator.is_none() {
                out.push_str("---");
                out.push_str(ending);
            }
            out.push_str(&file[at..]);
        }
        None => {
            out.push_str(file);
            if !file.is_empty() && !file.ends_with('\n') {
                out.push_str(ending);
            }
            if has_content(file) || !file.is_empty() {
                out.push_str("---");
                out.push_str(ending);
            }
            out.push_str(&doc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse_documents;

    const FILE: &str = "# The shop's configuration.\n\
        ---\n\
        # settings: read by web\n\
        apiVersion: v1\n\
        kind: ConfigMap\n\
        metadata:\n  name: settings # why\n\
        ---\n\
        apiVersion: v1\n\
        kind: ConfigMap\n\
        metadata:\n  name: flags\n\
        data:\n  a: \"1\"\n";

    fn texts(file: &str) -> Vec<&str> {
        split(file).iter().map(|s| s.of(file)).collect()
    }

    #[test]
    fn documents_match_the_reader_one_for_one() {
        for file in [
            FILE,
            "a: 1\n",
            "---\na: 1\n---\n---\n# only a comment\n---\nb: 2",
            "a: 1\r\n---\r\nb: 2\r\n",
            "--- # first\na: 1\n...\n---\nb: |\n  ---x\n  text\n",
            "",
            "# nothing\n",
        ] {
            let spans = split(file);
            let docs = parse_documents(file, "test").unwrap();
            assert_eq!(spans.len(), docs.len(), "{file:?}");
            for (span, doc) in spans.iter().zip(&docs) {
                let alone = parse_documents(span.of(file), "test").unwrap();
                assert_eq!(alone, vec![doc.clone()], "{file:?}");
            }
        }
    }

    #[test]
    fn comments_after_a_separator_belong_to_the_next_document() {
        let texts = texts(FILE);
        assert_eq!(texts.len(), 2);
        assert!(texts[0].starts_with("# settings: read by web\n"));
        assert!(texts[1].starts_with("apiVersion"));
    }

    #[test]
    fn replacing_one_document_keeps_every_other_byte() {
        let spans = split(FILE);
        let out = replace(FILE, &spans[1], "apiVersion: v1\nkind: ConfigMap\n");
        assert_eq!(
            out,
            FILE.replace(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  a: \"1\"\n",
                "apiVersion: v1\nkind: ConfigMap\n"
            )
        );
        let no_newline = "a: 1\n---\nb: 2";
        let spans = split(no_newline);
        assert_eq!(replace(no_newline, &spans[1], "b: 3"), "a: 1\n---\nb: 3");
        assert_eq!(
            replace(no_newline, &spans[1], "b: |+\n  x\n\n"),
            "a: 1\n---\nb: |+\n  x\n\n",
            "a value's own trailing newlines stay"
        );
        let crlf = "a: 1\r\n---\r\nb: 2\r\n";
        let spans = split(crlf);
        assert_eq!(
            replace(crlf, &spans[0], "a: 2\nc: 3\n"),
            "a: 2\r\nc: 3\r\n---\r\nb: 2\r\n"
        );
    }

    #[test]
    fn removing_a_document_takes_its_separator_and_comments() {
        let spans = split(FILE);
        assert_eq!(
            remove(FILE, &spans[0]),
            "# The shop's configuration.\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  a: \"1\"\n"
        );
        let first = remove(FILE, &spans[1]);
        assert_eq!(split(&first).len(), 1);
        assert!(first.contains("# why"));
        assert_eq!(remove("a: 1\n", &split("a: 1\n")[0]), "");
        assert_eq!(remove("---\na: 1\n", &split("---\na: 1\n")[0]), "");
        // Without a separator, the next one stays; the file still reads as one document.
        let two = "a: 1\n---\nb: 2\n";
        assert_eq!(remove(two, &split(two)[0]), "---\nb: 2\n");
    }

    #[test]
    fn inserting_a_document_before_another_or_at_the_end() {
        let spans = split(FILE);
        let out = insert(FILE, Some(&spans[1]), "kind: New\n");
        let docs = texts(&out);
        assert_eq!(docs[1], "kind: New\n");
        assert_eq!(docs.len(), 3);
        assert!(out.starts_with(&FILE[..spans[1].start()]));
        let end = insert("a: 1", None, "b: 2");
        assert_eq!(end, "a: 1\n---\nb: 2\n");
        assert_eq!(insert("", None, "b: 2\n"), "b: 2\n");
        let first = insert("a: 1\n", Some(&split("a: 1\n")[0]), "b: 2\n");
        assert_eq!(first, "---\nb: 2\n---\na: 1\n");
        assert_eq!(parse_documents(&first, "t").unwrap().len(), 2);
        let crlf = insert("a: 1\r\n", None, "b: 2\nc: 3\n");
        assert_eq!(crlf, "a: 1\r\n---\r\nb: 2\r\nc: 3\r\n");
    }
}
