#!/bin/bash
# Builds a Debian 12 amd64 cloud guest from Debian packages only, without loop devices or mounts:
# mmdebstrap → mkfs.ext4 -d → FAT ESP filled with mtools → GPT with sgdisk on a plain file →
# systemd-boot → qemu-img convert to qcow2. Adapted from the project's probe recipe
# (../shared/notes/guest-image-probe.sh, whose findings are in guest-image-probe.md).
#
# usage: guest-image.sh OUT_DIR      (writes OUT_DIR/disk.qcow2; idempotent per stage)
# env:   GUEST_PKGS (comma-separated, set by `cargo xtask guest-image`), MIRROR, SEC_MIRROR
set -euo pipefail
W=$1
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SEC_MIRROR=${SEC_MIRROR:-http://deb.debian.org/debian-security}
ROOT_MB=${ROOT_MB:-3072}
ESP_MB=64
ROOT_PARTUUID=6b1c6f5e-0d6a-4b0a-9e1e-000000000002   # fixed, so the boot entry can name root=PARTUUID=
mkdir -p "$W"
log() { echo "[guest-image] $*" >&2; }

if [ ! -d "$W/rootfs/boot" ]; then
  cat > "$W/customize.sh" <<'HOOK'
#!/bin/bash
set -euo pipefail
R=$1
echo "LABEL=root / ext4 defaults,errors=remount-ro 0 1" > "$R/etc/fstab"
echo guest > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 guest\n' > "$R/etc/hosts"
# DHCP on the virtio NIC with systemd-networkd (cloud-init renders networkd config too).
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > "$R/etc/systemd/network/80-dhcp.network"
chroot "$R" systemctl enable systemd-networkd.service
chroot "$R" systemctl disable systemd-networkd-wait-online.service || true
# Only NoCloud; no locales package, so cc_locale is off (else `cloud-init status` says error).
printf 'datasource_list: [ NoCloud, None ]\nlocale: false\n' > "$R/etc/cloud/cloud.cfg.d/90-vmlab.cfg"
# Host keys come from the seed (sysmonvm pins them).
rm -f "$R"/etc/ssh/ssh_host_*
HOOK
  chmod +x "$W/customize.sh"
  rm -rf "$W/rootfs"
  log "mmdebstrap: ${GUEST_PKGS}"
  mmdebstrap --variant=minbase --include="$GUEST_PKGS" \
    --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
    --customize-hook="$W/customize.sh \"\$1\"" \
    bookworm "$W/rootfs" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SEC_MIRROR bookworm-security main" </dev/null
fi

if [ ! -f "$W/disk.qcow2" ]; then
  kver=$(ls "$W"/rootfs/boot/vmlinuz-* | sed 's|.*/vmlinuz-||' | sort -V | tail -1)
  cp "$W/rootfs/boot/vmlinuz-$kver" "$W/vmlinuz"; cp "$W/rootfs/boot/initrd.img-$kver" "$W/initrd.img"
  rm -f "$W/root.img" "$W/esp.img" "$W/disk.raw"
  mkfs.ext4 -q -F -L root -d "$W/rootfs" "$W/root.img" "${ROOT_MB}M"
  mkfs.vfat -F 32 -n ESP -C "$W/esp.img" $((ESP_MB * 1024)) >/dev/null
  export MTOOLS_SKIP_CHECK=1
  mmd -i "$W/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
  mcopy -i "$W/esp.img" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$W/esp.img" "$W/vmlinuz" ::/vmlinuz
  mcopy -i "$W/esp.img" "$W/initrd.img" ::/initrd.img
  printf 'default debian.conf\ntimeout 0\nconsole-mode keep\neditor no\n' > "$W/loader.conf"
  printf 'title Debian guest\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=PARTUUID=%s ro console=ttyS0,115200\n' \
    "$ROOT_PARTUUID" > "$W/debian.conf"
  mcopy -i "$W/esp.img" "$W/loader.conf" ::/loader/loader.conf
  mcopy -i "$W/esp.img" "$W/debian.conf" ::/loader/entries/debian.conf
  # GPT: 1 MiB | ESP | root | 1 MiB backup. NB: `sgdisk -q` silently writes no partitions.
  truncate -s $((1 + ESP_MB + ROOT_MB + 1))M "$W/disk.raw"
  sgdisk -n 1:2048:+${ESP_MB}M -t 1:ef00 -c 1:ESP \
         -n 2:0:+${ROOT_MB}M -t 2:8304 -c 2:root -u 2:$ROOT_PARTUUID "$W/disk.raw" >/dev/null
  dd if="$W/esp.img" of="$W/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$W/root.img" of="$W/disk.raw" bs=1M seek=$((1 + ESP_MB)) conv=notrunc,sparse status=none
  qemu-img convert -O qcow2 "$W/disk.raw" "$W/disk.qcow2.tmp"
  mv "$W/disk.qcow2.tmp" "$W/disk.qcow2"
  rm -f "$W/esp.img" "$W/root.img" "$W/disk.raw"
fi
log "ready: $W/disk.qcow2 ($(du -h "$W/disk.qcow2" | cut -f1))"
