//! Editing one YAML document in place: the text a person (or another tool) wrote is changed only
//! where its value differs from the new one, so comments, key order, quoting, indentation and
//! blank lines of everything else keep their bytes.
//!
//! The document is read twice: with the project's reader ([`yaml::parse_documents`]) for its
//! value, and with the parser under it (granit-parser) for where each node is in the text. The
//! two values are compared node by node; a changed scalar has only its own text replaced, a
//! removed key loses its lines (and its own comment lines above), a new key is written after its
//! siblings at their indentation. What cannot be edited in place (flow collections, anchors,
//! aliases, tags, a key the reader resolved differently) is written anew as the smallest
//! enclosing value. Every scalar and subtree written goes through [`yaml::to_yaml`], so the
//! YAML 1.1 quoting rules hold. The result is read back before it is returned; should it not read
//! as the new value, the whole document is written anew instead (its leading comments kept).
//! Pure: no I/O.
//!
//! Long (about 1,400 lines before its tests) because it is one algorithm over three private
//! views of the same text — the node tree with spans, the line table, the editor that turns a
//! value difference into byte edits — whose types are shared by every step; its sections below
//! follow that order. Splitting them into modules would make those types crate-visible for no
//! other user.

use granit_parser::{Event, Parser, ScalarStyle, Scanner, StrInput, StructureStyle, TokenType};
use serde_json::{Map, Value, json};

use super::yaml::{self, YamlError};

/// Documents nested deeper than this are written anew rather than edited.
const MAX_DEPTH: usize = 200;

/// Editing a document in place failed (names what could not be read).
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The text to edit is not YAML; the position of the first error (1-based line and column).
    #[error("the document to edit is not valid YAML at line {line}, column {column}: {message}")]
    Invalid {
        line: usize,
        column: usize,
        message: String,
    },
    /// The project's reader refused the text to edit (its message names the position).
    #[error("the document to edit cannot be read: {0}")]
    Unreadable(YamlError),
    /// The text holds more than one document; this edits exactly one.
    #[error("the text to edit holds {found} YAML documents, not one")]
    NotOneDocument { found: usize },
    /// The new value could not be written as YAML.
    #[error("cannot write the edited document: {0}")]
    Write(YamlError),
}

/// Rewrites `original`, the text of ONE YAML document (no `---` line; may have leading comments),
/// so that it reads back as `new`, changing only what differs.
pub fn edit_document(original: &str, new: &Value) -> Result<String, EditError> {
    let old = read_one(original)?;
    let Some(old) = old else {
        if new.is_null() {
            return Ok(original.to_string());
        }
        return rewrite_whole(original, new);
    };
    if &old == new {
        return Ok(original.to_string());
    }
    if let Some(edited) =
        edit_in_place(original, &old, new).and_then(|edited| checked(edited, original, new))
    {
        return Ok(edited);
    }
    rewrite_whole(original, new)
}

/// `candidate` (which ends with a line break) when it reads as `new`: without its last line break
/// when `original` has none and it still reads so.
fn checked(mut candidate: String, original: &str, new: &Value) -> Option<String> {
    if !original.is_empty() && !original.ends_with('\n') {
        let mut trimmed = candidate.clone();
        trim_one_newline(&mut trimmed);
        if reads_as(&trimmed, new) {
            return Some(trimmed);
        }
    }
    if !candidate.ends_with('\n') {
        candidate.push('\n');
    }
    reads_as(&candidate, new).then_some(candidate)
}

/// The value of the one document in `text` (`None` when it holds none), or why it cannot be read.
fn read_one(text: &str) -> Result<Option<Value>, EditError> {
    match yaml::parse_documents(text, "document") {
        Ok(mut docs) => match docs.len() {
            0 => Ok(None),
            1 => Ok(docs.pop()),
            found => Err(EditError::NotOneDocument { found }),
        },
        Err(err) => Err(first_syntax_error(text).unwrap_or(EditError::Unreadable(err))),
    }
}

/// The parser's first error in `text`, with its position.
fn first_syntax_error(text: &str) -> Option<EditError> {
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        if let Err(err) = event {
            return Some(EditError::Invalid {
                line: err.marker().line(),
                column: err.marker().col() + 1,
                message: err.info(),
            });
        }
    }
    None
}

fn reads_as(text: &str, value: &Value) -> bool {
    match yaml::parse_documents(text, "edited document") {
        Ok(docs) if value.is_null() => docs.is_empty(),
        Ok(docs) => docs.len() == 1 && &docs[0] == value,
        Err(_) => false,
    }
}

/// The last resort: the leading comment block of `original`, then `new` as [`yaml::to_yaml`]
/// writes it, in the original's line endings and with its final newline (or lack of one).
fn rewrite_whole(original: &str, new: &Value) -> Result<String, EditError> {
    let body = yaml::to_yaml(new).map_err(EditError::Write)?;
    let crlf = original.contains("\r\n");
    let header_end = leading_comment_block(original);
    let mut out = String::with_capacity(header_end + body.len());
    out.push_str(&original[..header_end]);
    out.push_str(&with_line_endings(&body, crlf));
    Ok(checked(out, original, new).unwrap_or(body))
}

/// The length of the comment and blank lines that open `text`.
fn leading_comment_block(text: &str) -> usize {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start_matches([' ', '\t', '\u{feff}']);
        if trimmed.starts_with('#') || trimmed.trim().is_empty() {
            if !line.ends_with('\n') {
                break;
            }
            end += line.len();
        } else {
            break;
        }
    }
    end
}

fn with_line_endings(text: &str, crlf: bool) -> String {
    if crlf {
        text.replace('\n', "\r\n")
    } else {
        text.to_string()
    }
}

fn trim_one_newline(text: &mut String) {
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
}

/// The in-place edit, or `None` when the document's shape does not allow one (the caller then
/// writes it anew). The result is not yet verified.
fn edit_in_place(original: &str, old: &Value, new: &Value) -> Option<String> {
    let crlf = original.contains("\r\n");
    // Work on text that ends with a line break, so every line (the last included) has one.
    let added_newline = !original.ends_with('\n');
    let mut text = original.to_string();
    if added_newline {
        text.push_str(if crlf { "\r\n" } else { "\n" });
    }
    let mut root = build_tree(&text)?;
    resolve_keys(&text, &mut root, old);
    let lines = Lines { text: &text };
    lines.finish(&mut root, 0);
    let mut editor = Editor {
        lines,
        style: Style::detect(&root, &lines),
        edits: Vec::new(),
        failed: false,
    };
    editor.diff(&root, old, new, Place::Root);
    if editor.failed {
        return None;
    }
    apply(&text, editor.edits, crlf)
}

// ---------------------------------------------------------------------------------------------
// The document's nodes and where they are.

#[derive(Debug)]
struct Node {
    kind: Kind,
    /// Where the node's own text starts (byte offset); a block sequence starts at its first `-`.
    start: usize,
    /// Where its content ends (set by [`Lines::finish`] for block nodes).
    end: usize,
    /// An anchor or a tag: the node is written anew rather than edited.
    props: bool,
}

#[derive(Debug)]
enum Kind {
    /// `block`: a literal or folded block scalar; `empty`: no text at all (`key:`).
    Scalar {
        block: bool,
        empty: bool,
        value: String,
    },
    Map {
        flow: bool,
        entries: Vec<Entry>,
    },
    Seq {
        flow: bool,
        items: Vec<Item>,
    },
    Alias,
}

#[derive(Debug)]
struct Entry {
    /// The key as read, when it is a plain or quoted scalar on one line with its `:` after it
    /// (the parser's text; [`resolve_keys`] puts the reader's where the two differ).
    key: Option<String>,
    key_start: usize,
    key_end: usize,
    /// The byte after the `:`.
    colon_end: usize,
    value: Node,
}

#[derive(Debug)]
struct Item {
    /// The `-` of the item.
    dash: usize,
    node: Node,
}

/// Reads `text` into nodes with byte positions, or `None` when it is not one plain document.
fn build_tree(text: &str) -> Option<Node> {
    let mut events = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.ok()?;
        if matches!(event, Event::Comment(..)) {
            // Comments are read from the lines; the nodes are what matter here.
            continue;
        }
        let start = span.start.byte_offset()?;
        let end = span.end.byte_offset()?;
        events.push((event, start, end));
    }
    let mut colons = Vec::new();
    let mut dashes = Vec::new();
    for token in Scanner::new(StrInput::new(text)) {
        let token = token.ok()?;
        let at = token.span().start.byte_offset()?;
        match token.token_type() {
            TokenType::Value => colons.push(at),
            TokenType::BlockEntry => dashes.push(dash_before(text, at)?),
            _ => {}
        }
    }
    let documents = events
        .iter()
        .filter(|(e, _, _)| matches!(e, Event::DocumentStart(..)))
        .count();
    if documents != 1 {
        return None;
    }
    let first = events
        .iter()
        .position(|(e, _, _)| matches!(e, Event::DocumentStart(..)))?;
    let mut builder = Builder {
        text,
        events: &events[first + 1..],
        next: 0,
        colons: &colons,
        dashes: &dashes,
    };
    builder.node(0)
}

/// The `-` a block entry token belongs to: the scanner puts the token after it and its blanks.
fn dash_before(text: &str, at: usize) -> Option<usize> {
    let head = text.get(..at)?;
    let trimmed = head.trim_end_matches([' ', '\t']);
    trimmed.ends_with('-').then(|| trimmed.len() - 1)
}

