"""BucketService: the S3 buckets, name spaces of the product's file names, kept as metadata records.

A bucket B holds the files whose names start with `B/` (peer/s3/names.py); its record carries only
its name, creation time, versioning state and default redundancy policy, never a list of its files,
so files uploaded with `dfs` under `B/` belong to it like objects PUT over S3 (and take its policy
when they name none). A bucket is deleted only while no file
starts with `B/`. The check and the deletion are two steps: a PUT racing a DeleteBucket can leave a
file whose bucket is gone, which is listed again once a bucket of that name is created.
"""

from __future__ import annotations

import builtins
import logging

from peer.clock import Clock, SystemClock
from peer.errors import BucketNotEmpty, BucketNotFound, InvalidRequest
from peer.files import rules
from peer.files.service import FileService
from peer.metadata.store import BUCKET_VERSIONING, AsyncMetadata, BucketRecord
from peer.s3.names import bucket_name_problem, bucket_prefix

log = logging.getLogger(__name__)


class BucketService:
    def __init__(self, files: FileService, metadata: AsyncMetadata, clock: Clock | None = None) -> None:
        self._files = files
        self._metadata = metadata
        self._clock = clock or SystemClock()

    async def create(self, name: str) -> BucketRecord:
        """A new bucket; BucketExists when one of that name exists."""
        self._files.require_metadata()
        record = BucketRecord(_checked(name), self._clock.wall())
        await self._metadata.add_bucket(record)
        log.info("created bucket %s", name)
        return record

    async def get(self, name: str) -> BucketRecord:
        """The bucket's record; BucketNotFound when there is none."""
        self._files.require_metadata()
        record = await self._metadata.get_bucket(name)
        if record is None:
            raise BucketNotFound(name)
        return record

    async def list(self) -> builtins.list[BucketRecord]:
        """Every bucket, by name."""
        self._files.require_metadata()
        return await self._metadata.list_buckets()

    async def set_versioning(self, name: str, state: str) -> BucketRecord:
        """Records "Enabled" or "Suspended"; a bucket never returns to "" (never configured), as in S3."""
        if state not in BUCKET_VERSIONING or not state:
            raise InvalidRequest(f"versioning state must be Enabled or Suspended, not {state[:20]!r}")
        self._files.require_metadata()
        record = await self._metadata.set_bucket_versioning(name, state)
        log.info("bucket %s: versioning %s", name, state)
        return record

    async def set_policy(self, name: str, policy: str) -> BucketRecord:
        """Records the redundancy policy of the uploads into the bucket that name none; "" clears it
        (the cluster's applies). Stored in its canonical spelling; versions already stored keep theirs."""
        checked = rules.check_policy(policy)
        self._files.require_metadata()
        record = await self._metadata.set_bucket_policy(_checked(name), checked)
        log.info("bucket %s: default policy %s", name, checked or "cleared (the cluster's)")
        return record

    async def delete(self, name: str) -> None:
        """Removes an empty bucket; BucketNotEmpty while a file starts with `name/`, even one whose
        latest version is a delete marker (its versions would come back with a new bucket of that name)."""
        await self.get(name)
        page = await self._files.list_all_versions(bucket_prefix(name), 1)
        if page.versions:
            raise BucketNotEmpty(name)
        await self._metadata.delete_bucket(name)
        log.info("deleted bucket %s", name)


def _checked(name: str) -> str:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise InvalidRequest(f"invalid bucket name {name[:70]!r}: {problem}")
    return name
