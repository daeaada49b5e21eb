"""Synthetic catalog: a category tree, brands, sellers and products that read like a real shop.

Deterministic by seed: product i is generated from Random(seed, chunk of i), so any slice of the
catalog can be regenerated alone (the benchmark indexes the same products it bulk-loads without
reading them back). Popularity follows a Zipf law over a seeded permutation of the products.

    python -m flashmart.sim.catalog_gen --products 100000 --database-url postgresql://...
"""

from __future__ import annotations

import io
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

CHUNK = 10_000  # products per deterministic chunk
ZIPF_S = 1.07  # popularity exponent
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
COLORS = ["black", "white", "silver", "red", "blue", "green", "grey", "navy", "pink", "gold"]
SIZES = ["XS", "S", "M", "L", "XL", "XXL"]


@dataclass(frozen=True)
class Leaf:
    """A leaf category and how its products look."""

    path: str  # "electronics/computers/laptops"
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    specs: tuple[str, ...]  # spec fragments appended to titles
    price: tuple[float, float]  # lognormal median, sigma
    weight_g: tuple[int, int]
    variant_axis: str  # "color", "size" or "storage"


def _leaf(path, nouns, adjectives, specs, price, weight, axis="color") -> Leaf:
    return Leaf(
        path,
        tuple(nouns.split(",")),
        tuple(adjectives.split(",")),
        tuple(specs.split(",")),
        price,
        weight,
        axis,
    )