struct Builder<'t, 'e> {
    text: &'t str,
    events: &'e [(Event<'t>, usize, usize)],
    next: usize,
    colons: &'e [usize],
    dashes: &'e [usize],
}

impl Builder<'_, '_> {
    fn node(&mut self, depth: usize) -> Option<Node> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (event, start, end) = self.events.get(self.next)?;
        let (start, end) = (*start, *end);
        self.next += 1;
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
                let empty = start == end && *style == ScalarStyle::Plain && value == "~";
                Some(Node {
                    kind: Kind::Scalar {
                        block,
                        empty,
                        value: value.to_string(),
                    },
                    start,
                    end,
                    props: *anchor != 0 || tag.is_some(),
                })
            }
            Event::Alias(_) => Some(Node {
                kind: Kind::Alias,
                start,
                end,
                props: true,
            }),
            Event::MappingStart(style, anchor, tag) => {
                let flow = *style == StructureStyle::Flow;
                let mut entries = Vec::new();
                loop {
                    if let (Event::MappingEnd, _, close_end) = self.events.get(self.next)? {
                        self.next += 1;
                        return Some(Node {
                            kind: Kind::Map { flow, entries },
                            start,
                            end: *close_end,
                            props: *anchor != 0 || tag.is_some(),
                        });
                    }
                    let key = self.node(depth + 1)?;
                    let value = self.node(depth + 1)?;
                    entries.push(self.entry(key, value));
                }
            }
            Event::SequenceStart(style, anchor, tag) => {
                let flow = *style == StructureStyle::Flow;
                let mut items = Vec::new();
                loop {
                    if let (Event::SequenceEnd, _, close_end) = self.events.get(self.next)? {
                        self.next += 1;
                        let start = if flow {
                            start
                        } else {
                            items.first().map_or(start, |i: &Item| i.dash)
                        };
                        return Some(Node {
                            kind: Kind::Seq { flow, items },
                            start,
                            end: *close_end,
                            props: *anchor != 0 || tag.is_some(),
                        });
                    }
                    let node = self.node(depth + 1)?;
                    let dash = if flow {
                        node.start
                    } else {
                        // The item's `-` is the last one before its content.
                        let at = self.dashes.partition_point(|d| *d < node.start);
                        *self.dashes.get(at.checked_sub(1)?)?
                    };
                    items.push(Item { dash, node });
                }
            }
            _ => None,
        }
    }

    fn entry(&self, key: Node, value: Node) -> Entry {
        let simple_key = match &key.kind {
            Kind::Scalar {
                block: false,
                empty: false,
                value,
            } if !key.props => Some(value.clone()),
            _ => None,
        };
        // The `:` of the entry: the first value indicator after the key, on the key's line.
        let at = self.colons.partition_point(|c| *c < key.end);
        let colon = self.colons.get(at).copied().filter(|c| {
            self.text
                .get(key.end..*c)
                .is_some_and(|between| between.chars().all(|ch| ch == ' ' || ch == '\t'))
        });
        let key_text = self.text.get(key.start..key.end);
        let name = match (simple_key, colon, key_text) {
            (Some(value), Some(_), Some(raw)) if !raw.contains('\n') => Some(value),
            _ => None,
        };
        Entry {
            key: name,
            key_end: key.end,
            key_start: key.start,
            colon_end: colon.map_or(key.end, |c| c + 1),
            value,
        }
    }
}

/// Puts the reader's key in place of the parser's text where the value read has no such key (a
/// key the reader resolves differently); the parser's text is right for nearly every key, and
/// reading each key alone would cost a parse per key.
fn resolve_keys(text: &str, node: &mut Node, value: &Value) {
    match (&mut node.kind, value) {
        (Kind::Map { entries, .. }, Value::Object(map)) => {
            for entry in entries.iter_mut() {
                if entry.key.as_ref().is_some_and(|k| !map.contains_key(k)) {
                    entry.key = text.get(entry.key_start..entry.key_end).and_then(read_key);
                }
                if let Some(inner) = entry.key.as_ref().and_then(|k| map.get(k)) {
                    resolve_keys(text, &mut entry.value, inner);
                }
            }
        }
        (Kind::Seq { items, .. }, Value::Array(values)) => {
            for (item, inner) in items.iter_mut().zip(values) {
                resolve_keys(text, &mut item.node, inner);
            }
        }
        _ => {}
    }
}

/// A key's text as the project's reader reads it (as a JSON object key).
fn read_key(raw: &str) -> Option<String> {
    let docs = yaml::parse_documents(&format!("{raw}: 0\n"), "key").ok()?;
    let Some(Value::Object(map)) = docs.first() else {
        return None;
    };
    (map.len() == 1)
        .then(|| map.keys().next().cloned())
        .flatten()
}

// ---------------------------------------------------------------------------------------------
// Lines of the text.

#[derive(Clone, Copy)]
struct Lines<'t> {
    text: &'t str,
}

/// What one line holds.
#[derive(PartialEq)]
enum LineKind {
    Blank,
    /// An own-line comment whose `#` is in this column.
    Comment(usize),
    Content,
}

impl<'t> Lines<'t> {
    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    /// The start of the line holding `pos`.
    fn line_start(&self, pos: usize) -> usize {
        let pos = pos.min(self.text.len());
        self.bytes()[..pos]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)
    }

    /// The end of the line holding `pos`, before its line break (`\n` or `\r\n`).
    fn line_end(&self, pos: usize) -> usize {
        let pos = pos.min(self.text.len());
        let end = self.bytes()[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(self.text.len(), |i| pos + i);
        if end > pos && self.bytes()[end - 1] == b'\r' {
            end - 1
        } else {
            end
        }
    }

    /// The start of the line after the one holding `pos`.
    fn next_line(&self, pos: usize) -> usize {
        let pos = pos.min(self.text.len());
        self.bytes()[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(self.text.len(), |i| pos + i + 1)
    }

    fn column(&self, pos: usize) -> usize {
        pos - self.line_start(pos)
    }

    /// Whether only blanks stand before `pos` on its line.
    fn opens_line(&self, pos: usize) -> bool {
        self.bytes()[self.line_start(pos)..pos]
            .iter()
            .all(|b| *b == b' ' || *b == b'\t')
    }

    /// What the line starting at `start` holds.
    fn kind(&self, start: usize) -> LineKind {
        let end = self.line_end(start);
        let line = &self.bytes()[start..end];
        match line.iter().position(|b| *b != b' ' && *b != b'\t') {
            None => LineKind::Blank,
            Some(i) if line[i] == b'#' => LineKind::Comment(i),
            Some(_) => LineKind::Content,
        }
    }

    /// Sets where each block node's content ends; `from` is where the node's place starts (after
    /// its `:` or `-`, or 0 at the top).
    fn finish(&self, node: &mut Node, from: usize) {
        match &mut node.kind {
            Kind::Scalar { empty: true, .. } => node.end = from,
            Kind::Scalar { block: true, .. } => {
                // The span runs on into the next line's indentation: end at the last line with
                // text (the header's, when the scalar is empty).
                let upto = node.end.max(from).min(self.text.len());
                let region = &self.bytes()[from.min(upto)..upto];
                let last = if self.keeps_trailing_lines(from) {
                    // `|+`: the blank lines after the text are part of it.
                    region.iter().rposition(|b| *b == b'\n')
                } else {
                    region.iter().rposition(|b| !b.is_ascii_whitespace())
                };
                node.end = last.map_or(from, |i| self.line_end(self.line_start(from + i)));
            }
            Kind::Map {
                flow: false,
                entries,
            } => {
                for entry in entries.iter_mut() {
                    self.finish(&mut entry.value, entry.colon_end);
                }
                if let Some(last) = entries.last() {
                    node.end = last.value.end.max(last.colon_end);
                }
            }
            Kind::Seq { flow: false, items } => {
                for item in items.iter_mut() {
                    self.finish(&mut item.node, item.dash + 1);
                }
                if let Some(last) = items.last() {
                    node.end = last.node.end.max(last.dash + 1);
                }
            }
            _ => {}
        }
    }

    /// Whether the block scalar whose header follows `from` keeps its trailing line breaks (`+`).
    fn keeps_trailing_lines(&self, from: usize) -> bool {
        let header = &self.text[from..self.line_end(from)];
        header
            .find(['|', '>'])
            .map(|at| &header[at + 1..])
            .is_some_and(|indicators| {
                indicators
                    .split([' ', '\t', '#'])
                    .next()
                    .is_some_and(|i| i.contains('+'))
            })
    }

    /// Where the lines of a key or item whose own line starts at `own` begin: with the comment
    /// lines right above it, in its column or left of it, down to `floor`.
    fn leading_start(&self, own: usize, column: usize, floor: usize) -> usize {
        let mut start = own;
        while start > floor {
            let above = self.line_start(start - 1);
            if above < floor {
                break;
            }
            match self.kind(above) {
                LineKind::Comment(c) if c <= column => start = above,
                _ => break,
            }
        }
        start
    }

    /// Where the lines of a key or item end: after the line its content ends on, and after the
    /// comment lines below it that are indented deeper than `column` (its subtree's).
    fn tail_end(&self, content_end: usize, column: usize) -> usize {
        let mut end = self.next_line(content_end);
        let mut at = end;
        while at < self.text.len() {
            match self.kind(at) {
                LineKind::Blank => {}
                LineKind::Comment(c) if c > column => end = self.next_line(at),
                _ => break,
            }
            at = self.next_line(at);
        }
        end
    }

    /// The start of the blank lines right before `pos` (a line start), not above `floor`.
    fn blanks_before(&self, pos: usize, floor: usize) -> usize {
        let mut start = pos;
        while start > floor {
            let above = self.line_start(start - 1);
            if above < floor || self.kind(above) != LineKind::Blank {
                break;
            }
            start = above;
        }
        start
    }

    /// The end of the blank lines from `pos` (a line start) on.
    fn blanks_after(&self, pos: usize) -> usize {
        let mut end = pos;
        while end < self.text.len() && self.kind(end) == LineKind::Blank {
            end = self.next_line(end);
        }
        end
    }
}

// ---------------------------------------------------------------------------------------------
// The edit.

/// How the document indents: by how much a nested map's keys, and a sequence under a key, are
/// indented relative to the key.
struct Style {
    step: usize,
    seq_offset: usize,
}

impl Style {
    fn detect(root: &Node, lines: &Lines) -> Style {
        let mut style = Style {
            step: 0,
            seq_offset: usize::MAX,
        };
        style.visit(root, lines);
        if style.step == 0 {
            style.step = 2;
        }
        if style.seq_offset == usize::MAX {
            style.seq_offset = 0;
        }
        style
    }

    fn visit(&mut self, node: &Node, lines: &Lines) {
        if self.step != 0 && self.seq_offset != usize::MAX {
            return;
        }
        match &node.kind {
            Kind::Map {
                flow: false,
                entries,
            } => {
                for entry in entries {
                    let key_column = lines.column(entry.key_start);
                    match &entry.value.kind {
                        Kind::Map {
                            flow: false,
                            entries: inner,
                        } if self.step == 0 => {
                            if let Some(first) = inner.first() {
                                let column = lines.column(first.key_start);
                                if column > key_column && lines.opens_line(first.key_start) {
                                    self.step = column - key_column;
                                }
                            }
                        }
                        Kind::Seq { flow: false, items } if self.seq_offset == usize::MAX => {
                            if let Some(first) = items.first() {
                                let column = lines.column(first.dash);
                                if column >= key_column && lines.opens_line(first.dash) {
                                    self.seq_offset = column - key_column;
                                }
                            }
                        }
                        _ => {}
                    }
                    self.visit(&entry.value, lines);
                }
            }
            Kind::Seq { flow: false, items } => {
                for item in items {
                    self.visit(&item.node, lines);
                }
            }
            _ => {}
        }
    }
}

/// Where a node stands: the document itself, the value of a key, or an item of a sequence.
#[derive(Clone, Copy)]
enum Place {
    Root,
    Value { colon_end: usize, column: usize },
    Item { dash: usize, column: usize },
}

/// One replacement of `text[start..end]`.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

struct Editor<'t> {
    lines: Lines<'t>,
    style: Style,
    edits: Vec<Edit>,
    failed: bool,
}

