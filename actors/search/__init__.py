"""Product search: a Tantivy index (index.py, no Ray) owned by search actors (actor.py)."""