LEAVES: tuple[Leaf, ...] = (
    _leaf(
        "electronics/computers/laptops",
        "Laptop,Notebook,Ultrabook,Chromebook",
        "UltraSlim,Pro,Gaming,Business,Convertible,Lightweight",
        '13.3",14",15.6",16GB RAM,32GB RAM,512GB SSD,1TB SSD,OLED',
        (900, 0.45),
        (1100, 2600),
        "storage",
    ),
    _leaf(
        "electronics/computers/monitors",
        "Monitor,Display,Screen",
        "Curved,UltraWide,4K,Gaming,Portable,IPS",
        '24",27",32",144Hz,165Hz,USB-C',
        (280, 0.5),
        (2500, 8000),
    ),
    _leaf(
        "electronics/computers/keyboards",
        "Keyboard,Mechanical Keyboard,Keypad",
        "Wireless,Backlit,Ergonomic,Compact,RGB,Silent",
        "Bluetooth,USB-C,Tenkeyless,Hot-swap",
        (70, 0.6),
        (400, 1200),
    ),
    _leaf(
        "electronics/phones/smartphones",
        "Smartphone,Phone",
        "5G,Unlocked,Rugged,Foldable,Compact,Flagship",
        '128GB,256GB,512GB,Dual SIM,6.1",6.7"',
        (650, 0.55),
        (150, 240),
        "storage",
    ),
    _leaf(
        "electronics/phones/accessories",
        "Phone Case,Screen Protector,Charger,Power Bank,Cable",
        "Slim,Shockproof,Fast,Magnetic,Braided,Clear",
        "USB-C,20W,65W,10000mAh,MagSafe",
        (22, 0.6),
        (30, 300),
    ),
    _leaf(
        "electronics/audio/headphones",
        "Headphones,Earbuds,Headset",
        "Wireless,Noise Cancelling,Over-Ear,Sport,Studio,True Wireless",
        "Bluetooth 5.3,ANC,40h Battery,Hi-Res",
        (120, 0.7),
        (40, 350),
    ),
    _leaf(
        "electronics/audio/speakers",
        "Speaker,Soundbar,Smart Speaker",
        "Portable,Waterproof,Bluetooth,Outdoor,Home,Party",
        "20W,50W,Stereo,Dolby Atmos",
        (90, 0.7),
        (300, 4000),
    ),
    _leaf(
        "electronics/tv/televisions",
        "TV,Smart TV,Television",
        "4K,OLED,QLED,HDR,Ultra HD,Frameless",
        '43",50",55",65",75",120Hz',
        (700, 0.6),
        (8000, 30000),
    ),
    _leaf(
        "electronics/cameras/digital",
        "Camera,Mirrorless Camera,Action Camera,Webcam",
        "Compact,Vlogging,Waterproof,Full-Frame,4K,Instant",
        "24MP,45MP,Wi-Fi,Stabilized",
        (450, 0.8),
        (100, 900),
    ),
    _leaf(
        "clothing/men/shirts",
        "Shirt,T-Shirt,Polo Shirt,Flannel Shirt,Oxford Shirt",
        "Classic,Slim Fit,Organic Cotton,Linen,Casual,Performance",
        "Short Sleeve,Long Sleeve,Button-Down",
        (30, 0.45),
        (150, 400),
        "size",
    ),
    _leaf(
        "clothing/men/jackets",
        "Jacket,Parka,Windbreaker,Puffer Jacket,Rain Jacket",
        "Waterproof,Insulated,Lightweight,Packable,Hooded,Fleece",
        "Down,Softshell,Recycled",
        (110, 0.5),
        (400, 1500),
        "size",
    ),
    _leaf(
        "clothing/women/dresses",
        "Dress,Maxi Dress,Midi Dress,Sundress,Wrap Dress",
        "Floral,Elegant,Casual,Summer,Evening,Boho",
        "Sleeveless,Long Sleeve,V-Neck",
        (55, 0.5),
        (200, 600),
        "size",
    ),
    _leaf(
        "clothing/women/tops",
        "Blouse,Top,Tank Top,Sweater,Cardigan",
        "Soft,Oversized,Cropped,Knit,Silk,Relaxed",
        "Crew Neck,V-Neck,Ribbed",
        (35, 0.5),
        (120, 500),
        "size",
    ),
    _leaf(
        "clothing/shoes/sneakers",
        "Sneakers,Running Shoes,Trainers,Walking Shoes",
        "Lightweight,Breathable,Cushioned,Trail,Retro,Waterproof",
        "Mesh,Leather,Knit",
        (85, 0.45),
        (500, 1100),
        "size",
    ),
    _leaf(
        "clothing/shoes/boots",
        "Boots,Hiking Boots,Chelsea Boots,Winter Boots",
        "Waterproof,Leather,Insulated,Rugged,Classic,Suede",
        "Lace-Up,Slip-On,Steel Toe",
        (120, 0.45),
        (900, 2000),
        "size",
    ),
    _leaf(
        "home/kitchen/cookware",
        "Frying Pan,Saucepan,Dutch Oven,Wok,Cookware Set",
        "Non-Stick,Cast Iron,Stainless Steel,Ceramic,Induction,Professional",
        '10",12",5 Qt,10-Piece',
        (60, 0.6),
        (800, 6000),
    ),
    _leaf(
        "home/kitchen/appliances",
        "Blender,Coffee Maker,Air Fryer,Toaster,Kettle,Espresso Machine",
        "Compact,Programmable,Smart,High-Speed,Digital,Retro",
        "1000W,1500W,12-Cup,5.8 Qt",
        (95, 0.6),
        (1200, 7000),
    ),
    _leaf(
        "home/furniture/chairs",
        "Office Chair,Desk Chair,Armchair,Gaming Chair,Dining Chair",
        "Ergonomic,Mesh,Leather,Swivel,Adjustable,Modern",
        "Lumbar Support,Headrest,Set of 2",
        (180, 0.6),
        (6000, 20000),
    ),
    _leaf(
        "home/furniture/desks",
        "Desk,Standing Desk,Writing Desk,Computer Desk",
        "Adjustable,Electric,Compact,L-Shaped,Wooden,Minimalist",
        '48",55",60",Dual Motor',
        (260, 0.55),
        (15000, 40000),
    ),
    _leaf(
        "home/bedding/sheets",
        "Sheet Set,Duvet Cover,Comforter,Pillowcase Set,Blanket",
        "Egyptian Cotton,Bamboo,Microfiber,Linen,Cooling,Percale",
        "Queen,King,Twin,400 Thread Count",
        (60, 0.5),
        (600, 2500),
        "size",
    ),
    _leaf(
        "sports/fitness/equipment",
        "Dumbbells,Yoga Mat,Resistance Bands,Kettlebell,Jump Rope",
        "Adjustable,Non-Slip,Heavy Duty,Foldable,Premium,Eco-Friendly",
        "5 lb,20 lb,6mm,Set of 5",
        (45, 0.7),
        (300, 15000),
    ),
    _leaf(
        "sports/outdoor/camping",
        "Tent,Sleeping Bag,Camping Stove,Lantern,Backpack",
        "Ultralight,4-Season,Waterproof,Compact,Rechargeable,Hiking",
        "2-Person,4-Person,40L,-10C",
        (110, 0.7),
        (300, 5000),
    ),
    _leaf(
        "sports/cycling/bikes",
        "Mountain Bike,Road Bike,Electric Bike,Hybrid Bike,Kids Bike",
        "Aluminum,Carbon,Full Suspension,Folding,Commuter,Gravel",
        '21-Speed,29",700c,500W',
        (650, 0.7),
        (9000, 25000),
    ),
    _leaf(
        "beauty/skincare/moisturizers",
        "Moisturizer,Face Cream,Serum,Night Cream,Sunscreen",
        "Hydrating,Anti-Aging,Vitamin C,Fragrance-Free,Organic,SPF 50",
        "50ml,100ml,Travel Size",
        (28, 0.6),
        (60, 300),
    ),
    _leaf(
        "books/fiction/novels",
        "Novel,Thriller,Mystery Novel,Fantasy Novel,Romance Novel",
        "Bestselling,Award-Winning,Classic,Illustrated,Collector's,Paperback",
        "Hardcover,Paperback,Box Set",
        (16, 0.4),
        (200, 900),
    ),
    _leaf(
        "toys/games/board-games",
        "Board Game,Puzzle,Card Game,Building Set,Strategy Game",
        "Family,Educational,Cooperative,Classic,Party,Kids",
        "1000 Pieces,2-4 Players,Ages 8+",
        (30, 0.6),
        (300, 2000),
    ),
)

