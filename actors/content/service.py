"""The content library: uploads checked and prepared (HLS for video), access decided on every
request (membership tier or a purchase), short-lived signed URLs, stamped e-books, positions and
engagement. Over the content store, the object store and the members' benefits; time from an
injected clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from flashmart.actors.content import media
from flashmart.actors.content.media import Rendition
from flashmart.actors.content.stamp import Licence, stamp
from flashmart.actors.membership.ports import MemberBenefits
from flashmart.obs import logger
from flashmart.refusals import Refusal

log = logger("content")
UPLOAD_URL_TTL_S = 3600
STAFF = ("admin",)


class ContentLibrary:
    def __init__(
        self,
        store,
        objects,
        benefits_of: Callable[[int], Awaitable[MemberBenefits]],
        *,
        url_secret: str,
        url_ttl_s: int,
        upload_max_bytes: int,
        api_prefix: str = "/api/v1/content",
        clock: Callable[[], float] = time.time,
        submit_encode: Callable[[int], Awaitable[None]] | None = None,
    ):
        self.store, self.objects, self.benefits_of = store, objects, benefits_of
        self.url_secret, self.url_ttl_s, self.upload_max_bytes = (
            url_secret,
            url_ttl_s,
            upload_max_bytes,
        )
        self.api_prefix, self.clock = api_prefix, clock
        self.submit_encode = submit_encode  # tells the encoder a video is waiting (optional)

    # --- uploads ----------------------------------------------------------------------------------

    async def start_upload(
        self,
        owner_id: int,
        kind: str,
        title: str,
        content_type: str,
        size_bytes: int,
        min_tier: int | None,
        sku: str | None,
        ip: str | None,
    ) -> dict | Refusal:
        if refusal := media.check_declared(kind, content_type, size_bytes, self.upload_max_bytes):
            return refusal
        if min_tier is None and sku is None:
            return Refusal(
                "invalid", "an item needs min_tier (in the library), sku (sold), or both"
            )
        try:
            item = await self.store.create(
                kind,
                title,
                owner_id,
                min_tier,
                sku,
                content_type,
                size_bytes,
                media.TYPES[kind][content_type],
                ip,
            )
        except Exception as exc:  # the SKU is another item's
            if "content_items_sku_key" in str(exc):
                return Refusal("conflict", f"SKU {sku} already names another content item")
            raise
        url = self.objects.presigned_put_url(item["object_key"], UPLOAD_URL_TTL_S)
        return {
            "item": _public(item),
            "upload_url": url,
            "upload_method": "PUT",
            "expires_at": self.clock() + UPLOAD_URL_TTL_S,
        }

    async def finish_upload(self, user_id: int, role: str, item_id: int) -> dict | Refusal:
        """Check what was stored (size, type by its bytes). Music and e-books are ready at once; a
        video is queued for the encoder (status `processing`, progress in `progress_pct`): the
        answer does not wait for its renditions. A refused file is deleted."""
        item = await self.store.get(item_id)
        if item is None or (item["owner_id"] != user_id and role not in STAFF):
            return Refusal("not_found", f"no content item {item_id} of yours")
        if item["status"] in ("processing", "ready"):
            return _public(item)
        stored = self.objects.stat(item["object_key"])
        if stored is None:
            return Refusal("conflict", "nothing was uploaded yet: PUT the file to upload_url first")
        head = self.objects.get_range(item["object_key"], 0, media.SNIFF_BYTES)
        if refusal := media.check_uploaded(
            item["kind"], item["content_type"], item["size_bytes"], stored.size_bytes, head
        ):
            self.objects.delete(item["object_key"])
            return refusal
        if not await self.store.claim_processing(item_id):
            return _public(await self.store.get(item_id))
        if item["kind"] != "video":
            return _public(await self.store.finished(item_id, "ready"))
        if self.submit_encode is not None:
            # a lost poke is harmless: the encoder also picks up every item left `processing`
            try:
                await self.submit_encode(item_id)
            except Exception as exc:
                log.warning("encoder not told of item %s (%s): its sweep finds it", item_id, exc)
        return _public(await self.store.get(item_id))

    async def upload_status(self, user_id: int, role: str, item_id: int) -> dict | Refusal:
        """Where an upload is: uploading, processing (with progress_pct), ready, or failed with
        the reason. The uploader's own items only (staff: any)."""
        item = await self.store.get(item_id)
        if item is None or (item["owner_id"] != user_id and role not in STAFF):
            return Refusal("not_found", f"no content item {item_id} of yours")
        return _public(item)

    async def encode(self, item_id: int) -> dict | None:
        """The encoder's job for a video left `processing`: HLS renditions (ffmpeg, one rung after
        the other, progress recorded after each), stored beside the original; `ready`, or `failed`
        with the reason. Runs in the encoder actor, never on a request."""
        from flashmart.actors.content.transcode import choose_rungs, encode_rung, probe

        item = await self.store.get(item_id)
        if item is None or item["status"] != "processing" or item["kind"] != "video":
            return None
        try:
            with tempfile.TemporaryDirectory(prefix="fm-hls-") as tmp:
                src, out = Path(tmp) / "original", Path(tmp) / "hls"
                await asyncio.to_thread(self.objects.download, item["object_key"], src)
                info = await asyncio.to_thread(probe, src)
                rungs = choose_rungs(info["height"])
                renditions = []
                for n, rung in enumerate(rungs, 1):
                    made = await asyncio.to_thread(encode_rung, src, out, rung, info)
                    renditions.append(await asyncio.to_thread(self._store_rendition, item, made))
                    # the last step (ready) writes 100
                    await self.store.set_progress(item_id, min(99, 100 * n // len(rungs)))
        except Exception as exc:
            log.warning("content item %s could not be encoded: %s", item_id, exc)
            return await self.store.finished(
                item_id, "failed", failure=f"the video could not be prepared: {exc}"[:500]
            )
        return await self.store.finished(item_id, "ready", info["duration_s"], renditions)

    def _store_rendition(self, item: dict, made: dict) -> dict:
        prefix = f"content/{item['id']}/hls/{made['name']}"
        for f in sorted(made["dir"].iterdir()):
            kind = "application/vnd.apple.mpegurl" if f.suffix == ".m3u8" else "video/mp2t"
            self.objects.put_file(f"{prefix}/{f.name}", f, kind)
        return Rendition(
            made["name"], made["height"], made["width"], made["bandwidth"], f"{prefix}/index.m3u8"
        ).as_json()

    # --- access -----------------------------------------------------------------------------------

    async def _entitled_item(self, user_id: int, item_id: int) -> dict | Refusal:
        """Checked on every access: the item is ready and the caller's membership tier includes
        it or they bought it."""
        item = await self.store.get(item_id)
        if item is None or item["status"] != "ready":
            return Refusal("not_found", f"no content item {item_id} is available")
        mb = await self.benefits_of(user_id)
        in_library = media.entitled(
            item["min_tier"], mb.benefits.content_library, mb.tier if mb.plan_id else None, False
        )
        if not in_library and not await self.store.bought(user_id, item["sku"]):
            how = []
            if item["min_tier"] is not None:
                how.append(f"a membership of tier {item['min_tier']} or higher")
            if item["sku"]:
                how.append(f"buying it (SKU {item['sku']})")
            return Refusal("not_entitled", f"this {item['kind']} needs {' or '.join(how)}")
        return item

    async def mine(self, user_id: int, kind: str | None, limit: int, offset: int) -> list[dict]:
        """The items the user may open now (their membership's library and what they bought)."""
        mb = await self.benefits_of(user_id)
        tier = mb.tier if mb.plan_id and mb.benefits.content_library else None
        return await self.store.entitled_items(user_id, tier, kind, limit, offset)

    async def access(self, user_id: int, email: str, item_id: int) -> dict | Refusal:
        """Where to fetch the item, valid for `url_ttl_s`: an HLS master playlist for a video, a
        signed URL (range requests work on it) for music and e-books (stamped for the reader)."""
        item = await self._entitled_item(user_id, item_id)
        if isinstance(item, Refusal):
            return item
        now = self.clock()
        expires_at = int(now) + self.url_ttl_s
        out = {"item": _public(item), "expires_at": expires_at}
        if item["kind"] == "video":
            out["hls"] = self._api_url(user_id, item_id, "master", expires_at)
        elif item["kind"] == "music":
            out["url"] = self.objects.presigned_get_url(item["object_key"], self.url_ttl_s)
        else:
            key = await asyncio.to_thread(self._stamped_copy, item, user_id, email, now)
            name = f"{item['title']}.{media.TYPES['ebook'][item['content_type']]}"
            out["url"] = self.objects.presigned_get_url(
                key, self.url_ttl_s, download_name=name, content_type=item["content_type"]
            )
        out["position_s"] = await self.store.position(user_id, item_id)
        return out

    def _stamped_copy(self, item: dict, user_id: int, email: str, now: float) -> str:
        """The reader's own copy, stamped once and kept beside the original."""
        key = f"content/{item['id']}/stamped/{user_id}.{media.TYPES['ebook'][item['content_type']]}"
        if self.objects.stat(key) is not None:
            return key
        issued = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        licence = Licence(email, user_id, item["id"], issued, uuid.uuid4().hex[:16])
        data = stamp(item["content_type"], self.objects.get(item["object_key"]), licence)
        self.objects.put(key, data, item["content_type"])
        return key

    def _api_url(self, user_id: int, item_id: int, name: str, expires_at: int) -> str:
        query = media.sign(self.url_secret, user_id, item_id, name, expires_at)
        return f"{self.api_prefix}/{item_id}/hls/{quote(name)}.m3u8?{query}"

    async def playlist(
        self, item_id: int, name: str, user_id: int, expires_at: int, sig: str
    ) -> str | Refusal:
        """The master playlist (`name` == "master") or a rendition's, for a signed, unexpired link;
        the entitlement is checked again, segments get store URLs that end with the link."""
        if refusal := media.verify(
            self.url_secret, user_id, item_id, name, expires_at, sig, self.clock()
        ):
            return refusal
        item = await self._entitled_item(user_id, item_id)
        if isinstance(item, Refusal):
            return item
        renditions = [Rendition(**r) for r in item["renditions"]]
        if name == "master":
            return media.master_playlist(
                renditions, lambda n: self._api_url(user_id, item_id, n, expires_at)
            )
        rendition = next((r for r in renditions if r.name == name), None)
        if rendition is None:
            return Refusal("not_found", f"no rendition {name!r} of item {item_id}")
        text = self.objects.get(rendition.playlist_key).decode()
        folder = rendition.playlist_key.rsplit("/", 1)[0]
        ttl = max(1, int(expires_at - self.clock()))

        def segment_url(segment: str) -> str:
            assert media.segment_name_ok(segment), segment
            return self.objects.presigned_get_url(f"{folder}/{segment}", ttl)

        return media.rewrite_media_playlist(text, segment_url)

    # --- positions and engagement -----------------------------------------------------------------

    async def progress(
        self,
        user_id: int,
        item_id: int,
        position_s: float,
        watched_s: float,
        started: bool,
        completed: bool,
    ) -> dict | Refusal:
        item = await self._entitled_item(user_id, item_id)
        if isinstance(item, Refusal):
            return item
        duration = item["duration_s"]
        if duration and position_s > duration + 1:
            return Refusal("invalid", f"position {position_s} s is past the end ({duration} s)")
        return await self.store.save_progress(
            user_id, item_id, position_s, watched_s, started, completed
        )


def _public(item: dict) -> dict:
    return {
        k: item[k]
        for k in (
            "id",
            "kind",
            "title",
            "min_tier",
            "sku",
            "status",
            "content_type",
            "size_bytes",
            "duration_s",
            "failure",
        )
    } | {
        "renditions": [r["name"] for r in item.get("renditions") or []],
        "progress_pct": item.get("progress_pct", 0),
        "status_url": f"/api/v1/content/uploads/{item['id']}",
    }
