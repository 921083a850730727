"""Checking published versions against their manifests (``street2shop verify``).

Each version's ``_manifest.json`` records the sha256 of its files at publish time. A check
hashes every file again and reports, per version: ``ok``, ``corrupt`` (a file differs, is
missing, or is not in the manifest), or ``unchecked`` (published before checksums were
recorded: nothing to compare with, which is said rather than counted as damage). Temporary
folders left by killed writers are counted too: they are never versions, but worth cleaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from street2shop.storage.store import MANIFEST, ArtifactRef, ArtifactStore, Manifest, file_sha256

OK, CORRUPT, UNCHECKED = "ok", "corrupt", "unchecked"


@dataclass
class VersionCheck:
    ref: ArtifactRef
    status: str
    files: int
    #: one line per problem, each naming the file
    problems: list[str] = field(default_factory=list)


def check_version(store: ArtifactStore, manifest: Manifest) -> VersionCheck:
    """Hash every file of one published version and compare with its manifest."""
    ref = manifest.ref
    if not manifest.sha256:
        return VersionCheck(ref, UNCHECKED, len(manifest.files), ["no checksums recorded (published before they were)"])
    vdir = store._local_dir(ref)
    if store.remote is not None:
        store._fetch(ref)  # the files are checked where they are read: in the mirror
    problems = []
    for name in manifest.files:
        path = vdir / name
        want = manifest.sha256.get(name)
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif want is None:
            problems.append(f"{name}: no checksum recorded")
        elif (found := file_sha256(path)) != want:
            problems.append(f"{name}: sha256 {found[:16]}... but {want[:16]}... was recorded (damaged or changed)")
    if vdir.is_dir():
        extra = sorted(p.name for p in vdir.iterdir() if p.name != MANIFEST and p.name not in manifest.files)
        problems += [f"{name}: not in the manifest (added after publishing)" for name in extra]
    return VersionCheck(ref, CORRUPT if problems else OK, len(manifest.files), problems)


def verify_store(store: ArtifactStore, stage: str | None = None) -> list[VersionCheck]:
    """Every published version (of ``stage``, if given), oldest first."""
    return [check_version(store, m) for m in store.manifests(stage)]


def temporary_folders(store: ArtifactStore) -> int:
    """Temporary folders of killed writers under the local store (never listed as versions)."""
    return sum(1 for _ in store.root.glob("*/*/.tmp-*")) if store.root.exists() else 0


__all__ = ["CORRUPT", "OK", "UNCHECKED", "VersionCheck", "check_version", "temporary_folders", "verify_store"]
