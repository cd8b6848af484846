#!/usr/bin/env bash
# Installs the Debian packages kubeforge's lab, tests and bundle build use on this
# machine (libseccomp-dev, pkg-config and a C toolchain link runc statically).
# Idempotent: does nothing when everything is present.
set -euo pipefail
pkgs=(debootstrap systemd-container openssh-server openssh-client iproute2 iptables kmod
      util-linux openssl iperf3 ca-certificates make
      libseccomp-dev pkg-config gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] installing: ${missing[*]}" >&2
  if [ "$(id -u)" != 0 ]; then echo "install-deps: need root for apt-get install" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's openssh-server postinst may start sshd on the machine; tests start their own.
echo "[deps] ok" >&2
