#!/usr/bin/env python3
"""Write a one-layer OCI image archive from files on this machine: no daemon, no registry.

  oci_image.py --out OUT.tar --name REF [--entrypoint ARG]... [--cmd ARG]... [--user U:G]
               [--env K=V]... [--workdir DIR] [--file SRC=DEST]... [--tree SRC=DEST]...
               [--binary SRC=DEST]... [--ca-certificates]

--file copies one file, --tree a directory (recursively), --binary an ELF executable plus
every shared library `ldd` says it loads (at the same paths, with the dynamic loader), so
the image holds exactly what the program links. --ca-certificates adds the host's bundle at
/etc/ssl/certs/ca-certificates.crt. Every image gets /etc/passwd and /etc/group with root
and nonroot (65532), /tmp (1777) and an /etc/nsswitch.conf ("hosts: files dns": glibc's
resolver then reads /etc/hosts, which the kubelet writes, and /etc/resolv.conf).

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that
`ctr images import`, `kind load image-archive`, `skopeo copy oci-archive:` and
`podman load` read; REF (e.g. docker.io/uploadbucket/sidecar:0.1.0) is recorded in the
index as io.containerd.image.name and its tag as org.opencontainers.image.ref.name. The
output is reproducible: same inputs, same digests.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BASE_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    "etc/group": "root:x:0:\nnonroot:x:65532:\n",
    "etc/nsswitch.conf": "hosts: files dns\n",
}


def shared_libraries(binary):
    """The files `ldd` resolves for BINARY (libraries and the loader), absolute paths."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if out.returncode != 0 and "not a dynamic executable" in (out.stdout + out.stderr):
        return []  # static
    if out.returncode != 0:
        sys.exit(f"oci_image.py: ldd {binary}: {out.stderr.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            sys.exit(f"oci_image.py: {binary} needs a library this machine lacks: {line}")
        m = re.match(r"(?:\S+ => )?(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def collect(args):
    """DEST (no leading slash) -> host path, for every file the image holds."""
    files = {}

    def add(src, dest):
        dest = dest.lstrip("/")
        if not os.path.isfile(src):
            sys.exit(f"oci_image.py: {src} is not a file")
        files[dest] = src

    for spec in args.file:
        src, dest = spec.split("=", 1)
        add(src, dest)
    for spec in args.tree:
        src, dest = spec.split("=", 1)
        for root, dirs, names in os.walk(src):
            dirs.sort()
            for n in names:
                path = os.path.join(root, n)
                if os.path.islink(path) and not os.path.exists(path):
                    continue
                add(path, os.path.join(dest, os.path.relpath(path, src)))
    for spec in args.binary:
        src, dest = spec.split("=", 1)
        add(src, dest)
        for lib in shared_libraries(src):
            add(os.path.realpath(lib), lib)
    if args.ca_certificates:
        add(os.path.realpath(CA_BUNDLE), CA_BUNDLE)
    return files


def layer_tar(files):
    """The layer: directories, BASE_FILES and FILES, sorted, owned by root, mtime 0."""
    buf = io.BytesIO()
    dirs = {"etc", "tmp", "home", "home/nonroot"}
    for dest in list(files) + list(BASE_FILES):
        parts = dest.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            if d == "home/nonroot":
                info.uid = info.gid = 65532
            tar.addfile(info)
        entries = {k: ("base", v) for k, v in BASE_FILES.items()}
        entries.update({k: ("host", v) for k, v in files.items()})
        for dest in sorted(entries):
            kind, value = entries[dest]
            info = tarfile.TarInfo(dest)
            if kind == "base":
                data = value.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            else:
                st = os.stat(value)
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(value, "rb") as f:
                    tar.addfile(info, f)
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--user", default="65532:65532")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="/")
    p.add_argument("--file", action="append", default=[])
    p.add_argument("--tree", action="append", default=[])
    p.add_argument("--binary", action="append", default=[])
    p.add_argument("--ca-certificates", action="store_true")
    args = p.parse_args()
    if ":" not in args.name.rsplit("/", 1)[-1]:
        sys.exit("oci_image.py: --name needs a tag (e.g. docker.io/uploadbucket/sidecar:0.1.0)")

    layer = layer_tar(collect(args))
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    gz = gzip.compress(layer, compresslevel=9, mtime=0)
    epoch = "1970-01-01T00:00:00Z"
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": epoch,
        "config": {
            "User": args.user,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"SSL_CERT_FILE={CA_BUNDLE}"] + args.env,
            "WorkingDir": args.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": epoch, "created_by": "tests/scripts/oci_image.py"}],
    }
    if args.entrypoint:
        config["config"]["Entrypoint"] = args.entrypoint
    if args.cmd:
        config["config"]["Cmd"] = args.cmd
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(gz)}],
    }
    man = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **blob(man),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    with tarfile.open(args.out, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(path, data):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index, sort_keys=True, separators=(",", ":")).encode())
        for digest in sorted(blobs):
            add("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest])
    print(f"{args.name}: {len(gz)} bytes compressed, {len(layer)} unpacked (manifest {index['manifests'][0]['digest']})")


if __name__ == "__main__":
    main()
