#!/usr/bin/env python3
"""Generate sim/src/builtin_schema.txt: what server-side apply needs to know of the built-in types
of Kubernetes 1.33 (list types and keys, atomic maps and structs, the type graph leading to them).

Sources, both real:
  * k8s-openapi 0.29 (feature v1_33): its generated `DeepMerge` impls carry the
    x-kubernetes-list-type / list-map-keys / map-type markers of the Kubernetes OpenAPI, its
    struct definitions the type graph, its `Resource` impls the kinds.
  * the Go types of Kubernetes 1.33 (k8s.io/api, k8s.io/apimachinery,
    k8s.io/apiextensions-apiserver at v0.33.9): `+listMapKey` where k8s-openapi uses the
    strategic-merge-patch key instead (container and Service ports, topologySpreadConstraints, ...)
    and `+structType=atomic`, which k8s-openapi does not keep.

Usage: gen_builtin_schema.py K8S_OPENAPI_SRC API_GIT APIMACHINERY_GIT APIEXTENSIONS_GIT > builtin_schema.txt
(the *_GIT arguments are git directories; the tag v0.33.9 is read from each).
"""
import os
import re
import subprocess
import sys

openapi_src, api_git, am_git, ext_git = sys.argv[1:5]
TAG = "v0.33.9"
root = os.path.join(openapi_src, "src", "v1_33")

types = {}      # type id -> {rust field: (json, target type or None)}
strategies = {}  # type id -> {rust field: shape}
kinds = []      # (apiVersion, kind, type id)

field_re = re.compile(r"^    pub (r#)?([a-z0-9_]+): (.+),$")
json_re = re.compile(r'^\s+"([^"]+)" => Field::Key_([a-z0-9_]+),$', re.M)
crate_re = re.compile(r"crate::([a-z0-9_:]+::[A-Z][A-Za-z0-9]*)")

for dirpath, _, files in os.walk(root):
    for fn in files:
        if not fn.endswith(".rs") or fn == "mod.rs":
            continue
        path = os.path.join(dirpath, fn)
        text = open(path).read()
        m = re.search(r"^pub struct ([A-Z][A-Za-z0-9]*) \{$", text, re.M)
        if not m:
            continue
        name = m.group(1)
        mod = os.path.relpath(dirpath, root).replace(os.sep, "::")
        tid = f"{mod}::{name}"
        body = text[m.end():text.index("\n}\n", m.end())]
        rust_fields = {}
        for line in body.splitlines():
            fm = field_re.match(line)
            if fm:
                rust_fields[fm.group(2)] = fm.group(3)
        json_names = {k: j for j, k in json_re.findall(text)}
        fields = {}
        for rf, ty in rust_fields.items():
            target = None
            cm = crate_re.search(ty)
            if cm and "BTreeMap<std::string::String, crate" not in ty:
                target = cm.group(1)
            elif cm:
                target = cm.group(1)
            fields[rf] = (json_names.get(rf, rf), target, ty)
        types[tid] = fields
        strat = {}
        dm = re.search(r"impl crate::DeepMerge for %s \{\n    fn merge_from\(&mut self, other: Self\) \{\n(.*?)\n    \}\n\}" % name, text, re.S)
        if dm:
            for sm in re.finditer(r"crate::merge_strategies::(list|map)::(atomic|set|map|granular)\(\s*&mut self\.(?:r#)?([a-z0-9_]+),(.*?)\);", dm.group(1), re.S):
                kind, how, rf, rest = sm.groups()
                if kind == "list" and how == "map":
                    keys = re.findall(r"lhs\.([a-z0-9_]+) == rhs\.", rest)
                    strat[rf] = ("listmap", keys)
                else:
                    strat[rf] = (f"{kind}{how}", None)
        strategies[tid] = strat
        rm = re.search(r'impl crate::Resource for %s \{\n    const API_VERSION: &\'static str = "([^"]+)";\n    const GROUP: &\'static str = "[^"]*";\n    const KIND: &\'static str = "([^"]+)";' % name, text)
        if rm:
            kinds.append((rm.group(1), rm.group(2), tid))

# Go markers.
def git_files(git, prefix_filter):
    out = subprocess.run(["git", "--git-dir", git, "ls-tree", "-r", "--name-only", TAG], capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if prefix_filter(p)]

def git_show(git, path):
    return subprocess.run(["git", "--git-dir", git, "show", f"{TAG}:{path}"], capture_output=True, text=True, check=True).stdout

go_list_keys = {}   # (type id, json) -> keys
go_list_type = {}   # (type id, json) -> map/set/atomic
go_atomic_structs = set()
go_atomic_maps = set()

