"""S3 storage classes as the product's redundancy policies, both ways.

A request's `x-amz-storage-class` picks the policy its object is stored with, and a GET or HEAD
answers with the class of the policy the version was stored with. The mapping is fixed, so a client
sees the same class on every cluster:

    STANDARD            the bucket's default policy, else the cluster's
    REDUCED_REDUNDANCY  rep:1   one copy: cheaper, and lost with the disk that holds it
    STANDARD_IA         ec:4+2  erasure coded: survives two lost peers (as rep:3) in 1.5x the space
    ONEZONE_IA          ec:4+1  erasure coded: survives one lost peer (as rep:2) in 1.25x the space

Any other class (GLACIER, DEEP_ARCHIVE, INTELLIGENT_TIERING, ...) and any unknown name is refused with
InvalidStorageClass, never stored as something else. The policies are spellings only: whether this
peer can store one, and whether enough peers are usable for it, is the file service's to judge.
"""

from __future__ import annotations

from peer.s3.errors import S3Error

__all__ = ["CLASS_POLICIES", "STANDARD", "requested_policy", "storage_class_of"]

STANDARD = "STANDARD"
CLASS_POLICIES = {
    "REDUCED_REDUNDANCY": "rep:1",
    "STANDARD_IA": "ec:4+2",
    "ONEZONE_IA": "ec:4+1",
}
"""The classes other than STANDARD that map to a policy, and the policy each is stored with."""

_CLASS_OF = {policy: name for name, policy in CLASS_POLICIES.items()}


def requested_policy(header: str | None) -> str | None:
    """The policy an `x-amz-storage-class` header asks for; None for STANDARD or no header (the
    bucket's default applies). Raises InvalidStorageClass for a class without a policy."""
    if header is None:
        return None
    name = header.strip()
    if name == STANDARD:
        return None
    policy = CLASS_POLICIES.get(name)
    if policy is None:
        shown = name[:40] + ("..." if len(name) > 40 else "")
        raise S3Error("InvalidStorageClass", "The storage class you specified is not valid.",
                      extra={"StorageClassRequested": shown})
    return policy


def storage_class_of(policy: str) -> str:
    """The class a version stored with `policy` reports: the one that maps to it, else STANDARD."""
    return _CLASS_OF.get(policy, STANDARD)
