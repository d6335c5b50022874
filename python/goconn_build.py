"""A dependency-free PEP 517 build backend for the goconn package.

It builds a wheel of goconn/ (Python files, py.typed and the libgoconn.so
that ./build.sh copied beside them). It exists so that `pip install ./python`
works on machines without access to PyPI, where pip could not fetch
setuptools for an isolated build.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sysconfig
import zipfile

NAME = "goconn"
HERE = os.path.dirname(os.path.abspath(__file__))


def _version() -> str:
    text = open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8").read()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def _metadata(version: str) -> str:
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {version}\n"
        "Summary: asyncio's loop.create_connection(), made by a Go library with a C ABI\n"
        "Requires-Python: >=3.11\n"
    )


def _tag() -> str:
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{platform}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version = _version()
    pkg = os.path.join(HERE, NAME)
    if not os.path.exists(os.path.join(pkg, "libgoconn.so")):
        raise RuntimeError("python/goconn/libgoconn.so is missing: run ./build.sh first")
    tag = _tag()
    dist_info = f"{NAME}-{version}.dist-info"
    wheel_name = f"{NAME}-{version}-{tag}.whl"
    records = []

    def add(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
        zf.writestr(arcname, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{arcname},sha256={digest},{len(data)}")

    path = os.path.join(wheel_directory, wheel_name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(os.listdir(pkg)):
            if name.endswith((".py", ".so")) or name == "py.typed":
                with open(os.path.join(pkg, name), "rb") as f:
                    add(zf, f"{NAME}/{name}", f.read())
        add(zf, f"{dist_info}/METADATA", _metadata(version).encode())
        add(zf, f"{dist_info}/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: goconn_build\nRoot-Is-Purelib: false\nTag: {tag}\n".encode())
        add(zf, f"{dist_info}/entry_points.txt",
            b"[console_scripts]\ngoconn-nc = goconn.__main__:main\n")
        records.append(f"{dist_info}/RECORD,,")
        zf.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    raise NotImplementedError("goconn is distributed as a wheel built after ./build.sh")
