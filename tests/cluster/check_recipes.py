#!/usr/bin/env python3
"""check_recipes: the cluster recipes in deploy/ ask clipd for what it understands.

Usage: /usr/bin/python3 tests/cluster/check_recipes.py [CLIPD]   (make test runs it; CLIPD
defaults to bin/clipd)

Kubernetes (deploy/kubernetes/*.yaml, parsed with PyYAML; no cluster needed): every field is
one the Kubernetes API has where it stands (for the kinds and fields these manifests use, a
misspelt field fails); the embed Job is an Indexed Job (completionMode Indexed, parallelism,
backoffLimitPerIndex, restartPolicy Never, replacement only of failed pods) whose
CLIPD_SHARD_COUNT equals its completions, gets its index from JOB_COMPLETION_INDEX (no
--shard), asks for a GPU and runs --backend cuda, with a memory limit; its podFailurePolicy
fails an index at once only on exit codes the README calls mistakes; the merge Job runs
`clipd merge` on the embed Job's --output; the weights Job fills the cache the embed Job
reads; every path is on the one ReadWriteMany claim, mounted in every pod; every pod runs the
image that deploy/Dockerfile's header builds. The Dockerfile is multi-stage, builds on a CUDA
devel image with a Go at least go.mod's, runs on the CUDA runtime image of the same version.
Object storage (deploy/kubernetes/s3/*.yaml): a Secret with the AWS credentials; the Indexed
embed Job (the same checks as above) writes --output s3://, reads the credentials from that
Secret (envFrom or secretKeyRef), mounts no claim, and fetches the weights in an init container
into the --cache-dir it reads; the merge Job runs `clipd merge` on the embed Job's s3:// output
with the same credentials and a --staging folder on a volume it mounts.
Slurm (deploy/slurm/*.sbatch): the clipd command lines, and the shard, memory and refusals of
embed.sbatch run with Slurm's array variables (clipd replaced by echo). For both: every flag passed to clipd
is one `clipd <command> --help` lists. The README names every recipe file.
Prints one line per problem and exits 1 if there is any, else one line saying what it checked.
"""
import glob
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
problems = []


def problem(msg):
    problems.append(msg)


# The Kubernetes API fields of the kinds these manifests use (Kubernetes 1.33: batch/v1 Job,
# core/v1 PersistentVolumeClaim, PodSpec, Container, ...). A key not listed is reported: a
# misspelling, or a field to add here after checking the API reference.
META = {"name", "namespace", "labels", "annotations", "generateName"}
FIELDS = {
    "Job": {"apiVersion", "kind", "metadata", "spec"},
    "PersistentVolumeClaim": {"apiVersion", "kind", "metadata", "spec"},
    "JobSpec": {"activeDeadlineSeconds", "backoffLimit", "backoffLimitPerIndex", "completionMode",
                "completions", "managedBy", "manualSelector", "maxFailedIndexes", "parallelism",
                "podFailurePolicy", "podReplacementPolicy", "selector", "successPolicy", "suspend",
                "template", "ttlSecondsAfterFinished"},
    "PodFailurePolicy": {"rules"},
    "PodFailurePolicyRule": {"action", "onExitCodes", "onPodConditions"},
    "OnExitCodes": {"containerName", "operator", "values"},
    "OnPodCondition": {"type", "status"},
    "PodTemplate": {"metadata", "spec"},
    "PodSpec": {"activeDeadlineSeconds", "affinity", "containers", "imagePullSecrets", "initContainers",
                "nodeSelector", "priorityClassName", "restartPolicy", "runtimeClassName",
                "securityContext", "serviceAccountName", "terminationGracePeriodSeconds",
                "tolerations", "volumes"},
    "Container": {"args", "command", "env", "envFrom", "image", "imagePullPolicy", "name", "resources",
                  "securityContext", "volumeMounts", "workingDir"},
    "Secret": {"apiVersion", "kind", "metadata", "type", "data", "stringData", "immutable"},
    "EnvFromSource": {"configMapRef", "prefix", "secretRef"},
    "SecretEnvSource": {"name", "optional"},
    "SecretKeySelector": {"key", "name", "optional"},
    "EmptyDirVolumeSource": {"medium", "sizeLimit"},
    "EnvVar": {"name", "value", "valueFrom"},
    "EnvVarSource": {"configMapKeyRef", "fieldRef", "resourceFieldRef", "secretKeyRef"},
    "ObjectFieldSelector": {"apiVersion", "fieldPath"},
    "Resources": {"claims", "limits", "requests"},
    "VolumeMount": {"mountPath", "name", "readOnly", "subPath"},
    "Volume": {"name", "persistentVolumeClaim", "emptyDir", "configMap", "secret", "csi"},
    "PVCSource": {"claimName", "readOnly"},
    "PVCSpec": {"accessModes", "resources", "selector", "storageClassName", "volumeMode", "volumeName"},
    "VolumeResources": {"limits", "requests"},
}
ENUMS = {
    ("JobSpec", "completionMode"): {"NonIndexed", "Indexed"},
    ("JobSpec", "podReplacementPolicy"): {"TerminatingOrFailed", "Failed"},
    ("PodSpec", "restartPolicy"): {"Always", "OnFailure", "Never"},
    ("PodFailurePolicyRule", "action"): {"FailJob", "FailIndex", "Ignore", "Count"},
    ("OnExitCodes", "operator"): {"In", "NotIn"},
}