impl Editor<'_> {
    fn push(&mut self, start: usize, end: usize, text: String) {
        self.edits.push(Edit { start, end, text });
    }

    /// Inserts whole lines at `at` (a line start).
    fn insert_lines(&mut self, at: usize, text: String) {
        // Ending with a `|+` block scalar, they take the blank lines after them out: those
        // would become its text.
        let end = if text.ends_with("\n\n") {
            self.lines.blanks_after(at)
        } else {
            at
        };
        self.push(at, end, text);
    }

    fn diff(&mut self, node: &Node, old: &Value, new: &Value, place: Place) {
        if old == new || self.failed {
            return;
        }
        match (&node.kind, old, new) {
            (
                Kind::Scalar {
                    block: false,
                    empty: false,
                    ..
                },
                _,
                _,
            ) if !node.props && !new.is_object() && !new.is_array() => match render_scalar(new) {
                Ok(Scalar::Inline(text)) => {
                    // A string a person quoted where the writer would not have stays quoted
                    // their way (quotes the writer put there were needed, and go when they are not).
                    let quote = self.lines.bytes()[node.start];
                    let text = match (old, new) {
                        (Value::String(_), Value::String(s))
                            if matches!(quote, b'"' | b'\'')
                                && !matches!(render_scalar(old), Ok(Scalar::Inline(w)) if w.as_bytes().first() == Some(&quote)) =>
                        {
                            requoted(quote, s).unwrap_or(text)
                        }
                        _ => text,
                    };
                    self.push(node.start, node.end, text);
                }
                Ok(Scalar::Block { .. }) => self.replace(node, new, place),
                Err(_) => self.failed = true,
            },
            (
                Kind::Map {
                    flow: false,
                    entries,
                },
                Value::Object(old_map),
                Value::Object(new_map),
            ) if !node.props && !new_map.is_empty() && self.editable_map(entries, old_map) => {
                self.diff_map(node, entries, old_map, new_map, place);
            }
            (
                Kind::Seq { flow: false, items },
                Value::Array(old_items),
                Value::Array(new_items),
            ) if !node.props
                && !new_items.is_empty()
                && items.len() == old_items.len()
                && self.editable_seq(items) =>
            {
                self.diff_seq(node, items, old_items, new_items, place);
            }
            _ => self.replace(node, new, place),
        }
    }

    /// Whether each entry's key is read as the value's keys are, once each, all in one column.
    fn editable_map(&self, entries: &[Entry], old: &Map<String, Value>) -> bool {
        if entries.len() != old.len() {
            return false;
        }
        let Some(column) = entries.first().map(|e| self.lines.column(e.key_start)) else {
            return false;
        };
        let mut seen = std::collections::HashSet::new();
        entries.iter().enumerate().all(|(i, e)| {
            e.key
                .as_ref()
                .is_some_and(|k| old.contains_key(k) && seen.insert(k.as_str()))
                && self.lines.column(e.key_start) == column
                && (i == 0 || self.lines.opens_line(e.key_start))
        })
    }

    fn editable_seq(&self, items: &[Item]) -> bool {
        let Some(column) = items.first().map(|i| self.lines.column(i.dash)) else {
            return false;
        };
        items.iter().enumerate().all(|(i, item)| {
            self.lines.column(item.dash) == column && (i == 0 || self.lines.opens_line(item.dash))
        })
    }

    /// Writes `new` in place of `node` as a whole.
    fn replace(&mut self, node: &Node, new: &Value, place: Place) {
        let end = self.replaced_end(node);
        let written = match place {
            Place::Root => {
                self.failed = true;
                return;
            }
            Place::Value { colon_end, column } => {
                self.after_key(new, column).map(|text| (colon_end, text))
            }
            Place::Item { dash, column } => {
                self.after_dash(new, column).map(|text| (dash + 1, text))
            }
        };
        let Ok((start, mut text)) = written else {
            self.failed = true;
            return;
        };
        let mut end = end.max(start);
        // A comment after a one-line value stays on the first line when the value becomes
        // several lines (after it, it would be read as part of them, or describe another key).
        let line_end = self.lines.line_end(end);
        let rest = &self.lines.text[end..line_end];
        if let Some(first_break) = text.find('\n')
            && rest.trim_start().starts_with('#')
        {
            text.insert_str(first_break, rest);
            end = line_end;
        }
        if text.ends_with('\n') {
            // It ends with a `|+` block scalar: blank lines after it would become its text.
            let next = self.lines.next_line(end);
            let blanks = self.lines.blanks_after(next);
            if blanks > next {
                end = self.lines.line_end(self.lines.line_start(blanks - 1));
            }
        }
        self.push(start, end, text);
    }

    /// Where the text replaced for `node` ends: a block collection takes the rest of its last
    /// line when only a comment is left there.
    fn replaced_end(&self, node: &Node) -> usize {
        match node.kind {
            Kind::Map { flow: false, .. } | Kind::Seq { flow: false, .. } => {
                let line_end = self.lines.line_end(node.end);
                let rest = self.lines.text[node.end..line_end].trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    line_end
                } else {
                    node.end
                }
            }
            _ => node.end,
        }
    }

    fn diff_map(
        &mut self,
        node: &Node,
        entries: &[Entry],
        old: &Map<String, Value>,
        new: &Map<String, Value>,
        place: Place,
    ) {
        let top = matches!(place, Place::Root);
        let column = self.lines.column(entries[0].key_start);
        let inline_first = !self.lines.opens_line(entries[0].key_start);
        let keep: Vec<bool> = entries
            .iter()
            .map(|e| e.key.as_ref().is_some_and(|k| new.contains_key(k)))
            .collect();
        if !keep.iter().any(|k| *k) {
            self.replace(node, &Value::Object(new.clone()), place);
            return;
        }
        for (entry, kept) in entries.iter().zip(&keep) {
            if let (true, Some(key)) = (kept, &entry.key) {
                let place = Place::Value {
                    colon_end: entry.colon_end,
                    column,
                };
                self.diff(&entry.value, &old[key], &new[key], place);
            }
        }
        self.remove_entries(entries, &keep, column, top);
        // New keys: in their written place when the keys there are in written order, else after
        // the last key.
        let added: Vec<&String> = yaml::written_order(new, top)
            .into_iter()
            .filter(|k| !old.contains_key(*k))
            .collect();
        if added.is_empty() {
            return;
        }
        let order = key_order(old, new, top);
        let rank = |k: &str| order.iter().position(|o| o == k).unwrap_or(usize::MAX);
        let sorted = entries.windows(2).all(|w| match (&w[0].key, &w[1].key) {
            (Some(a), Some(b)) => rank(a) < rank(b),
            _ => false,
        });
        let survivors: Vec<usize> = (0..entries.len()).filter(|i| keep[*i]).collect();
        let last = *survivors.last().unwrap_or(&0);
        let append_at = self.lines.tail_end(entries[last].value.end, column);
        let mut inserts: Vec<(usize, String)> = Vec::new();
        for key in added {
            let before = if sorted || top {
                survivors.iter().copied().find(|i| {
                    let other = entries[*i].key.as_deref().unwrap_or_default();
                    if sorted {
                        rank(key) < rank(other)
                    } else {
                        key_rank_top(key) < key_rank_top(other)
                    }
                })
            } else {
                None
            };
            let Ok(mut text) = self.entry_lines(key, &new[key.as_str()], column) else {
                self.failed = true;
                return;
            };
            let at = match before {
                // Before the first key on its parent's `- ` line: the new key takes that place
                // and the old one moves to the next line.
                Some(i) if inline_first && i == survivors[0] => {
                    text.replace_range(..column, "");
                    text.push_str(&" ".repeat(column));
                    entries[i].key_start
                }
                Some(i) => self.entry_start(entries, i, column, top),
                None => append_at,
            };
            match inserts.iter_mut().find(|(p, _)| *p == at) {
                Some((_, lines)) => lines.push_str(&text),
                None => inserts.push((at, text)),
            }
        }
        for (at, text) in inserts {
            self.insert_lines(at, text);
        }
    }

    /// Where entry `i`'s lines start (its own comment lines above it included).
    fn entry_start(&self, entries: &[Entry], i: usize, column: usize, top: bool) -> usize {
        let own = self.lines.line_start(entries[i].key_start);
        if i == 0 {
            // Comments above a document's first key are the document's.
            if top {
                return own;
            }
            return self.lines.leading_start(own, column, 0);
        }
        let floor = self.lines.tail_end(entries[i - 1].value.end, column);
        self.lines.leading_start(own, column, floor.min(own))
    }

    fn remove_entries(&mut self, entries: &[Entry], keep: &[bool], column: usize, top: bool) {
        let spans: Vec<(usize, usize, usize)> = (0..entries.len())
            .map(|i| {
                let start = self.entry_start(entries, i, column, top);
                let end = self.lines.tail_end(entries[i].value.end, column);
                (entries[i].key_start, start, end)
            })
            .collect();
        self.remove_spans(&spans, keep);
    }

    /// Removes the members (`(own start, lines start, lines end)`) not kept, with the blank
    /// lines that separated them from their neighbours when both sides had some.
    fn remove_spans(&mut self, spans: &[(usize, usize, usize)], keep: &[bool]) {
        let n = spans.len();
        let mut i = 0;
        while i < n {
            if keep[i] {
                i += 1;
                continue;
            }
            let (own, start, end) = spans[i];
            if !self.lines.opens_line(own) {
                // The first member on its parent's `- ` line: the next kept member moves up onto
                // it; when comment lines of its own stand above it, the `-` stays alone instead.
                let Some(next) = (i + 1..n).find(|j| keep[*j]) else {
                    self.failed = true;
                    return;
                };
                let (next_own, next_start, _) = spans[next];
                if next_start < self.lines.line_start(next_own) {
                    let line_start = self.lines.line_start(own);
                    let cut = line_start
                        + self.lines.text[line_start..own]
                            .trim_end_matches([' ', '\t'])
                            .len();
                    self.push(cut, end, "\n".to_string());
                    i += 1;
                } else {
                    self.push(own, next_own, String::new());
                    i = next;
                }
                continue;
            }
            let floor = if i == 0 { start } else { spans[i - 1].2 };
            let blank_before = self.lines.blanks_before(start, floor);
            let blank_after = self.lines.blanks_after(end);
            let (mut start, mut end) = (start, end);
            // First or last among what stays.
            let first = !keep[..i].iter().any(|k| *k);
            let last = !keep[i + 1..].iter().any(|k| *k);
            // A kept member above that ends with a `|+` block scalar's blank lines would take
            // the blank lines below as its text.
            let kept_above_ends_blank = (0..i).rev().find(|j| keep[*j]).is_some_and(|j| {
                let tail = spans[j].2;
                tail > 0 && self.lines.kind(self.lines.line_start(tail - 1)) == LineKind::Blank
            });
            if kept_above_ends_blank || ((blank_before < start || first) && !last) {
                end = blank_after;
            } else if blank_before < start && last {
                start = blank_before;
            }
            self.push(start, end, String::new());
            i += 1;
        }
    }

    fn diff_seq(
        &mut self,
        node: &Node,
        items: &[Item],
        old: &[Value],
        new: &[Value],
        place: Place,
    ) {
        let column = self.lines.column(items[0].dash);
        let steps = align(old, new);
        let mut keep = vec![false; old.len()];
        for step in &steps {
            if let Step::Same(o, _) | Step::Pair(o, _) = step {
                keep[*o] = true;
            }
        }
        if !keep.iter().any(|k| *k) {
            self.replace(node, &Value::Array(new.to_vec()), place);
            return;
        }
        let spans: Vec<(usize, usize, usize)> = (0..items.len())
            .map(|i| {
                let own = self.lines.line_start(items[i].dash);
                let floor = if i == 0 {
                    0
                } else {
                    self.lines.tail_end(items[i - 1].node.end, column).min(own)
                };
                let start = self.lines.leading_start(own, column, floor);
                let end = self.lines.tail_end(items[i].node.end, column);
                (items[i].dash, start, end)
            })
            .collect();
        // New items go after the last kept item before them, or before the first item.
        let mut after: Option<usize> = None;
        let mut inserts: Vec<(usize, String)> = Vec::new();
        for step in &steps {
            match *step {
                Step::Same(o, _) => after = Some(o),
                Step::Pair(o, n) => {
                    let place = Place::Item {
                        dash: items[o].dash,
                        column,
                    };
                    self.diff(&items[o].node, &old[o], &new[n], place);
                    after = Some(o);
                }
                Step::Remove(_) => {}
                Step::Insert(n) => {
                    let Ok(text) = self.after_dash(&new[n], column) else {
                        self.failed = true;
                        return;
                    };
                    let indent = " ".repeat(column);
                    let (at, line) = match after {
                        Some(o) => (spans[o].2, format!("{indent}-{text}\n")),
                        None if self.lines.opens_line(items[0].dash) => {
                            (spans[0].1, format!("{indent}-{text}\n"))
                        }
                        // Before a first item on its parent's `- ` line: the new item takes
                        // that place and the old one moves to the next line.
                        None => (items[0].dash, format!("-{text}\n{indent}")),
                    };
                    match inserts.last_mut() {
                        Some((p, lines)) if *p == at => lines.push_str(&line),
                        _ => inserts.push((at, line)),
                    }
                }
            }
        }
        self.remove_spans(&spans, &keep);
        for (at, text) in inserts {
            self.insert_lines(at, text);
        }
    }

    // -- writing values, each scalar through the one YAML writer --

    /// A whole `key: value` entry at `column`, ending with a line break.
    fn entry_lines(&self, key: &str, value: &Value, column: usize) -> Result<String, YamlError> {
        let mut out = " ".repeat(column);
        out.push_str(&render_key(key)?);
        out.push(':');
        out.push_str(&self.after_key(value, column)?);
        out.push('\n');
        Ok(out)
    }

    /// What follows `key:` for `value`, the key in `column`; no final line break.
    fn after_key(&self, value: &Value, column: usize) -> Result<String, YamlError> {
        match value {
            Value::Object(map) if !map.is_empty() => {
                let mut out = String::from("\n");
                for key in yaml::written_order(map, false) {
                    out.push_str(&self.entry_lines(
                        key,
                        &map[key.as_str()],
                        column + self.style.step,
                    )?);
                }
                out.pop();
                Ok(out)
            }
            Value::Array(items) if !items.is_empty() => {
                let mut out = String::from("\n");
                out.push_str(&self.item_lines(items, column + self.style.seq_offset)?);
                out.pop();
                Ok(out)
            }
            scalar => scalar_after(scalar, column),
        }
    }

    /// Sequence items with their `-` in `column`, each line ending with a line break.
    fn item_lines(&self, items: &[Value], column: usize) -> Result<String, YamlError> {
        let mut out = String::new();
        for item in items {
            out.push_str(&" ".repeat(column));
            out.push('-');
            out.push_str(&self.after_dash(item, column)?);
            out.push('\n');
        }
        Ok(out)
    }

    /// What follows `-` for `value`, the `-` in `column`; no final line break.
    fn after_dash(&self, value: &Value, column: usize) -> Result<String, YamlError> {
        let nested = match value {
            Value::Object(map) if !map.is_empty() => {
                let mut out = String::new();
                for key in yaml::written_order(map, false) {
                    out.push_str(&self.entry_lines(key, &map[key.as_str()], column + 2)?);
                }
                out
            }
            Value::Array(items) if !items.is_empty() => self.item_lines(items, column + 2)?,
            scalar => return scalar_after(scalar, column),
        };
        // The first line goes on the `-` line: `- key: value`, `- - item`.
        let mut out = String::from(" ");
        out.push_str(&nested[column + 2..]);
        out.pop();
        Ok(out)
    }
}

