#!/usr/bin/env python3
"""Builds the seed corpora of the fuzz targets from the fixtures (fuzz/seeds/<target>/).

- header, image: the first 64 KiB of every fixture image (LUKS2 and LUKS1), and of every image
  of the validation corpus (fixtures/validation/images.tar.gz, 88 damaged LUKS2 headers). A
  copy larger than that is cut: the targets read zeros past the input and fix the checksum
  over them, so the JSON text (which comes first) still loads.
- metadata: the JSON area (bytes 4096..hdr_size) of every LUKS2 seed whose area is at most
  64 KiB (larger areas are reached through the image target).
- luks1: the first 4 KiB of each LUKS1 fixture.
- unlock: one byte (passphrase length), the passphrase, then the image up to its data offset
  (header, keyslot areas), for every fixture the manifest says opens.
- dm: device-mapper replies (DEV_STATUS, TABLE_STATUS with a crypt line, LIST_DEVICES,
  LIST_VERSIONS) and crypt table lines.
- ext4: small plaintext filesystems made by `mkfs.ext4 -d` (e2fsprogs; skipped with a note
  when it is missing) from the source tree of the rootless fixtures
  (fixtures/rootless/make-fixtures.py, its "small" tree with a shorter medium.bin, plus an
  htree directory, a sparse file, a long symlink and a FIFO), directories indexed by
  `e2fsck -fD`: ext4 with 1 KiB and 4 KiB blocks, with and without metadata_csum, with a
  journal holding one transaction to replay, ext3 and ext2 (block maps, no extents); and one
  whose htree root counts 0xffff entries (ext4-view 1.0.0 panicked on it; the vendored copy
  reports a corrupt filesystem). Trailing zeros are cut (the target pads them back).
- format: the input is a string of choices (options, passphrases, operations), so any bytes
  do; a few pseudo-random strings of 32 to 480 bytes to start from.

Deterministic (but for the timestamps inside the ext4 seeds); run from anywhere.
Usage: make-seeds.py [OUTDIR]
"""
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "fixtures")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "seeds")
HDR_SIZES = [0x4000 << i for i in range(9)]


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def hdr_size(img):
    if len(img) >= 16 and img[:6] == b"LUKS\xba\xbe" and img[6:8] == b"\x00\x02":
        (n,) = struct.unpack(">Q", img[8:16])
        if n in HDR_SIZES:
            return n
    return None


def header_seed(name, img):
    n = hdr_size(img)
    seed = img[:65536]
    put("header", name, seed)
    if img[:6] == b"LUKS\xba\xbe" and img[6:8] == b"\x00\x01":
        put("luks1", name, img[:4096])
        return
    put("image", name, seed)
    if n and len(img) >= n and n - 4096 <= 65536:
        put("metadata", name, img[4096:n])


def main():
    manifest = json.load(open(os.path.join(FIX, "manifest.json")))
    images = {}
    for case in manifest:
        for key in ("image", "header"):
            rel = case.get(key)
            if rel and rel not in images:
                images[rel] = open(os.path.join(FIX, rel), "rb").read()
    for rel, img in sorted(images.items()):
        header_seed(os.path.basename(rel), img)

    tgz = os.path.join(FIX, "validation", "images.tar.gz")
    if os.path.exists(tgz):
        with tarfile.open(tgz) as t:
            for m in t.getmembers():
                if not m.isfile():
                    continue
                f = t.extractfile(m)
                head = f.read(4 << 20)
                header_seed("validation-" + os.path.basename(m.name), head)

    # unlock: passphrase + image up to the data offset, for cases that open.
    done = set()
    for case in manifest:
        if case["expect"] != "ok" or case.get("header") or case.get("key_slot") is not None:
            continue
        pw = case.get("passphrase")
        if pw is None or case["image"] in done:
            continue
        done.add(case["image"])
        img = images[case["image"]]
        pw = pw.encode()
        if len(pw) >= 16:
            continue
        # Past 600 KiB there is only LUKS1 key material of high keyslots.
        end = min(case["data_offset"] or len(img), 600 * 1024)
        put("unlock", case["name"], bytes([len(pw)]) + pw + img[:end])

    # dm: replies as the kernel writes them (native-endian, x86-64).
    def dm_header(data_size, target_count, flags, name=b"", uuid=b""):
        h = bytearray(312)
        struct.pack_into("=III", h, 0, 4, 48, 0)
        struct.pack_into("=IIIiII", h, 12, data_size, 312, target_count, 1, flags, 0)
        struct.pack_into("=Q", h, 40, (253 << 8) | 3)
        h[48 : 48 + len(name)] = name
        h[176 : 176 + len(uuid)] = uuid
        return h

    line = b"aes-xts-plain64 :64:logon:cryptsetup:3e4ae3b0-3f1a-4ac7-9d08-1f2e3d4c5b6a-d0 0 7:0 32768 2 allow_discards sector_size:4096"
    spec = bytearray(40)
    struct.pack_into("=QQiI", spec, 0, 0, 2048, 0, 0)
    spec[24:29] = b"crypt"
    body = bytes(spec) + line + b"\0"
    body += b"\0" * (-len(body) % 8)
    put("dm", "table-status", bytes(dm_header(312 + len(body), 1, 1 << 6, b"vault", b"CRYPT-LUKS2-3e4ae3b03f1a4ac79d081f2e3d4c5b6a-vault")) + body)
    put("dm", "dev-status", bytes(dm_header(305, 0, 0, b"vault")))
    rec1 = struct.pack("=QI", (253 << 8) | 0, 24) + b"vault\0" + b"\0" * 6
    rec2 = struct.pack("=QI", (253 << 8) | 1, 0) + b"other\0" + b"\0" * 6
    put("dm", "list-devices", bytes(dm_header(312 + 48, 0, 0)) + rec1 + rec2)
    v1 = struct.pack("=IIII", 32, 1, 23, 0) + b"crypt\0" + b"\0" * 10
    v2 = struct.pack("=IIII", 0, 1, 4, 0) + b"linear\0" + b"\0" * 9
    put("dm", "list-versions", bytes(dm_header(312 + 64, 0, 0)) + v1 + v2)
    put("dm", "crypt-line", line)
    put("dm", "crypt-line-hex", b"aes-cbc-essiv:sha256 " + b"00" * 32 + b" 0 8:16 4096")

    for i in range(8):
        data = b"".join(hashlib.sha256(b"format-%d-%d" % (i, j)).digest() for j in range(1 + 2 * i))
        put("format", "choices-%d" % i, data)