def keys(kind, obj, where):
    """Reports the keys of obj that kind does not have, and bad enum values."""
    if not isinstance(obj, dict):
        problem(f"{where}: a {kind} must be a mapping, got {type(obj).__name__}")
        return {}
    for k in obj:
        if k not in FIELDS[kind]:
            problem(f"{where}: {k!r} is not a field of {kind}")
    for (knd, field), allowed in ENUMS.items():
        if knd == kind and field in obj and obj[field] not in allowed:
            problem(f"{where}.{field}: {obj[field]!r} is not one of {sorted(allowed)}")
    return obj


def check_meta(m, where):
    if not isinstance(m, dict) or not m.get("name"):
        problem(f"{where}.metadata: no name")
        return
    for k in m:
        if k not in META:
            problem(f"{where}.metadata: {k!r} is not a field of ObjectMeta")


def check_container(c, where):
    keys("Container", c, where)
    for i, e in enumerate(c.get("env", [])):
        keys("EnvVar", e, f"{where}.env[{i}]")
        if "valueFrom" in e:
            keys("EnvVarSource", e["valueFrom"], f"{where}.env[{i}].valueFrom")
            if "fieldRef" in e["valueFrom"]:
                keys("ObjectFieldSelector", e["valueFrom"]["fieldRef"], f"{where}.env[{i}].valueFrom.fieldRef")
            if "secretKeyRef" in e["valueFrom"]:
                keys("SecretKeySelector", e["valueFrom"]["secretKeyRef"], f"{where}.env[{i}].valueFrom.secretKeyRef")
    for i, e in enumerate(c.get("envFrom", [])):
        keys("EnvFromSource", e, f"{where}.envFrom[{i}]")
        if "secretRef" in e:
            keys("SecretEnvSource", e["secretRef"], f"{where}.envFrom[{i}].secretRef")
    keys("Resources", c.get("resources", {}), f"{where}.resources")
    for i, vm in enumerate(c.get("volumeMounts", [])):
        keys("VolumeMount", vm, f"{where}.volumeMounts[{i}]")