/// A scalar as the writer writes it after `key:`: one line, or a block scalar's header and lines.
enum Scalar {
    Inline(String),
    Block { header: String, body: String },
}

fn render_scalar(value: &Value) -> Result<Scalar, YamlError> {
    let text = yaml::to_yaml(&json!({ "k": value }))?;
    let written = || YamlError::Write(format!("unexpected scalar text {text:?}"));
    let rest = text.strip_prefix("k:").ok_or_else(written)?;
    let (first, body) = rest.split_once('\n').ok_or_else(written)?;
    if body.is_empty() {
        let inline = first.strip_prefix(' ').ok_or_else(written)?;
        Ok(Scalar::Inline(inline.to_string()))
    } else {
        Ok(Scalar::Block {
            header: first.to_string(),
            body: body.to_string(),
        })
    }
}

/// What follows `key:` or `-` for a scalar (or an empty collection) whose key or `-` is in
/// `column`; no final line break.
fn scalar_after(value: &Value, column: usize) -> Result<String, YamlError> {
    match render_scalar(value)? {
        Scalar::Inline(text) => Ok(format!(" {text}")),
        Scalar::Block { header, body } => {
            let mut out = header;
            let indent = " ".repeat(column);
            for line in body.lines() {
                out.push('\n');
                if !line.is_empty() {
                    out.push_str(&indent);
                    out.push_str(line);
                }
            }
            Ok(out)
        }
    }
}