_SYLLABLES_A = (
    "Zen,Nova,Arc,Vel,Or,Lum,Kai,Tera,Sol,Ver,Aur,Bri,Cor,Dyn,Eon,Fal,Gal,Hel,Ix,Jun".split(",")
)
_SYLLABLES_B = (
    "tek,ion,ora,ix,ex,wave,line,craft,forge,nest,ly,vo,ra,mark,core,field,peak,port,sys,co".split(
        ","
    )
)
_SELLER_WORDS = "Outlet,Store,Shop,Market,Depot,Supply,Direct,Emporium,Goods,Trading".split(",")
_DESCRIPTION = (
    "The {adj} {noun} from {brand} is built for everyday use.",
    "Designed with {spec} for people who expect more.",
    "Customers choose it for its {quality} and {quality2}.",
    "Backed by a two-year warranty and free returns within 30 days.",
    "Ships from {seller} in recyclable packaging.",
)
_QUALITIES = (
    "durability,value,comfort,design,build quality,reliability,performance,ease of use".split(",")
)


def top_categories() -> list[str]:
    return sorted({leaf.path.split("/")[0] for leaf in LEAVES})


def category_paths() -> list[str]:
    """Every node of the tree, parents before children."""
    paths = set()
    for leaf in LEAVES:
        parts = leaf.path.split("/")
        paths.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(paths, key=lambda p: (p.count("/"), p))


def brands_for(top: str, seed: int, count: int = 14) -> list[str]:
    rng = random.Random(f"{seed}:brands:{top}")
    names: list[str] = []
    while len(names) < count:
        name = rng.choice(_SYLLABLES_A) + rng.choice(_SYLLABLES_B)
        if name not in names:
            names.append(name)
    return names