def check_job(doc, where):
    keys("Job", doc, where)
    check_meta(doc.get("metadata"), where)
    spec = keys("JobSpec", doc.get("spec"), f"{where}.spec")
    pfp = spec.get("podFailurePolicy")
    if pfp is not None:
        keys("PodFailurePolicy", pfp, f"{where}.spec.podFailurePolicy")
        for i, r in enumerate(pfp.get("rules", [])):
            w = f"{where}.spec.podFailurePolicy.rules[{i}]"
            keys("PodFailurePolicyRule", r, w)
            if "onExitCodes" in r:
                keys("OnExitCodes", r["onExitCodes"], w + ".onExitCodes")
            for j, pc in enumerate(r.get("onPodConditions", [])):
                keys("OnPodCondition", pc, f"{w}.onPodConditions[{j}]")
    tmpl = keys("PodTemplate", spec.get("template"), f"{where}.spec.template")
    pod = keys("PodSpec", tmpl.get("spec"), f"{where}.spec.template.spec")
    for i, c in enumerate(pod.get("containers", [])):
        check_container(c, f"{where}.containers[{i}]")
    for i, c in enumerate(pod.get("initContainers", [])):
        check_container(c, f"{where}.initContainers[{i}]")
    for i, v in enumerate(pod.get("volumes", [])):
        keys("Volume", v, f"{where}.volumes[{i}]")
        if "persistentVolumeClaim" in v:
            keys("PVCSource", v["persistentVolumeClaim"], f"{where}.volumes[{i}].persistentVolumeClaim")
        if "emptyDir" in v:
            keys("EmptyDirVolumeSource", v["emptyDir"] or {}, f"{where}.volumes[{i}].emptyDir")
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problem(f"{where}: a Job's pods need restartPolicy Never or OnFailure")
    return spec, pod


def the_container(pod, where):
    cs = pod.get("containers", [])
    if len(cs) != 1:
        problem(f"{where}: want one container, found {len(cs)}")
        return {}
    return cs[0]


# --- clipd's flags, as its --help lists them ---------------------------------------------------

