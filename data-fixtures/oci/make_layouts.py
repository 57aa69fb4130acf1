#!/usr/bin/env python3
"""Builds the small OCI image layouts used by the skopeo tests, deterministically
(fixed mtimes, sorted entries), so that re-running produces identical digests.

  layout-single/  one linux/amd64 image, tagged "v1"
  layout-multi/   an index of linux/amd64 + linux/arm64 images, tagged "v1"

Run from this directory: python3 make_layouts.py
"""
import gzip, hashlib, io, json, os, shutil, tarfile

def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

def layer(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as g:
        g.write(raw.getvalue())
    return raw.getvalue(), out.getvalue()

def write_blob(root, data):
    d = sha(data)
    p = os.path.join(root, "blobs", "sha256", d.split(":")[1])
    with open(p, "wb") as f:
        f.write(data)
    return d

def image(root, arch, text):
    tar, gz = layer({"hello.txt": text.encode()})
    ld = write_blob(root, gz)
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(tar)]},
        "history": [{"created_by": "pfai fixture"}],
    }, sort_keys=True, separators=(",", ":")).encode()
    cd = write_blob(root, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": len(gz)}],
    }, separators=(",", ":")).encode()
    md = write_blob(root, manifest)
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"}}

def layout(root, descs_for_index, top):
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    top = dict(top)
    top["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [top]}, f)

def fresh(root):
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "blobs", "sha256"))

fresh("layout-single")
d = image("layout-single", "amd64", "hello from pfai\n")
d.pop("platform")
layout("layout-single", None, d)

fresh("layout-multi")
a = image("layout-multi", "amd64", "hello amd64\n")
b = image("layout-multi", "arm64", "hello arm64\n")
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [a, b]}, separators=(",", ":")).encode()
idx = write_blob("layout-multi", index)
layout("layout-multi", None, {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx, "size": len(index)})
