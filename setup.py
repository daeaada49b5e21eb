"""One import namespace with the card's layout on disk: actors/, serve/, storage/ and sim/ stay at the
repository root and install as flashmart.actors, flashmart.serve, flashmart.storage and flashmart.sim,
so nothing but `flashmart` lands at the top level of site-packages. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

FOLDER_OF = {
    "flashmart": "flashmart",
    "flashmart.actors": "actors",
    "flashmart.serve": "serve",
    "flashmart.storage": "storage",
    "flashmart.sim": "sim",
}

PACKAGES = [
    name + ("." + sub if sub else "")
    for name, folder in FOLDER_OF.items()
    for sub in ["", *find_packages(folder)]
]

setup(packages=PACKAGES, package_dir=FOLDER_OF)