def help_flags(clipd, command):
    """The flags (long and short) and, for each, whether it takes a value."""
    out = subprocess.run([clipd, *command, "--help"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        problem(f"clipd {' '.join(command)} --help: exit {out.returncode}: {out.stderr.strip()}")
        return {}
    flags = {}
    for line in out.stdout.splitlines():
        # A flag that takes a value shows a placeholder: "value", or its usage's `NAME` (DIR).
        m = re.match(r"^\s{2,}(-{1,2}[a-z0-9][a-z0-9-]*(?: value| [A-Z][A-Z0-9_]*)?(?:, -{1,2}[a-z0-9][a-z0-9-]*(?: value| [A-Z][A-Z0-9_]*)?)*)\s", line)
        if not m:
            continue
        for part in m.group(1).split(", "):
            name, _, value = part.partition(" ")
            flags[name] = bool(value)
    if "--help" not in flags:
        problem(f"clipd {' '.join(command)} --help: no flags found in its output")
    return flags


def parse_args(argv, flags, where):
    """The flags of a command line (name -> value, or True), each checked against flags."""
    got, i = {}, 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            name, eq, val = a.partition("=")
            if name not in flags:
                problem(f"{where}: clipd does not know {name}")
            elif flags[name] and not eq:
                i += 1
                val = argv[i] if i < len(argv) else None
            got[name] = val if (eq or flags.get(name)) else True
        else:
            got.setdefault("", []).append(a)
        i += 1
    return got


def under(path, mount):
    return isinstance(path, str) and (path == mount or path.startswith(mount.rstrip("/") + "/"))


def exit_code_meanings():
    """The README's exit-code table: code -> meaning."""
    text = open(os.path.join(ROOT, "README.md")).read()
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| ([^|]+) \|$", text, re.M)}


def main(clipd):
    kdir = os.path.join(ROOT, "deploy", "kubernetes")
    docs = []
    for path in sorted(glob.glob(os.path.join(kdir, "*.yaml"))):
        for n, d in enumerate(yaml.safe_load_all(open(path))):
            if d is not None:
                docs.append((f"{os.path.relpath(path, ROOT)}#{n}", d))
    by = {}
    for where, d in docs:
        by[(d.get("kind"), (d.get("metadata") or {}).get("name"))] = (where, d)

    embed_flags = help_flags(clipd, ["embed"])
    merge_flags = help_flags(clipd, ["merge"])
    fetch_flags = help_flags(clipd, ["weights", "fetch"])

    # The claim.
    pvcs = [(w, d) for w, d in docs if d.get("kind") == "PersistentVolumeClaim"]
    claim = None
    if len(pvcs) != 1:
        problem(f"deploy/kubernetes: want one PersistentVolumeClaim, found {len(pvcs)}")
    else:
        w, d = pvcs[0]
        keys("PersistentVolumeClaim", d, w)
        check_meta(d.get("metadata"), w)
        spec = keys("PVCSpec", d.get("spec"), w + ".spec")
        keys("VolumeResources", spec.get("resources", {}), w + ".spec.resources")
        if "ReadWriteMany" not in spec.get("accessModes", []):
            problem(f"{w}: the claim must be ReadWriteMany (pods on several nodes write it)")
        if not spec.get("resources", {}).get("requests", {}).get("storage"):
            problem(f"{w}: no storage request")
        claim = d["metadata"]["name"]

    def mount_of(pod, c, where):
        """The mount path of the claim in container c."""
        vols = {v.get("name"): v for v in pod.get("volumes", [])}
        for vm in c.get("volumeMounts", []):
            v = vols.get(vm.get("name"))
            if v is None:
                problem(f"{where}: volumeMount {vm.get('name')!r} has no volume")
            elif v.get("persistentVolumeClaim", {}).get("claimName") == claim:
                return vm.get("mountPath")
        problem(f"{where}: the claim {claim!r} is not mounted")
        return None

    jobs = {}
    for name in ("clipd-weights", "clipd-embed", "clipd-merge"):
        if ("Job", name) not in by:
            problem(f"deploy/kubernetes: no Job named {name}")
            continue
        where, doc = by[("Job", name)]
        spec, pod = check_job(doc, where)
        c = the_container(pod, where)
        jobs[name] = (where, spec, pod, c, mount_of(pod, c, where))
    if len(jobs) != 3:
        return

    # The embed Job: indexed, one shard per index.
    where, spec, pod, c, mount = jobs["clipd-embed"]
    args = check_indexed_embed(where, spec, pod, c, embed_flags)
    out = args.get("--output")
    for flag in ("--output", "--input", "--cache-dir", "--weights"):
        v = args.get(flag)
        if flag in ("--output", "--input") and v is None:
            problem(f"{where}: no {flag}")
        if v is not None and not re.match(r"^https?://", v) and not under(v, mount or "/nonexistent"):
            problem(f"{where}: {flag} {v} is not on the claim mounted at {mount}")

    # The weights Job fills the cache the embed Job reads.
    w2, _, _, c2, m2 = jobs["clipd-weights"]
    if c2.get("command", [])[:3] != ["clipd", "weights", "fetch"]:
        problem(f"{w2}: the command is {c2.get('command')}, want clipd weights fetch")
    fa = parse_args(c2.get("command", [])[3:] + c2.get("args", []), fetch_flags, w2)
    if "--weights" not in args and fa.get("--cache-dir") != args.get("--cache-dir"):
        problem(f"{w2}: --cache-dir {fa.get('--cache-dir')} is not the embed Job's {args.get('--cache-dir')}")
    if m2 != mount:
        problem(f"{w2}: the claim is mounted at {m2}, the embed Job's at {mount}")

    # The merge Job merges the embed Job's output folder.
    w3, _, _, c3, m3 = jobs["clipd-merge"]
    if c3.get("command", [])[:2] != ["clipd", "merge"]:
        problem(f"{w3}: the command is {c3.get('command')}, want clipd merge")
    ma = parse_args(c3.get("command", [])[2:] + c3.get("args", []), merge_flags, w3)
    if ma.get("") != [out] or "--output" in ma:
        problem(f"{w3}: runs clipd merge {ma}, want `clipd merge {out}` (it writes {out}/Images_Embedded.h5)")
    if m3 != mount:
        problem(f"{w3}: the claim is mounted at {m3}, the embed Job's at {mount}")
    if c3.get("resources", {}).get("limits", {}).get("nvidia.com/gpu"):
        problem(f"{w3}: the merge needs no GPU")

    # One image, the one the Dockerfile builds.
    images = {j[3].get("image") for j in jobs.values()}
    dockerfile = open(os.path.join(ROOT, "deploy", "Dockerfile")).read()
    tag = re.search(r"docker build -f deploy/Dockerfile -t (\S+) \.", dockerfile)
    if len(images) != 1 or not tag or images != {tag.group(1)}:
        problem(f"deploy/kubernetes: images {sorted(map(str, images))}; deploy/Dockerfile's header builds "
                f"{tag.group(1) if tag else 'nothing'}")
    check_dockerfile(dockerfile, args.get("--cache-dir"))

    # Slurm: the clipd command lines of the sbatch scripts.
    slurm = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "slurm", "*.sbatch"))):
        slurm += check_sbatch(path, {"embed": embed_flags, "merge": merge_flags})

    check_sbatch_env(os.path.join(ROOT, "deploy", "slurm", "embed.sbatch"))

    # Object storage: the Indexed Job that writes to a bucket, and its merge.
    s3docs = check_s3_recipe(embed_flags, merge_flags, fetch_flags, images)

    # The README names the recipe files.
    readme = open(os.path.join(ROOT, "README.md")).read()
    for f in sorted(glob.glob(os.path.join(ROOT, "deploy", "*", "*")) + glob.glob(os.path.join(ROOT, "deploy", "kubernetes", "s3", "*")) +
                    [os.path.join(ROOT, "deploy", "Dockerfile")]):
        rel = os.path.relpath(f, ROOT)
        if rel.endswith(".dockerignore"):
            continue
        if rel not in readme:
            problem(f"README.md does not mention {rel}")

    if not problems:
        print(f"recipes: ok: {len(docs) + len(s3docs)} Kubernetes objects ({', '.join(sorted(w for w, _ in docs + s3docs))}), "
              f"the Dockerfile, {slurm} clipd command lines in deploy/slurm; every flag known to clipd")


