"""The layer contracts cover the whole tree: a module left out of every layer would be free to import
anything, and the next one added beside it would be too."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layer_prefixes() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    prefixes: list[str] = []
    for contract in config["contracts"]:
        if contract["type"] != "layers":
            continue
        containers = contract.get("containers", [""])
        for layer in contract["layers"]:
            for name in layer.split("|"):
                prefixes += [f"{c}.{name.strip()}" if c else name.strip() for c in containers]
    return prefixes


def _modules(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            if len(parts) == 1:  # the package's own facade re-exports what its layers define
                continue
        found.append(".".join(parts))
    return found


def test_every_peer_and_client_module_sits_in_a_layer() -> None:
    prefixes = _layer_prefixes()
    outside = [
        module
        for module in _modules("peer") + _modules("client")
        if not any(module == p or module.startswith(p + ".") for p in prefixes)
        and not any(p.startswith(module + ".") for p in prefixes)  # a package whose modules are layered one by one
    ]
    assert outside == [], f"modules in no layer of the import-linter contracts: {outside}"


def test_the_check_sees_a_module_left_out() -> None:
    prefixes = _layer_prefixes()
    assert "peer.rpc" in prefixes and "client.sdk" in prefixes
    assert not any("peer.unlayered".startswith(p + ".") or p == "peer.unlayered" for p in prefixes)