def ext4_tree(root):
    """The rootless fixtures' small tree, made smaller, plus what the full tree adds."""
    path = os.path.join(ROOT, "fixtures", "rootless", "make-fixtures.py")
    spec = importlib.util.spec_from_file_location("make_fixtures", path)
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    mf.build_tree(root, "small")
    with open(f"{root}/medium.bin", "r+b") as f:
        f.truncate(5000)
    with open(f"{root}/sparse.bin", "wb") as f:
        f.write(mf.stream("sparse-head", 700))
        f.seek(20 * 1024, 1)
        f.write(mf.stream("sparse-tail", 300))
    long_dir = f"{root}/long/" + "/".join(["x" * 20] * 4)
    mf.write(f"{long_dir}/target.txt", b"reached through a long symlink\n")
    os.symlink(os.path.relpath(f"{long_dir}/target.txt", root), f"{root}/long-link")
    os.symlink("loop2", f"{root}/loop1")
    os.symlink("loop1", f"{root}/loop2")
    os.mkfifo(f"{root}/fifo", 0o644)
    for i in range(120):
        mf.write(f"{root}/many/entry-{i:04d}-" + "n" * 32, f"entry {i}\n".encode() if i % 40 == 0 else b"")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: {r.stderr.decode()}")
    return r.stdout.decode()


def ext4_seeds():
    if not all(shutil.which(t) for t in ("mkfs.ext4", "e2fsck", "debugfs", "tune2fs")):
        print("make-seeds: e2fsprogs missing (mkfs.ext4, e2fsck, debugfs, tune2fs): no ext4 seeds",
              file=sys.stderr)
        return
    work = tempfile.mkdtemp()
    try:
        src = os.path.join(work, "src")
        try:
            ext4_tree(src)
        except ImportError as e:
            # make-fixtures.py imports python3-cryptography (for its vaults, not for this).
            print(f"make-seeds: cannot load fixtures/rootless/make-fixtures.py ({e}): no ext4 seeds",
                  file=sys.stderr)
            return
        # name: mkfs options, size in KiB, whether to add a journal with one transaction.
        variants = {
            "ext4-1k-csum": (["-b", "1024"], 512, False),
            "ext4-4k-csum": (["-b", "4096"], 1024, False),
            "ext4-1k-nocsum": (["-b", "1024", "-O", "^metadata_csum"], 512, False),
            "ext4-1k-journal": (["-b", "1024"], 4096, True),
            "ext3-1k": (["-t", "ext3", "-b", "1024"], 512, False),
            "ext2-1k-128": (["-t", "ext2", "-b", "1024", "-I", "128"], 512, False),
        }
        for name, (opts, kib, journal) in variants.items():
            fs = os.path.join(work, name)
            with open(fs, "wb") as f:
                f.truncate(kib * 1024)
            r = subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "192", "-O", "^has_journal",
                                "-E", "hash_seed=7a2f0d00-6d6f-4e00-9a11-0000000000bb",
                                "-U", "7a2f0d00-6d6f-4e00-9a11-0000000000aa"]
                               + opts + ["-d", src, fs], capture_output=True)
            if r.returncode != 0:
                sys.exit(f"mkfs.ext4 {name}: {r.stderr.decode()}")
            # Index the directories (htree); exit code 1 means "optimized".
            r = subprocess.run(["e2fsck", "-fyD", fs], capture_output=True)
            if r.returncode not in (0, 1):
                sys.exit(f"e2fsck {name}: {r.stderr.decode()}")
            if journal:
                # The smallest journal (1 MiB) right after the data, so that the seed stops
                # a few blocks into it; then one transaction that rewrites the root directory
                # block with its own content (replayed by the reader, the tree unchanged).
                run(["tune2fs", "-J", "size=1,location=256", fs])
                block = int(run(["debugfs", "-R", "bmap / 0", fs]).split()[0])
                copy = os.path.join(work, "block")
                with open(fs, "rb") as f, open(copy, "wb") as out:
                    f.seek(block * 1024)
                    out.write(f.read(1024))
                subprocess.run(["debugfs", "-w", "-f", "-", fs], check=True, capture_output=True,
                               input=f"jo -c\njw -b {block} {copy}\njc\n".encode())
            img = open(fs, "rb").read()
            put("ext4", name, img.rstrip(b"\0"))
            if name == "ext4-1k-csum":
                # The htree root of /many (its first block) with count 0xffff at 0x22.
                root = int(run(["debugfs", "-R", "bmap /many 0", fs]).split()[0]) * 1024
                bad = bytearray(img)
                bad[root + 0x22:root + 0x24] = b"\xff\xff"
                put("ext4", "ext4-1k-htree-count-overflow", bytes(bad).rstrip(b"\0"))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
    ext4_seeds()
