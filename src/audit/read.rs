//! Reading audit input: JSON lines (log backend), EventList/Event JSON or YAML documents
//! (webhook backend, captures), gzip detected by magic bytes; malformed entries are reported.

use super::AuditError;
use super::event::AuditEvent;
use crate::manifest::object::json_type;
use crate::manifest::yaml::YamlError;
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Cursor, Read};

/// The longest JSON line read; a longer line is reported as malformed and skipped.
pub const MAX_LINE_BYTES: u64 = 256 * 1024 * 1024;

/// How many malformed entries may come before the first audit event; past that (or at the end
/// of an input that had none) the input is not audit data.
const MAX_LEADING_MALFORMED: usize = 1000;

/// Where in its input an event or a malformed entry was (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// A line of JSON lines input; `item` is the index in an EventList on that line.
    Line { line: u64, item: Option<usize> },
    /// A JSON or YAML document; `item` is the index in its EventList.
    Document {
        document: usize,
        item: Option<usize>,
    },
}

impl Position {
    fn with_item(self, index: usize) -> Self {
        match self {
            Self::Line { line, .. } => Self::Line {
                line,
                item: Some(index + 1),
            },
            Self::Document { document, .. } => Self::Document {
                document,
                item: Some(index + 1),
            },
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let item = match self {
            Self::Line { line, item } => {
                write!(f, "line {line}")?;
                item
            }
            Self::Document { document, item } => {
                write!(f, "document {document}")?;
                item
            }
        };
        match item {
            Some(i) => write!(f, ", item {i}"),
            None => Ok(()),
        }
    }
}

/// An entry of the input that is not an audit event; reading goes on past it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    pub input: String,
    pub position: Position,
    pub message: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.input, self.position, self.message)
    }
}

/// One entry of audit input, in input order.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Event {
        position: Position,
        event: Box<AuditEvent>,
    },
    Malformed(Malformed),
}

/// Everything read from one input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditInput {
    pub events: Vec<AuditEvent>,
    pub malformed: Vec<Malformed>,
}

/// Reads a whole audit input (see [`AuditReader`] for the formats). Malformed entries are
/// collected, not fatal; an input that cannot be read or holds no audit event at all is an error.
pub fn read_events(input: impl Read, source: &str) -> Result<AuditInput, AuditError> {
    let mut out = AuditInput::default();
    for entry in AuditReader::new(input, source) {
        match entry? {
            Entry::Event { event, .. } => out.events.push(*event),
            Entry::Malformed(m) => out.malformed.push(m),
        }
    }
    Ok(out)
}

/// Streams the entries of an audit input, one event at a time for JSON lines and one document
/// at a time for JSON documents (YAML is read whole). Formats, detected from the content:
/// - gzip (any of the below, possibly several concatenated members), by its magic bytes;
/// - JSON lines, one Event (or EventList) per line: the log backend; a malformed line is an
///   [`Entry::Malformed`] and reading goes on;
/// - JSON documents (pretty-printed `EventList`, `Event` or an array of events): the webhook
///   backend and captures; a JSON syntax error ends the input with an error;
/// - YAML documents of the same.
///
/// Events may lack `kind`/`apiVersion`; when present they must be `Event`/`EventList` of
/// `audit.k8s.io/*`. Without `kind`, an entry must at least have `verb` and `stage`.
/// After an error the iterator ends.
pub struct AuditReader<'a> {
    input: String,
    mode: Mode<'a>,
    pending: VecDeque<Entry>,
    held: Vec<Malformed>,
    seen_event: bool,
    failed: bool,
}

enum Mode<'a> {
    Start(Box<dyn BufRead + 'a>),
    Lines {
        reader: Box<dyn BufRead + 'a>,
        line: u64,
    },
    Json {
        stream:
            serde_json::StreamDeserializer<'a, serde_json::de::IoRead<Box<dyn Read + 'a>>, Value>,
        document: usize,
    },
    Yaml {
        docs: std::vec::IntoIter<Value>,
        document: usize,
    },
    Done,
}

impl<'a> AuditReader<'a> {
    /// `source` names the input in every message (a file name, `stdin`, a request).
    pub fn new(input: impl Read + 'a, source: &str) -> Self {
        Self {
            input: source.to_string(),
            mode: Mode::Start(Box::new(BufReader::new(input))),
            pending: VecDeque::new(),
            held: Vec::new(),
            seen_event: false,
            failed: false,
        }
    }

