#!/usr/bin/env python3
"""Generate sim/src/builtin_protobuf.txt: the protobuf field numbers of every built-in type of
Kubernetes 1.33, read from the `protobuf:"..."` struct tags of its Go types (k8s.io/api and
k8s.io/apimachinery at v0.33.9), so kubesim can decode what kubectl's typed clients send as
`application/vnd.kubernetes.protobuf`.

Usage: gen_builtin_protobuf.py API_GIT APIMACHINERY_GIT > builtin_protobuf.txt
"""
import re
import subprocess
import sys

api_git, am_git = sys.argv[1:3]
TAG = "v0.33.9"

def git(gitdir, *args):
    return subprocess.run(["git", "--git-dir", gitdir, *args], capture_output=True, text=True, check=True).stdout

# Special types decoded by hand in the simulator.
SPECIAL = {
    "meta/v1.Time": "time",
    "meta/v1.MicroTime": "microtime",
    "meta/v1.Duration": "duration",
    "intstr.IntOrString": "intstr",
    "resource.Quantity": "quantity",
    "runtime.RawExtension": "rawext",
    "meta/v1.FieldsV1": "fieldsv1",
    "types.UID": "string",
}
SCALARS = {"string": "string", "bool": "bool", "int": "int", "int32": "int", "int64": "int",
           "uint32": "int", "uint64": "int", "float64": "double", "byte": "int"}

packages = {}  # pkg id -> (git, files)
for p in git(api_git, "ls-tree", "-r", "--name-only", TAG).splitlines():
    m = re.match(r"^([a-z0-9]+)/(v[0-9a-z]+)/types(_[a-z]+)?\.go$", p)
    if m and "test" not in p:
        packages.setdefault(f"{m.group(1)}/{m.group(2)}", (api_git, []))[1].append(p)
packages["meta/v1"] = (am_git, [
    p for p in git(am_git, "ls-tree", "--name-only", TAG, "pkg/apis/meta/v1/").splitlines()
    if p.endswith(".go") and not p.endswith("_test.go") and "generated" not in p
])

def import_pkg(path):
    if path.startswith("k8s.io/api/"):
        return path[len("k8s.io/api/"):]
    if path == "k8s.io/apimachinery/pkg/apis/meta/v1":
        return "meta/v1"
    return path.rsplit("/", 1)[-1]  # intstr, resource, runtime, types

json_tags = {}  # (struct, field number) -> json tag
structs = {}   # "pkg.Name" -> list of (num, json, gotype, rep, inline, imports, pkg)
named = {}     # "pkg.Name" -> (underlying go type, imports, pkg)
roots = []

for pkg, (gitdir, files) in packages.items():
    for f in files:
        text = git(gitdir, "show", f"{TAG}:{f}")
        imports = {}
        im = re.search(r"^import \((.*?)^\)", text, re.S | re.M)
        if im:
            for line in im.group(1).splitlines():
                line = line.strip()
                mm = re.match(r'^(?:([A-Za-z0-9_]+)\s+)?"([^"]+)"$', line)
                if mm:
                    path = mm.group(2)
                    alias = mm.group(1) or path.rsplit("/", 1)[-1]
                    imports[alias] = import_pkg(path)
        current = None
        prev_comments = []
        for line in text.splitlines():
            em = re.match(r"^type ([A-Z][A-Za-z0-9]*) struct\s*\{\s*\}", line)
            if em:
                structs[f"{pkg}.{em.group(1)}"] = []
                prev_comments = []
                continue
            sm = re.match(r"^type ([A-Z][A-Za-z0-9]*) struct \{", line)
            if sm:
                current = f"{pkg}.{sm.group(1)}"
                structs[current] = []
                if any("+k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object" in c for c in prev_comments):
                    roots.append(current)
                prev_comments = []
                continue
            nm = re.match(r"^type ([A-Z][A-Za-z0-9]*) (\S.*)$", line)
            if nm and not nm.group(2).startswith("struct") and not nm.group(2).startswith("interface"):
                named[f"{pkg}.{nm.group(1)}"] = (nm.group(2).strip().removeprefix("= ").split(" //")[0].strip(), imports, pkg)
                prev_comments = []
                continue
            if line.startswith("//"):
                prev_comments.append(line)
                continue
            if not line.strip():
                continue
            prev_comments = [] if not line.startswith("\t") else prev_comments
            if current and line.startswith("}"):
                current = None
                continue
            if current:
                fm = re.match(r'^\t(?:([A-Za-z0-9_]+)\s+)?(\S+)\s+`(.*)`', line)
                if not fm:
                    continue
                tags = fm.group(3)
                pm = re.search(r'protobuf:"([a-z0-9]+),(\d+),(?:(opt|rep|req),)?[^"]*"', tags)
                jm = re.search(r'json:"([^"]*)"', tags)
                if not pm or not jm:
                    continue
                json_name = jm.group(1).split(",")[0]
                if json_name == "-":
                    continue
                inline = fm.group(1) is None or ",inline" in jm.group(1)
                structs[current].append((int(pm.group(2)), json_name, fm.group(2), pm.group(3) == "rep", inline, imports, pkg))
                json_tags[(current, int(pm.group(2)))] = jm.group(1)

