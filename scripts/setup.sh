# Sourced by scripts/test and scripts/demo: installs what the project needs on Debian 12.
# Idempotent and quiet when everything is already there.
APT_PACKAGES=(python3 python3-venv python3-pip keepalived ipvsadm iproute2 tcpdump procps psmisc kmod
              iputils-ping curl nftables qemu-system-x86 linux-image-amd64 busybox-static systemd)
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (it installs apt packages and creates network namespaces)" >&2
    exit 2
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    echo "== python venv"
    python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -e "$stamp" ]; then
    echo "== pip install -e .[test]"
    # a plain .pth path entry (pyproject's package-dir), not a meta-path finder: every vrrpd
    # process starts faster (issue 4); say so if a setuptools version installs a finder again
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    if compgen -G ".venv/lib/python3*/site-packages/__editable___vrrpd_*_finder.py" >/dev/null; then
        echo "warning: the editable install uses a meta-path finder (slower start-up)" >&2
    fi
    rm -f .venv/.installed-*; touch "$stamp"
fi
