//! SOPS documents with age: a Secret written as `sops --encrypt --age R…
//! --encrypted-regex '^(data|stringData)$'` (sops 3.x) writes it, which `sops --decrypt` and
//! Flux's kustomize-controller read — and read back with an age identity.
//!
//! The format, as getsops/sops implements it (`sops.go`, `aes/cipher.go`, `stores/`,
//! `age/keysource.go`): a random 32-byte data key; every value whose key path has a component
//! matching the encrypted regex becomes `ENC[AES256_GCM,data:…,iv:…,tag:…,type:str]` (AES-256-GCM,
//! 32-byte IV, the key path joined with `:` plus a trailing `:` as additional data; an empty
//! string stays empty); the MAC is the upper-case hex SHA-512 over every value of the tree in
//! file order (encrypted or not, nulls skipped), itself encrypted with the data key and the
//! `lastmodified` timestamp as additional data; the data key is age-encrypted (ASCII armor) to
//! each recipient. Metadata stays in clear, so paths, names and the hash annotation are readable.

use crate::manifest::yaml::{YamlError, to_yaml, written_order};
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};
use std::io::{Read, Write};

/// The top-level key of the SOPS metadata block.
pub const SOPS_KEY: &str = "sops";
/// What `sops` is told for Kubernetes Secrets: only `data` and `stringData` are encrypted.
pub const ENCRYPTED_REGEX: &str = "^(data|stringData)$";
/// The keys [`ENCRYPTED_REGEX`] matches (a path with one of them as a component is encrypted).
const ENCRYPTED_KEYS: [&str; 2] = ["data", "stringData"];
/// The sops release whose format the agent writes (`version` in the metadata block).
pub const SOPS_VERSION: &str = "3.9.0";

/// AES-256-GCM with the 32-byte nonce sops uses.
type Cipher = aes_gcm::AesGcm<Aes256, U32>;
const TAG_LEN: usize = 16;

/// Encrypting or decrypting a SOPS document failed. Messages never carry a value or a key.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("age recipient {0:?} is not an age X25519 recipient (age1…)")]
    BadRecipient(String),
    #[error("no age recipient given")]
    NoRecipients,
    #[error("age identity {what} is not an age X25519 identity (AGE-SECRET-KEY-1…)")]
    BadIdentity { what: String },
    #[error("cannot encrypt the data key to {recipient}: {message}")]
    WrapKey { recipient: String, message: String },
    #[error("not a SOPS document with age keys: {0}")]
    NotSops(&'static str),
    #[error("none of the given age identities decrypts the data key (recipients: {recipients})")]
    NoMatchingIdentity { recipients: String },
    #[error("value at {path}: {problem}")]
    Value { path: String, problem: &'static str },
    #[error(
        "the MAC does not match: the document was changed after it was encrypted (or lists its keys in another order than the agent writes them)"
    )]
    MacMismatch,
    #[error(transparent)]
    Yaml(#[from] YamlError),
}

/// The age recipients a destination encrypts to, parsed and checked.
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl Recipients {
    /// Parses `age1…` recipients; at least one.
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, SopsError> {
        let parsed = texts
            .into_iter()
            .map(|t| {
                t.trim()
                    .parse::<age::x25519::Recipient>()
                    .map_err(|_| SopsError::BadRecipient(t.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(SopsError::NoRecipients);
        }
        Ok(Self(parsed))
    }
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(ToString::to_string))
            .finish()
    }
}

/// Age identities that can open documents (an age key file: `AGE-SECRET-KEY-1…` lines,
/// `#` comments).
pub struct Identities(Vec<age::x25519::Identity>);

impl Identities {
    /// Parses the text of an age key file; `what` names it in errors (never its content).
    pub fn parse(text: &str, what: &str) -> Result<Self, SopsError> {
        let bad = || SopsError::BadIdentity {
            what: what.to_string(),
        };
        let parsed = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.parse::<age::x25519::Identity>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(bad());
        }
        Ok(Self(parsed))
    }
}

