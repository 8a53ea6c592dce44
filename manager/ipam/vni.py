"""VXLAN network identifiers: one per overlay network, from Swarm's overlay range.

Swarm's overlay driver hands out VNIs from 4096 up to 2^24 - 1 (below 4096 is left to VLAN-style
use). A VNI is never handed out while a network holds it; the lowest free one is taken, so a
restored allocator and the one it replaces agree on the next choice.

Pure bookkeeping: no I/O, not thread-safe.
"""

from __future__ import annotations

from manager.ipam.errors import InvalidNetworkSpec, VNIExhausted

VNI_MIN = 4096
VNI_MAX = (1 << 24) - 1
# Docker's driver option for choosing the VNI of an overlay network yourself.
VXLANID_OPTION = "com.docker.network.driver.overlay.vxlanid_list"


class VNIAllocator:
    """Which VNIs are held, and by which network label."""

    def __init__(self, first: int = VNI_MIN, last: int = VNI_MAX) -> None:
        if not VNI_MIN <= first <= last <= VNI_MAX:
            raise ValueError(f"VNI range {first}-{last} is outside {VNI_MIN}-{VNI_MAX}")
        self.first = first
        self.last = last
        self._held: dict[int, str] = {}
        self._lowest_maybe_free = first

    def allocate(self, owner_label: str) -> int:
        """Hold and return the lowest free VNI; raise VNIExhausted (state unchanged) if none is."""
        vni = self._lowest_maybe_free
        while vni <= self.last and vni in self._held:
            vni += 1
        if vni > self.last:
            raise VNIExhausted(
                f"cannot allocate a VXLAN id for {owner_label}: all {self.last - self.first + 1} "
                f"ids ({self.first}-{self.last}) are in use")
        self._held[vni] = owner_label
        self._lowest_maybe_free = vni + 1
        return vni

    def reserve(self, vni: int, owner_label: str) -> None:
        """Hold a given VNI; raise InvalidNetworkSpec if it is out of range or held by another."""
        if not self.first <= vni <= self.last:
            raise InvalidNetworkSpec(
                f"VXLAN id {vni} for {owner_label} is outside the range {self.first}-{self.last}")
        other = self._held.get(vni)
        if other is not None and other != owner_label:
            raise InvalidNetworkSpec(f"VXLAN id {vni} for {owner_label} is already used by {other}")
        self._held[vni] = owner_label

    def release(self, vni: int) -> None:
        """Free a VNI; freeing one that is not held does nothing."""
        if self._held.pop(vni, None) is not None:
            self._lowest_maybe_free = min(self._lowest_maybe_free, vni)

    def clear(self) -> None:
        """Free every VNI."""
        self._held.clear()
        self._lowest_maybe_free = self.first

    def held(self) -> dict[int, str]:
        """A copy of the held VNIs and their holders."""
        return dict(self._held)


def requested_vni(driver_opts: dict[str, str], network_label: str) -> int | None:
    """The VNI a network's driver options ask for (Docker's vxlanid_list option), or None.

    Raises InvalidNetworkSpec when the option is present but not a single integer.
    """
    text = driver_opts.get(VXLANID_OPTION)
    if text is None or text.strip() == "":
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) != 1 or not (parts[0].isascii() and parts[0].isdigit()):
        raise InvalidNetworkSpec(
            f"{network_label}: option {VXLANID_OPTION}={text!r} must be one VXLAN id "
            f"({VNI_MIN}-{VNI_MAX}); Shoal uses one id per network")
    return int(parts[0])
