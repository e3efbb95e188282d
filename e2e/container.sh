#!/bin/sh
# Runs in the e2e guest as root: makes a container image locally (a minimal rootfs imported with
# `podman import`, nothing pulled from a registry) and starts a CPU burner in it. Prints the
# container's full id. Idempotent: an earlier burner is replaced.
set -eu
podman rm -f sysmonvm-burner >/dev/null 2>&1 || true
if ! podman image exists localhost/sysmonvm-burner; then
  root=$(mktemp -d)
  mkdir -p "$root/bin"
  if busybox=$(command -v busybox); then
    # Debian's busybox-static: one static file.
    cp "$busybox" "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
  else
    # No busybox (AlmaLinux): the guest's own shell and the libraries it links.
    for f in /bin/sh $(ldd "$(readlink -f /bin/sh)" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$f")"
      cp -L "$f" "$root$f"
    done
  fi
  tar -C "$root" -cf - . | podman import --change 'CMD ["/bin/sh"]' - localhost/sysmonvm-burner >/dev/null
  rm -rf "$root"
fi
podman run -d --name sysmonvm-burner --network none localhost/sysmonvm-burner /bin/sh -c 'while :; do :; done'