/// Names the public keys only.
impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Identities")
            .field(
                &self
                    .0
                    .iter()
                    .map(|i| i.to_public().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// True when a document is a SOPS document (carries the `sops` metadata block).
pub fn is_sops(doc: &Value) -> bool {
    doc.get(SOPS_KEY).is_some_and(Value::is_object)
}

/// `doc` (a sanitized Secret) as the SOPS document the agent commits, as YAML text: the
/// document's values under `data`/`stringData` encrypted, everything else in clear, then the
/// `sops` block. `now` becomes `lastmodified`. Ciphertexts differ on every call.
pub fn encrypt(
    doc: &Value,
    recipients: &Recipients,
    now: jiff::Timestamp,
) -> Result<String, SopsError> {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let cipher = Cipher::new(&key.into());
    let (mut tree, mut mac, mut failure) = (without_metadata(doc), Sha512::new(), None);
    walk(&mut tree, &mut Vec::new(), true, &mut |value, path| {
        let Some(plain) = leaf_bytes(value) else {
            return;
        };
        mac.update(&plain.bytes);
        if failure.is_none() && encrypted_path(path) && !plain.bytes.is_empty() {
            match seal(&cipher, &plain.bytes, &aad(path), plain.kind) {
                Ok(text) => *value = Value::String(text),
                Err(problem) => failure = Some(value_error(path, problem)),
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let last_modified = rfc3339(now);
    let mac_hex = hex_upper(&mac.finalize());
    let mac_enc = seal(&cipher, mac_hex.as_bytes(), &last_modified, "str").map_err(|problem| {
        SopsError::Value {
            path: "sops.mac".into(),
            problem,
        }
    })?;
    let mut age_keys = Vec::new();
    for recipient in &recipients.0 {
        age_keys.push(json!({
            "recipient": recipient.to_string(),
            "enc": wrap_key(&key, recipient)?,
        }));
    }
    let block = json!({ SOPS_KEY: {
        "age": age_keys,
        "encrypted_regex": ENCRYPTED_REGEX,
        "lastmodified": last_modified,
        "mac": mac_enc,
        "version": SOPS_VERSION,
    }});
    // The metadata block goes last, as sops writes it; the tree keeps the agent's key order,
    // which is the order the MAC was taken in.
    Ok(format!("{}{}", to_yaml(&tree)?, to_yaml(&block)?))
}

/// The document in clear: every encrypted value decrypted with the data key one of
/// `identities` opens, the MAC checked, the `sops` block removed.
pub fn decrypt(doc: &Value, identities: &Identities) -> Result<Value, SopsError> {
    let meta = doc
        .get(SOPS_KEY)
        .and_then(Value::as_object)
        .ok_or(SopsError::NotSops("no sops block"))?;
    let key = data_key(meta, identities)?;
    let cipher = Cipher::new(&key.into());
    let last_modified = meta
        .get("lastmodified")
        .and_then(Value::as_str)
        .ok_or(SopsError::NotSops("no sops.lastmodified"))?;
    let mac_enc = meta
        .get("mac")
        .and_then(Value::as_str)
        .ok_or(SopsError::NotSops("no sops.mac"))?;
    let (mut tree, mut mac, mut failure) = (without_metadata(doc), Sha512::new(), None);
    walk(&mut tree, &mut Vec::new(), true, &mut |value, path| {
        if failure.is_some() {
            return;
        }
        if encrypted_path(path)
            && let Some(text) = value.as_str()
            && !text.is_empty()
        {
            match open(&cipher, text, &aad(path)) {
                Ok(plain) => *value = plain,
                Err(problem) => {
                    failure = Some(value_error(path, problem));
                    return;
                }
            }
        }
        if let Some(plain) = leaf_bytes(value) {
            mac.update(&plain.bytes);
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let recorded = open(&cipher, mac_enc, last_modified).map_err(|_| SopsError::MacMismatch)?;
    let computed = hex_upper(&mac.finalize());
    if recorded
        .as_str()
        .is_none_or(|r| !r.eq_ignore_ascii_case(&computed))
    {
        return Err(SopsError::MacMismatch);
    }
    Ok(tree)
}

/// The document without its `sops` block: the tree the values and the MAC are about.
fn without_metadata(doc: &Value) -> Value {
    let mut tree = doc.clone();
    if let Some(map) = tree.as_object_mut() {
        map.remove(SOPS_KEY);
    }
    tree
}

fn value_error(path: &[String], problem: &'static str) -> SopsError {
    SopsError::Value {
        path: path.join("."),
        problem,
    }
}

/// Visits every leaf in the order the YAML writer lists it; the path holds map keys only
/// (list items add nothing, as in sops).
fn walk(
    value: &mut Value,
    path: &mut Vec<String>,
    top: bool,
    visit: &mut dyn FnMut(&mut Value, &[String]),
) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = written_order(map, top).into_iter().cloned().collect();
            for key in keys {
                path.push(key.clone());
                if let Some(child) = map.get_mut(&key) {
                    walk(child, path, false, visit);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, path, false, visit);
            }
        }
        leaf => visit(leaf, path),
    }
}

fn encrypted_path(path: &[String]) -> bool {
    path.iter().any(|p| ENCRYPTED_KEYS.contains(&p.as_str()))
}

fn aad(path: &[String]) -> String {
    format!("{}:", path.join(":"))
}

/// A leaf as sops hashes and encrypts it (`ToBytes`), and its type tag; `None` for null.
struct Leaf {
    bytes: Vec<u8>,
    kind: &'static str,
}

fn leaf_bytes(value: &Value) -> Option<Leaf> {
    let (bytes, kind) = match value {
        Value::String(s) => (s.as_bytes().to_vec(), "str"),
        Value::Bool(b) => (if *b { "True" } else { "False" }.into(), "bool"),
        Value::Number(n) if n.is_i64() || n.is_u64() => (n.to_string().into_bytes(), "int"),
        // Go's strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent.
        Value::Number(n) => (format!("{}", n.as_f64()?).into_bytes(), "float"),
        _ => return None,
    };
    Some(Leaf { bytes, kind })
}

fn seal(cipher: &Cipher, plain: &[u8], aad: &str, kind: &str) -> Result<String, &'static str> {
    let mut iv = [0u8; 32];
    OsRng.fill_bytes(&mut iv);
    let sealed = cipher
        .encrypt(
            &iv.into(),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "AES-GCM encryption failed")?;
    let (data, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    Ok(format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        B64.encode(data),
        B64.encode(iv),
        B64.encode(tag)
    ))
}

fn open(cipher: &Cipher, text: &str, aad: &str) -> Result<Value, &'static str> {
    const NOT_ENC: &str = "not an ENC[AES256_GCM,…] value";
    let inner = text
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|t| t.strip_suffix(']'))
        .ok_or(NOT_ENC)?;
    let mut fields = inner.split(',');
    let mut field = |name: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(name))
            .ok_or(NOT_ENC)
    };
    let decode = |t: &str| B64.decode(t).map_err(|_| "bad base64 in ENC value");
    let data = decode(field("data:")?)?;
    let iv = decode(field("iv:")?)?;
    let tag = decode(field("tag:")?)?;
    let kind = field("type:")?;
    if iv.len() != 32 || tag.len() != TAG_LEN {
        return Err("unexpected IV or tag length");
    }
    let mut sealed = data;
    sealed.extend_from_slice(&tag);
    let plain = cipher
        .decrypt(
            iv.as_slice().into(),
            Payload {
                msg: &sealed,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "cannot decrypt (wrong key, or the value was moved or changed)")?;
    let text = String::from_utf8(plain).map_err(|_| "decrypted value is not UTF-8")?;
    Ok(match kind {
        "str" => Value::String(text),
        "int" => Value::from(text.parse::<i64>().map_err(|_| "bad int")?),
        "float" => Value::from(text.parse::<f64>().map_err(|_| "bad float")?),
        "bool" => Value::Bool(text.eq_ignore_ascii_case("true")),
        _ => return Err("unsupported type in ENC value"),
    })
}

/// The data key encrypted to one recipient, ASCII-armored as sops stores it.
fn wrap_key(key: &[u8; 32], recipient: &age::x25519::Recipient) -> Result<String, SopsError> {
    let failed = |message: String| SopsError::WrapKey {
        recipient: recipient.to_string(),
        message,
    };
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|e| failed(e.to_string()))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| failed(e.to_string()))?;
    let mut writer = encryptor
        .wrap_output(armor)
        .map_err(|e| failed(e.to_string()))?;
    writer.write_all(key).map_err(|e| failed(e.to_string()))?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| failed(e.to_string()))?;
    String::from_utf8(out).map_err(|_| failed("armor is not UTF-8".into()))
}

