#!/usr/bin/env bash
# Build the Vagrant box the VM test uses: Debian 12 from the Debian mirror apt already uses on this
# machine (no Vagrant Cloud needed), for the libvirt provider, booted with direct kernel boot.
#
#   deploy/vagrant/build-box.sh OUT_DIR          -> OUT_DIR/shoal-bookworm.box, vmlinuz, initrd.img
#
# The box is a plain Debian 12 server: systemd, ssh, sudo, the user `vagrant` with Vagrant's
# well-known insecure key, and the Debian packages provision.sh would install anyway (installing
# them here saves minutes under software emulation; provision.sh still checks and installs them).
# Reused when OUT_DIR/shoal-bookworm.box exists; delete it to rebuild.
set -euo pipefail
OUT=${1:?usage: build-box.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BOX=$OUT/shoal-bookworm.box
if [ -s "$BOX" ] && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ]; then
  echo "box: reusing $BOX"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-box.sh must run as root" >&2; exit 1; }

# The mirror apt uses here (deb822 sources first, then sources.list), so the box builds offline
# from the internet as long as that mirror answers.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security

pubkey=$(find /usr/share /usr/lib -path '*vagrant*' -name vagrant.pub -path '*keys*' 2>/dev/null | head -1)
[ -n "$pubkey" ] || { echo "box: Vagrant's insecure public key not found (is the vagrant package installed?)" >&2; exit 1; }

work=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
packages=systemd-sysv,udev,dbus,openssh-server,sudo,python3,python3-venv,python3-dev,iproute2,iputils-ping
packages=$packages,linux-image-amd64,initramfs-tools,rsync,netbase,procps,ifupdown,isc-dhcp-client
packages=$packages,make,git,ca-certificates,curl,nftables,busybox-static,kmod,gcc
echo "box: mmdebstrap bookworm from $mirror"
mmdebstrap --mode=root --variant=minbase --include="$packages" bookworm "$rootfs" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" \
  >"$work/mmdebstrap.log" 2>&1 || { tail -30 "$work/mmdebstrap.log" >&2; exit 1; }

echo shoal-box >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 shoal-box\n' >"$rootfs/etc/hosts"
cat >"$rootfs/etc/network/interfaces" <<'IF'
auto lo
iface lo inet loopback
auto eth0
iface eth0 inet dhcp
IF
echo '/dev/vda / ext4 defaults 0 1' >"$rootfs/etc/fstab"
: >"$rootfs/etc/machine-id"                       # every clone makes its own at first boot
rm -f "$rootfs/var/lib/dbus/machine-id"
rm -f "$rootfs"/etc/ssh/ssh_host_*                # and its own host keys
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
# ssh.service's own ExecStartPre (sshd -t) fails without host keys: make them first.
cat >"$rootfs/etc/systemd/system/ssh.service.d/hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
echo 'UseDNS no' >>"$rootfs/etc/ssh/sshd_config"
chroot "$rootfs" useradd -m -s /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$rootfs/etc/sudoers.d/vagrant"
chmod 0440 "$rootfs/etc/sudoers.d/vagrant"
install -d -m 0700 -o 1000 -g 1000 "$rootfs/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$pubkey" "$rootfs/home/vagrant/.ssh/authorized_keys"
chroot "$rootfs" apt-get clean

install -m 0644 "$rootfs"/boot/vmlinuz-* "$work/vmlinuz"
install -m 0644 "$rootfs"/boot/initrd.img-* "$work/initrd.img"

echo "box: disk image"
truncate -s 8G "$work/rootfs.raw"
mkfs.ext4 -q -F -d "$rootfs" "$work/rootfs.raw"
qemu-img convert -c -O qcow2 "$work/rootfs.raw" "$work/box.img"
rm -f "$work/rootfs.raw"
echo '{"provider": "libvirt", "format": "qcow2", "virtual_size": 8}' >"$work/metadata.json"
cat >"$work/Vagrantfile" <<'VF'
# The box's own defaults: the kernel and initrd are files on the host (direct kernel boot), found
# through SHOAL_BOX_DIR, which deploy/vagrant/test.py sets.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.disk_bus = "virtio"
    dir = ENV.fetch("SHOAL_BOX_DIR", "")
    unless dir.empty?
      lv.kernel = File.join(dir, "vmlinuz")
      lv.initrd = File.join(dir, "initrd.img")
      lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
    end
  end
end
VF
tar -C "$work" -czf "$work/box.tar.gz" metadata.json box.img Vagrantfile
mv "$work/vmlinuz" "$work/initrd.img" "$OUT/"
mv "$work/box.tar.gz" "$BOX"
echo "box: built $BOX ($(du -h "$BOX" | cut -f1))"
