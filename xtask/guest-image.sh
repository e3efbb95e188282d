#!/bin/bash
# Builds a Debian 12 amd64 or arm64 cloud guest from Debian packages only, without loop devices or mounts:
# mmdebstrap → mkfs.ext4 -d → FAT ESP filled with mtools → GPT with sgdisk on a plain file →
# systemd-boot → qemu-img convert to qcow2. Adapted from the project's probe recipe
# (../shared/notes/guest-image-probe.sh, whose findings are in guest-image-probe.md) and, for arm64,
# the arm64 probe (guest-image-arm64-probe.md): mmdebstrap runs the arm64 maintainer scripts
# through a registered qemu-aarch64 binfmt (the xtask registers it), the kernel's own initramfs
# runs are skipped (INITRD=No: two `MODULES=most` runs under qemu-user took 26 of 35 minutes) and
# one `update-initramfs -c` with `MODULES=list` runs in the customize hook instead.
#
# usage: guest-image.sh OUT_DIR      (writes OUT_DIR/disk.qcow2; idempotent per stage)
# env:   GUEST_PKGS (comma-separated, set by `cargo xtask guest-image`), GUEST_ARCH (amd64 | arm64),
#        MIRROR, SEC_MIRROR
set -euo pipefail
W=$1
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SEC_MIRROR=${SEC_MIRROR:-http://deb.debian.org/debian-security}
ROOT_MB=${ROOT_MB:-3072}
ARCH=${GUEST_ARCH:-amd64}
ROOT_PARTUUID=6b1c6f5e-0d6a-4b0a-9e1e-000000000002   # fixed, so the boot entry can name root=PARTUUID=
case "$ARCH" in
  amd64) ESP_MB=64;  EFI_NAME=BOOTX64.EFI;  BOOT_EFI=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
         ROOT_TYPE=8304; CONSOLE=ttyS0 ;;
  # The arm64 kernel is an uncompressed 32 MB Image; systemd-boot's arm64 build comes from the
  # guest's own systemd-boot-efi:arm64 (the host has only the amd64 one).
  arm64) ESP_MB=128; EFI_NAME=BOOTAA64.EFI; BOOT_EFI="$W/rootfs/usr/lib/systemd/boot/efi/systemd-bootaa64.efi"
         ROOT_TYPE=8305; CONSOLE=ttyAMA0 ;;
  *) echo "GUEST_ARCH must be amd64 or arm64, not $ARCH" >&2; exit 2 ;;
esac
mkdir -p "$W"
log() { echo "[guest-image] $*" >&2; }

if [ ! -d "$W/rootfs/boot" ]; then
  cat > "$W/customize.sh" <<'HOOK'
#!/bin/bash
set -euo pipefail
R=$1
GUEST_ARCH=${2:-amd64}
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
# arm64: the one initramfs build (mmdebstrap ran with INITRD=No). ext4 and virtio are modules in
# the arm64 kernel, so they must be listed.
if [ "$GUEST_ARCH" = arm64 ]; then
  printf 'MODULES=list\n' > "$R/etc/initramfs-tools/conf.d/sysmonvm.conf"
  printf 'virtio_pci\nvirtio_blk\nvirtio_net\nvirtio_scsi\next4\n' >> "$R/etc/initramfs-tools/modules"
  chroot "$R" update-initramfs -c -k all
fi
HOOK
  chmod +x "$W/customize.sh"
  rm -rf "$W/rootfs"
  log "mmdebstrap ($ARCH): ${GUEST_PKGS}"
  initrd=()
  [ "$ARCH" = arm64 ] && initrd=(env INITRD=No)
  "${initrd[@]}" mmdebstrap --arch="$ARCH" --variant=minbase --include="$GUEST_PKGS" \
    --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
    --customize-hook="$W/customize.sh \"\$1\" $ARCH" \
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
  mcopy -i "$W/esp.img" "$BOOT_EFI" "::/EFI/BOOT/$EFI_NAME"
  mcopy -i "$W/esp.img" "$W/vmlinuz" ::/vmlinuz
  mcopy -i "$W/esp.img" "$W/initrd.img" ::/initrd.img
  printf 'default debian.conf\ntimeout 0\nconsole-mode keep\neditor no\n' > "$W/loader.conf"
  printf 'title Debian guest\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=PARTUUID=%s ro console=%s,115200\n' \
    "$ROOT_PARTUUID" "$CONSOLE" > "$W/debian.conf"
  mcopy -i "$W/esp.img" "$W/loader.conf" ::/loader/loader.conf
  mcopy -i "$W/esp.img" "$W/debian.conf" ::/loader/entries/debian.conf
  # GPT: 1 MiB | ESP | root | 1 MiB backup. NB: `sgdisk -q` silently writes no partitions.
  truncate -s $((1 + ESP_MB + ROOT_MB + 1))M "$W/disk.raw"
  sgdisk -n 1:2048:+${ESP_MB}M -t 1:ef00 -c 1:ESP \
         -n 2:0:+${ROOT_MB}M -t 2:$ROOT_TYPE -c 2:root -u 2:$ROOT_PARTUUID "$W/disk.raw" >/dev/null
  dd if="$W/esp.img" of="$W/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$W/root.img" of="$W/disk.raw" bs=1M seek=$((1 + ESP_MB)) conv=notrunc,sparse status=none
  qemu-img convert -O qcow2 "$W/disk.raw" "$W/disk.qcow2.tmp"
  mv "$W/disk.qcow2.tmp" "$W/disk.qcow2"
  rm -f "$W/esp.img" "$W/root.img" "$W/disk.raw"
fi
log "ready: $W/disk.qcow2 ($(du -h "$W/disk.qcow2" | cut -f1))"