/// The data key from the first `sops.age` entry one of the identities opens.
fn data_key(meta: &Map<String, Value>, identities: &Identities) -> Result<[u8; 32], SopsError> {
    let entries = meta
        .get("age")
        .and_then(Value::as_array)
        .ok_or(SopsError::NotSops("no sops.age keys"))?;
    for entry in entries {
        let Some(enc) = entry.get("enc").and_then(Value::as_str) else {
            continue;
        };
        let Ok(decryptor) =
            age::Decryptor::new_buffered(age::armor::ArmoredReader::new(enc.as_bytes()))
        else {
            continue;
        };
        let ids = identities.0.iter().map(|i| i as &dyn age::Identity);
        let Ok(mut reader) = decryptor.decrypt(ids) else {
            continue;
        };
        let mut key = Vec::new();
        if reader.read_to_end(&mut key).is_ok()
            && let Ok(key) = <[u8; 32]>::try_from(key.as_slice())
        {
            return Ok(key);
        }
    }
    let recipients: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.get("recipient").and_then(Value::as_str))
        .collect();
    Err(SopsError::NoMatchingIdentity {
        recipients: recipients.join(", "),
    })
}

fn rfc3339(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse_single_document;

    fn keypair() -> (Recipients, Identities) {
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        let secret = age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
        (
            Recipients::parse([recipient.as_str()]).expect("recipient"),
            Identities::parse(&secret, "test").expect("identity"),
        )
    }

    fn secret() -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "shop", "labels": {"data": "x"},
                "annotations": {"configbutler.ai/content-hash": "hmac-sha256:00"}},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4=", "empty": ""},
            "stringData": {"port": "5432"}})
    }

    #[test]
    fn values_are_encrypted_metadata_stays_readable_and_it_decrypts_back() {
        let (recipients, identities) = keypair();
        let now: jiff::Timestamp = "2026-12-04T20:30:51Z".parse().expect("time");
        let text = encrypt(&secret(), &recipients, now).expect("encrypt");
        assert!(!text.contains("aHVudGVyMg=="), "{text}");
        assert!(!text.contains("5432"), "{text}");
        let doc = parse_single_document(text.as_bytes(), "t").expect("one document");
        assert!(is_sops(&doc));
        let password = doc["data"]["password"].as_str().expect("string");
        assert!(
            password.starts_with("ENC[AES256_GCM,data:") && password.ends_with(",type:str]"),
            "{password}"
        );
        assert_eq!(doc["data"]["empty"], json!(""), "empty strings stay empty");
        // A label named `data` is under a key the regex matches, as sops would encrypt it.
        assert!(
            doc["metadata"]["labels"]["data"]
                .as_str()
                .is_some_and(|v| v.starts_with("ENC["))
        );
        assert_eq!(doc["metadata"]["name"], json!("db"));
        assert_eq!(doc["sops"]["lastmodified"], json!("2026-12-04T20:30:51Z"));
        assert_eq!(doc["sops"]["encrypted_regex"], json!(ENCRYPTED_REGEX));
        assert_eq!(doc["sops"]["version"], json!(SOPS_VERSION));
        assert!(
            text.trim_end()
                .ends_with(&format!("version: \"{SOPS_VERSION}\"")),
            "{text}"
        );
        assert_eq!(decrypt(&doc, &identities).expect("decrypt"), secret());
        // Every run encrypts anew.
        assert_ne!(encrypt(&secret(), &recipients, now).expect("again"), text);
    }

    #[test]
    fn a_moved_or_changed_value_and_a_foreign_identity_are_refused() {
        let (recipients, identities) = keypair();
        let text = encrypt(&secret(), &recipients, jiff::Timestamp::now()).expect("encrypt");
        let doc = parse_single_document(text.as_bytes(), "t").expect("doc");
        let mut moved = doc.clone();
        moved["data"]["user"] = doc["data"]["password"].clone();
        assert!(matches!(
            decrypt(&moved, &identities),
            Err(SopsError::Value { ref path, .. }) if path == "data.user"
        ));
        let mut relabelled = doc.clone();
        relabelled["metadata"]["name"] = json!("other");
        assert!(matches!(
            decrypt(&relabelled, &identities),
            Err(SopsError::MacMismatch)
        ));
        let (_, stranger) = keypair();
        let e = decrypt(&doc, &stranger).expect_err("foreign identity");
        assert!(matches!(e, SopsError::NoMatchingIdentity { .. }), "{e}");
    }

    #[test]
    fn recipients_and_identities_are_checked_without_echoing_secrets() {
        assert!(matches!(
            Recipients::parse(["age1nope"]),
            Err(SopsError::BadRecipient(_))
        ));
        assert!(matches!(
            Recipients::parse(std::iter::empty()),
            Err(SopsError::NoRecipients)
        ));
        let e = Identities::parse("AGE-SECRET-KEY-1NOTAKEY", "key.txt").expect_err("bad identity");
        assert!(!e.to_string().contains("NOTAKEY"), "{e}");
    }
}