def check_indexed_embed(where, spec, pod, c, embed_flags):
    """The checks of an Indexed embed Job that do not depend on where it writes; returns its
    clipd flags."""
    if spec.get("completionMode") != "Indexed":
        problem(f"{where}: completionMode is {spec.get('completionMode')!r}, want Indexed")
    n = spec.get("completions")
    if not isinstance(n, int) or n < 1:
        problem(f"{where}: completions {n!r}: want the number of shards")
    p = spec.get("parallelism")
    if not isinstance(p, int) or not 1 <= p <= (n or 1):
        problem(f"{where}: parallelism {p!r}: want 1..completions")
    if not isinstance(spec.get("backoffLimitPerIndex"), int):
        problem(f"{where}: no backoffLimitPerIndex (a shard's retries)")
    if spec.get("podReplacementPolicy") != "Failed":
        problem(f"{where}: podReplacementPolicy must be Failed: two pods must not write one shard at once")
    if pod.get("restartPolicy") != "Never":
        problem(f"{where}: restartPolicy must be Never (backoffLimitPerIndex, podFailurePolicy)")
    meanings = exit_code_meanings()
    for r in (spec.get("podFailurePolicy") or {}).get("rules", []):
        oc = r.get("onExitCodes")
        if oc and r.get("action") in ("FailIndex", "FailJob"):
            if oc.get("containerName") != c.get("name"):
                problem(f"{where}: podFailurePolicy names container {oc.get('containerName')!r}")
            for code in oc.get("values", []):
                if not meanings.get(code, "").startswith("bad "):
                    problem(f"{where}: podFailurePolicy gives up at once on exit {code} "
                            f"({meanings.get(code, 'not in the README')!r}), which a retry may fix")
    if c.get("command", [])[:2] != ["clipd", "embed"]:
        problem(f"{where}: the command is {c.get('command')}, want clipd embed")
    args = parse_args(c.get("command", [])[2:] + c.get("args", []), embed_flags, where)
    env = {e.get("name"): e for e in c.get("env", [])}
    if "--shard" in args:
        problem(f"{where}: --shard would override JOB_COMPLETION_INDEX")
    sc = env.get("CLIPD_SHARD_COUNT", {}).get("value")
    if "--shard-count" in args:
        sc = args["--shard-count"]
    if sc != str(n):
        problem(f"{where}: the shard count is {sc!r} (CLIPD_SHARD_COUNT or --shard-count), completions {n}")
    if "JOB_COMPLETION_INDEX" in env:
        fp = env["JOB_COMPLETION_INDEX"].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if fp != "metadata.annotations['batch.kubernetes.io/job-completion-index']":
            problem(f"{where}: JOB_COMPLETION_INDEX comes from {fp!r}, not the completion-index annotation")
    gpu = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    if not isinstance(gpu, int) or gpu < 1:
        problem(f"{where}: no nvidia.com/gpu limit")
    if args.get("--backend") != "cuda":
        problem(f"{where}: --backend is {args.get('--backend')!r}: with a GPU asked for, want cuda (auto would run on the CPU when the GPU is missing)")
    if not c.get("resources", {}).get("limits", {}).get("memory"):
        problem(f"{where}: no memory limit (clipd plans its queues from the pod's cgroup limit)")
    return args