@dataclass(frozen=True)
class CatalogSpec:
    products: int
    seed: int = 42
    sellers: int = 0  # 0 = one seller per 2,000 products (at least 10)
    first_id: int = 1  # ids first_id .. first_id + products - 1

    @property
    def seller_count(self) -> int:
        return self.sellers or max(10, self.products // 2000)


def generate_sellers(spec: CatalogSpec) -> list[dict]:
    rng = random.Random(f"{spec.seed}:sellers")
    out = []
    for i in range(spec.seller_count):
        name = f"{rng.choice(_SYLLABLES_A)}{rng.choice(_SYLLABLES_B)} {rng.choice(_SELLER_WORDS)} #{i + 1}"
        out.append(
            {"index": i, "name": name, "rating": round(min(5.0, max(2.5, rng.gauss(4.4, 0.35))), 2)}
        )
    return out


def _zipf_popularity(spec: CatalogSpec) -> Callable[[int], float]:
    """Popularity of product i: 1 / rank^s over a seeded rank permutation, scaled to (0, 1].
    Ranks come from an affine permutation (cheap, no table of a million entries)."""
    n = spec.products
    rng = random.Random(f"{spec.seed}:zipf")
    a = rng.randrange(1, n) if n > 1 else 1
    while math.gcd(a, n) != 1:
        a += 1
    b = rng.randrange(n)

    def popularity(i: int) -> float:
        rank = (a * i + b) % n + 1
        return 1.0 / rank**ZIPF_S

    return popularity


def generate_products(
    spec: CatalogSpec,
    start: int = 0,
    stop: int | None = None,
    sellers: list[dict] | None = None,
    seller_ids: list[int] | None = None,
) -> Iterator[dict]:
    """Products start..stop-1 of the catalog as mappings (index-ready: category_path, seller_name,
    seller_rating, thumbnail, variants). seller_ids maps seller index -> database id."""
    stop = spec.products if stop is None else min(stop, spec.products)
    sellers = sellers or generate_sellers(spec)
    popularity = _zipf_popularity(spec)
    brands = {top: brands_for(top, spec.seed) for top in top_categories()}
    for chunk in range(start // CHUNK, (stop + CHUNK - 1) // CHUNK):
        rng = random.Random(f"{spec.seed}:products:{chunk}")
        lo = chunk * CHUNK
        for i in range(lo, min(lo + CHUNK, spec.products)):
            product = _product(rng, spec, i, sellers, seller_ids, brands, popularity(i))
            if start <= i < stop:
                yield product


def _product(
    rng: random.Random, spec: CatalogSpec, i: int, sellers, seller_ids, brands, pop: float
) -> dict:
    leaf = LEAVES[rng.randrange(len(LEAVES))]
    top = leaf.path.split("/")[0]
    brand = brands[top][
        min(int(rng.paretovariate(1.2)) - 1, len(brands[top]) - 1)
    ]  # a few big brands
    adj, noun = rng.choice(leaf.adjectives), rng.choice(leaf.nouns)
    spec_text = rng.choice(leaf.specs)
    name = f"{brand} {adj} {noun} {spec_text}" if rng.random() < 0.7 else f"{brand} {adj} {noun}"
    seller = sellers[rng.randrange(len(sellers))]
    median, sigma = leaf.price
    price = max(1.0, rng.lognormvariate(math.log(median), sigma))
    price = round(math.floor(price) + (0.99 if price > 5 else 0.49), 2)
    reviews = int(pop * 40_000 + rng.expovariate(1 / 12))
    rating = round(min(5.0, max(1.0, rng.gauss(4.15, 0.5))), 1) if reviews else 0.0
    q1, q2 = rng.sample(_QUALITIES, 2)
    description = " ".join(
        s.format(
            adj=adj.lower(),
            noun=noun.lower(),
            brand=brand,
            spec=spec_text,
            quality=q1,
            quality2=q2,
            seller=seller["name"],
        )
        for s in _DESCRIPTION
    )
    pid = spec.first_id + i
    created = EPOCH - timedelta(seconds=rng.randrange(2 * 365 * 86400))
    variants = _variants(rng, leaf, pid)
    return {
        "id": pid,
        "name": name,
        "description": description,
        "brand": brand,
        "category_path": leaf.path,
        "price": price,
        "currency": "USD",
        "rating": rating,
        "review_count": reviews,
        "weight_g": rng.randint(*leaf.weight_g),
        "in_stock": rng.random() < 0.9,
        "popularity": round(min(1.0, pop * 50), 6),
        "created_at": created,
        "updated_at": created,
        "attributes": {"material_or_spec": spec_text, "warranty_years": rng.choice([1, 2, 3])},
        "seller_index": seller["index"],
        "seller_id": seller_ids[seller["index"]] if seller_ids else seller["index"] + 1,
        "seller_name": seller["name"],
        "seller_rating": seller["rating"],
        "thumbnail": f"https://cdn.flashmart.example/p/{pid}/thumb.jpg",
        "variants": variants,
    }


def _variants(rng: random.Random, leaf: Leaf, pid: int) -> list[dict]:
    if leaf.variant_axis == "size":
        values = rng.sample(SIZES, rng.randint(1, 3))
        axis, adjust = "size", [0.0] * len(values)
    elif leaf.variant_axis == "storage":
        values = ["128GB", "256GB", "512GB"][: rng.randint(1, 3)]
        axis, adjust = "storage", [0.0, 100.0, 250.0][: len(values)]
    else:
        values = rng.sample(COLORS, rng.randint(1, 2))
        axis, adjust = "color", [0.0] * len(values)
    return [
        {"sku": f"FM-{pid}-{k}", "attributes": {axis: v}, "price_adjustment": adjust[k]}
        for k, v in enumerate(values)
    ]


# --- bulk load into PostgreSQL --------------------------------------------------------------------


@dataclass
class LoadReport:
    products: int
    variants: int
    first_id: int
    seconds: float
    seller_ids: list[int]

    @property
    def rate_per_s(self) -> float:
        return self.products / self.seconds if self.seconds else 0.0


def ensure_categories(conn) -> dict[str, int]:
    """Insert the generator's tree (idempotent); return path -> id for every category."""
    for path in category_paths():
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        slug = path.rsplit("/", 1)[-1]
        conn.execute(
            """INSERT INTO categories (parent_id, name, slug, path, depth)
               VALUES ((SELECT id FROM categories WHERE path = %s), %s, %s, %s, %s)
               ON CONFLICT (path) DO NOTHING""",
            (parent, slug.replace("-", " ").title(), slug, path, path.count("/")),
        )
    rows = conn.execute("SELECT path, id FROM categories").fetchall()
    return {r["path"]: r["id"] for r in rows} if rows and isinstance(rows[0], dict) else dict(rows)


def _copy_text(value: Any) -> str:
    if value is None:
        return r"\N"
    s = str(value)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def bulk_load(
    database_url: str,
    products: int,
    *,
    seed: int = 42,
    batch: int = 20_000,
    progress: bool = True,
    on_batch: Callable[[list[dict]], None] | None = None,
) -> tuple[CatalogSpec, LoadReport]:
    """Generate and COPY `products` products (after any existing ids) with variants and images.
    on_batch receives each batch of product mappings (e.g. to feed a search index in the same pass)."""
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        conn.execute("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE")
        first_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM products").fetchone()[0]
        spec = CatalogSpec(products=products, seed=seed, first_id=first_id)
        cats = ensure_categories(conn)
        sellers = generate_sellers(spec)
        seller_ids = [
            conn.execute(
                "INSERT INTO sellers (name, rating) VALUES (%s, %s) RETURNING id",
                (s["name"], s["rating"]),
            ).fetchone()[0]
            for s in sellers
        ]
        n_variants = 0
        with _progress(progress, products) as advance:
            buf: list[dict] = []
            for p in generate_products(spec, sellers=sellers, seller_ids=seller_ids):
                buf.append(p)
                if len(buf) >= batch:
                    n_variants += _copy_batch(conn, buf, cats)
                    if on_batch:
                        on_batch(buf)
                    advance(len(buf))
                    buf = []
            if buf:
                n_variants += _copy_batch(conn, buf, cats)
                if on_batch:
                    on_batch(buf)
                advance(len(buf))
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('products', 'id'), (SELECT max(id) FROM products))"
        )
        conn.commit()
    return spec, LoadReport(products, n_variants, first_id, time.perf_counter() - t0, seller_ids)


