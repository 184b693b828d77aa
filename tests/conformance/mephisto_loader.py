"""Import Mephisto's own channel code straight from the unpacked 1.1.1 wheel.

`import mephisto` runs mephisto/__init__.py, whose hydra config bootstrapping
fails on Python 3.11 (and needs the whole dependency tree).  We never run it:
a bare package object named `mephisto` is put in sys.modules with `__path__`
pointing at the wheel's `mephisto/` folder, so `mephisto.data_model.packet`
and friends are found and executed from the wheel's files, unmodified.
Intermediate packages are imported normally (their __init__ files are
docstring-only in 1.1.1); should one of them fail, it is replaced by a bare
package in the same way.

The wheel's RECORD file lists a sha256 for every file; `verify_unmodified`
checks every module loaded from the wheel against it.
"""

import base64
import csv
import hashlib
import importlib
import importlib.machinery
import os
import sys
import types

INTERMEDIATE_PACKAGES = [
    "mephisto.utils",
    "mephisto.data_model",
    "mephisto.operations",
    "mephisto.abstractions",
    "mephisto.abstractions._subcomponents",
    "mephisto.abstractions.architects",
    "mephisto.abstractions.architects.channels",
]

MODULES = [
    "mephisto.data_model.packet",
    "mephisto.operations.datatypes",
    "mephisto.utils.logger_core",
    "mephisto.abstractions._subcomponents.channel",
    "mephisto.abstractions.architects.channels.websocket_channel",
]


def _bare_package(name, folder):
    module = types.ModuleType(name)
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [folder]
    module.__spec__ = spec
    module.__path__ = [folder]
    module.__package__ = name
    module.__file__ = None
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def load(wheel_dir):
    """Return a namespace with the wheel's Packet, WebsocketChannel, ..."""
    pkg_dir = os.path.join(os.path.abspath(wheel_dir), "mephisto")
    if not os.path.isfile(os.path.join(pkg_dir, "abstractions", "architects",
                                       "channels", "websocket_channel.py")):
        raise RuntimeError(f"{wheel_dir} is not an unpacked mephisto wheel")
    existing = sys.modules.get("mephisto")
    if existing is not None and list(getattr(existing, "__path__", [])) != [pkg_dir]:
        raise RuntimeError("another `mephisto` package is already imported")
    _bare_package("mephisto", pkg_dir)

    bare = []
    for name in INTERMEDIATE_PACKAGES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - fall back to a bare package
            folder = os.path.join(pkg_dir, *name.split(".")[1:])
            _bare_package(name, folder)
            bare.append(name)

    modules = {name: importlib.import_module(name) for name in MODULES}
    for name, module in modules.items():
        path = os.path.abspath(module.__file__)
        if not path.startswith(pkg_dir + os.sep):
            raise RuntimeError(f"{name} was loaded from {path}, not from the wheel")

    packet = modules["mephisto.data_model.packet"]
    ns = types.SimpleNamespace(
        wheel_dir=os.path.abspath(wheel_dir),
        package_dir=pkg_dir,
        bare_packages=bare,
        modules=modules,
        packet_module=packet,
        Packet=packet.Packet,
        LoopWrapper=modules["mephisto.operations.datatypes"].LoopWrapper,
        get_logger=modules["mephisto.utils.logger_core"].get_logger,
        Channel=modules["mephisto.abstractions._subcomponents.channel"].Channel,
        WebsocketChannel=modules[
            "mephisto.abstractions.architects.channels.websocket_channel"
        ].WebsocketChannel,
    )
    return ns


def _record(wheel_dir):
    dist_info = [d for d in os.listdir(wheel_dir) if d.endswith(".dist-info")]
    if len(dist_info) != 1:
        raise RuntimeError(f"expected one .dist-info in {wheel_dir}, got {dist_info}")
    hashes = {}
    with open(os.path.join(wheel_dir, dist_info[0], "RECORD"), newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[1].startswith("sha256="):
                hashes[row[0]] = row[1][len("sha256="):]
    return hashes


def verify_unmodified(wheel_dir):
    """Check every loaded module that comes from the wheel against RECORD.

    Returns the list of relative paths checked; raises on a mismatch.
    """
    wheel_dir = os.path.abspath(wheel_dir)
    hashes = _record(wheel_dir)
    checked = []
    for name, module in sorted(sys.modules.items()):
        if not (name == "mephisto" or name.startswith("mephisto.")):
            continue
        path = getattr(module, "__file__", None)
        if not path:
            continue
        rel = os.path.relpath(os.path.abspath(path), wheel_dir).replace(os.sep, "/")
        if rel not in hashes:
            raise RuntimeError(f"{rel} is not listed in the wheel's RECORD")
        with open(path, "rb") as f:
            digest = base64.urlsafe_b64encode(hashlib.sha256(f.read()).digest())
        if digest.rstrip(b"=").decode() != hashes[rel]:
            raise RuntimeError(f"{rel} differs from the wheel's RECORD hash")
        checked.append(rel)
    return checked