def check_s3_recipe(embed_flags, merge_flags, fetch_flags, images):
    """deploy/kubernetes/s3/: a Secret with the credentials, an Indexed embed Job writing to an
    s3:// output with them, its merge Job. Returns the objects checked."""
    kdir = os.path.join(ROOT, "deploy", "kubernetes", "s3")
    docs = []
    for path in sorted(glob.glob(os.path.join(kdir, "*.yaml"))):
        for n, d in enumerate(yaml.safe_load_all(open(path))):
            if d is not None:
                docs.append((f"{os.path.relpath(path, ROOT)}#{n}", d))
    secrets = {}
    for w, d in docs:
        if d.get("kind") == "Secret":
            keys("Secret", d, w)
            check_meta(d.get("metadata"), w)
            names = set((d.get("stringData") or {}).keys()) | set((d.get("data") or {}).keys())
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                if k not in names:
                    problem(f"{w}: the Secret has no {k}")
            secrets[(d.get("metadata") or {}).get("name")] = names
    if len(secrets) != 1:
        problem(f"deploy/kubernetes/s3: want one Secret with the AWS credentials, found {len(secrets)}")
    jobs = {}
    for w, d in docs:
        if d.get("kind") == "Job":
            spec, pod = check_job(d, w)
            jobs[(d.get("metadata") or {}).get("name")] = (w, spec, pod, the_container(pod, w))
        elif d.get("kind") != "Secret":
            problem(f"{w}: a {d.get('kind')} in the object-storage recipe (want a Secret and two Jobs)")

    def credentials(c, where):
        """The container gets both keys from the recipe's Secret."""
        got = set()
        for e in c.get("envFrom", []):
            name = (e.get("secretRef") or {}).get("name")
            if name in secrets and not e.get("prefix"):
                got |= secrets[name]
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") in secrets and ref.get("key") in secrets[ref.get("name")]:
                got.add(e.get("name"))
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if k not in got:
                problem(f"{where}: {k} does not come from the Secret {sorted(secrets)} (envFrom secretRef or secretKeyRef)")
        for e in c.get("env", []):
            if e.get("name", "").startswith("AWS_") and "value" in e and "SECRET" in e.get("name", ""):
                problem(f"{where}: {e['name']} is written in the manifest; take it from the Secret")

    def mounts(pod, c):
        vols = {v.get("name"): v for v in pod.get("volumes", [])}
        out = {}
        for vm in c.get("volumeMounts", []):
            v = vols.get(vm.get("name"))
            if v is None:
                problem(f"volumeMount {vm.get('name')!r} has no volume")
            else:
                out[vm.get("mountPath")] = vm.get("name")
                if "persistentVolumeClaim" in v:
                    problem(f"volume {vm.get('name')!r}: the object-storage recipe needs no shared claim")
        return out

    def volume_of(path, ms):
        for m, name in ms.items():
            if under(path, m):
                return name
        return None

    if "clipd-embed-s3" not in jobs or "clipd-merge-s3" not in jobs:
        problem(f"deploy/kubernetes/s3: want Jobs clipd-embed-s3 and clipd-merge-s3, found {sorted(map(str, jobs))}")
        return docs
    where, spec, pod, c = jobs["clipd-embed-s3"]
    args = check_indexed_embed(where, spec, pod, c, embed_flags)
    credentials(c, where)
    out = args.get("--output")
    if not isinstance(out, str) or not out.startswith("s3://") or len(out) <= len("s3://") or "/" not in out[5:]:
        problem(f"{where}: --output {out!r}: want s3://BUCKET/PREFIX")
    inp = args.get("--input")
    if not isinstance(inp, str) or not re.match(r"^(s3|https?)://", inp):
        problem(f"{where}: --input {inp!r}: with no shared volume, want an s3:// or http(s):// list")
    ms = mounts(pod, c)
    cache = args.get("--cache-dir")
    if "--weights" not in args:
        inits = [i for i in pod.get("initContainers", []) if i.get("command", [])[:3] == ["clipd", "weights", "fetch"]]
        if len(inits) != 1:
            problem(f"{where}: no init container runs clipd weights fetch (each pod needs the weights)")
        else:
            fa = parse_args(inits[0].get("command", [])[3:] + inits[0].get("args", []), fetch_flags, where + " init")
            if fa.get("--cache-dir") != cache or cache is None:
                problem(f"{where}: the init container fetches into {fa.get('--cache-dir')}, clipd embed reads {cache}")
            elif volume_of(cache, mounts(pod, inits[0])) is None or volume_of(cache, mounts(pod, inits[0])) != volume_of(cache, ms):
                problem(f"{where}: the cache {cache} is not on a volume both the init container and clipd mount")
    w3, _, pod3, c3 = jobs["clipd-merge-s3"]
    if c3.get("command", [])[:2] != ["clipd", "merge"]:
        problem(f"{w3}: the command is {c3.get('command')}, want clipd merge")
    ma = parse_args(c3.get("command", [])[2:] + c3.get("args", []), merge_flags, w3)
    if [a.rstrip("/") for a in ma.get("", [])] != [str(out).rstrip("/")] or "--output" in ma:
        problem(f"{w3}: runs clipd merge {ma}, want `clipd merge {out}` (it writes {out}/Images_Embedded.h5)")
    credentials(c3, w3)
    st = ma.get("--staging")
    if st is None or volume_of(st, mounts(pod3, c3)) is None:
        problem(f"{w3}: --staging {st!r} is not on a volume the pod mounts (the shards are downloaded there)")
    if c3.get("resources", {}).get("limits", {}).get("nvidia.com/gpu"):
        problem(f"{w3}: the merge needs no GPU")
    imgs = {c.get("image"), c3.get("image")} | {i.get("image") for i in pod.get("initContainers", [])}
    if imgs != set(images):
        problem(f"deploy/kubernetes/s3: images {sorted(map(str, imgs))}, the other recipe's {sorted(map(str, images))}")
    return docs


