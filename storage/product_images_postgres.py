"""Uploaded product images on PostgreSQL (the renditions themselves are in the object store)."""

from __future__ import annotations

from psycopg import AsyncConnection

_COLUMNS = "id, product_id, url, thumb_url, medium_url, object_keys, width, height, position"


async def image_count(conn: AsyncConnection, product_id: int) -> int:
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM product_images WHERE product_id = %s", (product_id,)
        )
    ).fetchone()
    return row["n"]


async def add_image(
    conn: AsyncConnection,
    product_id: int,
    urls: dict[str, str],
    keys: list[str],
    width: int,
    height: int,
) -> dict:
    """Append an uploaded image after the product's others (the caller holds the product's lock)."""
    return await (
        await conn.execute(
            f"""INSERT INTO product_images
                (product_id, url, thumb_url, medium_url, object_keys, width, height, position)
            VALUES (%s, %s, %s, %s, %s, %s, %s,
                    (SELECT coalesce(max(position) + 1, 0) FROM product_images WHERE product_id = %s))
            RETURNING {_COLUMNS}""",
            (
                product_id,
                urls["large"],
                urls["thumb"],
                urls["medium"],
                keys,
                width,
                height,
                product_id,
            ),
        )
    ).fetchone()


async def delete_image(conn: AsyncConnection, product_id: int, image_id: int) -> dict | None:
    return await (
        await conn.execute(
            f"DELETE FROM product_images WHERE id = %s AND product_id = %s RETURNING {_COLUMNS}",
            (image_id, product_id),
        )
    ).fetchone()