/// `s` quoted as a person quoted the string it replaces (`"` or `'`), when that reads back as `s`
/// for every YAML reader: a quoted scalar is always a string, so no YAML 1.1 rule applies. `None`
/// for anything else (the writer's form is used then).
fn requoted(quote: u8, s: &str) -> Option<String> {
    // Line breaks by YAML 1.1's count would be folded inside quotes.
    if s.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        return None;
    }
    match quote {
        b'"' => serde_json::to_string(s).ok(),
        b'\'' if !s.chars().any(char::is_control) => Some(format!("'{}'", s.replace('\'', "''"))),
        _ => None,
    }
}

/// A key as the writer writes it (quoted where a YAML 1.1 reader would misread it).
fn render_key(key: &str) -> Result<String, YamlError> {
    let text = yaml::to_yaml(&json!({ key: 0 }))?;
    match text.strip_suffix(": 0\n") {
        Some(written) if !written.contains('\n') && !written.starts_with('?') => {
            Ok(written.to_string())
        }
        _ => serde_json::to_string(key).map_err(|e| YamlError::Write(e.to_string())),
    }
}

/// Every key of `old` and `new` in the order the writer writes them.
fn key_order(old: &Map<String, Value>, new: &Map<String, Value>, top: bool) -> Vec<String> {
    let mut all = old.clone();
    for key in new.keys() {
        all.entry(key.clone()).or_insert(Value::Null);
    }
    yaml::written_order(&all, top)
        .into_iter()
        .cloned()
        .collect()
}

/// The rank of a top-level key in the written order: `apiVersion`, `kind`, `metadata`, the rest.
fn key_rank_top(key: &str) -> usize {
    let probe: Map<String, Value> = ["apiVersion", "kind", "metadata", key]
        .into_iter()
        .map(|k| (k.to_string(), Value::Null))
        .collect();
    let order = yaml::written_order(&probe, true);
    order
        .iter()
        .position(|k| k.as_str() == key)
        .map_or(usize::MAX, |p| p.min(3))
}

/// One step of aligning an old sequence with a new one.
#[derive(Debug, PartialEq)]
enum Step {
    /// The old item is the new one.
    Same(usize, usize),
    /// The old item becomes the new one (edited in place).
    Pair(usize, usize),
    Remove(usize),
    Insert(usize),
}

/// Past this many item pairs, the middle of two sequences is paired by position only.
const MAX_ALIGN: usize = 40_000;