def check_dockerfile(text, cache_dir):
    lines = [l for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.lstrip().startswith("#")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(lines), re.M))
    froms = [l.split()[1:] for l in lines if l.startswith("FROM ")]

    def expand(s):
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s)

    if len(froms) < 2:
        problem("deploy/Dockerfile: not multi-stage")
        return
    final = expand(froms[-1][0])
    if not re.match(r"^nvidia/cuda:[\d.]+-runtime-", final):
        problem(f"deploy/Dockerfile: the final stage runs on {final}, want an nvidia/cuda runtime image")
    devel = [expand(f[0]) for f in froms if re.match(r"^nvidia/cuda:[\d.]+-devel-", expand(f[0]))]
    if not devel:
        problem("deploy/Dockerfile: no stage builds on an nvidia/cuda devel image")
    elif devel[0].split(":")[1].split("-")[0] != final.split(":")[1].split("-")[0] or devel[0].split("-")[-1] != final.split("-")[-1]:
        problem(f"deploy/Dockerfile: build stage {devel[0]} and runtime {final} differ in CUDA or OS version")
    gomod = re.search(r"^go (\d+)\.(\d+)", open(os.path.join(ROOT, "go.mod")).read(), re.M)
    gofrom = [expand(f[0]) for f in froms if expand(f[0]).startswith("golang:")]
    gv = re.match(r"golang:(\d+)\.(\d+)", gofrom[0]) if gofrom else None
    if not gv or (int(gv.group(1)), int(gv.group(2))) < (int(gomod.group(1)), int(gomod.group(2))):
        problem(f"deploy/Dockerfile: Go {gofrom} is older than go.mod's go {gomod.group(1)}.{gomod.group(2)}")
    if not re.search(r"cmake --install build", text) or "-tags clipengine_pkgconfig" not in text or "-DCLIP_CUDA=ON" not in text:
        problem("deploy/Dockerfile: does not install libclipengine (with CUDA) and build clipd against it")
    if 'ENTRYPOINT ["clipd"]' not in text:
        problem("deploy/Dockerfile: the entrypoint is not clipd")
    env_cache = re.search(r"^ENV CLIPD_CACHE=(\S+)", text, re.M)
    if cache_dir and (not env_cache or env_cache.group(1) != cache_dir):
        problem(f"deploy/Dockerfile: CLIPD_CACHE is {env_cache.group(1) if env_cache else None}, the recipe's cache {cache_dir}")