    fn io_error(&self, position: Option<Position>, error: std::io::Error) -> AuditError {
        AuditError::Io {
            input: self.input.clone(),
            position,
            error,
        }
    }

    /// Decides the format from the first bytes, then reads what the format reads first.
    fn start(&mut self, mut reader: Box<dyn BufRead + 'a>) -> Result<(), AuditError> {
        let gzip = reader
            .fill_buf()
            .map_err(|e| self.io_error(None, e))?
            .starts_with(&[0x1f, 0x8b]);
        if gzip {
            reader = Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(reader)));
        }
        let bom = reader
            .fill_buf()
            .map_err(|e| self.io_error(None, e))?
            .starts_with(b"\xef\xbb\xbf");
        if bom {
            reader.consume(3);
        }
        // The first line with content decides: a whole JSON object or array on it means JSON
        // lines; an opening brace or bracket alone means JSON documents; anything else is YAML.
        let mut head = Vec::new();
        let mut line_no = 0u64;
        let first = loop {
            let mut line = Vec::new();
            let n = read_line(&mut reader, &mut line).map_err(|e| self.io_error(None, e))?;
            if n == LineRead::Eof {
                break None;
            }
            line_no += 1;
            if n == LineRead::TooLong || !trim_ascii(&line).is_empty() {
                break Some((line, n));
            }
            head.extend_from_slice(&line);
        };
        let Some((line, read)) = first else {
            self.mode = Mode::Done;
            return Ok(());
        };
        let content = trim_ascii(&line);
        let one_line_json = read == LineRead::TooLong
            || (content.len() >= 2
                && matches!(
                    (content.first(), content.last()),
                    (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
                ));
        if one_line_json {
            self.mode = Mode::Lines {
                reader,
                line: line_no,
            };
            self.line_entry(line_no, &line, read);
            return Ok(());
        }
        head.extend_from_slice(&line);
        let mut rest: Box<dyn Read + 'a> = Box::new(Cursor::new(head).chain(reader));
        if matches!(content.first(), Some(b'{') | Some(b'[')) {
            self.mode = Mode::Json {
                stream: serde_json::Deserializer::from_reader(rest).into_iter::<Value>(),
                document: 0,
            };
            return Ok(());
        }
        let mut bytes = Vec::new();
        rest.read_to_end(&mut bytes)
            .map_err(|e| self.io_error(None, e))?;
        let text = String::from_utf8(bytes).map_err(|e| AuditError::NotText {
            input: self.input.clone(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        let docs = crate::manifest::yaml::parse_documents(&text, &self.input).map_err(|e| {
            AuditError::Yaml {
                input: self.input.clone(),
                message: match e {
                    YamlError::Parse { message, .. } => message,
                    other => other.to_string(),
                },
            }
        })?;
        self.mode = Mode::Yaml {
            docs: docs.into_iter(),
            document: 0,
        };
        Ok(())
    }

    fn line_entry(&mut self, line: u64, bytes: &[u8], read: LineRead) {
        let position = Position::Line { line, item: None };
        if read == LineRead::TooLong {
            self.malformed(
                position,
                format!("line longer than {MAX_LINE_BYTES} bytes, skipped"),
            );
            return;
        }
        let content = trim_ascii(bytes);
        if content.is_empty() {
            return;
        }
        match serde_json::from_slice::<Value>(content) {
            Ok(value) => self.value(value, position),
            Err(e) => self.malformed(position, format!("invalid JSON: {e}")),
        }
    }

    /// Turns one top-level value (an Event, an EventList or an array of events) into entries.
    fn value(&mut self, value: Value, position: Position) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    self.event(item, position.with_item(i));
                }
            }
            Value::Object(mut map)
                if map.get("kind").and_then(Value::as_str) == Some("EventList") =>
            {
                if let Some(problem) = api_version_problem(map.get("apiVersion")) {
                    self.malformed(position, problem);
                    return;
                }
                match map.remove("items") {
                    Some(Value::Array(items)) => {
                        for (i, item) in items.into_iter().enumerate() {
                            self.event(item, position.with_item(i));
                        }
                    }
                    Some(Value::Null) | None => {}
                    Some(other) => self.malformed(
                        position,
                        format!("EventList items is {}, not a list", json_type(&other)),
                    ),
                }
            }
            other => self.event(other, position),
        }
    }

    fn event(&mut self, value: Value, position: Position) {
        let Value::Object(map) = &value else {
            self.malformed(
                position,
                format!("not an audit event: found {}", json_type(&value)),
            );
            return;
        };
        match map.get("kind") {
            Some(Value::String(kind)) if kind == "Event" => {}
            None | Some(Value::Null) => {
                if !(map.contains_key("verb") && map.contains_key("stage")) {
                    self.malformed(
                        position,
                        "not an audit event: no kind, verb or stage".to_string(),
                    );
                    return;
                }
            }
            Some(kind) => {
                self.malformed(
                    position,
                    format!("not an audit event: kind {}", short(kind)),
                );
                return;
            }
        }
        if let Some(problem) = api_version_problem(map.get("apiVersion")) {
            self.malformed(position, problem);
            return;
        }
        match serde_json::from_value::<AuditEvent>(value) {
            Ok(event) => {
                self.seen_event = true;
                self.pending
                    .extend(self.held.drain(..).map(Entry::Malformed));
                self.pending.push_back(Entry::Event {
                    position,
                    event: Box::new(event),
                });
            }
            Err(e) => self.malformed(position, format!("not an audit event: {e}")),
        }
    }

    fn malformed(&mut self, position: Position, message: String) {
        let m = Malformed {
            input: self.input.clone(),
            position,
            message,
        };
        if self.seen_event {
            self.pending.push_back(Entry::Malformed(m));
        } else {
            self.held.push(m);
        }
    }

    /// Reads the next line or document into `pending`; false at the end of the input.
    fn advance(&mut self) -> Result<bool, AuditError> {
        match std::mem::replace(&mut self.mode, Mode::Done) {
            Mode::Start(reader) => {
                self.start(reader)?;
                Ok(true)
            }
            Mode::Lines { mut reader, line } => {
                let mut buf = Vec::new();
                let line = line + 1;
                let read = read_line(&mut reader, &mut buf)
                    .map_err(|e| self.io_error(Some(Position::Line { line, item: None }), e))?;
                if read == LineRead::Eof {
                    return Ok(false);
                }
                self.mode = Mode::Lines { reader, line };
                self.line_entry(line, &buf, read);
                Ok(true)
            }
            Mode::Json {
                mut stream,
                document,
            } => {
                let document = document + 1;
                match stream.next() {
                    None => Ok(false),
                    Some(Ok(value)) => {
                        self.mode = Mode::Json { stream, document };
                        self.value(
                            value,
                            Position::Document {
                                document,
                                item: None,
                            },
                        );
                        Ok(true)
                    }
                    Some(Err(e)) if e.is_io() => Err(self.io_error(
                        Some(Position::Document {
                            document,
                            item: None,
                        }),
                        std::io::Error::other(e),
                    )),
                    Some(Err(e)) => {
                        let (line, column) = (e.line(), e.column());
                        let message = e.to_string();
                        let suffix = format!(" at line {line} column {column}");
                        Err(AuditError::Json {
                            input: self.input.clone(),
                            document,
                            line,
                            column,
                            message: message
                                .strip_suffix(&suffix)
                                .unwrap_or(&message)
                                .to_string(),
                        })
                    }
                }
            }
            Mode::Yaml { mut docs, document } => {
                let document = document + 1;
                match docs.next() {
                    None => Ok(false),
                    Some(value) => {
                        self.mode = Mode::Yaml { docs, document };
                        self.value(
                            value,
                            Position::Document {
                                document,
                                item: None,
                            },
                        );
                        Ok(true)
                    }
                }
            }
            Mode::Done => Ok(false),
        }
    }

    fn not_audit_data(&mut self) -> AuditError {
        let count = self.held.len();
        let first = self.held.drain(..).next();
        AuditError::NotAuditData {
            input: self.input.clone(),
            count,
            first: first
                .map(|m| format!("{}: {}", m.position, m.message))
                .unwrap_or_default(),
        }
    }
}