/// Aligns two sequences: equal ends kept, the longest common run of equal items in between kept,
/// and between those the items paired by position, the rest removed or inserted.
fn align(old: &[Value], new: &[Value]) -> Vec<Step> {
    let shorter = old.len().min(new.len());
    let prefix = (0..shorter).take_while(|i| old[*i] == new[*i]).count();
    let suffix = (0..shorter - prefix)
        .take_while(|i| old[old.len() - 1 - i] == new[new.len() - 1 - i])
        .count();
    let (old_mid, new_mid) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut steps: Vec<Step> = (0..prefix).map(|i| Step::Same(i, i)).collect();
    // The longest common subsequence of the middles (by equality), as anchors.
    let mut anchors = Vec::new();
    let (m, n) = (old_mid.len(), new_mid.len());
    if m > 0 && n > 0 && m * n <= MAX_ALIGN {
        let mut table = vec![0u32; (m + 1) * (n + 1)];
        for i in (0..m).rev() {
            for j in (0..n).rev() {
                table[i * (n + 1) + j] = if old_mid[i] == new_mid[j] {
                    table[(i + 1) * (n + 1) + j + 1] + 1
                } else {
                    table[(i + 1) * (n + 1) + j].max(table[i * (n + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < m && j < n {
            if old_mid[i] == new_mid[j] {
                anchors.push((i, j));
                i += 1;
                j += 1;
            } else if table[(i + 1) * (n + 1) + j] >= table[i * (n + 1) + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    anchors.push((m, n));
    let (mut i, mut j) = (0, 0);
    for (ai, aj) in anchors {
        let paired = (ai - i).min(aj - j);
        for k in 0..paired {
            steps.push(Step::Pair(prefix + i + k, prefix + j + k));
        }
        for k in i + paired..ai {
            steps.push(Step::Remove(prefix + k));
        }
        for k in j + paired..aj {
            steps.push(Step::Insert(prefix + k));
        }
        if ai < m {
            steps.push(Step::Same(prefix + ai, prefix + aj));
        }
        (i, j) = (ai + 1, aj + 1);
    }
    for k in 0..suffix {
        steps.push(Step::Same(old.len() - suffix + k, new.len() - suffix + k));
    }
    steps
}

/// Applies the edits (in any order; deletions may overlap), or `None` when two overlap otherwise.
fn apply(text: &str, mut edits: Vec<Edit>, crlf: bool) -> Option<String> {
    edits.sort_by_key(|e| (e.start, e.end));
    let mut merged: Vec<Edit> = Vec::with_capacity(edits.len());
    for edit in edits {
        if let Some(prev) = merged.last_mut()
            && edit.start < prev.end
        {
            if prev.text.is_empty() && edit.text.is_empty() {
                prev.end = prev.end.max(edit.end);
                continue;
            }
            return None;
        }
        merged.push(edit);
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for edit in merged {
        out.push_str(text.get(at..edit.start)?);
        out.push_str(&with_line_endings(&edit.text, crlf));
        at = edit.end;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of a YAML text (the test's way to write `new`).
    fn value(text: &str) -> Value {
        yaml::parse_documents(text, "t").unwrap().remove(0)
    }

    /// Edits `original` to the value of `target` and checks the result reads as it.
    fn edit(original: &str, target: &str) -> String {
        let new = value(target);
        let out = edit_document(original, &new).unwrap();
        assert_eq!(
            yaml::parse_documents(&out, "out").unwrap(),
            vec![new],
            "{out}"
        );
        out
    }

    const DEPLOYMENT: &str = "\
# The shop's web front end.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web   # used by the Service
    tier: 'front'
spec:
  # Two is enough outside sales.
  replicas: 2 # see runbook
  template:
    spec:
      containers:
        - name: web
          image: \"nginx:1.27\"
          args: [--port, \"8080\"]

        - name: sidecar
          image: envoy:1.30
";

    #[test]
    fn nothing_differs_nothing_changes() {
        let odd = "# c\nb:    1 # x\na:\n    - 'q'\n    -  \"r\"\n\n\nc: {x: 1}\n";
        assert_eq!(edit(odd, odd), odd);
        assert_eq!(edit(DEPLOYMENT, DEPLOYMENT), DEPLOYMENT);
    }

    #[test]
    fn a_changed_scalar_is_a_one_line_diff_keeping_its_comment() {
        let target = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
        let out = edit(DEPLOYMENT, &target);
        assert_eq!(out, target);
        let out = edit(DEPLOYMENT, &DEPLOYMENT.replace("envoy:1.30", "envoy:1.31"));
        assert_eq!(out, DEPLOYMENT.replace("envoy:1.30", "envoy:1.31"));
        // A quoted string stays quoted the person's way.
        let out = edit(DEPLOYMENT, &DEPLOYMENT.replace("nginx:1.27", "nginx:1.28"));
        assert_eq!(out, DEPLOYMENT.replace("nginx:1.27", "nginx:1.28"));
        let out = edit(DEPLOYMENT, &DEPLOYMENT.replace("'front'", "'yes'"));
        assert_eq!(out, DEPLOYMENT.replace("'front'", "'yes'"));
        // Quotes the writer needed go when the new string does not need them.
        assert_eq!(edit("v: \"yes\"\n", "v: maybe\n"), "v: maybe\n");
        assert_eq!(edit("v: \"yes\"\n", "v: 'no'\n"), "v: \"no\"\n");
        // Unless the new value is no string: the writer's form then.
        let out = edit(DEPLOYMENT, &DEPLOYMENT.replace("'front'", "1"));
        assert_eq!(out, DEPLOYMENT.replace("'front'", "1"));
    }

    #[test]
    fn new_scalars_get_the_writers_yaml11_quoting() {
        let original = "a: x # keep\nb: 1\n";
        let new = json!({"a": "yes", "b": "0755"});
        let out = edit_document(original, &new).unwrap();
        assert_eq!(out, "a: \"yes\" # keep\nb: \"0755\"\n");
        let new = json!({"a": "on", "b": "2024-01-01", "c": "1e3"});
        let out = edit_document(original, &new).unwrap();
        assert_eq!(out, "a: \"on\" # keep\nb: \"2024-01-01\"\nc: \"1e3\"\n");
    }

    #[test]
    fn new_keys_go_after_their_siblings_at_their_indentation() {
        let original = "kind: A\nspec:\n    zeta: 1   # z\n    alpha: 2\n# the end\n";
        let out = edit(
            original,
            "kind: A\nspec:\n  zeta: 1\n  alpha: 2\n  mid: {x: [1]}\n",
        );
        assert_eq!(
            out,
            "kind: A\nspec:\n    zeta: 1   # z\n    alpha: 2\n    mid:\n        x:\n        - 1\n# the end\n"
        );
    }

    #[test]
    fn new_keys_take_their_written_place_in_sorted_maps_and_at_the_top() {
        let original = "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: \"1\"\n  c: \"3\"\n";
        let out = edit(
            original,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: '1', b: '2', c: '3', d: '4'}\n",
        );
        assert_eq!(
            out,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: \"1\"\n  b: \"2\"\n  c: \"3\"\n  d: \"4\"\n"
        );
        // Keys in a person's order: the new one goes last.
        let original = "kind: A\nspec:\n  z: 1\n  a: 2\n";
        let out = edit(original, "kind: A\nspec: {z: 1, a: 2, m: 3}\n");
        assert_eq!(out, "kind: A\nspec:\n  z: 1\n  a: 2\n  m: 3\n");
    }

    #[test]
    fn removed_keys_take_their_comment_lines_and_subtree() {
        let target = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
    tier: front
spec:
  template:
    spec:
      containers:
        - name: web
          image: nginx:1.27
          args: [--port, \"8080\"]
        - name: sidecar
          image: envoy:1.30
";
        let out = edit(DEPLOYMENT, target);
        assert_eq!(
            out,
            DEPLOYMENT.replace(
                "  # Two is enough outside sales.\n  replicas: 2 # see runbook\n",
                ""
            )
        );
        let out = edit(
            DEPLOYMENT,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {replicas: 2}\n",
        );
        assert_eq!(
            out,
            "# The shop's web front end.\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  # Two is enough outside sales.\n  replicas: 2 # see runbook\n"
        );
    }

    #[test]
    fn sequences_are_edited_item_by_item_in_their_style() {
        // Same length: the changed item in place.
        let original = "args:\n  - a  # first\n  - b\n  - c\n";
        assert_eq!(
            edit(original, "args: [a, B, c]"),
            "args:\n  - a  # first\n  - B\n  - c\n"
        );
        // An item added in the middle and one at the end, in the sequence's indentation.
        assert_eq!(
            edit(original, "args: [a, x, b, c, {k: v, l: w}]"),
            "args:\n  - a  # first\n  - x\n  - b\n  - c\n  - k: v\n    l: w\n"
        );
        // An item removed with its own comment line.
        let original = "env:\n- name: A\n  value: \"1\"\n# B is legacy\n- name: B\n  value: \"2\"\n- name: C\n";
        assert_eq!(
            edit(original, "env: [{name: A, value: '1'}, {name: C}]"),
            "env:\n- name: A\n  value: \"1\"\n- name: C\n"
        );
        // A key of an item's map, the first one on the `-` line, removed.
        assert_eq!(
            edit(
                original,
                "env: [{value: '1'}, {name: B, value: '2'}, {name: C}]"
            ),
            "env:\n- value: \"1\"\n# B is legacy\n- name: B\n  value: \"2\"\n- name: C\n"
        );
        // Emptied.
        assert_eq!(edit(original, "env: []"), "env: []\n");
        // The first key of an item's map removed and one added before the key moving up.
        assert_eq!(
            edit("- a: 1\n  b: 2\n  n: x\n", "- {c: 3, n: x}\n"),
            "- c: 3\n  n: x\n"
        );
        assert_eq!(
            edit("- b: 1  # b\n  c: 2\n", "- {a: 0, b: 1, c: 2}\n"),
            "- a: 0\n  b: 1  # b\n  c: 2\n"
        );
    }

    #[test]
    fn block_scalars_are_rewritten_and_written() {
        let original = "data:\n  script: |\n    #!/bin/sh\n    echo hi\n\n  other: x\n";
        assert_eq!(
            edit(
                original,
                "data: {script: \"#!/bin/sh\\necho bye\\n\", other: x}"
            ),
            "data:\n  script: |\n    #!/bin/sh\n    echo bye\n\n  other: x\n"
        );
        assert_eq!(
            edit(original, "data: {script: one line, other: x}"),
            "data:\n  script: one line\n\n  other: x\n"
        );
        assert_eq!(
            edit(original, "data: {script: '#!/bin/sh', other: \"a\\nb\"}"),
            "data:\n  script: \"#!/bin/sh\"\n\n  other: |-\n    a\n    b\n"
        );
        let folded = "a: >-\n  folded\n  text\nb: 1\n";
        assert_eq!(
            edit(folded, "a: folded text\nb: 2\n"),
            "a: >-\n  folded\n  text\nb: 2\n"
        );
    }

    #[test]
    fn blank_lines_that_belong_to_a_keep_block_scalar_stay_with_it() {
        let original = "a:\n  s: |+\n    text\n\n  b: 1\n\n  c: 2\n";
        // The blank line after `text` is the scalar's: removing `b` leaves it.
        assert_eq!(
            edit(original, "a: {s: \"text\\n\\n\", c: 2}"),
            "a:\n  s: |+\n    text\n\n  c: 2\n"
        );
        // A value written as a `|+` scalar before a blank line takes that line out.
        assert_eq!(
            edit(original, "a: {s: \"text\\n\\n\", b: \"x\\n\\n\", c: 2}"),
            "a:\n  s: |+\n    text\n\n  b: |+\n    x\n\n  c: 2\n"
        );
    }

    #[test]
    fn an_item_put_before_a_first_item_on_its_parents_dash_line() {
        let original = "- - a  # A\n  - b\n";
        assert_eq!(
            edit(original, "- [z, a, b]\n"),
            "- - z\n  - a  # A\n  - b\n"
        );
    }

    #[test]
    fn crlf_files_stay_crlf() {
        let original = "a: 1\r\nb:\r\n  c: \"x\" # c\r\n";
        assert_eq!(
            edit(original, "a: 1\nb: {c: z, d: [1]}\n"),
            "a: 1\r\nb:\r\n  c: \"z\" # c\r\n  d:\r\n  - 1\r\n"
        );
    }

    #[test]
    fn a_document_without_final_newline_keeps_lacking_it() {
        assert_eq!(edit("a: 1\nb: 2", "a: 1\nb: 3"), "a: 1\nb: 3");
        assert_eq!(edit("a: 1\nb: 2", "a: 1\nb: 2\nc: 3"), "a: 1\nb: 2\nc: 3");
        assert_eq!(edit("a: 1\nb: 2", "a: 1"), "a: 1");
        // The blank line before the removed keys goes with them.
        assert_eq!(edit("a: 1\n\nb: 2\nc: 3", "a: 1"), "a: 1");
        assert_eq!(
            edit("a: |\n  x\n  y", "a: \"x\\ny\\nz\\n\""),
            "a: |\n  x\n  y\n  z"
        );
    }

    #[test]
    fn hashes_inside_quoted_strings_are_not_comments() {
        let original = "a: \"x # not a comment\" # a comment\nb: 'y #z'\n";
        assert_eq!(
            edit(original, "a: 'x # still not'\nb: 'y #z'\n"),
            "a: \"x # still not\" # a comment\nb: 'y #z'\n"
        );
    }

    #[test]
    fn flow_collections_tags_and_aliases_are_written_anew_where_they_change() {
        let original = "# head\nmetadata:\n  labels: {a: b}  # flow\n  name: x\n";
        assert_eq!(
            edit(original, "metadata: {labels: {a: b, c: d}, name: x}"),
            "# head\nmetadata:\n  labels:  # flow\n    a: b\n    c: d\n  name: x\n"
        );
        let original = "a: &x {k: 1}\nb: *x\nc: !!str 12\n";
        let out = edit(original, "a: {k: 1}\nb: {k: 1}\nc: '13'\n");
        assert_eq!(out, "a: &x {k: 1}\nb: *x\nc: \"13\"\n");
        // Changing the anchored value would change the alias too: written anew.
        edit(original, "a: {k: 2}\nb: {k: 1}\nc: '12'\n");
    }

    #[test]
    fn documents_that_cannot_be_edited_are_written_anew_with_their_header() {
        let original = "# kept\n{\"kind\": \"A\", \"x\": 1}\n";
        assert_eq!(edit(original, "kind: A\nx: 2\n"), "# kept\nkind: A\nx: 2\n");
        assert_eq!(
            edit("# only a comment\n", "a: 1"),
            "# only a comment\na: 1\n"
        );
    }

    #[test]
    fn unreadable_text_is_an_error_naming_the_position() {
        let err = edit_document("a: 1\nb: [unclosed\nc: 2\n", &json!({"a": 1})).unwrap_err();
        assert!(matches!(err, EditError::Invalid { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("line "), "{message}");
        let err = edit_document("a: 1\n---\nb: 2\n", &json!({"a": 1})).unwrap_err();
        assert!(
            matches!(err, EditError::NotOneDocument { found: 2 }),
            "{err:?}"
        );
    }

    #[test]
    fn sequences_keep_the_items_that_stay_and_edit_the_ones_that_change() {
        let original = "- a # A\n- b # B\n- c # C\n- d # D\n";
        // b removed, d changed: c keeps its line (and comment), d changes in place.
        assert_eq!(
            edit(original, "- a\n- c\n- D\n"),
            "- a # A\n- c # C\n- D # D\n"
        );
        // An item put before the first.
        assert_eq!(
            edit(original, "- z\n- a\n- b\n- c\n- d\n"),
            "- z\n- a # A\n- b # B\n- c # C\n- d # D\n"
        );
        // The first key of an item removed while the next has its own comment: the comment stays.
        let original = "- name: a\n  # about the image\n  image: x\n";
        assert_eq!(
            edit(original, "- image: x\n"),
            "-\n  # about the image\n  image: x\n"
        );
    }

    // -- property tests: hand-written-looking documents, random edits --

    /// Strings a YAML 1.1 reader misreads unless they are quoted, and multi-line ones.
    const TRAPS: &[&str] = &[
        "yes",
        "no",
        "on",
        "Off",
        "y",
        "n",
        "true",
        "False",
        "~",
        "null",
        "",
        "0755",
        "0x1F",
        "1e3",
        "12:30",
        "2024-01-01",
        "2024-01-01T10:00:00Z",
        "1.0",
        "+1",
        ".inf",
        "- x",
        "a: b",
        "# not a comment",
        "x # y",
        "'q'",
        "\"d\"",
        "line1\nline2\n",
        "a\nb",
        "#!/bin/sh\necho hi\n",
        "  leading\nx\n",
        "trailing\n\n",
        "tab\there",
    ];
    const KEYS: &[&str] = &[
        "name",
        "image",
        "replicas",
        "app",
        "tier",
        "data",
        "enabled",
        "mode",
        "args",
        "env",
        "value",
        "ports",
        "port",
        "labels",
        "x-y",
        "a.b/c",
        "on",
        "yes",
        "0755",
        "with space",
        "#hash",
        "z",
    ];

    fn arb_leaf() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-100_000i64..100_000).prop_map(|n| json!(n)),
            (-4000i64..4000).prop_map(|n| json!(n as f64 / 4.0 + 0.25)),
            proptest::sample::select(TRAPS).prop_map(|s| json!(s)),
            "[a-z][a-z0-9.-]{0,12}".prop_map(Value::String),
            "[ a-z#:'\"-]{0,16}".prop_map(Value::String),
        ]
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        arb_leaf().prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(proptest::sample::select(KEYS), inner, 0..5)
                    .prop_map(|m| Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                    )),
            ]
        })
    }

    fn arb_document() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        (
            proptest::sample::select(vec!["ConfigMap", "Deployment"]),
            "[a-z]{1,8}",
            proptest::collection::btree_map(proptest::sample::select(KEYS), arb_leaf(), 0..4),
            proptest::collection::btree_map(proptest::sample::select(KEYS), arb_value(), 1..6),
        )
            .prop_map(|(kind, name, labels, spec)| {
                json!({
                    "apiVersion": "v1", "kind": kind,
                    "metadata": {"name": name, "labels": labels},
                    "spec": spec,
                })
            })
    }

    type Path = Vec<Seg>;

    #[derive(Clone, Debug, PartialEq)]
    enum Seg {
        Key(String),
        Index(usize),
    }

    /// Writes a value as a person might: comments above keys and items and after scalars, blank
    /// lines, keys in their own order, flow collections here and there, 2 or 4 spaces, indented
    /// or flush sequences. Records each comment with the path it belongs to.
    struct HandWriter {
        rng: u64,
        step: usize,
        seq_offset: usize,
        next: usize,
        comments: Vec<(String, Path)>,
    }

    impl HandWriter {
        fn roll(&mut self, sides: u64) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng % sides
        }

        fn comment(&mut self, prefix: &str, path: &Path) -> String {
            self.next += 1;
            let text = format!("# {prefix}{}", self.next);
            self.comments.push((text.clone(), path.clone()));
            text
        }

        fn scalar(&mut self, value: &Value, column: usize, path: &Path) -> String {
            let mut text = scalar_after(value, column).unwrap();
            if !text.contains('\n') {
                if let Value::String(s) = value
                    && !s.contains('\'')
                    && !text.starts_with(" \"")
                    && !text.starts_with(" '")
                    && self.roll(3) == 0
                {
                    text = format!(" '{s}'");
                }
                if self.roll(3) == 0 {
                    text.push_str("  ");
                    text.push_str(&self.comment("t", path));
                }
            }
            text
        }

        /// What follows `key:` (no final line break).
        fn after_key(&mut self, value: &Value, column: usize, path: &Path) -> String {
            match value {
                Value::Object(m) if !m.is_empty() && self.roll(8) != 0 => {
                    let mut out = String::from("\n");
                    out.push_str(&self.entries(m, column + self.step, path, false));
                    out.pop();
                    out
                }
                Value::Array(a) if !a.is_empty() && self.roll(8) != 0 => {
                    let mut out = String::from("\n");
                    out.push_str(&self.items(a, column + self.seq_offset, path, false));
                    out.pop();
                    out
                }
                Value::Object(_) | Value::Array(_) => {
                    format!(" {}", serde_json::to_string(value).unwrap())
                }
                scalar => self.scalar(scalar, column, path),
            }
        }

        /// What follows `-` (no final line break).
        fn after_dash(&mut self, value: &Value, column: usize, path: &Path) -> String {
            let nested = match value {
                Value::Object(m) if !m.is_empty() => self.entries(m, column + 2, path, true),
                Value::Array(a) if !a.is_empty() => self.items(a, column + 2, path, true),
                scalar => return self.scalar(scalar, column, path),
            };
            let mut out = String::from(" ");
            out.push_str(&nested[column + 2..]);
            out.pop();
            out
        }

        fn entries(
            &mut self,
            map: &Map<String, Value>,
            column: usize,
            path: &Path,
            inline: bool,
        ) -> String {
            let mut keys: Vec<&String> = yaml::written_order(map, path.is_empty());
            if !path.is_empty() && self.roll(3) == 0 {
                keys.reverse();
            }
            let mut out = String::new();
            for (i, key) in keys.into_iter().enumerate() {
                let mut here = path.clone();
                here.push(Seg::Key(key.clone()));
                if !(inline && i == 0) {
                    // (A blank line after a `|+` block scalar would be part of it.)
                    if i > 0 && !out.contains("|+") && self.roll(6) == 0 {
                        out.push('\n');
                    }
                    if self.roll(3) == 0 {
                        out.push_str(&" ".repeat(column));
                        out.push_str(&self.comment("c", &here));
                        out.push('\n');
                    }
                }
                out.push_str(&" ".repeat(column));
                out.push_str(&render_key(key).unwrap());
                out.push(':');
                out.push_str(&self.after_key(&map[key.as_str()], column, &here));
                out.push('\n');
            }
            out
        }

        fn items(&mut self, items: &[Value], column: usize, path: &Path, inline: bool) -> String {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                let mut here = path.clone();
                here.push(Seg::Index(i));
                if !(inline && i == 0) && self.roll(4) == 0 {
                    out.push_str(&" ".repeat(column));
                    out.push_str(&self.comment("i", &here));
                    out.push('\n');
                }
                out.push_str(&" ".repeat(column));
                out.push('-');
                out.push_str(&self.after_dash(item, column, &here));
                out.push('\n');
            }
            out
        }
    }

    fn hand_written(doc: &Value, seed: u64) -> (String, Vec<(String, Path)>) {
        let mut writer = HandWriter {
            rng: seed | 1,
            step: 2,
            seq_offset: 0,
            next: 0,
            comments: Vec::new(),
        };
        writer.step = if writer.roll(3) == 0 { 4 } else { 2 };
        writer.seq_offset = if writer.roll(2) == 0 { 0 } else { writer.step };
        let mut text = String::from("# A document a person keeps.\n");
        text.push_str(&writer.entries(doc.as_object().unwrap(), 0, &Vec::new(), false));
        match writer.roll(8) {
            0 => text = text.replace('\n', "\r\n"),
            1 if reads_as(&text[..text.len() - 1], doc) => {
                text.pop();
            }
            _ => {}
        }
        (text, writer.comments)
    }

    #[derive(Clone, Debug)]
    enum Change {
        Set(Path, Value),
        Remove(Path),
        AddKey(Path, String, Value),
        InsertItem(Path, usize, Value),
    }

    fn at<'v>(value: &'v mut Value, path: &[Seg]) -> &'v mut Value {
        path.iter().fold(value, |v, seg| match seg {
            Seg::Key(k) => &mut v[k.as_str()],
            Seg::Index(i) => &mut v[*i],
        })
    }

    fn get<'v>(value: &'v Value, path: &[Seg]) -> Option<&'v Value> {
        path.iter().try_fold(value, |v, seg| match seg {
            Seg::Key(k) => v.get(k.as_str()),
            Seg::Index(i) => v.get(*i),
        })
    }

    fn paths(value: &Value, here: &mut Path, out: &mut Vec<Path>) {
        out.push(here.clone());
        match value {
            Value::Object(m) => {
                for (k, v) in m {
                    here.push(Seg::Key(k.clone()));
                    paths(v, here, out);
                    here.pop();
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    here.push(Seg::Index(i));
                    paths(v, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }

    /// Up to three changes at places none of which is inside another's.
    fn changes(doc: &Value, picks: &[(usize, u8, Value)]) -> Vec<Change> {
        let mut all = Vec::new();
        paths(doc, &mut Vec::new(), &mut all);
        let mut chosen: Vec<Change> = Vec::new();
        let mut used: Vec<Path> = Vec::new();
        for (pick, kind, value) in picks {
            let path = all[pick % all.len()].clone();
            let container = |p: &Path| p.clone();
            let target = get(doc, &path).unwrap();
            let change = match (kind % 4, target) {
                (0, _) if !path.is_empty() => Change::Set(path.clone(), value.clone()),
                (1, _) if path.len() > 1 => Change::Remove(path.clone()),
                (2, Value::Object(m)) => {
                    let Some(key) = KEYS.iter().find(|k| !m.contains_key(**k)) else {
                        continue;
                    };
                    Change::AddKey(path.clone(), key.to_string(), value.clone())
                }
                (3, Value::Array(a)) => {
                    Change::InsertItem(path.clone(), pick % (a.len() + 1), value.clone())
                }
                _ => continue,
            };
            let region = match &change {
                Change::Set(p, _) | Change::Remove(p) => {
                    let mut parent = p.clone();
                    parent.pop();
                    parent
                }
                Change::AddKey(p, ..) | Change::InsertItem(p, ..) => container(p),
            };
            let touches = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
            if used.iter().any(|u| touches(u, &region))
                || chosen.iter().any(|c| match c {
                    Change::Set(p, _) | Change::Remove(p) => touches(p, &region),
                    _ => false,
                })
            {
                continue;
            }
            used.push(region);
            chosen.push(change);
        }
        chosen
    }

    fn applied(doc: &Value, changes: &[Change]) -> Value {
        let mut new = doc.clone();
        for change in changes {
            match change {
                Change::Set(p, v) => *at(&mut new, p) = v.clone(),
                Change::Remove(p) => {
                    let (last, parent) = p.split_last().unwrap();
                    match (at(&mut new, parent), last) {
                        (Value::Object(m), Seg::Key(k)) => {
                            m.remove(k);
                        }
                        (Value::Array(a), Seg::Index(i)) => {
                            a.remove(*i);
                        }
                        _ => unreachable!(),
                    }
                }
                Change::AddKey(p, k, v) => {
                    at(&mut new, p)
                        .as_object_mut()
                        .unwrap()
                        .insert(k.clone(), v.clone());
                }
                Change::InsertItem(p, i, v) => at(&mut new, p)
                    .as_array_mut()
                    .unwrap()
                    .insert(*i, v.clone()),
            }
        }
        new
    }

    /// Whether a comment that belongs to `path` may go with the changes: it is inside what a
    /// change replaced, or it belongs to what a change removed (or to an item equal to it).
    fn may_go(doc: &Value, path: &Path, changes: &[Change]) -> bool {
        changes.iter().any(|change| match change {
            Change::Set(p, _) => path.len() > p.len() && path.starts_with(p),
            Change::Remove(p) => {
                if path.starts_with(p) {
                    return true;
                }
                // An equal item elsewhere in the same sequence may be the one removed.
                let (Some(Seg::Index(_)), Some(Seg::Index(_))) = (p.last(), path.get(p.len() - 1))
                else {
                    return false;
                };
                path[..p.len() - 1] == p[..p.len() - 1] && get(doc, &path[..p.len()]) == get(doc, p)
            }
            _ => false,
        })
    }

    proptest::proptest! {
        #[test]
        fn damaged_documents_give_an_error_or_the_new_value_never_a_panic(
            doc in arb_document(),
            seed in proptest::prelude::any::<u64>(),
            cuts in proptest::collection::vec(
                (proptest::prelude::any::<usize>(), "[ \n:#\\-|>'\"{}\\[\\],&*!%@`a-z0-9\t]{0,3}"),
                1..4,
            ),
            new in arb_document(),
        ) {
            let (mut text, _) = hand_written(&doc, seed);
            for (at, insert) in &cuts {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let end = (at + insert.len() % 3).min(text.len());
                let end = (end..=text.len()).find(|e| text.is_char_boundary(*e)).unwrap_or(at);
                text.replace_range(at..end, insert);
            }
            if let Ok(out) = edit_document(&text, &new) {
                proptest::prop_assert!(reads_as(&out, &new), "{}\n--- became ---\n{}", text, out);
            }
        }

        #[test]
        fn the_agents_own_documents_edit_into_what_the_writer_writes(
            doc in arb_document(),
            picks in proptest::collection::vec(
                (proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), arb_value()),
                1..4,
            ),
        ) {
            // A file the agent wrote, edited, is the file it would write: no drift in style.
            let new = applied(&doc, &changes(&doc, &picks));
            let written = yaml::to_yaml(&doc).unwrap();
            let out = edit_document(&written, &new).unwrap();
            proptest::prop_assert_eq!(out, yaml::to_yaml(&new).unwrap(), "from\n{}", written);
        }

        #[test]
        fn one_document_edited_in_a_file_leaves_the_others_byte_identical(
            docs in proptest::collection::vec((arb_document(), proptest::prelude::any::<u64>()), 2..5),
            which in proptest::prelude::any::<usize>(),
            picks in proptest::collection::vec(
                (proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), arb_value()),
                1..4,
            ),
        ) {
            use crate::manifest::documents;
            // Written as people write them, one line ending for the whole file.
            let texts: Vec<String> = docs
                .iter()
                .map(|(doc, seed)| {
                    let (text, _) = hand_written(doc, *seed);
                    let mut text = text.replace("\r\n", "\n");
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text
                })
                .collect();
            let file = texts.join("---\n");
            let spans = documents::split(&file);
            proptest::prop_assert_eq!(spans.len(), docs.len());
            let k = which % docs.len();
            let old = &docs[k].0;
            let new = applied(old, &changes(old, &picks));
            let edited = edit_document(spans[k].of(&file), &new).unwrap();
            let out = documents::replace(&file, &spans[k], &edited);
            let after = documents::split(&out);
            proptest::prop_assert_eq!(after.len(), docs.len());
            proptest::prop_assert_eq!(&out[..after[k].text.start], &file[..spans[k].text.start]);
            proptest::prop_assert_eq!(&out[after[k].text.end..], &file[spans[k].text.end..]);
            let mut want: Vec<Value> = docs.iter().map(|(d, _)| d.clone()).collect();
            want[k] = new;
            proptest::prop_assert_eq!(yaml::parse_documents(&out, "file").unwrap(), want, "{}", out);
        }

        #[test]
        fn random_edits_of_hand_written_documents_read_back_and_keep_the_rest(
            doc in arb_document(),
            seed in proptest::prelude::any::<u64>(),
            picks in proptest::collection::vec(
                (proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), arb_value()),
                1..4,
            ),
        ) {
            let (text, comments) = hand_written(&doc, seed);
            proptest::prop_assert_eq!(
                yaml::parse_documents(&text, "t").unwrap(), vec![doc.clone()], "{}", text
            );
            proptest::prop_assert_eq!(edit_document(&text, &doc).unwrap(), text.clone());
            let changes = changes(&doc, &picks);
            let new = applied(&doc, &changes);
            let out = edit_document(&text, &new).unwrap();
            proptest::prop_assert_eq!(
                yaml::parse_documents(&out, "out").unwrap(), vec![new.clone()],
                "{}\n--- became ---\n{}", text, out
            );
            for (comment, path) in &comments {
                if !may_go(&doc, path, &changes) {
                    proptest::prop_assert!(
                        out.contains(comment.as_str()),
                        "{comment} of {path:?} lost by {changes:?}\n{text}\n--- became ---\n{out}"
                    );
                }
            }
            proptest::prop_assert_eq!(text.contains("\r\n"), out.contains("\r\n"));
            // No final line break stays so, unless the last value needs one (`|+`).
            if !text.ends_with('\n') && out.ends_with('\n') {
                let trimmed = out.trim_end_matches(['\r', '\n']);
                proptest::prop_assert!(!reads_as(trimmed, &new), "{}", out);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_gives_an_answer_not_a_panic(text in "[ a-z:#\\-\\[\\]{}|>&*!'\"\n]{0,60}") {
            let _ = edit_document(&text, &json!({"a": [1, {"b": "c"}]}));
        }
    }
}