def resolve(gotype, imports, pkg):
    """(kind, target, repeated, map key kind) of a Go type."""
    t = gotype.lstrip("*")
    if t.startswith("[]byte"):
        return ("bytes", "-", False)
    if t.startswith("[]"):
        k = resolve(t[2:], imports, pkg)
        return (k[0], k[1], True)
    if t.startswith("map["):
        key, val = re.match(r"map\[([^\]]+)\](.+)", t).groups()
        kk = resolve(key, imports, pkg)
        vk = resolve(val, imports, pkg)
        return (f"map:{kk[0]}:{vk[0]}" + ("*" if vk[2] else ""), vk[1], False)
    if "." in t:
        alias, name = t.split(".", 1)
        qual = f"{imports.get(alias, alias)}.{name}"
    else:
        if t in SCALARS:
            return (SCALARS[t], "-", False)
        qual = f"{pkg}.{t}"
    if qual in SPECIAL:
        return (SPECIAL[qual], "-", False)
    if qual in structs:
        return ("msg", qual, False)
    if qual in named:
        under, imps, p = named[qual]
        return resolve(under, imps, p)
    raise SystemExit(f"unresolved type {gotype} ({qual})")

# Keep the GA packages (what the simulator serves) and what their kinds reach.
def kept(pkg):
    return re.match(r"^[a-z0-9]+/v[0-9]+$", pkg) is not None

def json_tag(st, num):
    return json_tags.get((st, num), "")

resolved = {}
for st, fields in structs.items():
    resolved[st] = []
    for num, json_name, gotype, rep, inline, imports, pkg in fields:
        try:
            kind, target, repeated = resolve(gotype, imports, pkg)
        except SystemExit:
            continue
        if rep and not kind.startswith("map:"):
            repeated = True
        name = "-" if inline and json_name == "" else json_name
        flags = ("p" if gotype.startswith("*") else "") + ("o" if ",omitempty" in json_tag(st, num) else "")
        resolved[st].append((num, name, kind, repeated, target, flags or "-"))

reach = [st for st, fields in resolved.items()
         if kept(st.split(".")[0]) and any(n == "metadata" and t == "meta/v1.ObjectMeta" for _, n, _, _, t, _ in fields)]
seen = set(reach)
while reach:
    st = reach.pop()
    for _, _, _, _, target, _ in resolved.get(st, []):
        if target != "-" and target not in seen:
            seen.add(target)
            reach.append(target)

print("# Generated by sim/tests/tools/gen_builtin_protobuf.py from the protobuf tags of the Go types of")
print("# Kubernetes v0.33.9 (k8s.io/api, k8s.io/apimachinery meta/v1). Do not edit by hand.")
print("# M <type> <field number> <json name or - for an inlined struct> <kind> <message type or -> <flags>")
print("#   flags: p a pointer (present even when zero), o omitempty (left out when zero), - neither")
print("#   kind: string, int, bool, bytes, double, msg, time, microtime, duration, intstr, quantity,")
print("#   rawext, fieldsv1, map:<key kind>:<value kind>; a trailing * marks a repeated field")
for st in sorted(seen):
    for num, name, kind, repeated, target, flags in sorted(resolved[st]):
        print(f"M\t{st}\t{num}\t{name}\t{kind}{'*' if repeated else ''}\t{target}\t{flags}")