impl Iterator for AuditReader<'_> {
    type Item = Result<Entry, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                return Some(Ok(entry));
            }
            if self.failed {
                return None;
            }
            if !self.seen_event && self.held.len() >= MAX_LEADING_MALFORMED {
                self.failed = true;
                return Some(Err(self.not_audit_data()));
            }
            match self.advance() {
                Ok(true) => {}
                Ok(false) => {
                    self.failed = true;
                    if !self.held.is_empty() {
                        return Some(Err(self.not_audit_data()));
                    }
                    return None;
                }
                Err(e) => {
                    self.failed = true;
                    self.mode = Mode::Done;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineRead {
    Eof,
    Line,
    TooLong,
}

/// Reads one line (with its `\n`) of at most [`MAX_LINE_BYTES`]; the rest of a longer line is
/// skipped.
fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<LineRead> {
    let n = Read::take(&mut *reader, MAX_LINE_BYTES).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(LineRead::Eof);
    }
    if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE_BYTES {
        reader.skip_until(b'\n')?;
        buf.clear();
        return Ok(LineRead::TooLong);
    }
    Ok(LineRead::Line)
}

fn api_version_problem(api_version: Option<&Value>) -> Option<String> {
    match api_version {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) if v.starts_with("audit.k8s.io/") => None,
        Some(other) => Some(format!("not an audit event: apiVersion {}", short(other))),
    }
}