def scan_go(text, mod):
    comments = []
    current = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("//"):
            comments.append(s)
            continue
        tm = re.match(r"^type ([A-Z][A-Za-z0-9]*) struct \{", line)
        if tm:
            current = f"{mod}::{tm.group(1)}"
            if any(c == "// +structType=atomic" for c in comments):
                go_atomic_structs.add(current)
            comments = []
            continue
        if line.startswith("}"):
            current = None
        jm = re.search(r'`json:"([^",]+)', line)
        if current and jm:
            j = jm.group(1)
            keys = [c.split("=", 1)[1] for c in comments if c.startswith("// +listMapKey=")]
            lt = [c.split("=", 1)[1] for c in comments if c.startswith("// +listType=")]
            if keys:
                go_list_keys[(current, j)] = keys
            if lt:
                go_list_type[(current, j)] = lt[0]
            if "// +mapType=atomic" in comments:
                go_atomic_maps.add((current, j))
        comments = []

for p in git_files(api_git, lambda p: re.match(r"^[a-z0-9]+/v[0-9a-z]+/types\.go$", p) is not None):
    group, version = p.split("/")[:2]
    scan_go(git_show(api_git, p), f"api::{group}::{version}")
for p in ["pkg/apis/meta/v1/types.go"]:
    scan_go(git_show(am_git, p), "apimachinery::pkg::apis::meta::v1")
for p in ["pkg/apis/apiextensions/v1/types.go", "pkg/apis/apiextensions/v1/types_jsonschema.go"]:
    scan_go(git_show(ext_git, p), "apiextensions_apiserver::pkg::apis::apiextensions::v1")

QUANTITY = "apimachinery::pkg::api::resource::Quantity"

# One shape per (type, json field).
shapes = {}  # tid -> {json: (shape, target)}
overrides = []
for tid, fields in types.items():
    out = {}
    for rf, (j, target, ty) in fields.items():
        st = strategies.get(tid, {}).get(rf)
        go_type = go_list_type.get((tid, j))
        if st is not None and st[0].startswith("list") and go_type:
            ours = {"listmap": "map", "listset": "set", "listatomic": "atomic"}[st[0]]
            if go_type != ours:
                overrides.append(f"# {tid}.{j}: k8s-openapi list type {ours}, Go +listType={go_type}")
                st = {"map": ("listmap", None), "set": ("listset", None), "atomic": ("listatomic", None)}[go_type]
        if target == QUANTITY:
            out[j] = ("quantitymap" if "BTreeMap" in ty else "quantity", None)
            continue
        if st is None:
            shape = "struct" if target else None
        elif st[0] == "listmap":
            keys = [types[target][k][0] for k in (st[1] or [])]
            go_keys = go_list_keys.get((tid, j))
            if go_keys and go_keys != keys:
                overrides.append(f"# {tid}.{j}: k8s-openapi keys {','.join(keys)}, Go +listMapKey {','.join(go_keys)}")
                keys = go_keys
            shape = "map:" + ",".join(keys)
        elif st[0] == "listset":
            shape = "set"
        elif st[0] == "listatomic":
            shape = "atomiclist" if target else None
        elif st[0] == "mapatomic":
            shape = "atomicmap"
        elif st[0] == "mapgranular":
            shape = "mapof" if target else None
        else:
            raise SystemExit(f"unknown strategy {st}")
        if shape:
            out[j] = (shape, target)
    shapes[tid] = out

# Keep what matters: a type matters if it is atomic or holds a set, keyed list or atomic map, or
# leads to a type that matters.
matters = set(go_atomic_structs)
changed = True
while changed:
    changed = False
    for tid, fields in shapes.items():
        if tid in matters:
            continue
        for j, (shape, target) in fields.items():
            if shape not in ("struct", "mapof", "atomiclist") or (target in matters):
                matters.add(tid)
                changed = True
                break

print("# Generated by sim/tests/tools/gen_builtin_schema.py from k8s-openapi 0.29 (v1_33) and the Go")
print("# types of Kubernetes v0.33.9. Do not edit by hand.")
print("# K <apiVersion> <Kind> <type>: the root type of a kind")
print("# A <type>: an atomic struct (+structType=atomic)")
print("# F <type> <field> <shape> <type of the field or its items>: shape is struct, mapof (a map of")
print("#   structs), set, map:<key>,<key> (a keyed list), atomiclist (of structs), atomicmap, quantity or")
print("#   quantitymap (a map of quantities); lists not listed are atomic")
print("# Where k8s-openapi keys a list by its patch merge key, the Go +listMapKey markers win:")
for line in overrides:
    print(line)
for av, kind, tid in sorted(kinds):
    print(f"K\t{av}\t{kind}\t{tid}")
for tid in sorted(go_atomic_structs):
    if tid in types:
        print(f"A\t{tid}")
for tid in sorted(shapes):
    if tid not in matters or tid in go_atomic_structs:
        continue
    for j, (shape, target) in sorted(shapes[tid].items()):
        if shape in ("struct", "mapof", "atomiclist") and target not in matters:
            continue
        print(f"F\t{tid}\t{j}\t{shape}\t{target or '-'}")