def check_sbatch(path, flags):
    """Checks the flags of the clipd command lines in an sbatch script; returns how many."""
    rel = os.path.relpath(path, ROOT)
    text = re.sub(r"\\\n", " ", open(path).read())
    n = 0
    for line in text.splitlines():
        m = re.match(r'^\s*(?:exec\s+)?"\$\{CLIPD:-clipd\}"\s+(\w+)(.*)$', line)
        if not m:
            continue
        n += 1
        cmd, rest = m.group(1), m.group(2)
        if cmd not in flags:
            problem(f"{rel}: clipd {cmd}: not a command this check knows")
            continue
        for f in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            if f not in flags[cmd]:
                problem(f"{rel}: clipd {cmd} does not know {f}")
    # Flags kept in arrays for the command line: NAME=(--flag ...).
    for f in re.findall(r"^\s*\w+=\((--[a-z][a-z0-9-]*)", text, re.M):
        if f not in flags["embed"]:
            problem(f"{rel}: clipd embed does not know {f}")
    if n == 0:
        problem(f"{rel}: no clipd command line found")
    return n


def check_sbatch_env(path):
    """Runs the task script with Slurm's array variables and CLIPD=echo: the shard and memory it
    gives clipd, and its refusals, without a cluster."""
    rel = os.path.relpath(path, ROOT)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CLIPD": "echo",
            "CLIPD_INPUT": "/shared/urls.txt", "CLIPD_OUTPUT": "/shared/OUT"}

    def task(what, env, code, want, unwanted=()):
        r = subprocess.run(["bash", path], env={**base, **env}, capture_output=True, text=True, timeout=30)
        got = (r.stdout.splitlines() or [""])[-1] if code == 0 else r.stderr
        if r.returncode != code or any(w not in got for w in want) or any(u in got for u in unwanted):
            problem(f"{rel}, {what}: exit {r.returncode} (want {code}), {got.strip()!r}: want {want}")

    full = {"SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0",
            "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    part = {"SLURM_ARRAY_JOB_ID": "8", "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1",
            "SLURM_ARRAY_TASK_MAX": "1", "SLURM_ARRAY_TASK_COUNT": "1"}
    task("task 2 of --array=0-3", {**full, "SLURM_MEM_PER_NODE": "32768"}, 0,
         ["embed --input /shared/urls.txt --output /shared/OUT --shard 2/4 --backend cuda", "--memory 27852MiB"])
    task("a resubmitted --array=1 without CLIPD_SHARDS", part, 2, ["set CLIPD_SHARDS"])
    task("a resubmitted --array=1 with CLIPD_SHARDS=4", {**part, "CLIPD_SHARDS": "4"}, 0, ["--shard 1/4"])
    task("CLIPD_ARGS with --memory", {**full, "SLURM_MEM_PER_NODE": "32768", "CLIPD_ARGS": "--memory 8GiB --dtype float16",
                                      "CLIPD_BACKEND": "cpu", "CLIPD_WEIGHTS": "/w"}, 0,
         ["--backend cpu --weights /w --memory 8GiB --dtype float16"], ["27852MiB"])
    task("task 4 of CLIPD_SHARDS=4", {**part, "SLURM_ARRAY_TASK_ID": "4", "CLIPD_SHARDS": "4"}, 2, ["past CLIPD_SHARDS"])
    task("no CLIPD_INPUT", {**full, "CLIPD_INPUT": ""}, 2, ["CLIPD_INPUT is not set"])
    task("not an array task", {}, 2, ["not an array task"])


if __name__ == "__main__":
    clipd = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "bin", "clipd")
    if not os.access(clipd, os.X_OK):
        sys.exit(f"check_recipes: {clipd} is missing: run make build")
    main(clipd)
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)