/// A value quoted for a message, cut to 80 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<AuditInput, AuditError> {
        read_events(text.as_bytes(), "test")
    }

    const EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"}}"#;

    #[test]
    fn json_lines_with_a_malformed_line() {
        let text = format!("{EV}\n\n{{not json}}\n{EV}\r\n{{\"kind\":\"Pod\"}}\n");
        let got = read(&text).unwrap();
        assert_eq!(got.events.len(), 2);
        assert_eq!(got.malformed.len(), 2);
        assert_eq!(
            got.malformed[0].position,
            Position::Line {
                line: 3,
                item: None
            }
        );
        assert!(
            got.malformed[0]
                .to_string()
                .starts_with("test: line 3: invalid JSON")
        );
        assert_eq!(
            got.malformed[1].to_string(),
            "test: line 5: not an audit event: kind \"Pod\""
        );
    }

    #[test]
    fn leading_malformed_lines_come_before_the_first_event() {
        let text = format!("[1]\n{EV}\n");
        let entries: Vec<_> = AuditReader::new(text.as_bytes(), "t")
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            matches!(&entries[0], Entry::Malformed(m) if m.position == Position::Line { line: 1, item: Some(1) })
        );
        assert!(matches!(
            &entries[1],
            Entry::Event {
                position: Position::Line {
                    line: 2,
                    item: None
                },
                ..
            }
        ));
    }

    #[test]
    fn event_list_documents_json_and_yaml() {
        let json = format!(
            "{{\n \"kind\": \"EventList\", \"apiVersion\": \"audit.k8s.io/v1\",\n \"items\": [{EV}, {EV}, 7]\n}}\n{EV}"
        );
        let got = read(&json).unwrap();
        assert_eq!(got.events.len(), 3);
        assert_eq!(
            got.malformed[0].position,
            Position::Document {
                document: 1,
                item: Some(3)
            }
        );
        let yaml = "kind: EventList\napiVersion: audit.k8s.io/v1\nitems:\n- stage: ResponseComplete\n  verb: get\n---\nstage: ResponseComplete\nverb: create\n";
        let got = read(yaml).unwrap();
        assert_eq!(got.events.len(), 2);
        assert_eq!(got.events[1].verb(), Some("create"));
    }

    #[test]
    fn one_line_event_list_is_expanded() {
        let text = format!("{{\"kind\":\"EventList\",\"items\":[{EV},{EV}]}}\n");
        assert_eq!(read(&text).unwrap().events.len(), 2);
    }

    #[test]
    fn not_audit_data_is_an_error_naming_the_input() {
        for text in [
            "hello world\n",
            "{\"kind\":\"Pod\"}\n",
            "kind: AdmissionReview\napiVersion: admission.k8s.io/v1\n",
            "{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"reason\":\"Pulled\"}\n",
        ] {
            let err = read(text).unwrap_err();
            assert!(
                matches!(err, AuditError::NotAuditData { .. }),
                "{text}: {err}"
            );
            assert!(err.to_string().starts_with("test: not audit data"), "{err}");
        }
        assert!(matches!(
            read_events(&[0xff, 0xfe, 0x00][..], "bin").unwrap_err(),
            AuditError::NotText { .. }
        ));
        let err = read("{\n \"kind\": \"EventList\",\n \"items\": [oops]\n}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("test: document 1: invalid JSON at line 3"),
            "{err}"
        );
        let err = read("a: [unclosed\n").unwrap_err();
        assert!(err.to_string().starts_with("test: invalid YAML"), "{err}");
    }

    #[test]
    fn empty_input_is_empty() {
        assert_eq!(read("").unwrap(), AuditInput::default());
        assert_eq!(read("\n  \n").unwrap(), AuditInput::default());
    }
}