def _copy_batch(conn, batch: list[dict], cats: dict[str, int]) -> int:
    cols = (
        "id",
        "seller_id",
        "name",
        "description",
        "brand",
        "category_id",
        "price",
        "currency",
        "rating",
        "review_count",
        "weight_g",
        "attributes",
        "in_stock",
        "popularity",
        "created_at",
        "updated_at",
    )
    out = io.StringIO()
    for p in batch:
        row = (
            p["id"],
            p["seller_id"],
            p["name"],
            p["description"],
            p["brand"],
            cats[p["category_path"]],
            p["price"],
            p["currency"],
            p["rating"],
            p["review_count"],
            p["weight_g"],
            json.dumps(p["attributes"]),
            "t" if p["in_stock"] else "f",
            p["popularity"],
            p["created_at"].isoformat(),
            p["updated_at"].isoformat(),
        )
        out.write("\t".join(_copy_text(v) for v in row) + "\n")
    with conn.cursor().copy(f"COPY products ({', '.join(cols)}) FROM STDIN") as cp:
        cp.write(out.getvalue())
    out = io.StringIO()
    n = 0
    for p in batch:
        for v in p["variants"]:
            out.write(
                f"{p['id']}\t{_copy_text(v['sku'])}\t{_copy_text(json.dumps(v['attributes']))}\t{v['price_adjustment']}\n"
            )
            n += 1
    with conn.cursor().copy(
        "COPY product_variants (product_id, sku, attributes, price_adjustment) FROM STDIN"
    ) as cp:
        cp.write(out.getvalue())
    out = io.StringIO()
    for p in batch:
        out.write(f"{p['id']}\t{p['thumbnail']}\t0\n")
    with conn.cursor().copy("COPY product_images (product_id, url, position) FROM STDIN") as cp:
        cp.write(out.getvalue())
    return n


class _progress:
    """A rich progress bar (rate, ETA), or nothing when progress is off."""

    def __init__(self, enabled: bool, total: int, description: str = "catalog"):
        self.enabled, self.total, self.description = enabled, total, description

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=self.total, rate="")
        self.t0 = time.perf_counter()
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            rate = done[0] / max(1e-9, time.perf_counter() - self.t0)
            self.bar.update(self.task, advance=n, rate=f"{rate:,.0f} products/s")

        return advance

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="generate and bulk-load a synthetic catalog")
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--database-url", required=True)
    args = ap.parse_args()
    spec, report = bulk_load(args.database_url, args.products, seed=args.seed)
    print(
        f"loaded {report.products:,} products, {report.variants:,} variants in {report.seconds:.1f}s "
        f"({report.rate_per_s:,.0f}/s), ids {report.first_id}..{report.first_id + report.products - 1}"
    )


if __name__ == "__main__":
    main()
