#!/usr/bin/env python3
"""An independent SOPS reader for the tests: decrypts a SOPS YAML document with age keys the way
getsops/sops does (sops.go Tree.Decrypt, aes/cipher.go), sharing no code with the agent.

The data key is opened by the `age` command-line tool (Debian's), the values with the
`cryptography` package's AES-GCM; the MAC (upper-case hex SHA-512 over every value in file
order, nulls skipped) is checked against sops.mac, decrypted with `lastmodified` as additional
data. Prints the document without its `sops` block as JSON; exits 1 with a message on stderr
when anything does not check out.

usage: sops_decrypt.py AGE_IDENTITY_FILE SOPS_FILE
"""
import base64
import hashlib
import json
import re
import subprocess
import sys

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENC = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")


def fail(message):
    print(f"sops_decrypt: {message}", file=sys.stderr)
    sys.exit(1)


def open_value(key, text, aad):
    m = ENC.match(text)
    if not m:
        fail(f"not an encrypted value at {aad!r}")
    data, iv, tag = (base64.b64decode(m.group(i)) for i in (1, 2, 3))
    plain = AESGCM(key).decrypt(iv, data + tag, aad.encode()).decode()
    kind = m.group(4)
    if kind == "str":
        return plain
    if kind == "int":
        return int(plain)
    if kind == "float":
        return float(plain)
    if kind == "bool":
        return plain.lower() == "true"
    fail(f"unsupported type {kind!r}")


def to_bytes(value):
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    fail(f"unsupported value type {type(value).__name__}")


def walk(value, path, encrypted, key, mac):
    if isinstance(value, dict):
        return {
            k: walk(v, path + [k], encrypted or bool(REGEX.search(k)), key, mac)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [walk(v, path, encrypted, key, mac) for v in value]
    if value is None:
        return None
    if encrypted and isinstance(value, str) and value != "":
        value = open_value(key, value, ":".join(path) + ":")
    mac.update(to_bytes(value))
    return value


def main():
    identity_file, sops_file = sys.argv[1], sys.argv[2]
    with open(sops_file) as f:
        doc = yaml.safe_load(f)
    meta = doc.pop("sops", None)
    if not isinstance(meta, dict) or not meta.get("age"):
        fail("no sops.age block")
    global REGEX
    REGEX = re.compile(meta.get("encrypted_regex") or "(?!)")
    key = None
    for entry in meta["age"]:
        run = subprocess.run(
            ["age", "--decrypt", "--identity", identity_file],
            input=entry["enc"].encode(),
            capture_output=True,
        )
        if run.returncode == 0:
            key = run.stdout
            break
    if key is None or len(key) != 32:
        fail("the age identity opens no data key")
    mac = hashlib.sha512()
    clear = walk(doc, [], False, key, mac)
    recorded = open_value(key, meta["mac"], meta["lastmodified"])
    if recorded.upper() != mac.hexdigest().upper():
        fail("MAC mismatch")
    json.dump(clear, sys.stdout, sort_keys=True)


REGEX = None
main()
